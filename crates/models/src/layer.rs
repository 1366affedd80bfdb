//! A typed view of one node and its weights, matched once.
//!
//! The IR keeps ops ([`Graph::nodes`]) and their numbers ([`Weights::nodes`]) in two
//! parallel vectors, so that weights can be re-seeded, calibrated and folded without touching
//! the graph. Everything that *reads* a model — the reference, the native, tch and wgpu
//! engines, both exporters, quantization — walks [`Model::layers`] instead of zipping the two
//! and matching pairs, so an op and its weights that do not fit are caught here, in one place.

use crate::ir::{Conv2d, FullyConnected, Graph, MultiQueryAttention, Node, Op, SqueezeExcite};
use crate::weights::{AttentionWeights, BatchNorm, NodeWeights, Weights};

/// One node's op with its weights.
#[derive(Debug, Clone, Copy)]
pub enum Layer<'a> {
    /// Kernel HWIO (`[kh][kw][in/groups][out]`); `bn` is present unless folded.
    Conv {
        conv: &'a Conv2d,
        kernel: &'a [f32],
        bias: Option<&'a [f32]>,
        bn: Option<&'a BatchNorm>,
    },
    SqueezeExcite {
        se: &'a SqueezeExcite,
        weights: SeWeights<'a>,
    },
    GlobalAvgPool,
    /// Matrix `[in][out]`.
    FullyConnected {
        fc: &'a FullyConnected,
        weight: &'a [f32],
        bias: &'a [f32],
    },
    /// Residual addition of the node's two inputs.
    Add,
    Attention {
        attn: &'a MultiQueryAttention,
        weights: &'a AttentionWeights,
    },
}

/// A squeeze-and-excite block's two 1×1 layers (matrices `[in][out]`).
#[derive(Debug, Clone, Copy)]
pub struct SeWeights<'a> {
    pub reduce: &'a [f32],
    pub reduce_bias: &'a [f32],
    pub expand: &'a [f32],
    pub expand_bias: &'a [f32],
}

impl<'a> Layer<'a> {
    /// Pairs `node`'s op with `weights`.
    ///
    /// # Panics
    /// If they do not fit: weights are always built from their graph ([`Model::from_config`],
    /// [`Model::fold_batch_norm`]), so a mismatch is a bug in this crate, not bad input.
    pub fn of(node: &'a Node, weights: &'a NodeWeights) -> Layer<'a> {
        match (&node.op, weights) {
            (Op::Conv2d(conv), NodeWeights::Conv { kernel, bias, bn }) => Layer::Conv {
                conv,
                kernel,
                bias: bias.as_deref(),
                bn: bn.as_ref(),
            },
            (
                Op::SqueezeExcite(se),
                NodeWeights::SqueezeExcite {
                    reduce,
                    reduce_bias,
                    expand,
                    expand_bias,
                },
            ) => Layer::SqueezeExcite {
                se,
                weights: SeWeights {
                    reduce,
                    reduce_bias,
                    expand,
                    expand_bias,
                },
            },
            (Op::GlobalAvgPool, NodeWeights::None) => Layer::GlobalAvgPool,
            (Op::FullyConnected(fc), NodeWeights::FullyConnected { weight, bias }) => {
                Layer::FullyConnected { fc, weight, bias }
            }
            (Op::Add, NodeWeights::None) => Layer::Add,
            (Op::MultiQueryAttention(attn), NodeWeights::Attention(weights)) => {
                Layer::Attention { attn, weights }
            }
            (op, w) => panic!("node {}: weights {w:?} do not fit op {op:?}", node.name),
        }
    }
}

/// Every node of `graph` with its weights, in execution order.
pub fn layers<'a>(
    graph: &'a Graph,
    weights: &'a Weights,
) -> impl ExactSizeIterator<Item = (&'a Node, Layer<'a>)> {
    assert_eq!(
        graph.nodes.len(),
        weights.nodes.len(),
        "{}: one weight entry per node",
        graph.name
    );
    graph
        .nodes
        .iter()
        .zip(&weights.nodes)
        .map(|(node, w)| (node, Layer::of(node, w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::zoo::{Family, ModelConfig};

    #[test]
    fn every_zoo_node_has_the_layer_of_its_op() {
        let model = Model::from_config(&ModelConfig::new(Family::V3Large, 0.35, 96), 1);
        for (node, layer) in model.layers() {
            let same = matches!(
                (&node.op, layer),
                (Op::Conv2d(_), Layer::Conv { bn: Some(_), .. })
                    | (Op::SqueezeExcite(_), Layer::SqueezeExcite { .. })
                    | (Op::GlobalAvgPool, Layer::GlobalAvgPool)
                    | (Op::FullyConnected(_), Layer::FullyConnected { .. })
                    | (Op::Add, Layer::Add)
                    | (Op::MultiQueryAttention(_), Layer::Attention { .. })
            );
            assert!(same, "{}: {layer:?}", node.name);
        }
        let folded = model.fold_batch_norm();
        assert!(folded
            .layers()
            .all(|(_, l)| !matches!(l, Layer::Conv { bn: Some(_), .. })));
    }

    #[test]
    #[should_panic(expected = "do not fit op")]
    fn weights_that_do_not_fit_their_op_are_caught() {
        let mut model = Model::from_config(&ModelConfig::new(Family::V3Small, 0.35, 96), 1);
        let last = model.weights.nodes.len() - 1;
        model.weights.nodes.swap(0, last); // the stem conv's and the logits' weights
        model.layers().for_each(drop);
    }
}

//! MAC and parameter counting from the IR.
//!
//! Convention (the published tables' convention):
//! - MACs: multiply-accumulates of every convolution and fully connected layer, including the
//!   two 1×1 convs of squeeze-excite and the classifier. Batch norm, activations, pooling,
//!   residual adds and the SE channel scaling are not counted.
//! - Params: the deployed (BN-folded) model's numbers: every kernel weight plus one bias per
//!   output channel of each convolution (its folded BN or own bias) and of each FC layer.

use crate::ir::{Graph, Node, Op};

/// MACs and parameters of one graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub macs: u64,
    pub params: u64,
}

impl Counts {
    pub fn macs_millions(&self) -> f64 {
        self.macs as f64 / 1e6
    }
    pub fn params_millions(&self) -> f64 {
        self.params as f64 / 1e6
    }
}

pub fn count(graph: &Graph) -> Counts {
    graph
        .nodes
        .iter()
        .map(count_node)
        .fold(Counts { macs: 0, params: 0 }, |total, node| Counts {
            macs: total.macs + node.macs,
            params: total.params + node.params,
        })
}

/// One node's MACs and parameters (per-layer profiles use these).
pub fn count_node(node: &Node) -> Counts {
    let spatial = (node.output.h * node.output.w) as u64;
    let (macs, params) = match &node.op {
        Op::Conv2d(c) => (
            spatial * c.kernel_len() as u64,
            (c.kernel_len() + c.out_channels) as u64,
        ),
        Op::SqueezeExcite(se) => {
            let (c, s) = (se.channels as u64, se.squeeze as u64);
            (2 * c * s, 2 * c * s + s + c)
        }
        Op::FullyConnected(fc) => {
            let (i, o) = (fc.in_features as u64, fc.out_features as u64);
            (i * o, i * o + o)
        }
        Op::GlobalAvgPool | Op::Add => (0, 0),
    };
    Counts { macs, params }
}

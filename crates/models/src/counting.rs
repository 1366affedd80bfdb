//! MAC and parameter counting from the IR.
//!
//! Convention (the published tables' convention):
//! - MACs: multiply-accumulates of every convolution and fully connected layer, including the
//!   two 1×1 convs of squeeze-excite and the classifier, and attention's projections and its
//!   two weightless matmuls (`q·kᵀ`, the weighted sum of values). Batch norm, activations,
//!   pooling, softmax, residual adds and the SE channel scaling are not counted.
//! - Params: the deployed (BN-folded) model's numbers: every kernel weight plus one bias per
//!   output channel of each convolution (its folded BN or own bias) and of each FC layer.

use crate::ir::{Graph, Node, Op};
use crate::zoo::ModelConfig;

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
        Op::MultiQueryAttention(a) => {
            let (c, kd, vd, heads) = (
                a.channels as u64,
                a.key_dim as u64,
                a.value_dim as u64,
                a.heads as u64,
            );
            let m = (a.kv_shape.h * a.kv_shape.w) as u64;
            let k2 = (a.kv_kernel * a.kv_kernel) as u64;
            // Downsampling depthwise convs (keys and values each have one).
            let (down_macs, down_params) = match a.down_conv() {
                Some(_) => (2 * m * k2 * c, 2 * (k2 * c + c)),
                None => (0, 0),
            };
            let projections =
                spatial * c * heads * kd + m * c * (kd + vd) + spatial * heads * vd * c;
            // q·kᵀ and the weighted sum of values, per head: matmuls with no weights.
            let attention = spatial * heads * m * (kd + vd);
            (
                down_macs + projections + attention,
                // The input norm's scale and shift (it cannot fold into the padded convs).
                2 * c + down_params + c * heads * kd + c * (kd + vd) + heads * vd * c,
            )
        }
    };
    Counts { macs, params }
}

/// Parameters as the training graph holds them: [`count`]'s (kernels, one bias or BN shift per
/// channel) plus each batch norm's scale γ and each layer scale, which folding absorbs into
/// the kernel (for attention, the downsampling BNs' γ and the output's layer scale). This is
/// the convention of MobileNetV4's spec figures (timm counts PyTorch BN's γ and β); slim's
/// V1–V3 figures count β only, [`count`]'s convention. Takes the unfolded graph.
pub fn trained_params(graph: &Graph) -> u64 {
    let scales: u64 = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d(c) if c.batch_norm => {
                Some(c.out_channels as u64 * if c.layer_scale { 2 } else { 1 })
            }
            Op::MultiQueryAttention(a) => {
                let downs = if a.down_conv().is_some() { 2 } else { 0 };
                Some(a.channels as u64 * (downs + 1))
            }
            _ => None,
        })
        .sum();
    count(graph).params + scales
}

/// A zoo model's MACs and params, params in the convention of its family's published figures:
/// [`trained_params`] for MobileNetV4 (its spec counts BN's γ and β), [`count`]'s for V1–V3.
pub fn count_config(config: &ModelConfig) -> Counts {
    let graph = config.graph();
    let mut counts = count(&graph);
    if config.family.is_v4() {
        counts.params = trained_params(&graph);
    }
    counts
}

//! The numbers of a model: per-node weights, batch norm, and the seeded stream they come from.
//!
//! Weights come from a seeded ChaCha stream in node order, He-scaled, so the same seed gives
//! bit-identical weights on every machine. This module knows only the IR's shapes; the
//! [`Model`](crate::Model) built from a zoo config then calibrates the BN statistics
//! (`model.rs`), which needs the reference evaluator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ir::{Graph, Op};

/// slim's batch-norm epsilon for MobileNets.
pub const BN_EPSILON: f32 = 1e-3;
/// The default weight seed.
pub const DEFAULT_SEED: u64 = 0x6d6f_6269_6c65;

#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

impl BatchNorm {
    /// Inference batch norm as a per-channel affine map `x · scale + shift`, with
    /// `scale = γ / √(σ² + ε)` and `shift = β − μ · scale`.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self
            .gamma
            .iter()
            .zip(&self.var)
            .map(|(g, v)| g / (v + self.eps).sqrt())
            .collect();
        let shift = (0..scale.len())
            .map(|c| self.beta[c] - self.mean[c] * scale[c])
            .collect();
        (scale, shift)
    }
}

/// The numbers of one node. Layouts: conv kernel HWIO (`[kh][kw][in/groups][out]`),
/// FC and SE matrices `[in][out]`.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeWeights {
    None,
    Conv {
        kernel: Vec<f32>,
        bias: Option<Vec<f32>>,
        bn: Option<BatchNorm>,
    },
    SqueezeExcite {
        reduce: Vec<f32>,
        reduce_bias: Vec<f32>,
        expand: Vec<f32>,
        expand_bias: Vec<f32>,
    },
    FullyConnected {
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
    Attention(Box<AttentionWeights>),
}

/// The numbers of a [`MultiQueryAttention`](crate::ir::MultiQueryAttention) block. Matrices
/// are `[in][out]`; BNs stay unfolded (the input norm cannot fold into a zero-padded
/// depthwise conv exactly), engines and exporters fold what they can with the helpers.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionWeights {
    pub norm: BatchNorm,
    /// Depthwise kernels `[k][k][1][C]` with their BN, when keys and values are downsampled.
    pub key_down: Option<(Vec<f32>, BatchNorm)>,
    pub value_down: Option<(Vec<f32>, BatchNorm)>,
    /// `[C][heads·key_dim]`
    pub query: Vec<f32>,
    /// `[C][key_dim]`
    pub key: Vec<f32>,
    /// `[C][value_dim]`
    pub value: Vec<f32>,
    /// `[heads·value_dim][C]`, the layer scale multiplied in.
    pub output: Vec<f32>,
}

/// A depthwise kernel `[k][k][1][C]` with its BN folded in: (kernel, bias).
pub fn fold_depthwise(kernel: &[f32], bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let (scale, shift) = bn.scale_shift();
    let c = scale.len();
    let folded = kernel
        .iter()
        .enumerate()
        .map(|(i, k)| k * scale[i % c])
        .collect();
    (folded, shift)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub nodes: Vec<NodeWeights>,
}

/// How batch norm reaches a backend: the `--bn` switch of `bench run` and `bench export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BnMode {
    /// Folded into the convolutions' kernels and biases (what deployments ship).
    #[default]
    Fused,
    /// Kept as a separate normalisation after each convolution (what training frameworks
    /// run): ONNX BatchNormalization, TFLite MUL + ADD, a separate pass in native and tch.
    Separate,
}

impl BnMode {
    pub fn name(self) -> &'static str {
        match self {
            BnMode::Fused => "fused",
            BnMode::Separate => "separate",
        }
    }
}

impl std::str::FromStr for BnMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fused" => Ok(BnMode::Fused),
            "separate" => Ok(BnMode::Separate),
            _ => Err(format!("`{s}`: expected `fused` or `separate`")),
        }
    }
}

struct Init(ChaCha8Rng);

impl Init {
    /// Uniform with the given standard deviation (uniform on ±std·√3).
    fn scaled(&mut self, n: usize, std: f32) -> Vec<f32> {
        let a = std * 3f32.sqrt();
        (0..n).map(|_| self.0.random_range(-a..a)).collect()
    }
    fn range(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.0.random_range(lo..hi)).collect()
    }
}

impl Weights {
    /// Seeded He-scaled weights with neutral BN statistics (mean 0, variance 1), for tests
    /// of single ops; zoo models use [`Model::from_config`](crate::Model::from_config), which
    /// also calibrates BN.
    pub fn random(graph: &Graph, seed: u64) -> Weights {
        random_weights(graph, seed)
    }
}

/// The range random layer scales (V4 hybrids) are drawn from. Trained ones start at 1e-5,
/// which would leave the branches numerically invisible beside the residual in the
/// cross-checks; a BN-like 0.6–1.4 lets the residual stream grow block by block (Hybrid-L's
/// reached 1e2 by its 12×12 stage, where channels then differ by orders of magnitude and
/// each normalising BN turns float rounding of the large ones into visible error in the
/// small ones). 0.1–0.3 keeps every branch well above rounding and the stream O(1)–O(10).
const LAYER_SCALE_RANGE: (f32, f32) = (0.1, 0.3);

pub(crate) fn random_weights(graph: &Graph, seed: u64) -> Weights {
    let mut init = Init(ChaCha8Rng::seed_from_u64(seed));
    let he = |fan_in: usize| (2.0 / fan_in as f32).sqrt();
    let nodes = graph
        .nodes
        .iter()
        .map(|node| match &node.op {
            Op::Conv2d(c) => {
                let fan_in = c.kernel * c.kernel * (c.in_channels / c.groups);
                let kernel = init.scaled(c.kernel_len(), he(fan_in));
                let (lo, hi) = if c.layer_scale {
                    LAYER_SCALE_RANGE
                } else {
                    (0.6, 1.4)
                };
                let bn = c.batch_norm.then(|| BatchNorm {
                    // With a layer scale after it (V4 hybrids), the two per-channel scales
                    // multiply: γ·s, drawn from the layer scale's range.
                    gamma: init.range(c.out_channels, lo, hi),
                    beta: init.range(c.out_channels, -0.2, 0.4),
                    mean: vec![0.0; c.out_channels],
                    var: vec![1.0; c.out_channels],
                    eps: BN_EPSILON,
                });
                let bias = c.bias.then(|| init.range(c.out_channels, -0.1, 0.1));
                NodeWeights::Conv { kernel, bias, bn }
            }
            Op::SqueezeExcite(se) => NodeWeights::SqueezeExcite {
                reduce: init.scaled(se.channels * se.squeeze, he(se.channels)),
                reduce_bias: init.range(se.squeeze, 0.0, 0.2),
                expand: init.scaled(se.squeeze * se.channels, he(se.squeeze)),
                expand_bias: init.range(se.channels, -0.5, 0.5),
            },
            Op::FullyConnected(fc) => NodeWeights::FullyConnected {
                weight: init.scaled(fc.in_features * fc.out_features, he(fc.in_features)),
                bias: init.range(fc.out_features, -0.1, 0.1),
            },
            Op::GlobalAvgPool | Op::Add => NodeWeights::None,
            Op::MultiQueryAttention(a) => {
                let c = a.channels;
                let bn = |init: &mut Init| BatchNorm {
                    gamma: init.range(c, 0.6, 1.4),
                    beta: init.range(c, -0.2, 0.4),
                    mean: vec![0.0; c],
                    var: vec![1.0; c],
                    eps: BN_EPSILON,
                };
                let norm = bn(&mut init);
                let k2 = a.kv_kernel * a.kv_kernel;
                let down = |init: &mut Init| {
                    (a.kv_stride > 1).then(|| (init.scaled(k2 * c, he(k2)), bn(init)))
                };
                let key_down = down(&mut init);
                let value_down = down(&mut init);
                let qk = a.heads * a.key_dim;
                let hv = a.heads * a.value_dim;
                // Queries and keys are linear (no ReLU after them): variance 1/c, so that
                // q·k/√d has unit variance on a normalised input (measured logit std 1.0–1.2
                // in Hybrid-L); He's 2/c would double each and quadruple the logits' variance.
                let lecun = (1.0 / c as f32).sqrt();
                let query = init.scaled(c * qk, lecun);
                let key = init.scaled(c * a.key_dim, lecun);
                let value = init.scaled(c * a.value_dim, he(c));
                let layer_scale = init.range(c, LAYER_SCALE_RANGE.0, LAYER_SCALE_RANGE.1);
                let mut output = init.scaled(hv * c, (1.0 / hv as f32).sqrt());
                for (i, w) in output.iter_mut().enumerate() {
                    *w *= layer_scale[i % c];
                }
                NodeWeights::Attention(Box::new(AttentionWeights {
                    norm,
                    key_down,
                    value_down,
                    query,
                    key,
                    value,
                    output,
                }))
            }
        })
        .collect();
    Weights { nodes }
}

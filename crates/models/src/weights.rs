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
                let bn = c.batch_norm.then(|| BatchNorm {
                    gamma: init.range(c.out_channels, 0.6, 1.4),
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
        })
        .collect();
    Weights { nodes }
}

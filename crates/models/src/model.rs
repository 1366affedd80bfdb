//! The [`Model`] (graph + weights) that backends load, built from a zoo config.
//!
//! Weights are seeded ([`crate::weights`]); batch-norm statistics are then *calibrated*: the
//! running mean/variance of each conv are set to the statistics its output actually has on a
//! synthetic image (as a trained network's would be), so every layer's pre-activation is
//! normalised and activations stay in a realistic range at every depth, logits included.
//! Kernels do not depend on the resolution; BN statistics are calibrated at the model's own
//! resolution (as slim trains each resolution separately): statistics taken at 128 px let the
//! deepest 7×7 layers of a 224 px V3 grow 40-fold.
//!
//! The dependencies run one way: `weights` (numbers) → `layer` (op + numbers) → `reference`
//! (what they compute) → `model` (which calibrates with the reference).

use crate::input::synthetic_input;
use crate::ir::{Graph, Node, Op};
use crate::layer::{layers, Layer};
use crate::reference;
use crate::weights::{random_weights, BnMode, NodeWeights, Weights};
use crate::zoo::ModelConfig;

/// A graph with its weights: what every backend receives for a zoo model.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub graph: Graph,
    pub weights: Weights,
}

impl Model {
    /// Builds a zoo model with seeded, BN-calibrated weights (BN kept as separate parameters).
    pub fn from_config(config: &ModelConfig, seed: u64) -> Model {
        let graph = config.graph();
        let mut weights = random_weights(&graph, seed);
        calibrate_batch_norm(&graph, &mut weights, seed);
        Model {
            name: config.name(),
            graph,
            weights,
        }
    }

    /// The deployed form: every BN folded into its conv's kernel and bias. Numerically the
    /// same function up to float rounding.
    pub fn fold_batch_norm(&self) -> Model {
        let mut graph = self.graph.clone();
        let mut weights = self.weights.clone();
        for (node, w) in graph.nodes.iter_mut().zip(&mut weights.nodes) {
            let (Op::Conv2d(conv), NodeWeights::Conv { kernel, bias, bn }) = (&mut node.op, w)
            else {
                continue;
            };
            let Some(bn) = bn.take() else { continue };
            let out = conv.out_channels;
            let scale: Vec<f32> = (0..out)
                .map(|c| bn.gamma[c] / (bn.var[c] + bn.eps).sqrt())
                .collect();
            for (i, k) in kernel.iter_mut().enumerate() {
                *k *= scale[i % out];
            }
            let old_bias = bias.take().unwrap_or_else(|| vec![0.0; out]);
            *bias = Some(
                (0..out)
                    .map(|c| (old_bias[c] - bn.mean[c]) * scale[c] + bn.beta[c])
                    .collect(),
            );
            conv.batch_norm = false;
            conv.bias = true;
        }
        Model {
            name: self.name.clone(),
            graph,
            weights,
        }
    }

    /// The model in the requested BN form; `Separate` needs a model that still has its BNs.
    pub fn with_bn(&self, bn: BnMode) -> Result<Model, crate::error::ModelError> {
        match bn {
            BnMode::Fused => Ok(self.fold_batch_norm()),
            BnMode::Separate if self.has_batch_norm() => Ok(self.clone()),
            BnMode::Separate => Err(crate::error::ModelError::NoBatchNorm(self.name.clone())),
        }
    }

    pub fn has_batch_norm(&self) -> bool {
        self.weights
            .nodes
            .iter()
            .any(|w| matches!(w, NodeWeights::Conv { bn: Some(_), .. }))
    }

    /// Every node with its weights, in execution order.
    pub fn layers(&self) -> impl ExactSizeIterator<Item = (&Node, Layer<'_>)> {
        layers(&self.graph, &self.weights)
    }

    /// Node `i` with its weights.
    pub fn layer(&self, i: usize) -> Layer<'_> {
        Layer::of(&self.graph.nodes[i], &self.weights.nodes[i])
    }
}

/// Pixels of the smallest feature map, summed over the calibration images, that each BN's
/// statistics are estimated from at least (below it, more images are used).
const MIN_CALIBRATION_PIXELS: usize = 32;

/// Sets each BN's running statistics to its conv's output statistics on synthetic images.
/// One image is enough where every map has 32+ pixels (7×7 at 224 px); at small inputs the
/// last stages shrink to 2×2, and statistics from 4 pixels of one image fit that image only:
/// on another input, each BN then rescales by factors that compound block by block
/// (Hybrid-L at 64 px: a residual stream of 1e7 on the measured input). So the images are
/// as many as it takes to give the smallest map 32 pixels, and each BN sees them all.
fn calibrate_batch_norm(graph: &Graph, weights: &mut Weights, seed: u64) {
    let smallest = graph.nodes.iter().map(|n| n.output.h * n.output.w);
    let smallest = smallest.filter(|&p| p > 1).min().unwrap_or(1);
    let images = MIN_CALIBRATION_PIXELS.div_ceil(smallest).max(1);
    let mut values: Vec<Vec<Vec<f32>>> = (0..images as u64)
        .map(|k| vec![synthetic_input(graph.input, (seed ^ 0xca11_b8a7e) + k)])
        .collect();
    for (i, node) in graph.nodes.iter().enumerate() {
        let in_shape = graph.value_shape(node.inputs[0]);
        if let (
            Op::Conv2d(conv),
            NodeWeights::Conv {
                kernel,
                bias,
                bn: Some(bn),
            },
        ) = (&node.op, &mut weights.nodes[i])
        {
            let raw: Vec<f32> = values
                .iter()
                .flat_map(|v| {
                    let x = &v[node.inputs[0]];
                    reference::conv2d(x, in_shape, conv, kernel, bias.as_deref(), node.output)
                })
                .collect();
            set_stats(bn, &raw);
        }
        if let (Op::MultiQueryAttention(attn), NodeWeights::Attention(w)) =
            (&node.op, &mut weights.nodes[i])
        {
            let inputs: Vec<f32> = values
                .iter()
                .flat_map(|v| v[node.inputs[0]].iter().copied())
                .collect();
            set_stats(&mut w.norm, &inputs);
            // The downsampling BNs see the normalised input's depthwise convs.
            if let Some(conv) = attn.down_conv() {
                for (kernel, bn) in [w.key_down.as_mut(), w.value_down.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    let raw: Vec<f32> = values
                        .iter()
                        .flat_map(|v| {
                            let mut x = v[node.inputs[0]].clone();
                            reference::batch_norm(&mut x, &w.norm);
                            reference::conv2d(&x, in_shape, &conv, kernel, None, attn.kv_shape)
                        })
                        .collect();
                    set_stats(bn, &raw);
                }
            }
        }
        let layer = Layer::of(node, &weights.nodes[i]);
        for v in values.iter_mut() {
            let out = reference::evaluate_node(graph, node, layer, v);
            v.push(out);
        }
    }
}

/// A BN's running statistics set to those of `x` (its input). A channel that is (nearly)
/// constant on the calibration image would get a huge scale: its variance is floored at 1%
/// of the layer's mean variance.
fn set_stats(bn: &mut crate::weights::BatchNorm, x: &[f32]) {
    let (mean, var) = channel_stats(x, bn.gamma.len());
    let floor = 0.01 * var.iter().sum::<f32>() / var.len() as f32 + 1e-6;
    bn.mean = mean;
    bn.var = var.into_iter().map(|v| v.max(floor)).collect();
}

fn channel_stats(x: &[f32], channels: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (x.len() / channels) as f64;
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    for (i, &v) in x.iter().enumerate() {
        sum[i % channels] += v as f64;
        sq[i % channels] += (v as f64) * (v as f64);
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let var = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| ((q / n) - (s / n) * (s / n)).max(0.0) as f32)
        .collect();
    (mean, var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::Family;

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let cfg = ModelConfig::new(Family::V3Small, 0.5, 64);
        let a = Model::from_config(&cfg, 1);
        let b = Model::from_config(&cfg, 1);
        let c = Model::from_config(&cfg, 2);
        assert_eq!(a.weights, b.weights);
        assert_ne!(a.weights, c.weights);
    }

    #[test]
    fn kernels_do_not_depend_on_resolution() {
        let a = Model::from_config(&ModelConfig::new(Family::V2, 0.35, 96), 7);
        let b = Model::from_config(&ModelConfig::new(Family::V2, 0.35, 224), 7);
        for (x, y) in a.weights.nodes.iter().zip(&b.weights.nodes) {
            if let (NodeWeights::Conv { kernel: k1, .. }, NodeWeights::Conv { kernel: k2, .. }) =
                (x, y)
            {
                assert_eq!(k1, k2);
            }
        }
    }

    #[test]
    fn folding_preserves_the_function() {
        let model = Model::from_config(&ModelConfig::new(Family::V3Large, 0.5, 64), 3);
        let folded = model.fold_batch_norm();
        assert!(model.has_batch_norm() && !folded.has_batch_norm());
        let input = synthetic_input(model.graph.input, 11);
        let a = reference::evaluate(&model.graph, &model.weights, &input);
        let b = reference::evaluate(&folded.graph, &folded.weights, &input);
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        // Folding reorders a handful of float ops per value: a few ulps of the logit scale.
        assert!(diff <= 1e-4 * scale, "diff {diff} at scale {scale}");
    }
}

/// Activation statistics at full resolution: the property the calibration exists for.
#[cfg(test)]
mod range_tests {
    use super::*;
    use crate::sets::select;
    use crate::weights::DEFAULT_SEED;

    #[test]
    fn activations_stay_realistic_through_every_depth() {
        for cfg in select("default").unwrap() {
            let model = Model::from_config(&cfg, DEFAULT_SEED);
            let input = synthetic_input(model.graph.input, crate::input::DEFAULT_INPUT_SEED);
            let values = reference::evaluate_all(&model.graph, &model.weights, &input);
            let mut lo = f32::MAX;
            let mut hi = 0f32;
            for (node, v) in model.graph.nodes.iter().zip(&values[1..]) {
                assert!(
                    v.iter().all(|x| x.is_finite()),
                    "{}: {} not finite",
                    cfg,
                    node.name
                );
                let rms = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
                lo = lo.min(rms);
                hi = hi.max(rms);
                // Calibrated BN keeps each layer O(1): not vanishing, not exploding.
                assert!(
                    (0.1..10.0).contains(&rms),
                    "{}: {} rms {rms}",
                    cfg,
                    node.name
                );
            }
            let logits = values.last().unwrap();
            let mean = logits.iter().sum::<f32>() / logits.len() as f32;
            let std = (logits.iter().map(|x| (x - mean).powi(2)).sum::<f32>()
                / logits.len() as f32)
                .sqrt();
            eprintln!("{cfg}: layer rms in [{lo:.3}, {hi:.3}], logits std {std:.3}");
            assert!(std > 0.3, "{cfg}: flat logits (std {std})");
        }
    }
}

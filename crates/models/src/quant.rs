//! Post-training 8-bit quantization of a zoo model, and what the quantized model means.
//!
//! The scheme is the one TFLite's int8 kernels and ONNX Runtime's QDQ (S8S8) kernels share:
//! - weights: int8, symmetric (zero point 0), one scale per output channel, for every
//!   convolution and FC layer: in [−127, 127] for TFLite, in [−64, 64] for ONNX Runtime
//!   ([`WeightRange`]);
//! - biases: int32 with scale `input scale × weight scale` of their channel, zero point 0;
//! - activations: int8 per tensor, asymmetric, from the min/max each tensor takes (widened to
//!   hold 0, so zero padding is exact) on [`CALIBRATION_IMAGES`] deterministic inputs: the
//!   synthetic images of seeds [`CALIBRATION_SEED`]` + i` (the measured input is seed 42, so
//!   calibration never sees it).
//!
//! [`QuantModel`] is the model as layers (op and its numbers together), which both int8
//! exporters walk; [`QuantModel::evaluate`] is its meaning: the float graph with every
//! quantized tensor rounded to its grid ("fake quantization"), against which the runtimes'
//! integer kernels are checked. Batch norm is folded first: no runtime has an int8 BN.

use crate::input::synthetic_input;
use crate::ir::{Activation, Conv2d, FullyConnected, Graph, Shape, SqueezeExcite};
use crate::layer::{layers, Layer};
use crate::model::Model;
use crate::reference;
use crate::weights::{NodeWeights, Weights};

/// How many images calibrate the activation ranges.
pub const CALIBRATION_IMAGES: usize = 8;
/// The first calibration image's seed (the others follow it).
pub const CALIBRATION_SEED: u64 = 0x00ca_1b00;

/// An int8 tensor's quantization: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QParams {
    /// The SE gate (hard sigmoid) output: [0, 1] on 255 steps, fixed rather than calibrated
    /// because the function's range is known (as TFLite fixes LOGISTIC's).
    pub const UNIT: QParams = QParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    /// relu6(x + 3), the first half of the gate where a runtime has no hard-sigmoid op: six
    /// times [`QParams::UNIT`]'s step, so dividing by 6 lands exactly on its grid.
    pub const RELU6: QParams = QParams {
        scale: 6.0 / 255.0,
        zero_point: -128,
    };

    /// Asymmetric int8 parameters covering `[lo, hi]` widened to hold 0.
    pub fn from_range(lo: f32, hi: f32) -> QParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero_point = (-128.0 - lo / scale).round_ties_even().clamp(-128.0, 127.0) as i32;
        QParams { scale, zero_point }
    }

    /// Round to nearest (ties to even, as ONNX QuantizeLinear), saturate to int8.
    pub fn quantize(&self, x: f32) -> i8 {
        ((x / self.scale).round_ties_even() + self.zero_point as f32).clamp(-128.0, 127.0) as i8
    }

    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }

    /// `x` rounded to this grid.
    pub fn fake(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }
}

/// A weight matrix in int8, one scale per output channel. The layout is the float one (conv
/// HWIO, FC `[in][out]`): the output channel is the fastest index.
#[derive(Debug, Clone, PartialEq)]
pub struct QWeights {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

impl QWeights {
    /// Symmetric per-channel quantization of `w` with `out` output channels.
    pub fn per_output_channel(w: &[f32], out: usize, range: WeightRange) -> QWeights {
        let steps = range.max();
        let mut max = vec![0f32; out];
        for (i, v) in w.iter().enumerate() {
            max[i % out] = max[i % out].max(v.abs());
        }
        // An all-zero channel quantizes to zeros with any scale; 1/127 keeps it positive.
        let scales: Vec<f32> = max
            .iter()
            .map(|&m| if m > 0.0 { m / steps } else { 1.0 / steps })
            .collect();
        let values = w
            .iter()
            .enumerate()
            .map(|(i, v)| (v / scales[i % out]).round_ties_even().clamp(-steps, steps) as i8)
            .collect();
        QWeights { values, scales }
    }

    pub fn out_channels(&self) -> usize {
        self.scales.len()
    }

    pub fn dequantized(&self) -> Vec<f32> {
        let out = self.out_channels();
        self.values
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * self.scales[i % out])
            .collect()
    }
}

/// The activation ranges of a model (BN folded) on the calibration images: what every
/// quantization of it shares.
#[derive(Debug, Clone)]
pub struct Calibration {
    model: Model,
    input: Range,
    ranges: Vec<Ranges>,
}

impl Calibration {
    /// Calibrates on the [`CALIBRATION_IMAGES`] images of seeds [`CALIBRATION_SEED`]` + i`.
    pub fn run(model: &Model) -> Calibration {
        let images: Vec<Vec<f32>> = (0..CALIBRATION_IMAGES as u64)
            .map(|i| synthetic_input(model.graph.input, CALIBRATION_SEED + i))
            .collect();
        Calibration::on(model, &images)
    }

    /// Calibrates on `images`. Callers check [`check_int8`] first.
    pub fn on(model: &Model, images: &[Vec<f32>]) -> Calibration {
        if let Err(e) = check_int8(model) {
            panic!("{e}");
        }
        let model = model.fold_batch_norm();
        let mut input = Range::EMPTY;
        let mut ranges = vec![Ranges::EMPTY; model.graph.nodes.len()];
        for image in images {
            forward(
                &model.graph,
                &model.weights,
                image,
                &mut |point, x| match point {
                    Point::Input => input.add(x),
                    Point::PreActivation(i) => ranges[i].pre_activation.add(x),
                    Point::Output(i) => ranges[i].output.add(x),
                    Point::SePooled(i) => ranges[i].se_pooled.add(x),
                    Point::SeHidden(i) => ranges[i].se_hidden.add(x),
                    Point::SeGateInput(i) => ranges[i].se_gate_input.add(x),
                    Point::SeGate(_) => {}
                },
            );
        }
        Calibration {
            model,
            input,
            ranges,
        }
    }

    /// The int8 model: these activation ranges, weights quantized in `range`.
    pub fn quantize(&self, range: WeightRange) -> QuantModel {
        let graph = &self.model.graph;
        let input = self.input.params();
        let mut outputs: Vec<QParams> = vec![input];
        let mut layers = Vec::with_capacity(graph.nodes.len());
        for ((node, layer), r) in self.model.layers().zip(&self.ranges) {
            let x = outputs[node.inputs[0]];
            let op = quantize_layer(layer, x, r, range);
            outputs.push(op.output());
            layers.push(QLayer {
                name: node.name.clone(),
                inputs: node.inputs.clone(),
                shape: node.output,
                op,
            });
        }
        let dequantized = Weights {
            nodes: layers.iter().map(dequantized_weights).collect(),
        };
        QuantModel {
            name: self.model.name.clone(),
            input_shape: graph.input,
            input,
            weight_range: range,
            layers,
            graph: graph.clone(),
            dequantized,
        }
    }
}

/// How many int8 steps weights use on each side of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightRange {
    /// [−127, 127]: TFLite's int8 spec.
    Full,
    /// [−64, 64] (ONNX Runtime's `reduce_range`): its x86 u8s8 kernels without VNNI add
    /// pairs of u8 × s8 products in 16 bits, which 255 × 127 × 2 overflows and
    /// 255 × 64 × 2 does not.
    Reduced,
}

impl WeightRange {
    pub fn max(self) -> f32 {
        match self {
            WeightRange::Full => 127.0,
            WeightRange::Reduced => 64.0,
        }
    }
}

/// A quantized convolution or FC layer: int8 weights, int32 bias, and its output tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct QLinear {
    pub weights: QWeights,
    pub bias: Vec<i32>,
    /// `input scale × weight scale` per channel: the bias's scale, and what an accumulator
    /// counts in.
    pub bias_scales: Vec<f32>,
    /// The output before the activation, where it is a separate op (hard swish).
    pub pre_activation: Option<QParams>,
    pub output: QParams,
}

impl QLinear {
    fn new(
        w: &[f32],
        b: &[f32],
        input: QParams,
        act: Activation,
        ranges: &Ranges,
        range: WeightRange,
    ) -> QLinear {
        let weights = QWeights::per_output_channel(w, b.len(), range);
        let bias_scales: Vec<f32> = weights.scales.iter().map(|s| s * input.scale).collect();
        let bias = b
            .iter()
            .zip(&bias_scales)
            .map(|(v, s)| {
                (*v as f64 / *s as f64)
                    .round()
                    .clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect();
        QLinear {
            weights,
            bias,
            bias_scales,
            pre_activation: separate_activation(act).then(|| ranges.pre_activation()),
            output: ranges.output(),
        }
    }

    fn dequantized_bias(&self) -> Vec<f32> {
        self.bias
            .iter()
            .zip(&self.bias_scales)
            .map(|(&q, s)| q as f32 * s)
            .collect()
    }
}

/// Whether an activation is an op of its own in the int8 files (ReLU and ReLU6 are clamps
/// of the output's range, fused into the layer).
pub fn separate_activation(act: Activation) -> bool {
    matches!(act, Activation::HardSwish | Activation::HardSigmoid)
}

/// One layer of a quantized model: the op with its numbers and output tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum QOp {
    Conv(Conv2d, QLinear),
    /// Pool (`pooled`), 1×1 conv + ReLU (`reduce`), 1×1 conv (`expand`, its output the
    /// gate's input), hard sigmoid (fixed [`QParams::UNIT`]), channel scaling (`output`).
    SqueezeExcite {
        se: SqueezeExcite,
        pooled: QParams,
        reduce: QLinear,
        expand: QLinear,
        output: QParams,
    },
    GlobalAvgPool {
        output: QParams,
    },
    /// On a pooled value; the int8 files write it as a 1×1 convolution (per-channel weights
    /// on every runtime).
    FullyConnected(FullyConnected, QLinear),
    Add {
        output: QParams,
    },
}

impl QOp {
    /// The layer's output tensor.
    pub fn output(&self) -> QParams {
        match self {
            QOp::Conv(_, l) | QOp::FullyConnected(_, l) => l.output,
            QOp::SqueezeExcite { output, .. }
            | QOp::GlobalAvgPool { output }
            | QOp::Add { output } => *output,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QLayer {
    pub name: String,
    /// Value ids, as in the graph (0 the input, `i + 1` layer `i`).
    pub inputs: Vec<usize>,
    pub shape: Shape,
    pub op: QOp,
}

/// A zoo model quantized to int8 (see the module documentation).
#[derive(Debug, Clone)]
pub struct QuantModel {
    pub name: String,
    pub input_shape: Shape,
    pub input: QParams,
    pub weight_range: WeightRange,
    pub layers: Vec<QLayer>,
    /// The folded float graph and the weights as the int8 numbers dequantize, which
    /// [`QuantModel::evaluate`] runs.
    graph: Graph,
    dequantized: Weights,
}

/// A place in the graph where a tensor is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Input,
    PreActivation(usize),
    Output(usize),
    SePooled(usize),
    SeHidden(usize),
    SeGateInput(usize),
    SeGate(usize),
}

/// Observed [min, max] of one node's tensors over the calibration images.
#[derive(Debug, Clone, Copy)]
struct Range(f32, f32);

impl Range {
    const EMPTY: Range = Range(f32::MAX, f32::MIN);
    fn add(&mut self, x: &[f32]) {
        for &v in x {
            self.0 = self.0.min(v);
            self.1 = self.1.max(v);
        }
    }
    fn params(self) -> QParams {
        QParams::from_range(self.0, self.1)
    }
}

/// The ranges calibration saw for one node.
#[derive(Debug, Clone, Copy)]
struct Ranges {
    pre_activation: Range,
    output: Range,
    se_pooled: Range,
    se_hidden: Range,
    se_gate_input: Range,
}

impl Ranges {
    const EMPTY: Ranges = Ranges {
        pre_activation: Range::EMPTY,
        output: Range::EMPTY,
        se_pooled: Range::EMPTY,
        se_hidden: Range::EMPTY,
        se_gate_input: Range::EMPTY,
    };
    fn pre_activation(&self) -> QParams {
        self.pre_activation.params()
    }
    fn output(&self) -> QParams {
        self.output.params()
    }
}

impl QuantModel {
    /// Quantizes `model` (BN folded first) with activation ranges calibrated on the
    /// calibration images and weights in `range`.
    pub fn quantize(model: &Model, range: WeightRange) -> QuantModel {
        Calibration::run(model).quantize(range)
    }

    /// The output tensor of value `id` (0: the input).
    pub fn value(&self, id: usize) -> QParams {
        if id == 0 {
            self.input
        } else {
            self.layers[id - 1].op.output()
        }
    }

    pub fn output_len(&self) -> usize {
        self.layers.last().map_or(0, |l| l.shape.len())
    }

    /// The logits the int8 model computes: the float graph on the dequantized weights with
    /// every quantized tensor rounded to its grid. Integer kernels differ from it by their
    /// rounding (a step here and there), which the int8 tolerance bounds.
    pub fn evaluate(&self, input: &[f32]) -> Vec<f32> {
        let layers = &self.layers;
        let grid = |point: Point| match point {
            Point::Input => self.input,
            Point::PreActivation(i) => match &layers[i].op {
                QOp::Conv(_, l) | QOp::FullyConnected(_, l) => l
                    .pre_activation
                    .expect("a separate activation has its tensor"),
                op => unreachable!("no pre-activation tensor in {op:?}"),
            },
            Point::Output(i) => layers[i].op.output(),
            Point::SePooled(i) | Point::SeHidden(i) | Point::SeGateInput(i) => {
                let QOp::SqueezeExcite {
                    pooled,
                    reduce,
                    expand,
                    ..
                } = &layers[i].op
                else {
                    unreachable!("SE points are on SE layers")
                };
                match point {
                    Point::SePooled(_) => *pooled,
                    Point::SeHidden(_) => reduce.output,
                    _ => expand.output,
                }
            }
            Point::SeGate(_) => QParams::UNIT,
        };
        forward(&self.graph, &self.dequantized, input, &mut |point, x| {
            let q = grid(point);
            x.iter_mut().for_each(|v| *v = q.fake(*v));
        })
    }
}

/// Why `graph` has no int8 form here, if it has none: the exporters' int8 forms cover
/// convolutions (ReLU, ReLU6, hard swish), SE, pooling, FC and adds; attention and GELU
/// have none. One decision for the exporters, the calibration and the harness's pair list.
pub fn int8_obstacle(graph: &crate::ir::Graph) -> Option<String> {
    use crate::ir::Op;
    if let Some(node) = graph
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::MultiQueryAttention(_)))
    {
        return Some(format!(
            "its attention ({}) is not quantized here — the exporters' int8 forms cover \
             convolutions, SE, pooling, FC and adds; run it as float32",
            node.name
        ));
    }
    graph
        .nodes
        .iter()
        .find(|n| matches!(&n.op, Op::Conv2d(c) if c.activation == Activation::Gelu))
        .map(|node| {
            format!(
                "its GELU ({}) has no int8 form in the exporters; run it as float32",
                node.name
            )
        })
}

/// Whether `graph` has an int8 form here (see [`int8_obstacle`]).
pub fn has_int8_form(graph: &crate::ir::Graph) -> bool {
    int8_obstacle(graph).is_none()
}

/// [`int8_obstacle`] as an error naming the model.
pub fn check_int8(model: &Model) -> Result<(), crate::error::ModelError> {
    match int8_obstacle(&model.graph) {
        Some(why) => Err(crate::error::ModelError::NoInt8 {
            model: model.name.clone(),
            why,
        }),
        None => Ok(()),
    }
}

fn quantize_layer(layer: Layer, input: QParams, r: &Ranges, range: WeightRange) -> QOp {
    match layer {
        Layer::Attention { .. } => unreachable!("check_int8 turns attention away"),
        Layer::Conv {
            conv, kernel, bias, ..
        } => {
            let zeros = vec![0.0; conv.out_channels];
            let bias = bias.unwrap_or(&zeros);
            QOp::Conv(
                conv.clone(),
                QLinear::new(kernel, bias, input, conv.activation, r, range),
            )
        }
        Layer::SqueezeExcite { se, weights: w } => {
            let pooled = r.se_pooled.params();
            let hidden = Ranges {
                output: r.se_hidden,
                ..Ranges::EMPTY
            };
            let reduce = QLinear::new(
                w.reduce,
                w.reduce_bias,
                pooled,
                Activation::Relu,
                &hidden,
                range,
            );
            let gate_input = Ranges {
                output: r.se_gate_input,
                ..Ranges::EMPTY
            };
            let expand = QLinear::new(
                w.expand,
                w.expand_bias,
                reduce.output,
                Activation::None,
                &gate_input,
                range,
            );
            QOp::SqueezeExcite {
                se: se.clone(),
                pooled,
                reduce,
                expand,
                output: r.output(),
            }
        }
        Layer::FullyConnected { fc, weight, bias } => QOp::FullyConnected(
            fc.clone(),
            QLinear::new(weight, bias, input, fc.activation, r, range),
        ),
        Layer::GlobalAvgPool => QOp::GlobalAvgPool { output: r.output() },
        Layer::Add => QOp::Add { output: r.output() },
    }
}

fn dequantized_weights(layer: &QLayer) -> NodeWeights {
    match &layer.op {
        QOp::Conv(_, l) => NodeWeights::Conv {
            kernel: l.weights.dequantized(),
            bias: Some(l.dequantized_bias()),
            bn: None,
        },
        QOp::FullyConnected(_, l) => NodeWeights::FullyConnected {
            weight: l.weights.dequantized(),
            bias: l.dequantized_bias(),
        },
        QOp::SqueezeExcite { reduce, expand, .. } => NodeWeights::SqueezeExcite {
            reduce: reduce.weights.dequantized(),
            reduce_bias: reduce.dequantized_bias(),
            expand: expand.weights.dequantized(),
            expand_bias: expand.dequantized_bias(),
        },
        QOp::GlobalAvgPool { .. } | QOp::Add { .. } => NodeWeights::None,
    }
}

/// The float graph (BN folded), calling `at` on every tensor the int8 model quantizes, in
/// place: calibration observes them, [`QuantModel::evaluate`] rounds them.
fn forward(
    graph: &Graph,
    weights: &Weights,
    input: &[f32],
    at: &mut dyn FnMut(Point, &mut [f32]),
) -> Vec<f32> {
    assert_eq!(input.len(), graph.input.len(), "input length");
    let mut x0 = input.to_vec();
    at(Point::Input, &mut x0);
    let mut values = vec![x0];
    for (i, (node, layer)) in layers(graph, weights).enumerate() {
        let x = &values[node.inputs[0]];
        let in_shape = graph.value_shape(node.inputs[0]);
        let mut out = match layer {
            Layer::Conv {
                conv, kernel, bias, ..
            } => {
                let y = reference::conv2d(x, in_shape, conv, kernel, bias, node.output);
                activation(y, conv.activation, i, at)
            }
            Layer::FullyConnected { fc, weight, bias } => {
                let linear = FullyConnected {
                    activation: Activation::None,
                    ..fc.clone()
                };
                let y = reference::fully_connected(x, &linear, weight, bias);
                activation(y, fc.activation, i, at)
            }
            Layer::SqueezeExcite { se, weights: w } => {
                let mut pooled = reference::global_avg_pool(x, in_shape);
                at(Point::SePooled(i), &mut pooled);
                let relu = FullyConnected {
                    in_features: se.channels,
                    out_features: se.squeeze,
                    activation: Activation::Relu,
                };
                let mut hidden =
                    reference::fully_connected(&pooled, &relu, w.reduce, w.reduce_bias);
                at(Point::SeHidden(i), &mut hidden);
                let linear = FullyConnected {
                    in_features: se.squeeze,
                    out_features: se.channels,
                    activation: Activation::None,
                };
                let mut gate =
                    reference::fully_connected(&hidden, &linear, w.expand, w.expand_bias);
                at(Point::SeGateInput(i), &mut gate);
                reference::activate(&mut gate, Activation::HardSigmoid);
                at(Point::SeGate(i), &mut gate);
                reference::scale_channels(x, &gate)
            }
            Layer::GlobalAvgPool => reference::global_avg_pool(x, in_shape),
            Layer::Add => reference::add(x, &values[node.inputs[1]]),
            Layer::Attention { attn, weights } => reference::attention(x, in_shape, attn, weights),
        };
        at(Point::Output(i), &mut out);
        values.push(out);
    }
    values.pop().expect("at least the input")
}

/// Applies `act` to a layer's linear output; a separate activation's input is a quantized
/// tensor of its own.
fn activation(
    mut y: Vec<f32>,
    act: Activation,
    node: usize,
    at: &mut dyn FnMut(Point, &mut [f32]),
) -> Vec<f32> {
    if separate_activation(act) {
        at(Point::PreActivation(node), &mut y);
    }
    reference::activate(&mut y, act);
    y
}

#[cfg(test)]
#[path = "quant_tests.rs"]
mod tests;

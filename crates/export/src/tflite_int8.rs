//! A quantized zoo model → fully-integer TFLite (schema v3): int8 activations and weights,
//! per-axis weight scales (CONV_2D on axis 0, DEPTHWISE_CONV_2D on axis 3), int32 biases,
//! the layout TFLite's quantization spec asks for.
//!
//! Input and output stay float32: the model starts with QUANTIZE and ends with DEQUANTIZE
//! (and a RESHAPE to `[1, classes]`), so every backend is fed the same float buffer and
//! returns float logits; the two conversions are part of the timed model, as they are of
//! a deployed one that takes camera frames. Every op between them is an int8 builtin:
//! CONV_2D, DEPTHWISE_CONV_2D (ReLU/ReLU6 fused), HARD_SWISH, MEAN, ADD, MUL. FC layers
//! are 1×1 CONV_2D on the pooled `[1, 1, 1, C]` value (per-channel weights everywhere);
//! the SE gate is ADD(x, 3) + RELU6 then MUL by 1/6, on the fixed grids of
//! [`QParams::RELU6`] and [`QParams::UNIT`].

use flatbuffers::WIPOffset;
use tract_tflite::tflite::{
    ActivationFunctionType, BuiltinOperator, BuiltinOptions, ReducerOptions, ReducerOptionsArgs,
    ReshapeOptions, ReshapeOptionsArgs, TensorType,
};

use mobilebench_models::ir::{Activation, Conv2d, Shape};
use mobilebench_models::quant::{QLinear, QOp, QParams, QuantModel};

use crate::tflite::{finish, hwio_to_ohwi, Builder, Quantization, INPUT_NAME, OUTPUT_NAME};

// The operator versions whose kernels take int8 (TFLite's op version table).
const CONV_VERSION: i32 = 3; // per-channel int8
const DEPTHWISE_VERSION: i32 = 3;
const ADD_VERSION: i32 = 2;
const MUL_VERSION: i32 = 2;
const MEAN_VERSION: i32 = 2;
const QUANTIZE_VERSION: i32 = 2; // float → int8
const DEQUANTIZE_VERSION: i32 = 2; // int8 → float
const HARD_SWISH_VERSION: i32 = 1;

fn per_tensor(q: QParams) -> Quantization {
    Quantization {
        scales: vec![q.scale],
        zero_points: vec![q.zero_point as i64],
        axis: 0,
    }
}

impl Builder<'_> {
    /// An int8 activation tensor.
    fn int8(&mut self, name: &str, shape: &[usize], q: QParams) -> i32 {
        self.typed_tensor(name, shape, TensorType::INT8, None, Some(per_tensor(q)))
    }

    /// An int8 constant holding one value exactly: `value` as 127 steps of `value / 127`.
    fn int8_scalar(&mut self, name: &str, value: f32) -> i32 {
        let q = Quantization {
            scales: vec![value / 127.0],
            zero_points: vec![0],
            axis: 0,
        };
        self.typed_tensor(name, &[1], TensorType::INT8, Some(vec![127u8]), Some(q))
    }

    /// Weights (OHWI or depthwise `[1, k, k, C]`) with one scale per output channel on `axis`.
    fn int8_weights(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[i8],
        l: &QLinear,
        axis: i32,
    ) -> i32 {
        let q = Quantization {
            scales: l.weights.scales.clone(),
            zero_points: vec![0; l.weights.scales.len()],
            axis,
        };
        let bytes = values.iter().map(|&v| v as u8).collect();
        self.typed_tensor(name, shape, TensorType::INT8, Some(bytes), Some(q))
    }

    fn int32_bias(&mut self, name: &str, l: &QLinear) -> i32 {
        let q = Quantization {
            scales: l.bias_scales.clone(),
            zero_points: vec![0; l.bias.len()],
            axis: 0,
        };
        let bytes = l.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.typed_tensor(
            name,
            &[l.bias.len()],
            TensorType::INT32,
            Some(bytes),
            Some(q),
        )
    }

    /// A quantized conv (depthwise or regular; a 1×1 one for FC layers), its activation fused
    /// or, for hard swish, a HARD_SWISH of its own.
    fn int8_conv(&mut self, x: i32, c: &Conv2d, l: &QLinear, out: Shape, name: &str) -> i32 {
        let (k, cout) = (c.kernel, c.out_channels);
        let out_shape = out.nhwc();
        let (w, version) = if c.is_depthwise() {
            let values = &l.weights.values;
            let w = self.int8_weights(&format!("{name}_w"), &[1, k, k, cout], values, l, 3);
            (w, DEPTHWISE_VERSION)
        } else {
            let cin = c.in_channels / c.groups;
            let ohwi = hwio_to_ohwi(&l.weights.values, k, cin, cout);
            let w = self.int8_weights(&format!("{name}_w"), &[cout, k, k, cin], &ohwi, l, 0);
            (w, CONV_VERSION)
        };
        let (code, options) = self.conv_options(c, Builder::fused(c.activation));
        let b = self.int32_bias(&format!("{name}_b"), l);
        let linear = l.pre_activation.unwrap_or(l.output);
        let y = self.int8(&format!("{name}_out"), &out_shape, linear);
        self.versioned_op(code, version, &[x, w, b], &[y], Some(options));
        match c.activation {
            Activation::HardSwish => {
                let z = self.int8(&format!("{name}_hswish"), &out_shape, l.output);
                self.versioned_op(
                    BuiltinOperator::HARD_SWISH,
                    HARD_SWISH_VERSION,
                    &[y],
                    &[z],
                    None,
                );
                z
            }
            Activation::HardSigmoid => unreachable!("hard sigmoid is the SE gate's, built there"),
            _ => y,
        }
    }

    fn int8_mean(&mut self, x: i32, c: usize, q: QParams, name: &str) -> i32 {
        let axes = self.int32_tensor(&format!("{name}_axes"), &[1, 2]);
        let y = self.int8(name, &[1, 1, 1, c], q);
        let o = ReducerOptions::create(&mut self.fb, &ReducerOptionsArgs { keep_dims: true });
        let options = (BuiltinOptions::ReducerOptions, o.as_union_value());
        self.versioned_op(
            BuiltinOperator::MEAN,
            MEAN_VERSION,
            &[x, axes],
            &[y],
            Some(options),
        );
        y
    }

    fn int8_binary(
        &mut self,
        code: BuiltinOperator,
        a: i32,
        b: i32,
        y: i32,
        act: ActivationFunctionType,
    ) {
        let (version, options) = if code == BuiltinOperator::ADD {
            (ADD_VERSION, self.add_options(act))
        } else {
            (MUL_VERSION, self.mul_options(act))
        };
        self.versioned_op(code, version, &[a, b], &[y], Some(options));
    }
}

/// Writes `model` as a fully-integer .tflite with float input and output.
pub fn export(model: &QuantModel) -> Vec<u8> {
    let mut b = Builder::new();
    let input_shape = model.input_shape.nhwc();
    let input = b.tensor(INPUT_NAME, &input_shape, None);
    let x = b.int8("input_int8", &input_shape, model.input);
    b.versioned_op(
        BuiltinOperator::QUANTIZE,
        QUANTIZE_VERSION,
        &[input],
        &[x],
        None,
    );
    let mut ids: Vec<i32> = vec![x];
    for layer in &model.layers {
        let x = ids[layer.inputs[0]];
        let tag = layer.name.as_str();
        let out = match &layer.op {
            QOp::Conv(c, l) => b.int8_conv(x, c, l, layer.shape, tag),
            QOp::FullyConnected(fc, l) => {
                let conv = Conv2d::one_by_one(fc.in_features, fc.out_features, fc.activation);
                b.int8_conv(x, &conv, l, layer.shape, tag)
            }
            QOp::SqueezeExcite {
                se,
                pooled,
                reduce,
                expand,
                output,
            } => {
                let (c, s) = (se.channels, se.squeeze);
                let p = b.int8_mean(x, c, *pooled, &format!("{tag}_pool"));
                let conv1 = Conv2d::one_by_one(c, s, Activation::Relu);
                let h = b.int8_conv(
                    p,
                    &conv1,
                    reduce,
                    Shape::new(1, 1, s),
                    &format!("{tag}_reduce"),
                );
                let conv2 = Conv2d::one_by_one(s, c, Activation::None);
                let g = b.int8_conv(
                    h,
                    &conv2,
                    expand,
                    Shape::new(1, 1, c),
                    &format!("{tag}_expand"),
                );
                let three = b.int8_scalar(&format!("{tag}_three"), 3.0);
                let r = b.int8(&format!("{tag}_relu6"), &[1, 1, 1, c], QParams::RELU6);
                b.int8_binary(
                    BuiltinOperator::ADD,
                    g,
                    three,
                    r,
                    ActivationFunctionType::RELU6,
                );
                let sixth = b.int8_scalar(&format!("{tag}_sixth"), 1.0 / 6.0);
                let gate = b.int8(&format!("{tag}_gate"), &[1, 1, 1, c], QParams::UNIT);
                b.int8_binary(
                    BuiltinOperator::MUL,
                    r,
                    sixth,
                    gate,
                    ActivationFunctionType::NONE,
                );
                let y = b.int8(&format!("{tag}_out"), &layer.shape.nhwc(), *output);
                b.int8_binary(
                    BuiltinOperator::MUL,
                    x,
                    gate,
                    y,
                    ActivationFunctionType::NONE,
                );
                y
            }
            QOp::GlobalAvgPool { output } => b.int8_mean(x, layer.shape.c, *output, tag),
            QOp::Add { output } => {
                let other = ids[layer.inputs[1]];
                let y = b.int8(tag, &layer.shape.nhwc(), *output);
                b.int8_binary(
                    BuiltinOperator::ADD,
                    x,
                    other,
                    y,
                    ActivationFunctionType::NONE,
                );
                y
            }
        };
        ids.push(out);
    }
    let last = *ids.last().expect("a model has layers");
    let n = model.output_len();
    let float = b.tensor("logits_float", &[1, 1, 1, n], None);
    b.versioned_op(
        BuiltinOperator::DEQUANTIZE,
        DEQUANTIZE_VERSION,
        &[last],
        &[float],
        None,
    );
    let shape = b.int32_tensor("logits_shape", &[1, n as i32]);
    let logits = b.tensor(OUTPUT_NAME, &[1, n], None);
    let new_shape = b.fb.create_vector(&[1, n as i32]);
    let o = ReshapeOptions::create(
        &mut b.fb,
        &ReshapeOptionsArgs {
            new_shape: Some(new_shape),
        },
    );
    let options: (BuiltinOptions, WIPOffset<_>) =
        (BuiltinOptions::ReshapeOptions, o.as_union_value());
    b.op(
        BuiltinOperator::RESHAPE,
        &[float, shape],
        &[logits],
        Some(options),
    );
    finish(b, input, logits, &format!("{} int8", model.name))
}

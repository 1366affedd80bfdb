//! Zoo IR → TFLite (schema v3, float32, NHWC) through the TFLite flatbuffers types.
//!
//! Builtin ops only: CONV_2D and DEPTHWISE_CONV_2D with fused ReLU/ReLU6, HARD_SWISH where
//! V3 uses it, MEAN for global pooling, FULLY_CONNECTED, ADD, MUL; V4 hybrids' attention adds
//! RESHAPE, BATCH_MATMUL and SOFTMAX (`tflite_attention`). TFLite has no hard-sigmoid
//! or batch-norm op: the SE gate is ADD(x, 3) with a fused RELU6 then MUL by 1/6 (what the
//! TensorFlow converter emits), and `--bn separate` is a per-channel MUL + ADD.
//! SAME padding in TFLite is TensorFlow's, which is how the IR resolved its pads.

use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use tract_tflite::tflite::{
    ActivationFunctionType, AddOptions, AddOptionsArgs, Buffer, BufferArgs, BuiltinOperator,
    BuiltinOptions, Conv2DOptions, Conv2DOptionsArgs, DepthwiseConv2DOptions,
    DepthwiseConv2DOptionsArgs, FullyConnectedOptions, FullyConnectedOptionsArgs, GeluOptions,
    GeluOptionsArgs, Model as TfModel, ModelArgs, MulOptions, MulOptionsArgs, Operator,
    OperatorArgs, OperatorCode, OperatorCodeArgs, Padding, QuantizationParameters,
    QuantizationParametersArgs, ReducerOptions, ReducerOptionsArgs, SignatureDef, SignatureDefArgs,
    SubGraph, SubGraphArgs, Tensor, TensorArgs, TensorMap, TensorMapArgs, TensorType,
};

use mobilebench_models::ir::{Activation, Conv2d, FullyConnected, Shape};
use mobilebench_models::weights::BatchNorm;
use mobilebench_models::{Layer, Model};

use crate::{prepare, relayout_hwio, BnMode, ExportError};

pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";
const SIGNATURE_KEY: &str = "serving_default";

pub(crate) struct Builder<'f> {
    pub(crate) fb: FlatBufferBuilder<'f>,
    buffers: Vec<WIPOffset<Buffer<'f>>>,
    tensors: Vec<WIPOffset<Tensor<'f>>>,
    operators: Vec<WIPOffset<Operator<'f>>>,
    /// Each opcode with the version its tensors' types need (1 for float32).
    opcodes: Vec<(BuiltinOperator, i32)>,
}

impl<'f> Builder<'f> {
    pub(crate) fn new() -> Self {
        let mut fb = FlatBufferBuilder::with_capacity(1 << 20);
        // Buffer 0 is the empty sentinel that non-constant tensors point at.
        let empty = Buffer::create(&mut fb, &BufferArgs::default());
        Builder {
            fb,
            buffers: vec![empty],
            tensors: Vec::new(),
            operators: Vec::new(),
            opcodes: Vec::new(),
        }
    }

    /// A float32 tensor: an activation (`data` None) or a constant.
    pub(crate) fn tensor(&mut self, name: &str, shape: &[usize], data: Option<&[f32]>) -> i32 {
        let bytes = data.map(|values| {
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        });
        self.typed_tensor(name, shape, TensorType::FLOAT32, bytes, None)
    }

    pub(crate) fn int32_tensor(&mut self, name: &str, values: &[i32]) -> i32 {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.typed_tensor(name, &[values.len()], TensorType::INT32, Some(bytes), None)
    }

    /// Writes a tensor and, for a constant, its buffer; returns the tensor's index.
    /// `quantization`: the scales and zero points (one each, or one per slice along the
    /// axis) of an integer tensor.
    pub(crate) fn typed_tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        type_: TensorType,
        bytes: Option<Vec<u8>>,
        quantization: Option<Quantization>,
    ) -> i32 {
        let buffer = match bytes {
            Some(bytes) => {
                let data = self.fb.create_vector(&bytes);
                let b = Buffer::create(&mut self.fb, &BufferArgs { data: Some(data) });
                self.buffers.push(b);
                self.buffers.len() as u32 - 1
            }
            None => 0,
        };
        let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
        let shape = self.fb.create_vector(&dims);
        let name = self.fb.create_string(name);
        let quantization = quantization.map(|q| {
            let scale = self.fb.create_vector(&q.scales);
            let zero_point = self.fb.create_vector(&q.zero_points);
            QuantizationParameters::create(
                &mut self.fb,
                &QuantizationParametersArgs {
                    scale: Some(scale),
                    zero_point: Some(zero_point),
                    quantized_dimension: q.axis,
                    ..Default::default()
                },
            )
        });
        let t = Tensor::create(
            &mut self.fb,
            &TensorArgs {
                shape: Some(shape),
                type_,
                buffer,
                name: Some(name),
                has_rank: true,
                quantization,
                ..Default::default()
            },
        );
        self.tensors.push(t);
        self.tensors.len() as i32 - 1
    }

    pub(crate) fn op(
        &mut self,
        code: BuiltinOperator,
        inputs: &[i32],
        outputs: &[i32],
        options: Option<(BuiltinOptions, WIPOffset<UnionWIPOffset>)>,
    ) {
        self.versioned_op(code, 1, inputs, outputs, options)
    }

    /// An operator of `code` at `version` (int8 kernels are registered from version 2 or 3).
    pub(crate) fn versioned_op(
        &mut self,
        code: BuiltinOperator,
        version: i32,
        inputs: &[i32],
        outputs: &[i32],
        options: Option<(BuiltinOptions, WIPOffset<UnionWIPOffset>)>,
    ) {
        let opcode_index = match self.opcodes.iter().position(|c| *c == (code, version)) {
            Some(i) => i,
            None => {
                self.opcodes.push((code, version));
                self.opcodes.len() - 1
            }
        } as u32;
        let inputs = self.fb.create_vector(inputs);
        let outputs = self.fb.create_vector(outputs);
        let (builtin_options_type, builtin_options) = match options {
            Some((t, o)) => (t, Some(o)),
            None => (BuiltinOptions::NONE, None),
        };
        let op = Operator::create(
            &mut self.fb,
            &OperatorArgs {
                opcode_index,
                inputs: Some(inputs),
                outputs: Some(outputs),
                builtin_options_type,
                builtin_options,
                ..Default::default()
            },
        );
        self.operators.push(op);
    }

    pub(crate) fn fused(act: Activation) -> ActivationFunctionType {
        match act {
            Activation::Relu => ActivationFunctionType::RELU,
            Activation::Relu6 => ActivationFunctionType::RELU6,
            _ => ActivationFunctionType::NONE,
        }
    }

    /// Applies what cannot be fused (hard swish, hard sigmoid, GELU) as separate ops.
    fn unfused_activation(&mut self, x: i32, act: Activation, shape: &[usize], name: &str) -> i32 {
        match act {
            Activation::Gelu => {
                // `approximate: false`: the erf form, as the IR defines it.
                let o = GeluOptions::create(&mut self.fb, &GeluOptionsArgs { approximate: false });
                let y = self.tensor(name, shape, None);
                let options = (BuiltinOptions::GeluOptions, o.as_union_value());
                self.op(BuiltinOperator::GELU, &[x], &[y], Some(options));
                y
            }
            Activation::HardSwish => {
                let y = self.tensor(name, shape, None);
                self.op(BuiltinOperator::HARD_SWISH, &[x], &[y], None);
                y
            }
            Activation::HardSigmoid => {
                let three = self.tensor(&format!("{name}_three"), &[1], Some(&[3.0]));
                let shifted = self.tensor(&format!("{name}_relu6"), shape, None);
                let add = self.add_options(ActivationFunctionType::RELU6);
                self.op(BuiltinOperator::ADD, &[x, three], &[shifted], Some(add));
                let sixth = self.tensor(&format!("{name}_sixth"), &[1], Some(&[1.0 / 6.0]));
                let y = self.tensor(name, shape, None);
                let mul = self.mul_options(ActivationFunctionType::NONE);
                self.op(BuiltinOperator::MUL, &[shifted, sixth], &[y], Some(mul));
                y
            }
            _ => x,
        }
    }

    pub(crate) fn add_options(
        &mut self,
        act: ActivationFunctionType,
    ) -> (BuiltinOptions, WIPOffset<UnionWIPOffset>) {
        let o = AddOptions::create(
            &mut self.fb,
            &AddOptionsArgs {
                fused_activation_function: act,
                ..Default::default()
            },
        );
        (BuiltinOptions::AddOptions, o.as_union_value())
    }

    pub(crate) fn mul_options(
        &mut self,
        act: ActivationFunctionType,
    ) -> (BuiltinOptions, WIPOffset<UnionWIPOffset>) {
        let o = MulOptions::create(
            &mut self.fb,
            &MulOptionsArgs {
                fused_activation_function: act,
            },
        );
        (BuiltinOptions::MulOptions, o.as_union_value())
    }

    /// Conv or depthwise conv (with bias), activation fused when TFLite can fuse it.
    /// `weights` is (kernel in HWIO, bias).
    pub(crate) fn conv(
        &mut self,
        x: i32,
        c: &Conv2d,
        weights: (&[f32], &[f32]),
        out: Shape,
        act: Activation,
        name: &str,
    ) -> i32 {
        let (kernel, bias) = weights;
        let (k, cout) = (c.kernel, c.out_channels);
        let out_shape = out.nhwc();
        let weights = if c.is_depthwise() {
            // HWIO with I = 1 is [kh][kw][C]: TFLite's [1, kh, kw, C].
            self.tensor(&format!("{name}_w"), &[1, k, k, cout], Some(kernel))
        } else {
            let cin = c.in_channels / c.groups;
            let ohwi = hwio_to_ohwi(kernel, k, cin, cout);
            self.tensor(&format!("{name}_w"), &[cout, k, k, cin], Some(&ohwi))
        };
        let (code, options) = self.conv_options(c, Self::fused(act));
        let b = self.tensor(&format!("{name}_b"), &[cout], Some(bias));
        let y = self.tensor(&format!("{name}_out"), &out_shape, None);
        self.op(code, &[x, weights, b], &[y], Some(options));
        self.unfused_activation(y, act, &out_shape, &format!("{name}_act"))
    }

    /// The operator of a conv (DEPTHWISE_CONV_2D or CONV_2D) and its options: SAME padding
    /// (the IR's pads are TensorFlow's), the stride, `fused` activation.
    pub(crate) fn conv_options(
        &mut self,
        c: &Conv2d,
        fused: ActivationFunctionType,
    ) -> (BuiltinOperator, (BuiltinOptions, WIPOffset<UnionWIPOffset>)) {
        let stride = c.stride as i32;
        if c.is_depthwise() {
            let o = DepthwiseConv2DOptions::create(
                &mut self.fb,
                &DepthwiseConv2DOptionsArgs {
                    padding: Padding::SAME,
                    stride_w: stride,
                    stride_h: stride,
                    depth_multiplier: 1,
                    fused_activation_function: fused,
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                },
            );
            let options = (BuiltinOptions::DepthwiseConv2DOptions, o.as_union_value());
            (BuiltinOperator::DEPTHWISE_CONV_2D, options)
        } else {
            let o = Conv2DOptions::create(
                &mut self.fb,
                &Conv2DOptionsArgs {
                    padding: Padding::SAME,
                    stride_w: stride,
                    stride_h: stride,
                    fused_activation_function: fused,
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                },
            );
            (
                BuiltinOperator::CONV_2D,
                (BuiltinOptions::Conv2DOptions, o.as_union_value()),
            )
        }
    }

    /// Inference batch norm as y = x · scale + shift per channel, then the activation.
    pub(crate) fn batch_norm(
        &mut self,
        x: i32,
        bn: &BatchNorm,
        shape: &[usize],
        act: Activation,
        name: &str,
    ) -> i32 {
        let (scale, shift) = bn.scale_shift();
        let c = scale.len();
        let s = self.tensor(&format!("{name}_scale"), &[c], Some(&scale));
        let scaled = self.tensor(&format!("{name}_scaled"), shape, None);
        let mul = self.mul_options(ActivationFunctionType::NONE);
        self.op(BuiltinOperator::MUL, &[x, s], &[scaled], Some(mul));
        let t = self.tensor(&format!("{name}_shift"), &[c], Some(&shift));
        let y = self.tensor(&format!("{name}_out"), shape, None);
        let add = self.add_options(Self::fused(act));
        self.op(BuiltinOperator::ADD, &[scaled, t], &[y], Some(add));
        self.unfused_activation(y, act, shape, &format!("{name}_act"))
    }

    pub(crate) fn mean_hw(&mut self, x: i32, c: usize, name: &str) -> i32 {
        let axes = self.int32_tensor(&format!("{name}_axes"), &[1, 2]);
        let y = self.tensor(name, &[1, 1, 1, c], None);
        let o = ReducerOptions::create(&mut self.fb, &ReducerOptionsArgs { keep_dims: true });
        self.op(
            BuiltinOperator::MEAN,
            &[x, axes],
            &[y],
            Some((BuiltinOptions::ReducerOptions, o.as_union_value())),
        );
        y
    }

    /// FULLY_CONNECTED: TFLite weights are `[out][in]`; ours `[in][out]`.
    fn fully_connected(
        &mut self,
        x: i32,
        fc: &FullyConnected,
        weights: (&[f32], &[f32]),
        name: &str,
    ) -> i32 {
        let (w, bias) = weights;
        let (k, n, act) = (fc.in_features, fc.out_features, fc.activation);
        let oi = hwio_to_ohwi(w, 1, k, n);
        let wt = self.tensor(&format!("{name}_w"), &[n, k], Some(&oi));
        let b = self.tensor(&format!("{name}_b"), &[n], Some(bias));
        let y = self.tensor(&format!("{name}_out"), &[1, n], None);
        let o = FullyConnectedOptions::create(
            &mut self.fb,
            &FullyConnectedOptionsArgs {
                fused_activation_function: Self::fused(act),
                ..Default::default()
            },
        );
        self.op(
            BuiltinOperator::FULLY_CONNECTED,
            &[x, wt, b],
            &[y],
            Some((BuiltinOptions::FullyConnectedOptions, o.as_union_value())),
        );
        self.unfused_activation(y, act, &[1, n], &format!("{name}_act"))
    }
}

/// The quantization of an integer tensor: one scale and zero point per tensor, or one per
/// slice along `axis` (TFLite's `quantized_dimension`).
pub(crate) struct Quantization {
    pub scales: Vec<f32>,
    pub zero_points: Vec<i64>,
    pub axis: i32,
}

/// A kernel from our HWIO layout (`[kh][kw][in][out]`; an FC's `[in][out]` is k = 1) to
/// TFLite's OHWI.
pub(crate) fn hwio_to_ohwi<T: Copy + Default>(
    kernel: &[T],
    k: usize,
    cin: usize,
    cout: usize,
) -> Vec<T> {
    relayout_hwio(kernel, k, cin, cout, |ky, kx, ci, co| {
        ((co * k + ky) * k + kx) * cin + ci
    })
}

pub fn export(model: &Model, bn: BnMode) -> Result<Vec<u8>, ExportError> {
    let model = prepare(model, bn)?;
    let graph = &model.graph;
    let mut b = Builder::new();
    let input = b.tensor(INPUT_NAME, &graph.input.nhwc(), None);
    let mut ids: Vec<i32> = vec![input];
    for (node, layer) in model.layers() {
        let x = ids[node.inputs[0]];
        let tag = node.name.as_str();
        let out = match layer {
            Layer::Conv {
                conv: c,
                kernel,
                bias,
                bn,
            } => {
                let zeros = vec![0f32; c.out_channels];
                let bias = bias.unwrap_or(&zeros);
                match bn {
                    None => b.conv(x, c, (kernel, bias), node.output, c.activation, tag),
                    Some(bn) => {
                        let y = b.conv(x, c, (kernel, bias), node.output, Activation::None, tag);
                        b.batch_norm(
                            y,
                            bn,
                            &node.output.nhwc(),
                            c.activation,
                            &format!("{tag}_bn"),
                        )
                    }
                }
            }
            Layer::SqueezeExcite { se, weights: w } => {
                let pooled = b.mean_hw(x, se.channels, &format!("{tag}_pool"));
                let (c, s) = (se.channels, se.squeeze);
                let one = Shape::new(1, 1, s);
                let conv1 = Conv2d::one_by_one(c, s, Activation::None);
                let h = b.conv(
                    pooled,
                    &conv1,
                    (w.reduce, w.reduce_bias),
                    one,
                    Activation::Relu,
                    &format!("{tag}_reduce"),
                );
                let conv2 = Conv2d::one_by_one(s, c, Activation::None);
                let g = b.conv(
                    h,
                    &conv2,
                    (w.expand, w.expand_bias),
                    Shape::new(1, 1, c),
                    Activation::HardSigmoid,
                    &format!("{tag}_expand"),
                );
                let y = b.tensor(&format!("{tag}_out"), &node.output.nhwc(), None);
                let mul = b.mul_options(ActivationFunctionType::NONE);
                b.op(BuiltinOperator::MUL, &[x, g], &[y], Some(mul));
                y
            }
            Layer::GlobalAvgPool => b.mean_hw(x, node.output.c, tag),
            Layer::FullyConnected { fc, weight, bias } => {
                b.fully_connected(x, fc, (weight, bias), tag)
            }
            Layer::Add => {
                let other = ids[node.inputs[1]];
                let y = b.tensor(tag, &node.output.nhwc(), None);
                let add = b.add_options(ActivationFunctionType::NONE);
                b.op(BuiltinOperator::ADD, &[x, other], &[y], Some(add));
                y
            }
            Layer::Attention { attn, weights } => b.attention(x, attn, weights, node.output, tag),
        };
        ids.push(out);
    }
    let output = *ids.last().expect("a graph has nodes");
    Ok(finish(b, input, output, &model.name))
}

pub(crate) fn finish(mut b: Builder, input: i32, output: i32, description: &str) -> Vec<u8> {
    let fb = &mut b.fb;
    let tensors = fb.create_vector(&b.tensors);
    let operators = fb.create_vector(&b.operators);
    let inputs = fb.create_vector(&[input]);
    let outputs = fb.create_vector(&[output]);
    let name = fb.create_string("main");
    let subgraph = SubGraph::create(
        fb,
        &SubGraphArgs {
            tensors: Some(tensors),
            inputs: Some(inputs),
            outputs: Some(outputs),
            operators: Some(operators),
            name: Some(name),
        },
    );
    let subgraphs = fb.create_vector(&[subgraph]);
    let codes: Vec<_> = b
        .opcodes
        .iter()
        .map(|&(code, version)| {
            OperatorCode::create(
                fb,
                &OperatorCodeArgs {
                    // Codes below 127 are also written to the deprecated field old readers use.
                    deprecated_builtin_code: code.0.min(127) as i8,
                    custom_code: None,
                    version,
                    builtin_code: code,
                },
            )
        })
        .collect();
    let codes = fb.create_vector(&codes);
    let buffers = fb.create_vector(&b.buffers);
    let signature = {
        let in_name = fb.create_string(INPUT_NAME);
        let out_name = fb.create_string(OUTPUT_NAME);
        let in_map = TensorMap::create(
            fb,
            &TensorMapArgs {
                name: Some(in_name),
                tensor_index: input as u32,
            },
        );
        let out_map = TensorMap::create(
            fb,
            &TensorMapArgs {
                name: Some(out_name),
                tensor_index: output as u32,
            },
        );
        let ins = fb.create_vector(&[in_map]);
        let outs = fb.create_vector(&[out_map]);
        let key = fb.create_string(SIGNATURE_KEY);
        SignatureDef::create(
            fb,
            &SignatureDefArgs {
                inputs: Some(ins),
                outputs: Some(outs),
                signature_key: Some(key),
                subgraph_index: 0,
            },
        )
    };
    let signatures = fb.create_vector(&[signature]);
    let description = fb.create_string(&format!(
        "mobilebench {} {description}",
        env!("CARGO_PKG_VERSION")
    ));
    let model = TfModel::create(
        fb,
        &ModelArgs {
            version: 3,
            operator_codes: Some(codes),
            subgraphs: Some(subgraphs),
            description: Some(description),
            buffers: Some(buffers),
            signature_defs: Some(signatures),
            ..Default::default()
        },
    );
    fb.finish(model, Some("TFL3"));
    fb.finished_data().to_vec()
}

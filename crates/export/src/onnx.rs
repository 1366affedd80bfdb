//! Zoo IR → ONNX (opset 17) through the ONNX protobuf types.
//!
//! The graph takes the zoo's NHWC input `[1, H, W, 3]` (one Transpose to NCHW first, as
//! tf2onnx emits) and returns `[1, classes]` (1001 for V1–V3, 1000 for V4), so every backend is fed the same buffer.
//! Convolutions keep TensorFlow's SAME padding as explicit (possibly asymmetric) pads.

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use mobilebench_models::ir::{Activation, Conv2d, MultiQueryAttention};
use mobilebench_models::weights::{fold_depthwise, AttentionWeights, BatchNorm};
use mobilebench_models::{Layer, Model};

use crate::{prepare, relayout_hwio, BnMode, ExportError};

pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";

pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], data: Vec<f32>) -> TensorProto {
    assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub(crate) fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A kernel from our HWIO layout (`[kh][kw][in/groups][out]`) to ONNX's OIHW.
pub(crate) fn hwio_to_oihw<T: Copy + Default>(
    kernel: &[T],
    k: usize,
    cin_g: usize,
    cout: usize,
) -> Vec<T> {
    relayout_hwio(kernel, k, cin_g, cout, |ky, kx, ci, co| {
        ((co * cin_g + ci) * k + ky) * k + kx
    })
}

/// A Conv node's attributes: kernel, strides, the IR's explicit (SAME) pads, groups.
pub(crate) fn conv_attributes(c: &Conv2d) -> Vec<AttributeProto> {
    let (k, p) = (c.kernel as i64, c.padding);
    vec![
        attr_ints("kernel_shape", &[k, k]),
        attr_ints("strides", &[c.stride as i64, c.stride as i64]),
        attr_ints(
            "pads",
            &[p.top as i64, p.left as i64, p.bottom as i64, p.right as i64],
        ),
        attr_int("group", c.groups as i64),
    ]
}

pub(crate) struct Builder {
    pub(crate) graph: GraphProto,
    pub(crate) counter: usize,
}

impl Builder {
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(name);
        self.graph.node.push(NodeProto {
            op_type: op.into(),
            name: output.clone(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    pub(crate) fn constant(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(name);
        self.graph.initializer.push(tensor(&name, dims, data));
        name
    }

    pub(crate) fn activation(&mut self, x: String, act: Activation, name: &str) -> String {
        match act {
            Activation::None => x,
            Activation::Relu => self.node("Relu", name, &[&x], vec![]),
            Activation::Relu6 => {
                let lo = self.constant("zero", &[], vec![0.0]);
                let hi = self.constant("six", &[], vec![6.0]);
                self.node("Clip", name, &[&x, &lo, &hi], vec![])
            }
            Activation::HardSwish => self.node("HardSwish", name, &[&x], vec![]),
            Activation::HardSigmoid => self.node(
                "HardSigmoid",
                name,
                &[&x],
                vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
            ),
            // Opset 17 has no Gelu (it arrives in 20): x · 0.5 · (1 + Erf(x / √2)), the
            // pattern onnxruntime fuses back into its Gelu kernel.
            Activation::Gelu => {
                let sqrt2 = self.constant("sqrt2", &[], vec![std::f32::consts::SQRT_2]);
                let one = self.constant("one", &[], vec![1.0]);
                let half = self.constant("half", &[], vec![0.5]);
                let scaled = self.node("Div", &format!("{name}_div"), &[&x, &sqrt2], vec![]);
                let erf = self.node("Erf", &format!("{name}_erf"), &[&scaled], vec![]);
                let shifted = self.node("Add", &format!("{name}_add"), &[&erf, &one], vec![]);
                let product = self.node("Mul", &format!("{name}_mul"), &[&x, &shifted], vec![]);
                self.node("Mul", name, &[&product, &half], vec![])
            }
        }
    }

    fn batch_norm(&mut self, x: String, bn: &BatchNorm, name: &str) -> String {
        let c = bn.gamma.len();
        let s = self.constant("bn_scale", &[c], bn.gamma.clone());
        let b = self.constant("bn_bias", &[c], bn.beta.clone());
        let m = self.constant("bn_mean", &[c], bn.mean.clone());
        let v = self.constant("bn_var", &[c], bn.var.clone());
        self.node(
            "BatchNormalization",
            name,
            &[&x, &s, &b, &m, &v],
            vec![attr_float("epsilon", bn.eps)],
        )
    }

    /// Conv in NCHW with an OIHW kernel from our HWIO layout.
    fn conv(
        &mut self,
        x: &str,
        c: &Conv2d,
        kernel: &[f32],
        bias: Option<&[f32]>,
        name: &str,
    ) -> String {
        let cin_g = c.in_channels / c.groups;
        let (k, cout) = (c.kernel, c.out_channels);
        let oihw = hwio_to_oihw(kernel, k, cin_g, cout);
        let w = self.constant(&format!("{name}_w"), &[cout, cin_g, k, k], oihw);
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = bias {
            inputs.push(self.constant(&format!("{name}_b"), &[cout], b.to_vec()));
        }
        let attrs = conv_attributes(c);
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", name, &refs, attrs)
    }

    /// An int64 shape constant (Reshape's second input).
    fn shape(&mut self, name: &str, dims: &[i64]) -> String {
        let name = self.fresh(name);
        self.graph.initializer.push(TensorProto {
            name: name.clone(),
            dims: vec![dims.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: dims.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    fn reshape(&mut self, x: &str, dims: &[i64], name: &str) -> String {
        let shape = self.shape(&format!("{name}_shape"), dims);
        self.node("Reshape", name, &[x, &shape], vec![])
    }

    fn transpose(&mut self, x: &str, perm: &[i64], name: &str) -> String {
        self.node("Transpose", name, &[x], vec![attr_ints("perm", perm)])
    }

    /// Mobile MQA on an NCHW `x` (see the IR's `MultiQueryAttention`): BatchNormalization,
    /// 1×1 Convs for the projections (the softmax temperature folded into the queries'),
    /// the strided depthwise Convs of keys and values with their BN folded, then
    /// `MatMul(Q [1, heads, N, kd], Kᵀ [1, 1, kd, M])` broadcasting the one key head,
    /// `Softmax`, `MatMul(·, V [1, 1, M, vd])`, and back to NCHW for the output Conv.
    fn attention(
        &mut self,
        x: &str,
        a: &MultiQueryAttention,
        w: &AttentionWeights,
        (h, wd): (usize, usize),
        tag: &str,
    ) -> String {
        let (c, heads, kd, vd) = (a.channels, a.heads, a.key_dim, a.value_dim);
        let n = (h * wd) as i64;
        let m = (a.kv_shape.h * a.kv_shape.w) as i64;
        let normed = self.batch_norm(x.to_string(), &w.norm, &format!("{tag}_norm"));
        let project = |b: &mut Builder, x: &str, cin, cout, weight: &[f32], name: &str| {
            b.conv(
                x,
                &Conv2d::one_by_one(cin, cout, Activation::None),
                weight,
                None,
                name,
            )
        };
        let query: Vec<f32> = w.query.iter().map(|q| q * a.scale()).collect();
        let q = project(
            self,
            &normed,
            c,
            heads * kd,
            &query,
            &format!("{tag}_query"),
        );
        let q = self.reshape(
            &q,
            &[1, heads as i64, kd as i64, n],
            &format!("{tag}_q_heads"),
        );
        let q = self.transpose(&q, &[0, 1, 3, 2], &format!("{tag}_q_t"));
        let source = |b: &mut Builder, down: &Option<(Vec<f32>, BatchNorm)>, name: &str| match (
            a.down_conv(),
            down,
        ) {
            (Some(conv), Some((kernel, bn))) => {
                let (kernel, bias) = fold_depthwise(kernel, bn);
                b.conv(&normed, &conv, &kernel, Some(&bias), name)
            }
            _ => normed.clone(),
        };
        let ks = source(self, &w.key_down, &format!("{tag}_key_down"));
        let k = project(self, &ks, c, kd, &w.key, &format!("{tag}_key"));
        let k = self.reshape(&k, &[1, 1, kd as i64, m], &format!("{tag}_k_t"));
        let vs = source(self, &w.value_down, &format!("{tag}_value_down"));
        let v = project(self, &vs, c, vd, &w.value, &format!("{tag}_value"));
        let v = self.reshape(&v, &[1, 1, vd as i64, m], &format!("{tag}_v_rows"));
        let v = self.transpose(&v, &[0, 1, 3, 2], &format!("{tag}_v"));
        let logits = self.node("MatMul", &format!("{tag}_logits"), &[&q, &k], vec![]);
        let p = self.node(
            "Softmax",
            &format!("{tag}_softmax"),
            &[&logits],
            vec![attr_int("axis", -1)],
        );
        let o = self.node("MatMul", &format!("{tag}_weighted"), &[&p, &v], vec![]);
        let o = self.transpose(&o, &[0, 1, 3, 2], &format!("{tag}_o_t"));
        let o = self.reshape(
            &o,
            &[1, (heads * vd) as i64, h as i64, wd as i64],
            &format!("{tag}_o"),
        );
        project(self, &o, heads * vd, c, &w.output, &format!("{tag}_output"))
    }

    /// `[1, K] · [K, N] + b`, weights already `[in][out]`.
    fn gemm(&mut self, x: &str, w: &[f32], b: &[f32], k: usize, n: usize, name: &str) -> String {
        let wn = self.constant(&format!("{name}_w"), &[k, n], w.to_vec());
        let bn = self.constant(&format!("{name}_b"), &[n], b.to_vec());
        self.node("Gemm", name, &[x, &wn, &bn], vec![])
    }
}

pub fn export(model: &Model, bn: BnMode) -> Result<Vec<u8>, ExportError> {
    let model = prepare(model, bn)?;
    let graph = &model.graph;
    let mut b = Builder {
        graph: GraphProto {
            name: model.name.clone(),
            ..Default::default()
        },
        counter: 0,
    };
    let input = graph.input;
    b.graph.input.push(value_info(INPUT_NAME, &input.nhwc()));
    let nchw = b.node(
        "Transpose",
        "to_nchw",
        &[INPUT_NAME],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
    );
    // ONNX name of each IR value; whether it is flat ([1, C]) rather than [1, C, H, W].
    let mut names: Vec<String> = vec![nchw];
    let mut flat: Vec<bool> = vec![false];
    for (node, layer) in model.layers() {
        let x = names[node.inputs[0]].clone();
        let tag = node.name.as_str();
        let (out, is_flat) = match layer {
            Layer::Conv {
                conv: c,
                kernel,
                bias,
                bn,
            } => {
                let mut y = b.conv(&x, c, kernel, bias, tag);
                if let Some(bn) = bn {
                    y = b.batch_norm(y, bn, &format!("{tag}_bn"));
                }
                (b.activation(y, c.activation, &format!("{tag}_act")), false)
            }
            Layer::SqueezeExcite { se, weights: w } => {
                let pooled = b.node("GlobalAveragePool", &format!("{tag}_pool"), &[&x], vec![]);
                let (c, s) = (se.channels, se.squeeze);
                let conv1 = Conv2d::one_by_one(c, s, Activation::None);
                let conv2 = Conv2d::one_by_one(s, c, Activation::None);
                let h = b.conv(
                    &pooled,
                    &conv1,
                    w.reduce,
                    Some(w.reduce_bias),
                    &format!("{tag}_reduce"),
                );
                let h = b.activation(h, Activation::Relu, &format!("{tag}_relu"));
                let g = b.conv(
                    &h,
                    &conv2,
                    w.expand,
                    Some(w.expand_bias),
                    &format!("{tag}_expand"),
                );
                let g = b.activation(g, Activation::HardSigmoid, &format!("{tag}_gate"));
                (
                    b.node("Mul", &format!("{tag}_scale"), &[&x, &g], vec![]),
                    false,
                )
            }
            Layer::GlobalAvgPool => (b.node("GlobalAveragePool", tag, &[&x], vec![]), false),
            Layer::FullyConnected { fc, weight, bias } => {
                let x = if flat[node.inputs[0]] {
                    x
                } else {
                    b.node(
                        "Flatten",
                        &format!("{tag}_flatten"),
                        &[&x],
                        vec![attr_int("axis", 1)],
                    )
                };
                let y = b.gemm(&x, weight, bias, fc.in_features, fc.out_features, tag);
                (b.activation(y, fc.activation, &format!("{tag}_act")), true)
            }
            Layer::Add => {
                let other = names[node.inputs[1]].clone();
                (
                    b.node("Add", tag, &[&x, &other], vec![]),
                    flat[node.inputs[0]],
                )
            }
            Layer::Attention { attn, weights } => {
                let hw = (node.output.h, node.output.w);
                (b.attention(&x, attn, weights, hw, tag), false)
            }
        };
        names.push(out);
        flat.push(is_flat);
    }
    let last = graph.last_value();
    if !flat[last] {
        return Err(ExportError::Unsupported {
            format: "onnx",
            what: "a graph that does not end in a fully connected layer".into(),
        });
    }
    // Name the final value `logits`.
    let final_node = b.graph.node.last_mut().expect("a graph has nodes");
    final_node.output = vec![OUTPUT_NAME.into()];
    b.graph
        .output
        .push(value_info(OUTPUT_NAME, &[1, graph.output().c]));
    encode(b.graph)
}

/// The model file around `graph`: opset, producer, and the reference (proto2) form of number
/// lists, which every ONNX reader accepts.
pub(crate) fn encode(graph: GraphProto) -> Result<Vec<u8>, ExportError> {
    let proto = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "mobilebench".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    crate::proto2::unpack_repeated_numbers(&proto.encode_to_vec()).map_err(|why| {
        ExportError::Unsupported {
            format: "onnx",
            what: format!("the encoded model ({why})"),
        }
    })
}

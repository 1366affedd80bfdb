//! A quantized zoo model → ONNX in the QDQ form (opset 17), S8S8: every quantized tensor is
//! a float op's output followed by QuantizeLinear → DequantizeLinear with an int8 zero
//! point; weights are int8 initializers dequantized per output channel (axis 0), biases
//! int32 with scale `input scale × weight scale`. ONNX Runtime fuses the DQ → op → Q
//! patterns into its integer kernels (QLinearConv, QLinearAdd, QLinearMul, ...); ops it has
//! no integer kernel for run in float between a DQ and a Q, which is what QDQ means.
//!
//! Weights use [−64, 64] (`reduce_range`, [`mobilebench_models::WeightRange::Reduced`]): ONNX Runtime converts
//! S8 activations to U8 and its x86 u8s8 kernels without VNNI (VPMADDUBSW) add pairs of
//! products in 16 bits, which full-range weights overflow. Measured on this project's
//! machine (AMD EPYC, AVX2, no VNNI), MobileNetV3-Small 1.0/224: with [−127, 127] weights
//! ORT's int8 kernels were 0.55 (max relative difference of the logits) from the same file
//! run op by op in float; with [−64, 64], 0.0. ORT documents this remedy (or U8U8).
//!
//! The layout matches the float export: NHWC input, one Transpose to NCHW, `[1, classes]`
//! logits; FC layers are 1×1 convolutions on the pooled value, as in the int8 .tflite.

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, TensorProto};

use mobilebench_models::ir::{Activation, Conv2d};
use mobilebench_models::quant::{QLinear, QOp, QParams, QuantModel};

use crate::onnx::{
    attr_int, attr_ints, conv_attributes, encode, hwio_to_oihw, value_info, Builder, INPUT_NAME,
    OUTPUT_NAME,
};
use crate::ExportError;

impl Builder {
    fn typed_constant(
        &mut self,
        name: &str,
        dims: &[usize],
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        let name = self.fresh(name);
        self.graph.initializer.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type as i32,
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// `x` rounded to the int8 grid `q`: QuantizeLinear then DequantizeLinear.
    fn qdq(&mut self, x: &str, q: QParams, name: &str) -> String {
        let scale = self.constant(&format!("{name}_scale"), &[], vec![q.scale]);
        let zp = self.typed_constant(
            &format!("{name}_zp"),
            &[],
            DataType::Int8,
            vec![q.zero_point as i8 as u8],
        );
        let quantized = self.node(
            "QuantizeLinear",
            &format!("{name}_q"),
            &[x, &scale, &zp],
            vec![],
        );
        self.node(
            "DequantizeLinear",
            &format!("{name}_dq"),
            &[&quantized, &scale, &zp],
            vec![],
        )
    }

    /// A quantized Conv (NCHW, OIHW int8 weights) and its activation, each quantized
    /// tensor followed by its Q/DQ.
    fn qdq_conv(&mut self, x: &str, c: &Conv2d, l: &QLinear, name: &str) -> String {
        let cin_g = c.in_channels / c.groups;
        let (k, cout) = (c.kernel, c.out_channels);
        let oihw = hwio_to_oihw(&l.weights.values, k, cin_g, cout)
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let w = self.typed_constant(
            &format!("{name}_w"),
            &[cout, cin_g, k, k],
            DataType::Int8,
            oihw,
        );
        let w_scale = self.constant(
            &format!("{name}_w_scale"),
            &[cout],
            l.weights.scales.clone(),
        );
        let w_zp = self.typed_constant(
            &format!("{name}_w_zp"),
            &[cout],
            DataType::Int8,
            vec![0; cout],
        );
        let axis = vec![attr_int("axis", 0)];
        let w = self.node(
            "DequantizeLinear",
            &format!("{name}_w_dq"),
            &[&w, &w_scale, &w_zp],
            axis.clone(),
        );
        let bias_raw = l.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = self.typed_constant(&format!("{name}_b"), &[cout], DataType::Int32, bias_raw);
        let b_scale = self.constant(&format!("{name}_b_scale"), &[cout], l.bias_scales.clone());
        let b_zp = self.typed_constant(
            &format!("{name}_b_zp"),
            &[cout],
            DataType::Int32,
            vec![0; 4 * cout],
        );
        let b = self.node(
            "DequantizeLinear",
            &format!("{name}_b_dq"),
            &[&b, &b_scale, &b_zp],
            axis,
        );
        let y = self.node("Conv", name, &[x, &w, &b], conv_attributes(c));
        match c.activation {
            Activation::HardSwish => {
                let pre = l.pre_activation.expect("hard swish has its input's grid");
                let y = self.qdq(&y, pre, &format!("{name}_linear"));
                let z = self.activation(y, Activation::HardSwish, &format!("{name}_hswish"));
                self.qdq(&z, l.output, &format!("{name}_out"))
            }
            act => {
                let z = self.activation(y, act, &format!("{name}_act"));
                self.qdq(&z, l.output, &format!("{name}_out"))
            }
        }
    }
}

/// Writes `model` as a QDQ .onnx with float input and output.
pub fn export(model: &QuantModel) -> Result<Vec<u8>, ExportError> {
    let mut b = Builder {
        graph: GraphProto {
            name: format!("{} int8", model.name),
            ..Default::default()
        },
        counter: 0,
    };
    b.graph
        .input
        .push(value_info(INPUT_NAME, &model.input_shape.nhwc()));
    let nchw = b.node(
        "Transpose",
        "to_nchw",
        &[INPUT_NAME],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
    );
    let x = b.qdq(&nchw, model.input, "input");
    let mut names: Vec<String> = vec![x];
    for layer in &model.layers {
        let x = names[layer.inputs[0]].clone();
        let tag = layer.name.as_str();
        let out = match &layer.op {
            QOp::Conv(c, l) => b.qdq_conv(&x, c, l, tag),
            QOp::FullyConnected(fc, l) => {
                let conv = Conv2d::one_by_one(fc.in_features, fc.out_features, fc.activation);
                b.qdq_conv(&x, &conv, l, tag)
            }
            QOp::SqueezeExcite {
                se,
                pooled,
                reduce,
                expand,
                output,
            } => {
                let p = b.node("GlobalAveragePool", &format!("{tag}_pool"), &[&x], vec![]);
                let p = b.qdq(&p, *pooled, &format!("{tag}_pool"));
                let conv1 = Conv2d::one_by_one(se.channels, se.squeeze, Activation::Relu);
                let h = b.qdq_conv(&p, &conv1, reduce, &format!("{tag}_reduce"));
                let conv2 = Conv2d::one_by_one(se.squeeze, se.channels, Activation::None);
                let g = b.qdq_conv(&h, &conv2, expand, &format!("{tag}_expand"));
                let g = b.activation(g, Activation::HardSigmoid, &format!("{tag}_gate"));
                let g = b.qdq(&g, QParams::UNIT, &format!("{tag}_gate"));
                let y = b.node("Mul", &format!("{tag}_scale"), &[&x, &g], vec![]);
                b.qdq(&y, *output, &format!("{tag}_out"))
            }
            QOp::GlobalAvgPool { output } => {
                let y = b.node("GlobalAveragePool", tag, &[&x], vec![]);
                b.qdq(&y, *output, tag)
            }
            QOp::Add { output } => {
                let other = names[layer.inputs[1]].clone();
                let y = b.node("Add", tag, &[&x, &other], vec![]);
                b.qdq(&y, *output, tag)
            }
        };
        names.push(out);
    }
    let last = names.last().expect("a model has layers").clone();
    b.node("Flatten", "flatten", &[&last], vec![attr_int("axis", 1)]);
    let final_node = b.graph.node.last_mut().expect("just added");
    final_node.output = vec![OUTPUT_NAME.into()];
    b.graph
        .output
        .push(value_info(OUTPUT_NAME, &[1, model.output_len()]));
    encode(b.graph)
}

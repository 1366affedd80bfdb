//! Mobile MQA (the IR's `MultiQueryAttention`) as TFLite builtins, NHWC throughout.
//!
//! Keys and values have one head shared by every query head, so the heads need no
//! transposes: the queries `[1, H, W, heads·kd]` reshape to `[1, N·heads, kd]` (row `(i, h)`),
//! one BATCH_MATMUL against the keys (`adj_y`) gives every head's logits `[1, N·heads, M]`,
//! SOFTMAX, a second BATCH_MATMUL by the values `[1, M, vd]`, and `[1, N·heads, vd]` reshapes
//! back to `[1, H, W, heads·vd]` (channel `h·vd + d`, as the IR orders it) for the output
//! projection. The input norm is MUL + ADD, the strided key/value depthwise convs have their
//! BN folded, and the softmax temperature is folded into the query weights.

use tract_tflite::tflite::{
    BatchMatMulOptions, BatchMatMulOptionsArgs, BuiltinOperator, BuiltinOptions, ReshapeOptions,
    ReshapeOptionsArgs, SoftmaxOptions, SoftmaxOptionsArgs,
};

use mobilebench_models::ir::{Activation, Conv2d, MultiQueryAttention, Shape};
use mobilebench_models::weights::{fold_depthwise, AttentionWeights, BatchNorm};

use crate::tflite::Builder;

impl Builder<'_> {
    fn reshape(&mut self, x: i32, shape: &[usize], name: &str) -> i32 {
        let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
        let target = self.int32_tensor(&format!("{name}_shape"), &dims);
        let y = self.tensor(name, shape, None);
        let new_shape = self.fb.create_vector(&dims);
        let o = ReshapeOptions::create(
            &mut self.fb,
            &ReshapeOptionsArgs {
                new_shape: Some(new_shape),
            },
        );
        self.op(
            BuiltinOperator::RESHAPE,
            &[x, target],
            &[y],
            Some((BuiltinOptions::ReshapeOptions, o.as_union_value())),
        );
        y
    }

    fn batch_matmul(&mut self, a: i32, b: i32, shape: &[usize], adj_y: bool, name: &str) -> i32 {
        let y = self.tensor(name, shape, None);
        let o = BatchMatMulOptions::create(
            &mut self.fb,
            &BatchMatMulOptionsArgs {
                adj_x: false,
                adj_y,
                asymmetric_quantize_inputs: false,
            },
        );
        self.op(
            BuiltinOperator::BATCH_MATMUL,
            &[a, b],
            &[y],
            Some((BuiltinOptions::BatchMatMulOptions, o.as_union_value())),
        );
        y
    }

    pub(crate) fn attention(
        &mut self,
        x: i32,
        a: &MultiQueryAttention,
        w: &AttentionWeights,
        out: Shape,
        tag: &str,
    ) -> i32 {
        let (c, heads, kd, vd) = (a.channels, a.heads, a.key_dim, a.value_dim);
        let n = out.h * out.w;
        let kv = a.kv_shape;
        let m = kv.h * kv.w;
        let nhwc = out.nhwc();
        let normed = self.batch_norm(x, &w.norm, &nhwc, Activation::None, &format!("{tag}_norm"));
        let project = |b: &mut Self, x: i32, s: Shape, cout: usize, weight: &[f32], name: &str| {
            let conv = Conv2d::one_by_one(s.c, cout, Activation::None);
            let zeros = vec![0.0; cout];
            let shape = Shape::new(s.h, s.w, cout);
            b.conv(x, &conv, (weight, &zeros), shape, Activation::None, name)
        };
        let query: Vec<f32> = w.query.iter().map(|q| q * a.scale()).collect();
        let q = project(
            self,
            normed,
            out,
            heads * kd,
            &query,
            &format!("{tag}_query"),
        );
        let q = self.reshape(q, &[1, n * heads, kd], &format!("{tag}_q_rows"));
        let source = |b: &mut Self, down: &Option<(Vec<f32>, BatchNorm)>, name: &str| match (
            a.down_conv(),
            down,
        ) {
            (Some(conv), Some((kernel, bn))) => {
                let (kernel, bias) = fold_depthwise(kernel, bn);
                let y = b.conv(normed, &conv, (&kernel, &bias), kv, Activation::None, name);
                (y, kv)
            }
            _ => (normed, out),
        };
        let (ks, s) = source(self, &w.key_down, &format!("{tag}_key_down"));
        let k = project(self, ks, s, kd, &w.key, &format!("{tag}_key"));
        let k = self.reshape(k, &[1, m, kd], &format!("{tag}_k_rows"));
        let (vs, s) = source(self, &w.value_down, &format!("{tag}_value_down"));
        let v = project(self, vs, s, vd, &w.value, &format!("{tag}_value"));
        let v = self.reshape(v, &[1, m, vd], &format!("{tag}_v_rows"));
        let logits = self.batch_matmul(q, k, &[1, n * heads, m], true, &format!("{tag}_logits"));
        let p = self.tensor(&format!("{tag}_softmax"), &[1, n * heads, m], None);
        let o = SoftmaxOptions::create(&mut self.fb, &SoftmaxOptionsArgs { beta: 1.0 });
        self.op(
            BuiltinOperator::SOFTMAX,
            &[logits],
            &[p],
            Some((BuiltinOptions::SoftmaxOptions, o.as_union_value())),
        );
        let o = self.batch_matmul(p, v, &[1, n * heads, vd], false, &format!("{tag}_weighted"));
        let o = self.reshape(o, &[1, out.h, out.w, heads * vd], &format!("{tag}_o"));
        let o_shape = Shape::new(out.h, out.w, heads * vd);
        project(self, o, o_shape, c, &w.output, &format!("{tag}_output"))
    }
}

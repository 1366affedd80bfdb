//! Mobile MQA (the IR's `MultiQueryAttention`) as dispatches: the input norm as a 1×1
//! depthwise conv (scale as its kernel, shift as its bias), the projections on the pointwise
//! kernel, the strided key/value depthwise convs (BN folded) on the conv kernel, then the
//! logits of every (pixel, head) row against the one key head, a row softmax, and the
//! weighted sum of values as a pointwise product (`[N·heads × M] · [M × vd]`, whose rows
//! are already the IR's `[N][heads·vd]` order).

use mobilebench_models::ir::{MultiQueryAttention, Shape};
use mobilebench_models::weights::{fold_depthwise, AttentionWeights, BatchNorm};

use super::{groups_1d, Builder, Pointwise, CONV, LOGITS, POINTWISE_NAIVE, SOFTMAX};

impl Builder<'_> {
    pub(super) fn attention(
        &mut self,
        pointwise: Pointwise,
        src: &wgpu::Buffer,
        out: &wgpu::Buffer,
        a: &MultiQueryAttention,
        w: &AttentionWeights,
        input: Shape,
    ) {
        let (c, heads, kd, vd) = (a.channels, a.heads, a.key_dim, a.value_dim);
        let n = input.h * input.w;
        let kv = a.kv_shape;
        let m = kv.h * kv.w;
        let u = |v: usize| v as u32;
        // A depthwise conv: p as the conv kernel reads it (act 0: none).
        let depthwise = |from: Shape, to: Shape, k: usize, stride: usize, pad: (usize, usize)| {
            [
                from.h, from.w, c, to.h, to.w, c, k, stride, pad.0, pad.1, c, 0,
            ]
            .map(u)
        };
        let (scale, shift) = w.norm.scale_shift();
        let normed = self.empty(n * c);
        let (sw, sb) = (self.storage(&scale), self.storage(&shift));
        let p = depthwise(input, input, 1, 1, (0, 0));
        self.dispatch(
            CONV,
            src,
            Some(&sw),
            Some(&sb),
            &normed,
            &p,
            groups_1d(u(n * c)),
        );
        let project = |b: &mut Self, x: &wgpu::Buffer, rows: usize, weight: &[f32], k, cols| {
            let y = b.empty(rows * cols);
            let (wt, zeros) = (b.storage(weight), b.storage(&vec![0.0; cols]));
            b.pointwise(pointwise, x, (&wt, &zeros), &y, [u(rows), u(cols), u(k)], 0);
            y
        };
        let query: Vec<f32> = w.query.iter().map(|q| q * a.scale()).collect();
        let q = project(self, &normed, n, &query, c, heads * kd);
        let source =
            |b: &mut Self, down: &Option<(Vec<f32>, BatchNorm)>| match (a.down_conv(), down) {
                (Some(conv), Some((kernel, bn))) => {
                    let (kernel, bias) = fold_depthwise(kernel, bn);
                    let y = b.empty(m * c);
                    let (kw, kb) = (b.storage(&kernel), b.storage(&bias));
                    let pad = (conv.padding.top, conv.padding.left);
                    let p = depthwise(input, kv, conv.kernel, conv.stride, pad);
                    b.dispatch(
                        CONV,
                        &normed,
                        Some(&kw),
                        Some(&kb),
                        &y,
                        &p,
                        groups_1d(u(m * c)),
                    );
                    Some(y)
                }
                _ => None,
            };
        let ks = source(self, &w.key_down);
        let k = project(self, ks.as_ref().unwrap_or(&normed), m, &w.key, c, kd);
        let vs = source(self, &w.value_down);
        let v = project(self, vs.as_ref().unwrap_or(&normed), m, &w.value, c, vd);
        let rows = u(n * heads);
        let logits = self.empty(n * heads * m);
        let p = [rows, u(m), u(kd)];
        self.dispatch(
            LOGITS,
            &q,
            Some(&k),
            None,
            &logits,
            &p,
            groups_1d(rows * u(m)),
        );
        let probabilities = self.empty(n * heads * m);
        self.dispatch(
            SOFTMAX,
            &logits,
            None,
            None,
            &probabilities,
            &[rows, u(m)],
            groups_1d(rows),
        );
        let o = self.empty(n * heads * vd);
        let zeros = self.storage(&vec![0.0; vd]);
        let p = [rows, u(vd), u(m), 0];
        self.dispatch(
            POINTWISE_NAIVE,
            &probabilities,
            Some(&v),
            Some(&zeros),
            &o,
            &p,
            groups_1d(rows * u(vd)),
        );
        let (ow, zeros) = (self.storage(&w.output), self.storage(&vec![0.0; c]));
        let p = [u(n), u(c), u(heads * vd)];
        self.pointwise(pointwise, &o, (&ow, &zeros), out, p, 0);
    }
}

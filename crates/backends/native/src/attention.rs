//! MobileNetV4's Mobile MQA block body (`MultiQueryAttention` in the IR) on the engine's own
//! kernels: the input norm as one pass, the strided key/value depthwise convs on the
//! depthwise kernel (their BN folded), every projection and both attention products on the
//! GEMM. Keys and values have one head shared by all query heads, so all heads' logits are
//! one product `Q · Kᵀ` over `N·heads` rows (`N·heads × M`) and the output one more,
//! `softmax(·) · V`; Kᵀ and V are packed once per inference. The softmax temperature is
//! folded into the query weights.
//!
//! The block runs on the calling thread (its GEMMs are small: N ≤ 256 pixels here).

use std::sync::Mutex;

use mobilebench_models::ir::{Activation, MultiQueryAttention, Shape};
use mobilebench_models::weights::{fold_depthwise, AttentionWeights};

use crate::aligned::AlignedVec;
use crate::conv::Window;
use crate::depthwise::{Depthwise, RowsIn, RowsOut};
use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::math::exp_non_positive;
use crate::simd::Isa;

pub struct Attention {
    pixels: usize,
    positions: usize,
    heads: usize,
    key_dim: usize,
    value_dim: usize,
    norm_scale: Vec<f32>,
    norm_shift: Vec<f32>,
    /// Keys' and values' downsampling depthwise convs, BN folded.
    down: Option<(Depthwise, Depthwise)>,
    query: PackedB,
    key: PackedB,
    value: PackedB,
    output: PackedB,
    state: Mutex<State>,
}

/// Per-inference intermediates, allocated once at load.
struct State {
    normed: AlignedVec,
    key_source: AlignedVec,
    value_source: AlignedVec,
    q: AlignedVec,
    k: AlignedVec,
    v: AlignedVec,
    logits: AlignedVec,
    o: AlignedVec,
    /// Kᵀ (`key_dim × M`) and V (`M × value_dim`) packed as GEMM right-hand sides.
    keys_t: PackedB,
    values: PackedB,
    transposed: Vec<f32>,
    scratch: AlignedVec,
}

impl Attention {
    pub fn new(a: &MultiQueryAttention, input: Shape, w: &AttentionWeights) -> Attention {
        let c = a.channels;
        let (heads, kd, vd) = (a.heads, a.key_dim, a.value_dim);
        let pixels = input.h * input.w;
        let positions = a.kv_shape.h * a.kv_shape.w;
        let (norm_scale, norm_shift) = w.norm.scale_shift();
        let down = a.down_conv().map(|conv| {
            let window = || Window {
                input,
                output: a.kv_shape,
                kernel: conv.kernel,
                stride: conv.stride,
                padding: conv.padding,
            };
            let make = |down: &Option<(Vec<f32>, _)>| {
                let (kernel, bn) = down.as_ref().expect("strided attention has down convs");
                let (kernel, bias) = fold_depthwise(kernel, bn);
                Depthwise::new(window(), &kernel, &bias, Activation::None)
            };
            (make(&w.key_down), make(&w.value_down))
        });
        let scaled_query: Vec<f32> = w.query.iter().map(|q| q * a.scale()).collect();
        let zeros = |n: usize| vec![0.0; n];
        let scratch = down
            .as_ref()
            .map_or(0, |(k, v)| k.scratch_len().max(v.scratch_len()));
        let sources = if down.is_some() { positions * c } else { 0 };
        let state = State {
            normed: AlignedVec::zeros(pixels * c),
            key_source: AlignedVec::zeros(sources),
            value_source: AlignedVec::zeros(sources),
            q: AlignedVec::zeros(pixels * heads * kd),
            k: AlignedVec::zeros(positions * kd),
            v: AlignedVec::zeros(positions * vd),
            logits: AlignedVec::zeros(pixels * heads * positions),
            o: AlignedVec::zeros(pixels * heads * vd),
            keys_t: PackedB::new(kd, positions, &zeros(kd * positions), &zeros(positions)),
            values: PackedB::new(positions, vd, &zeros(positions * vd), &zeros(vd)),
            transposed: zeros(kd * positions),
            scratch: AlignedVec::zeros(scratch),
        };
        Attention {
            pixels,
            positions,
            heads,
            key_dim: kd,
            value_dim: vd,
            norm_scale,
            norm_shift,
            down,
            query: PackedB::new(c, heads * kd, &scaled_query, &zeros(heads * kd)),
            key: PackedB::new(c, kd, &w.key, &zeros(kd)),
            value: PackedB::new(c, vd, &w.value, &zeros(vd)),
            output: PackedB::new(heads * vd, c, &w.output, &zeros(c)),
            state: Mutex::new(state),
        }
    }

    pub fn run(&self, isa: Isa, input: &[f32], out: &mut [f32]) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let c = self.norm_scale.len();
        let (n, m, heads, kd, vd) = (
            self.pixels,
            self.positions,
            self.heads,
            self.key_dim,
            self.value_dim,
        );
        for (dst, src) in s.normed.chunks_exact_mut(c).zip(input.chunks_exact(c)) {
            for (((y, x), sc), sh) in dst
                .iter_mut()
                .zip(src)
                .zip(&self.norm_scale)
                .zip(&self.norm_shift)
            {
                *y = x * sc + sh;
            }
        }
        let gemm = |a: &[f32], stride, rows, b: &PackedB, c: &mut [f32], ldc| {
            product(isa, a, stride, rows, b, c, ldc)
        };
        gemm(&s.normed, c, n, &self.query, &mut s.q, heads * kd);
        let (key_source, value_source): (&[f32], &[f32]) = match &self.down {
            Some((kdw, vdw)) => {
                let rows = 0..kdw.output_rows();
                kdw.run_rows(
                    isa,
                    RowsIn::Tensor(&s.normed[..]),
                    RowsOut::Tensor(&mut s.key_source[..]),
                    &mut s.scratch,
                    rows.clone(),
                );
                vdw.run_rows(
                    isa,
                    RowsIn::Tensor(&s.normed[..]),
                    RowsOut::Tensor(&mut s.value_source[..]),
                    &mut s.scratch,
                    rows,
                );
                (&s.key_source[..], &s.value_source[..])
            }
            None => (&s.normed[..], &s.normed[..]),
        };
        gemm(key_source, c, m, &self.key, &mut s.k, kd);
        gemm(value_source, c, m, &self.value, &mut s.v, vd);
        for j in 0..m {
            for d in 0..kd {
                s.transposed[d * m + j] = s.k[j * kd + d];
            }
        }
        s.keys_t.repack(&s.transposed);
        s.values.repack(&s.v);
        // Row (i, h) of Q is pixel i's head h: every head against the one key head is one
        // product, and its output rows are already O's `[N][heads·vd]` order.
        gemm(&s.q, kd, n * heads, &s.keys_t, &mut s.logits, m);
        for row in s.logits.chunks_exact_mut(m) {
            softmax(row);
        }
        gemm(&s.logits, m, n * heads, &s.values, &mut s.o, vd);
        gemm(&s.o, heads * vd, n, &self.output, out, c);
    }
}

/// `rows` rows of A (row stride `stride`) times B into C (row stride `ldc`).
fn product(
    isa: Isa,
    a: &[f32],
    stride: usize,
    rows: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
) {
    Gemm {
        m: rows,
        a: AMatrix::Rows { data: a, stride },
        b: b.view(),
        act: Activation::None,
        residual: None,
        c,
        ldc,
    }
    .run(isa)
}

/// A max-subtracted softmax over one row, written so the compiler vectorises every pass:
/// max and sum over 8 independent lanes (a sequential float sum would chain 64 additions per
/// row), and the branch-free [`exp_non_positive`].
fn softmax(row: &mut [f32]) {
    let lanes = |row: &[f32], init: f32, f: fn(f32, f32) -> f32| {
        let mut acc = [init; 8];
        let mut chunks = row.chunks_exact(8);
        for chunk in &mut chunks {
            for (a, v) in acc.iter_mut().zip(chunk) {
                *a = f(*a, *v);
            }
        }
        chunks
            .remainder()
            .iter()
            .fold(acc.into_iter().fold(init, f), |a, v| f(a, *v))
    };
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    for v in row.iter_mut() {
        *v = exp_non_positive(*v - max);
    }
    let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|v| *v *= inv);
}

//! The small NHWC f32 kernels: pooling, squeeze-excite, residual add and the separate
//! batch-norm pass, whose loops run over channels (contiguous in NHWC) so the compiler
//! vectorises them; fully connected layers (and SE's two) as one-row GEMMs. The convolutions
//! are in `conv` and `gemm`.

use mobilebench_models::ir::Activation;

use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::simd::Isa;

/// Mean over pixels of an `[pixels][c]` tensor. Four pixels are summed per pass over `out`:
/// one pixel per pass made every channel's sum wait on its own store (the pool ran at a
/// third of XNNPACK's speed, and squeeze-excite, which pools, 1.3–1.6× slower).
pub fn global_avg_pool(input: &[f32], c: usize, out: &mut [f32]) {
    let out = &mut out[..c];
    out.fill(0.0);
    let mut quads = input.chunks_exact(4 * c);
    for q in &mut quads {
        let (p0, rest) = q.split_at(c);
        let (p1, rest) = rest.split_at(c);
        let (p2, p3) = rest.split_at(c);
        for ((((o, a), b), d), e) in out.iter_mut().zip(p0).zip(p1).zip(p2).zip(p3) {
            *o += (a + b) + (d + e);
        }
    }
    for px in quads.remainder().chunks_exact(c) {
        for (o, x) in out.iter_mut().zip(px) {
            *o += x;
        }
    }
    let inv = 1.0 / (input.len() / c) as f32;
    out.iter_mut().for_each(|v| *v *= inv);
}

/// `out = act(x · W + bias)` for one vector, W `[in][out]` packed for the GEMM.
pub struct FullyConnected {
    pub weight: PackedB,
    pub act: Activation,
}

impl FullyConnected {
    pub fn new(weight: &[f32], bias: &[f32], act: Activation) -> FullyConnected {
        let out = bias.len();
        FullyConnected {
            weight: PackedB::new(weight.len() / out, out, weight, bias),
            act,
        }
    }

    pub fn run(&self, isa: Isa, x: &[f32], out: &mut [f32]) {
        Gemm {
            m: 1,
            a: AMatrix::Rows {
                data: x,
                stride: x.len(),
            },
            b: &self.weight,
            act: self.act,
            residual: None,
            c: out,
            ldc: self.weight.n(),
        }
        .run(isa);
    }
}

pub struct SqueezeExcite {
    pub channels: usize,
    pub reduce: FullyConnected,
    pub expand: FullyConnected,
}

impl SqueezeExcite {
    /// Floats of scratch `run` needs.
    pub fn scratch_len(&self) -> usize {
        2 * self.channels + self.reduce.weight.n()
    }

    pub fn run(&self, isa: Isa, input: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let c = self.channels;
        let s = self.reduce.weight.n();
        let (pooled, rest) = scratch.split_at_mut(c);
        let (hidden, rest) = rest.split_at_mut(s);
        let gate = &mut rest[..c];
        global_avg_pool(input, c, pooled);
        self.reduce.run(isa, pooled, hidden);
        self.expand.run(isa, hidden, gate);
        for (o, x) in out.chunks_exact_mut(c).zip(input.chunks_exact(c)) {
            for ((o, x), g) in o.iter_mut().zip(x).zip(gate.iter()) {
                *o = x * g;
            }
        }
    }
}

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// Inference batch norm as its own pass (`--bn separate`): per channel `x · scale + shift`
/// precomputed at load (as eval-mode frameworks do), then the convolution's activation. NHWC, so the channel is the index modulo `c`.
pub struct BatchNormPass {
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Activation,
}

impl BatchNormPass {
    pub fn new(bn: &mobilebench_models::weights::BatchNorm, act: Activation) -> Self {
        let (scale, shift) = bn.scale_shift();
        BatchNormPass { scale, shift, act }
    }

    pub fn run(&self, data: &mut [f32]) {
        for pixel in data.chunks_exact_mut(self.scale.len()) {
            for ((x, s), t) in pixel.iter_mut().zip(&self.scale).zip(&self.shift) {
                *x = self.act.apply(*x * s + t);
            }
        }
    }
}

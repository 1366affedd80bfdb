//! The small NHWC f32 kernels: pooling, squeeze-excite's scaling and the residual add over
//! the `Simd` trait (compiled per instruction set); the separate batch-norm pass, whose loop
//! runs over channels (contiguous in NHWC) so the compiler vectorises it; fully connected
//! layers (and SE's two) as one-row GEMMs. The convolutions are in `conv` and `gemm`.

use mobilebench_models::ir::Activation;

use std::ops::Range;

use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::simd::{activate_one, dispatch, Isa, Simd, SimdOp};

/// Mean over pixels of an `[pixels][c]` tensor: four registers of channels summed over every
/// pixel at a time (a pixel's channels are contiguous), then one register, then scalars.
/// Compiled per instruction set like the other kernels: the loop autovectorised for the
/// baseline x86-64 (SSE2) ran at a third of XNNPACK's speed.
pub fn global_avg_pool(isa: Isa, input: &[f32], c: usize, out: &mut [f32]) {
    assert!(out.len() >= c && input.len().is_multiple_of(c.max(1)));
    dispatch(isa, Pool { input, c, out });
}

struct Pool<'a> {
    input: &'a [f32],
    c: usize,
    out: &'a mut [f32],
}

impl SimdOp for Pool<'_> {
    fn wide(&self) -> bool {
        self.c.is_multiple_of(16)
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        let (c, pixels) = (self.c, self.input.len() / self.c.max(1));
        let (x, out) = (self.input.as_ptr(), self.out.as_mut_ptr());
        let mut ch = 0;
        // SAFETY: every load is of channels below `c` of a pixel below `pixels`, every store
        // of channels below `c` (asserted).
        unsafe {
            let inv = S::splat(1.0 / pixels.max(1) as f32);
            while ch + 4 * S::LANES <= c {
                let mut acc = [S::splat(0.0); 4];
                for p in 0..pixels {
                    let px = x.add(p * c + ch);
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = S::add(*a, S::load(px.add(j * S::LANES)));
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    S::store(out.add(ch + j * S::LANES), S::mul(*a, inv));
                }
                ch += 4 * S::LANES;
            }
            while ch + S::LANES <= c {
                let mut acc = S::splat(0.0);
                for p in 0..pixels {
                    acc = S::add(acc, S::load(x.add(p * c + ch)));
                }
                S::store(out.add(ch), S::mul(acc, inv));
                ch += S::LANES;
            }
            for ch in ch..c {
                let sum: f32 = (0..pixels).map(|p| *x.add(p * c + ch)).sum();
                *out.add(ch) = sum / pixels.max(1) as f32;
            }
        }
    }
}

/// `out[p][ch] = x[p][ch] · gate[ch]` (squeeze-excite's scaling), or `a + b` elementwise
/// (the residual add) when `gate` is `None` and `b` is given.
struct Elementwise<'a> {
    a: &'a [f32],
    b: Binary<'a>,
    out: &'a mut [f32],
}

#[derive(Clone, Copy)]
enum Binary<'a> {
    /// Multiplied by a per-channel gate of its length.
    Gate(&'a [f32]),
    /// Added elementwise.
    Add(&'a [f32]),
}

impl SimdOp for Elementwise<'_> {
    fn wide(&self) -> bool {
        match self.b {
            Binary::Gate(g) => g.len().is_multiple_of(16),
            Binary::Add(_) => true,
        }
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        let (a, out) = (self.a.as_ptr(), self.out.as_mut_ptr());
        // SAFETY: lengths asserted by the callers: `a`, `out` (and an added `b`) are as long
        // as each other, a multiple of a gate's length.
        unsafe {
            match self.b {
                Binary::Gate(gate) => {
                    let c = gate.len();
                    for p in 0..self.a.len() / c {
                        let (x, o) = (a.add(p * c), out.add(p * c));
                        let mut ch = 0;
                        while ch + S::LANES <= c {
                            let g = S::load(gate.as_ptr().add(ch));
                            S::store(o.add(ch), S::mul(S::load(x.add(ch)), g));
                            ch += S::LANES;
                        }
                        for (ch, g) in gate.iter().enumerate().skip(ch) {
                            *o.add(ch) = *x.add(ch) * g;
                        }
                    }
                }
                Binary::Add(b) => {
                    let (len, b) = (self.a.len(), b.as_ptr());
                    let mut i = 0;
                    while i + S::LANES <= len {
                        S::store(out.add(i), S::add(S::load(a.add(i)), S::load(b.add(i))));
                        i += S::LANES;
                    }
                    for i in i..len {
                        *out.add(i) = *a.add(i) + *b.add(i);
                    }
                }
            }
        }
    }
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
        self.run_columns(isa, x, out, 0..self.weight.panel_count());
    }

    /// Outputs `16·first..16·end` (clipped to the layer's width) into `out`, which holds just
    /// those: a thread's share, streaming its own part of the weights.
    pub fn run_columns(&self, isa: Isa, x: &[f32], out: &mut [f32], panels: Range<usize>) {
        let b = self.weight.columns(panels);
        let ldc = out.len();
        Gemm {
            m: 1,
            a: AMatrix::Rows {
                data: x,
                stride: x.len(),
            },
            b,
            act: self.act,
            residual: None,
            c: out,
            ldc,
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
        let gate = self.gate(isa, input, scratch);
        self.scale(isa, &input[..out.len()], gate, out);
    }

    /// The per-channel gate of `input` (its pool, then the two one-row products), in
    /// `scratch` ([`Self::scratch_len`] floats).
    pub fn gate<'s>(&self, isa: Isa, input: &[f32], scratch: &'s mut [f32]) -> &'s [f32] {
        let c = self.channels;
        let s = self.reduce.weight.n();
        let (pooled, rest) = scratch.split_at_mut(c);
        let (hidden, rest) = rest.split_at_mut(s);
        let gate = &mut rest[..c];
        global_avg_pool(isa, input, c, pooled);
        self.reduce.run(isa, pooled, hidden);
        self.expand.run(isa, hidden, gate);
        gate
    }

    /// `out = input × gate`, channel by channel, over whole pixels (all, or a band of them).
    pub fn scale(&self, isa: Isa, input: &[f32], gate: &[f32], out: &mut [f32]) {
        assert!(input.len() == out.len() && out.len().is_multiple_of(self.channels));
        assert_eq!(gate.len(), self.channels);
        dispatch(
            isa,
            Elementwise {
                a: input,
                b: Binary::Gate(gate),
                out,
            },
        );
    }
}

pub fn add(isa: Isa, a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && out.len() == a.len());
    dispatch(
        isa,
        Elementwise {
            a,
            b: Binary::Add(b),
            out,
        },
    );
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
                *x = activate_one(*x * s + t, self.act);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Channel counts with every remainder: below one register, whole AVX2 but not AVX-512
    /// registers (72), four-register blocks and a scalar tail (100).
    #[test]
    fn pool_gate_and_add_match_plain_loops_on_every_isa() {
        for isa in Isa::available() {
            for (pixels, c) in [(1, 3), (5, 20), (49, 72), (9, 100), (4, 64)] {
                let x: Vec<f32> = (0..pixels * c).map(|i| (i % 13) as f32 - 6.0).collect();
                let y: Vec<f32> = (0..pixels * c).map(|i| (i % 7) as f32 * 0.5).collect();
                let mut pooled = vec![f32::NAN; c];
                global_avg_pool(isa, &x, c, &mut pooled);
                for ch in 0..c {
                    let want = (0..pixels).map(|p| x[p * c + ch]).sum::<f32>() / pixels as f32;
                    assert!(
                        (pooled[ch] - want).abs() < 1e-5,
                        "{isa:?} pool c={c} ch={ch}"
                    );
                }
                let mut sum = vec![f32::NAN; pixels * c];
                add(isa, &x, &y, &mut sum);
                assert!(sum
                    .iter()
                    .zip(x.iter().zip(&y))
                    .all(|(s, (a, b))| *s == a + b));
                let gate: Vec<f32> = (0..c).map(|i| i as f32 / c as f32).collect();
                let mut gated = vec![f32::NAN; pixels * c];
                dispatch(
                    isa,
                    Elementwise {
                        a: &x,
                        b: Binary::Gate(&gate),
                        out: &mut gated,
                    },
                );
                for (i, g) in gated.iter().enumerate() {
                    assert_eq!(*g, x[i] * gate[i % c], "{isa:?} gate c={c} at {i}");
                }
            }
        }
    }
}

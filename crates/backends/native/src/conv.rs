//! The spatial convolutions: depthwise (vectorised over channels, the window's taps unrolled
//! for interior pixels, padding handled once per pixel) and the regular convolution of the
//! stem (an implicit GEMM over its zero-padded input).

use mobilebench_models::ir::{Activation, Padding, Shape};

use crate::gemm::{AMatrix, Gemm, PackedB};
use crate::simd::{activate, dispatch, Isa, Simd, SimdOp};

/// Geometry shared by the spatial convolutions.
pub struct Window {
    pub input: Shape,
    pub output: Shape,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

impl Window {
    /// The kernel taps `(start..end)` that land inside the input for output row/col `o`, and
    /// the input coordinate of tap 0 (negative in the padding).
    #[inline]
    fn taps(&self, o: usize, pad: usize, size: usize) -> (usize, usize, isize) {
        let origin = (o * self.stride) as isize - pad as isize;
        let start = (-origin).max(0) as usize;
        let end = ((size as isize - origin).min(self.kernel as isize)).max(0) as usize;
        (start, end.max(start), origin)
    }

    /// Fills `taps` with `(input pixel, tap index ky·k + kx)` for the taps of output pixel
    /// `(oy, ox)` that land inside the input, and returns their count. Padding is handled
    /// here, once per pixel, so the kernels' inner loops have no bounds logic. (A plain
    /// function, not a visitor closure: closures do not inherit `#[target_feature]`.)
    #[inline(always)]
    fn pixel_taps(&self, oy: usize, ox: usize, taps: &mut [(usize, usize); MAX_TAPS]) -> usize {
        let k = self.kernel;
        let (ky0, ky1, iy0) = self.taps(oy, self.padding.top, self.input.h);
        let (kx0, kx1, ix0) = self.taps(ox, self.padding.left, self.input.w);
        let mut count = 0;
        for ky in ky0..ky1 {
            let iy = (iy0 + ky as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (ix0 + kx as isize) as usize;
                taps[count] = (iy * self.input.w + ix, ky * k + kx);
                count += 1;
            }
        }
        count
    }

    /// Whether output pixel `(oy, ox)`'s whole window is inside the input, and where its
    /// top-left input pixel is.
    #[inline(always)]
    fn interior(&self, oy: usize, ox: usize) -> Option<usize> {
        let iy = (oy * self.stride).checked_sub(self.padding.top)?;
        let ix = (ox * self.stride).checked_sub(self.padding.left)?;
        (iy + self.kernel <= self.input.h && ix + self.kernel <= self.input.w)
            .then_some(iy * self.input.w + ix)
    }
}

/// Depthwise convolution (multiplier 1), weights `[kh][kw][c]`.
pub struct Depthwise {
    pub window: Window,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

impl Depthwise {
    pub fn run(&self, isa: Isa, input: &[f32], out: &mut [f32]) {
        let w = &self.window;
        let c = w.input.c;
        assert!(input.len() >= w.input.len() && out.len() >= w.output.len());
        assert!(self.weight.len() == w.kernel * w.kernel * c && self.bias.len() == c);
        assert!(
            w.kernel * w.kernel <= MAX_TAPS,
            "depthwise kernels up to 7×7"
        );
        dispatch(
            isa,
            DepthwiseOp {
                conv: self,
                input,
                out,
            },
        );
    }
}

struct DepthwiseOp<'a> {
    conv: &'a Depthwise,
    input: &'a [f32],
    out: &'a mut [f32],
}

impl SimdOp for DepthwiseOp<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        match self.conv.window.kernel {
            3 => self.run_kernel::<S, 3, 9>(),
            5 => self.run_kernel::<S, 5, 25>(),
            _ => self.run_kernel::<S, 0, 0>(),
        }
    }
}

impl DepthwiseOp<'_> {
    /// `K × K` taps known at compile time (`TAPS = K·K`) for the pixels whose window lies
    /// inside the input, fully unrolled; the border pixels (and other sizes, `K = 0`) take
    /// the general path with their tap lists.
    #[inline(always)]
    fn run_kernel<S: Simd, const K: usize, const TAPS: usize>(self) {
        let conv = self.conv;
        let w = &conv.window;
        let c = w.input.c;
        let x = self.input.as_ptr();
        let out = self.out.as_mut_ptr();
        // Offsets of the taps from the window's top-left input value.
        let weight = conv.weight.as_ptr();
        let mut rel = [0usize; TAPS];
        for (t, r) in rel.iter_mut().enumerate() {
            *r = ((t / K.max(1)) * w.input.w + t % K.max(1)) * c;
        }
        // SAFETY (all pointers below): the taps for_each_pixel lists lie inside the input
        // (all K·K of them when it lists TAPS), tap rows are below K·K, and `pixel` is an
        // output pixel; the extents were asserted in `Depthwise::run`.
        let tap_weights: [*const f32; TAPS] = std::array::from_fn(|t| unsafe { weight.add(t * c) });
        let mut taps = [(0, 0); MAX_TAPS];
        let mut inputs = [std::ptr::null(); MAX_TAPS];
        let mut weights = [std::ptr::null(); MAX_TAPS];
        // 3×3 layers whose channels fill whole registers take groups of interior pixels
        // weight-stationary (`pixel_group`); the rest of each row goes pixel by pixel.
        let grouped = K == 3 && c.is_multiple_of(S::LANES);
        for oy in 0..w.output.h {
            let mut ox = 0;
            while ox < w.output.w {
                if grouped && ox + GROUP <= w.output.w {
                    if let (Some(origin), Some(_)) =
                        (w.interior(oy, ox), w.interior(oy, ox + GROUP - 1))
                    {
                        // SAFETY: every pixel of the group is interior (its first and last
                        // are, and the ones between lie between them).
                        unsafe {
                            conv.pixel_group::<S, TAPS>(
                                x.add(origin * c),
                                &rel,
                                out.add((oy * w.output.w + ox) * c),
                            );
                        }
                        ox += GROUP;
                        continue;
                    }
                }
                unsafe {
                    let o = out.add((oy * w.output.w + ox) * c);
                    match w.interior(oy, ox) {
                        Some(origin) if K > 0 => {
                            let origin = x.add(origin * c);
                            let inputs: [*const f32; TAPS] =
                                std::array::from_fn(|t| origin.add(rel[t]));
                            conv.pixel::<S, TAPS>(&inputs, &tap_weights, TAPS, o);
                        }
                        _ => {
                            let n = w.pixel_taps(oy, ox, &mut taps);
                            for (i, &(px, tap)) in taps[..n].iter().enumerate() {
                                inputs[i] = x.add(px * c);
                                weights[i] = weight.add(tap * c);
                            }
                            conv.pixel::<S, MAX_TAPS>(&inputs, &weights, n, o);
                        }
                    }
                }
                ox += 1;
            }
        }
    }
}

/// Output pixels of one row computed together by `pixel_group`.
const GROUP: usize = 4;

impl Depthwise {
    /// `GROUP` horizontally adjacent interior output pixels, one register of channels at a
    /// time with that register's `TAPS` weights held in registers: each weight is loaded once
    /// for the group instead of once per pixel (the per-pixel path is bound by its loads),
    /// and the group's accumulators are independent FMA chains. `x` is the first pixel's
    /// window corner, `rel` the taps' offsets from it; needs `c` a multiple of the lanes.
    // Index loops on purpose: constant indices keep the accumulators in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn pixel_group<S: Simd, const TAPS: usize>(
        &self,
        x: *const f32,
        rel: &[usize; TAPS],
        o: *mut f32,
    ) {
        let c = self.window.input.c;
        let step = self.window.stride * c;
        let (w, bias) = (self.weight.as_ptr(), self.bias.as_ptr());
        let mut ch = 0;
        while ch < c {
            let taps: [S::V; TAPS] = std::array::from_fn(|t| S::load(w.add(t * c + ch)));
            let b = S::load(bias.add(ch));
            let mut acc = [b; GROUP];
            for t in 0..TAPS {
                let x = x.add(rel[t] + ch);
                for p in 0..GROUP {
                    acc[p] = S::fma(acc[p], S::load(x.add(p * step)), taps[t]);
                }
            }
            for p in 0..GROUP {
                S::store(o.add(p * c + ch), activate::<S>(acc[p], self.act));
            }
            ch += S::LANES;
        }
    }
}

/// Most taps a depthwise window may have (7×7).
const MAX_TAPS: usize = 49;

impl Depthwise {
    /// One output pixel over all channels from its first `n` taps: tap `t` reads input at
    /// `inputs[t]` with weights at `weights[t]`. With `n` a constant (the interior path) the
    /// tap loops unroll. Safety: every pointer has `c` readable values.
    // Index loops on purpose: constant indices keep the accumulators in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn pixel<S: Simd, const TAPS: usize>(
        &self,
        inputs: &[*const f32; TAPS],
        weights: &[*const f32; TAPS],
        n: usize,
        o: *mut f32,
    ) {
        let c = self.window.input.c;
        let (bias, lanes) = (self.bias.as_ptr(), S::LANES);
        let mut ch = 0;
        // An FMA waits for the previous one on its accumulator (4 cycles on current cores),
        // so one accumulator per register would leave the FMA units idle between taps: four
        // registers of channels, each with two partial sums (even and odd taps), keep eight
        // independent chains in flight. Then one register at a time, then scalars.
        while ch + 4 * lanes <= c {
            self.channels::<S, TAPS, 4>(inputs, weights, n, ch, o);
            ch += 4 * lanes;
        }
        while ch + lanes <= c {
            self.channels::<S, TAPS, 1>(inputs, weights, n, ch, o);
            ch += lanes;
        }
        for ch in ch..c {
            let mut acc = *bias.add(ch);
            for t in 0..n {
                acc += *inputs[t].add(ch) * *weights[t].add(ch);
            }
            *o.add(ch) = self.act.apply(acc);
        }
    }

    /// `REGS` registers of channels from `ch` of one pixel (see `pixel`), each summed in two
    /// halves (even and odd taps).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn channels<S: Simd, const TAPS: usize, const REGS: usize>(
        &self,
        inputs: &[*const f32; TAPS],
        weights: &[*const f32; TAPS],
        n: usize,
        ch: usize,
        o: *mut f32,
    ) {
        let (bias, lanes) = (self.bias.as_ptr(), S::LANES);
        let mut even: [S::V; REGS] = std::array::from_fn(|j| S::load(bias.add(ch + j * lanes)));
        let mut odd = [S::splat(0.0); REGS];
        let mut t = 0;
        while t + 1 < n {
            for j in 0..REGS {
                let off = ch + j * lanes;
                even[j] = S::fma(
                    even[j],
                    S::load(inputs[t].add(off)),
                    S::load(weights[t].add(off)),
                );
                odd[j] = S::fma(
                    odd[j],
                    S::load(inputs[t + 1].add(off)),
                    S::load(weights[t + 1].add(off)),
                );
            }
            t += 2;
        }
        if t < n {
            for j in 0..REGS {
                let off = ch + j * lanes;
                even[j] = S::fma(
                    even[j],
                    S::load(inputs[t].add(off)),
                    S::load(weights[t].add(off)),
                );
            }
        }
        for j in 0..REGS {
            let v = activate::<S>(S::add(even[j], odd[j]), self.act);
            S::store(o.add(ch + j * lanes), v);
        }
    }
}

/// Regular convolution (the stem) as an implicit GEMM: the input is copied once into a
/// zero-padded buffer, and the GEMM reads each output pixel's window in place through two
/// offset tables (row: the window's corner; column: tap and input channel), so no im2col
/// matrix is written. The HWIO kernel is the `(k·k·cin) × cout` B in that column order.
pub struct StemConv {
    pub window: Window,
    pub weight: PackedB,
    pub act: Activation,
    /// Per output pixel, the offset of its window's corner in the padded input.
    rows: Vec<usize>,
    /// Per (ky, kx, ci), the offset from the corner.
    cols: Vec<usize>,
}

impl StemConv {
    pub fn new(window: Window, hwio: &[f32], bias: &[f32], act: Activation) -> StemConv {
        let (k, cin) = (window.kernel, window.input.c);
        let weight = PackedB::new(k * k * cin, window.output.c, hwio, bias);
        let padded_w = window.input.w + window.padding.left + window.padding.right;
        let mut rows = Vec::with_capacity(window.output.h * window.output.w);
        for oy in 0..window.output.h {
            for ox in 0..window.output.w {
                rows.push((oy * window.stride * padded_w + ox * window.stride) * cin);
            }
        }
        let mut cols = Vec::with_capacity(k * k * cin);
        for ky in 0..k {
            for kx in 0..k {
                cols.extend((0..cin).map(|ci| (ky * padded_w + kx) * cin + ci));
            }
        }
        StemConv {
            window,
            weight,
            act,
            rows,
            cols,
        }
    }

    /// Floats of scratch `run` needs: the padded input.
    pub fn scratch_len(&self) -> usize {
        let w = &self.window;
        let p = &w.padding;
        (w.input.h + p.top + p.bottom) * (w.input.w + p.left + p.right) * w.input.c
    }

    pub fn run(&self, isa: Isa, input: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let w = &self.window;
        let (p, cin) = (&w.padding, w.input.c);
        let padded = &mut scratch[..self.scratch_len()];
        // Every value is written: zeros in the border, the input row by row inside.
        let row_len = (w.input.w + p.left + p.right) * cin;
        for (y, row) in padded.chunks_exact_mut(row_len).enumerate() {
            match y.checked_sub(p.top).filter(|&iy| iy < w.input.h) {
                Some(iy) => {
                    let (left, rest) = row.split_at_mut(p.left * cin);
                    let (inside, right) = rest.split_at_mut(w.input.w * cin);
                    left.fill(0.0);
                    inside.copy_from_slice(&input[iy * w.input.w * cin..][..w.input.w * cin]);
                    right.fill(0.0);
                }
                None => row.fill(0.0),
            }
        }
        Gemm {
            m: self.rows.len(),
            a: AMatrix::Gather {
                data: padded,
                rows: &self.rows,
                cols: &self.cols,
            },
            b: &self.weight,
            act: self.act,
            residual: None,
            c: out,
            ldc: w.output.c,
        }
        .run(isa);
    }
}

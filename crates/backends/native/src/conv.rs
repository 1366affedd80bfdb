//! The regular convolutions (the stem, V4's full convolutions: an implicit GEMM over the
//! unpadded input) and the geometry they share with the depthwise convolution
//! (`depthwise.rs`).

use mobilebench_models::ir::{Activation, Padding, Shape};

use crate::gemm::{AMatrix, ColumnRun, Gemm, PackedB};
use crate::simd::Isa;

/// Geometry shared by the spatial convolutions.
pub struct Window {
    pub input: Shape,
    pub output: Shape,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

/// Regular convolution (the stem, V4's FusedIB and conv_bn layers) as an implicit GEMM read
/// in place from the unpadded input: each output pixel's window from its corner, one run of
/// adjacent floats per row of taps, so neither an im2col matrix nor a padded copy of the input
/// is written. The pixels whose window crosses the border (the padding's rows and columns of
/// the output) are computed again afterwards from small zero-filled copies of their windows,
/// replacing what the first pass gave them. The HWIO kernel is the `(k·k·cin) × cout` B in
/// that column order.
///
/// A padded copy of the input, written before the GEMM, had cost about as much as the whole
/// gap to ONNX Runtime on these layers: a 1.6 MB input (Conv-S's first FusedIB) takes about
/// 0.1 ms to copy from beyond L2, against a 0.46 ms convolution.
pub struct StemConv {
    pub window: Window,
    pub weight: PackedB,
    pub act: Activation,
    /// Per output pixel, the offset of its window's corner in the input (0 for the pixels in
    /// `border`, whose result is replaced).
    rows: Vec<usize>,
    /// Per row of taps `ky`, its `k · cin` adjacent floats (taps `kx`, channels `ci`) from
    /// the corner: the GEMM's K columns in B's (ky, kx, ci) order.
    runs: Vec<ColumnRun>,
    /// The output pixels whose window crosses the input's border, in order.
    border: Vec<usize>,
    /// Whether a window fits in the input at all (if not, every pixel is in `border`).
    window_fits: bool,
}

impl StemConv {
    pub fn new(window: Window, hwio: &[f32], bias: &[f32], act: Activation) -> StemConv {
        let (k, cin) = (window.kernel, window.input.c);
        let weight = PackedB::new(k * k * cin, window.output.c, hwio, bias);
        let (h, w) = (window.input.h, window.input.w);
        let window_fits = k <= h && k <= w;
        let mut rows = Vec::with_capacity(window.output.h * window.output.w);
        let mut border = Vec::new();
        for oy in 0..window.output.h {
            for ox in 0..window.output.w {
                let y = (oy * window.stride).checked_sub(window.padding.top);
                let x = (ox * window.stride).checked_sub(window.padding.left);
                match (y, x) {
                    (Some(y), Some(x)) if window_fits && y + k <= h && x + k <= w => {
                        rows.push((y * w + x) * cin)
                    }
                    _ => {
                        border.push(rows.len());
                        rows.push(0);
                    }
                }
            }
        }
        let runs = (0..k)
            .map(|ky| ColumnRun {
                offset: ky * w * cin,
                len: k * cin,
            })
            .collect();
        StemConv {
            window,
            weight,
            act,
            rows,
            runs,
            border,
            window_fits,
        }
    }

    /// Floats of scratch one part of `run_pixels` needs: the border pixels' windows and
    /// their outputs.
    pub fn scratch_len(&self) -> usize {
        self.border.len() * (self.weight.k() + self.weight.n())
    }

    /// Output pixels: the unit a step is split into across threads.
    pub fn pixels(&self) -> usize {
        self.rows.len()
    }

    /// Output pixels `pixels` of `input`; `out` holds just those pixels.
    pub fn run_pixels(
        &self,
        isa: Isa,
        input: &[f32],
        out: &mut [f32],
        pixels: std::ops::Range<usize>,
        scratch: &mut [f32],
    ) {
        let (k, n) = (self.weight.k(), self.weight.n());
        if self.window_fits {
            Gemm {
                m: pixels.len(),
                a: AMatrix::Gather {
                    data: input,
                    rows: &self.rows[pixels.clone()],
                    runs: &self.runs,
                },
                b: self.weight.view(),
                act: self.act,
                residual: None,
                c: out,
                ldc: n,
            }
            .run(isa);
        }
        let first = self.border.partition_point(|&p| p < pixels.start);
        let last = self.border.partition_point(|&p| p < pixels.end);
        let border = &self.border[first..last];
        if border.is_empty() {
            return;
        }
        let (windows, results) = scratch.split_at_mut(border.len() * k);
        for (&pixel, window) in border.iter().zip(windows.chunks_exact_mut(k)) {
            self.window_of(input, pixel, window);
        }
        let results = &mut results[..border.len() * n];
        Gemm {
            m: border.len(),
            a: AMatrix::Rows {
                data: windows,
                stride: k,
            },
            b: self.weight.view(),
            act: self.act,
            residual: None,
            c: results,
            ldc: n,
        }
        .run(isa);
        for (&pixel, result) in border.iter().zip(results.chunks_exact(n)) {
            out[(pixel - pixels.start) * n..][..n].copy_from_slice(result);
        }
    }

    /// Output pixel `pixel`'s window, `(ky, kx, ci)` in order, zero where it lies outside.
    fn window_of(&self, input: &[f32], pixel: usize, window: &mut [f32]) {
        let w = &self.window;
        let (k, cin) = (w.kernel, w.input.c);
        let (oy, ox) = (pixel / w.output.w, pixel % w.output.w);
        for (tap, dst) in window.chunks_exact_mut(cin).enumerate() {
            let y = (oy * w.stride + tap / k).checked_sub(w.padding.top);
            let x = (ox * w.stride + tap % k).checked_sub(w.padding.left);
            match (y, x) {
                (Some(y), Some(x)) if y < w.input.h && x < w.input.w => {
                    dst.copy_from_slice(&input[(y * w.input.w + x) * cin..][..cin])
                }
                _ => dst.fill(0.0),
            }
        }
    }
}

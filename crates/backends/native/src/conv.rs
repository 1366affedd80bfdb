//! The regular convolution of the stem (an implicit GEMM over its zero-padded input) and the
//! geometry it shares with the depthwise convolution (`depthwise.rs`).

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

/// Regular convolution (the stem) as an implicit GEMM: the input is copied once into a
/// zero-padded buffer, and the GEMM reads each output pixel's window in place (from the
/// window's corner, one run of adjacent floats per row of taps), so no im2col matrix is
/// written. The HWIO kernel is the `(k·k·cin) × cout` B in that column order.
pub struct StemConv {
    pub window: Window,
    pub weight: PackedB,
    pub act: Activation,
    /// Per output pixel, the offset of its window's corner in the padded input.
    rows: Vec<usize>,
    /// Per row of taps `ky`, its `k · cin` adjacent floats (taps `kx`, channels `ci`) from
    /// the corner: the GEMM's K columns in B's (ky, kx, ci) order.
    runs: Vec<ColumnRun>,
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
        let runs = (0..k)
            .map(|ky| ColumnRun {
                offset: ky * padded_w * cin,
                len: k * cin,
            })
            .collect();
        StemConv {
            window,
            weight,
            act,
            rows,
            runs,
        }
    }

    /// Floats of scratch `run` needs: the padded input.
    pub fn scratch_len(&self) -> usize {
        let w = &self.window;
        let p = &w.padding;
        (w.input.h + p.top + p.bottom) * (w.input.w + p.left + p.right) * w.input.c
    }

    /// Output pixels: the unit a step is split into across threads.
    pub fn pixels(&self) -> usize {
        self.rows.len()
    }

    /// Rows of the zero-padded input.
    pub fn padded_rows(&self) -> usize {
        let w = &self.window;
        w.input.h + w.padding.top + w.padding.bottom
    }

    /// Writes rows `rows` of the zero-padded input into `band` (those rows only): zeros in the
    /// border, the input inside.
    pub fn pad_rows(&self, input: &[f32], band: &mut [f32], rows: std::ops::Range<usize>) {
        let w = &self.window;
        let (p, cin) = (&w.padding, w.input.c);
        let row_len = (w.input.w + p.left + p.right) * cin;
        for (y, row) in rows.zip(band.chunks_exact_mut(row_len)) {
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
    }

    /// Output pixels `pixels` from the padded input [`pad_rows`](Self::pad_rows) wrote;
    /// `out` holds just those pixels.
    pub fn run_pixels(
        &self,
        isa: Isa,
        padded: &[f32],
        out: &mut [f32],
        pixels: std::ops::Range<usize>,
    ) {
        Gemm {
            m: pixels.len(),
            a: AMatrix::Gather {
                data: &padded[..self.scratch_len()],
                rows: &self.rows[pixels],
                runs: &self.runs,
            },
            b: self.weight.view(),
            act: self.act,
            residual: None,
            c: out,
            ldc: self.window.output.c,
        }
        .run(isa);
    }
}

//! The regular convolution of the stem (an implicit GEMM over its zero-padded input) and the
//! geometry it shares with the depthwise convolution (`depthwise.rs`).

use mobilebench_models::ir::{Activation, Padding, Shape};

use crate::gemm::{AMatrix, Gemm, PackedB};
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

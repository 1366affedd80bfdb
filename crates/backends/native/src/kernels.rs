//! NHWC f32 kernels, one thread. Inner loops run over channels (contiguous in NHWC) so the
//! compiler vectorises them; pointwise convolutions are a GEMM (matrixmultiply's sgemm).

use mobilebench_models::ir::{Activation, Padding, Shape};

fn activate(x: &mut [f32], act: Activation) {
    if act != Activation::None {
        for v in x {
            *v = act.apply(*v);
        }
    }
}

/// 1×1 stride-1 convolution: `out[HW × cout] = in[HW × cin] · w[cin × cout] + bias`.
pub struct Pointwise {
    pub pixels: usize,
    pub cin: usize,
    pub cout: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

impl Pointwise {
    pub fn run(&self, input: &[f32], out: &mut [f32]) {
        for row in out.chunks_exact_mut(self.cout) {
            row.copy_from_slice(&self.bias);
        }
        // SAFETY: the slices hold exactly pixels×cin, cin×cout and pixels×cout row-major
        // values (asserted), which are the extents sgemm reads and writes with these strides.
        assert!(input.len() == self.pixels * self.cin && out.len() == self.pixels * self.cout);
        assert!(self.weight.len() == self.cin * self.cout);
        unsafe {
            matrixmultiply::sgemm(
                self.pixels,
                self.cin,
                self.cout,
                1.0,
                input.as_ptr(),
                self.cin as isize,
                1,
                self.weight.as_ptr(),
                self.cout as isize,
                1,
                1.0,
                out.as_mut_ptr(),
                self.cout as isize,
                1,
            );
        }
        activate(out, self.act);
    }
}

/// Geometry shared by the spatial convolutions.
pub struct Window {
    pub input: Shape,
    pub output: Shape,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

impl Window {
    /// The kernel taps `(k_start..k_end)` that land inside the input for output row/col `o`.
    #[inline]
    fn taps(&self, o: usize, pad: usize, size: usize) -> (usize, usize, isize) {
        let origin = (o * self.stride) as isize - pad as isize;
        let start = (-origin).max(0) as usize;
        let end = ((size as isize - origin).min(self.kernel as isize)).max(0) as usize;
        (start, end.max(start), origin)
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
    pub fn run(&self, input: &[f32], out: &mut [f32]) {
        let w = &self.window;
        let (c, k) = (w.input.c, w.kernel);
        for oy in 0..w.output.h {
            let (ky0, ky1, iy0) = w.taps(oy, w.padding.top, w.input.h);
            for ox in 0..w.output.w {
                let (kx0, kx1, ix0) = w.taps(ox, w.padding.left, w.input.w);
                let o = &mut out[(oy * w.output.w + ox) * c..][..c];
                o.copy_from_slice(&self.bias);
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        let x = &input[(iy * w.input.w + ix) * c..][..c];
                        let wt = &self.weight[(ky * k + kx) * c..][..c];
                        for ((o, x), wt) in o.iter_mut().zip(x).zip(wt) {
                            *o += x * wt;
                        }
                    }
                }
                activate(o, self.act);
            }
        }
    }
}

/// Regular convolution (the stem), weights HWIO `[kh][kw][cin][cout]`.
pub struct Direct {
    pub window: Window,
    pub cout: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

impl Direct {
    pub fn run(&self, input: &[f32], out: &mut [f32]) {
        let w = &self.window;
        let (cin, cout, k) = (w.input.c, self.cout, w.kernel);
        for oy in 0..w.output.h {
            let (ky0, ky1, iy0) = w.taps(oy, w.padding.top, w.input.h);
            for ox in 0..w.output.w {
                let (kx0, kx1, ix0) = w.taps(ox, w.padding.left, w.input.w);
                let o = &mut out[(oy * w.output.w + ox) * cout..][..cout];
                o.copy_from_slice(&self.bias);
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        let x = &input[(iy * w.input.w + ix) * cin..][..cin];
                        for (ci, &xv) in x.iter().enumerate() {
                            let wt = &self.weight[((ky * k + kx) * cin + ci) * cout..][..cout];
                            for (o, wt) in o.iter_mut().zip(wt) {
                                *o += xv * wt;
                            }
                        }
                    }
                }
                activate(o, self.act);
            }
        }
    }
}

/// `out = act(bias + x · w)` for one vector, `w` is `[in][out]`.
pub fn matvec(x: &[f32], w: &[f32], bias: &[f32], act: Activation, out: &mut [f32]) {
    let n = out.len();
    out.copy_from_slice(bias);
    for (i, &xv) in x.iter().enumerate() {
        for (o, wt) in out.iter_mut().zip(&w[i * n..][..n]) {
            *o += xv * wt;
        }
    }
    activate(out, act);
}

/// Mean over pixels of an `[pixels][c]` tensor.
pub fn global_avg_pool(input: &[f32], c: usize, out: &mut [f32]) {
    out.fill(0.0);
    for px in input.chunks_exact(c) {
        for (o, x) in out.iter_mut().zip(px) {
            *o += x;
        }
    }
    let inv = 1.0 / (input.len() / c) as f32;
    out.iter_mut().for_each(|v| *v *= inv);
}

pub struct FullyConnected {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

pub struct SqueezeExcite {
    pub channels: usize,
    pub reduce: FullyConnected,
    pub expand: FullyConnected,
}

impl SqueezeExcite {
    /// `scratch` holds at least `2 · channels + squeeze` values.
    pub fn run(&self, input: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        let c = self.channels;
        let s = self.reduce.bias.len();
        let (pooled, rest) = scratch.split_at_mut(c);
        let (hidden, rest) = rest.split_at_mut(s);
        let gate = &mut rest[..c];
        global_avg_pool(input, c, pooled);
        matvec(
            pooled,
            &self.reduce.weight,
            &self.reduce.bias,
            self.reduce.act,
            hidden,
        );
        matvec(
            hidden,
            &self.expand.weight,
            &self.expand.bias,
            self.expand.act,
            gate,
        );
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

//! Depthwise convolution (multiplier 1), one output row at a time.
//!
//! The kernel ([`window_sums`]) takes a group of up to [`GROUP`] adjacent output pixels of a
//! row, one register of channels at a time: per kernel row it loads that row's `K` weights
//! once for the group, then walks the input columns the group covers, loading each value once
//! and multiplying it into every pixel whose window holds it, `GROUP` independent accumulators
//! (enough chains to hide the FMA latency; for 5×5, 8 accumulators + 5 weights + 1 input fit
//! AVX2's 16 registers). Window size and stride are compile-time constants. Large maps read
//! the input rows in place; small maps with many channels read a padded copy of one register
//! of channels at a time ([`SmallMapOp`]).
//!
//! Padding: kernel rows above or below the input read a shared zero row; the pixels whose
//! window crosses the left or right edge (one or two at each end) take only their columns'
//! taps, one at a time. Interior pixels read the input in place: a zero-padded copy of the
//! input would cost as much memory traffic as a stride-2 layer's arithmetic.

use mobilebench_models::ir::Activation;

use crate::conv::Window;
use crate::simd::{activate, activate_one, dispatch, Isa, Simd, SimdOp};

/// Output pixels per kernel call.
const GROUP: usize = 8;

/// Output pixels per kernel call at stride 2, which covers twice the columns: 8 pixels
/// measured ~2× slower than 4 (AVX2 spills), and no faster with 32 registers.
const STRIDE_2_GROUP: usize = 4;

/// Channels of a small map's tile: one 16-lane register, two 8-lane or four 4-lane ones.
const TILE_LANES: usize = 16;

/// Depthwise convolution with its weights `[ky][kx][c]`.
pub struct Depthwise {
    window: Window,
    act: Activation,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Depthwise {
    /// `weight` is `[kh][kw][c]` (HWIO with I = 1). Kernels 3×3 and 5×5, strides 1 and 2:
    /// what the zoo has, each compiled as its own kernel.
    pub fn new(window: Window, weight: &[f32], bias: &[f32], act: Activation) -> Depthwise {
        let (k, c) = (window.kernel, window.input.c);
        assert!(
            matches!((k, window.stride), (3 | 5, 1 | 2)),
            "depthwise {k}×{k} stride {} is not built (the zoo has 3×3 and 5×5, stride 1 and 2)",
            window.stride
        );
        assert_eq!(weight.len(), k * k * c, "depthwise weights are [kh][kw][c]");
        assert_eq!(bias.len(), c, "one bias per channel");
        let padded_w = window.input.w + window.padding.left + window.padding.right;
        assert!(
            (window.output.w - 1) * window.stride + k <= padded_w,
            "the padding covers every window"
        );
        Depthwise {
            window,
            act,
            weight: weight.to_vec(),
            bias: bias.to_vec(),
        }
    }

    /// Floats of scratch `run` needs: the zero row, or a small map's padded tile.
    pub fn scratch_len(&self) -> usize {
        let zero_row = self.window.input.w * self.window.input.c;
        if self.is_small_map() {
            zero_row.max(self.tile_len())
        } else {
            zero_row
        }
    }

    /// A map so narrow that most of each row's pixels are edge pixels and its channels so many
    /// that a pixel's window rows, `C` floats apart, fall in the same L1 sets (at 1024
    /// channels every tap of a window shares one set: V4's 8×8 and 12×12 5×5 layers ran at
    /// half the peers' speed). Such a layer runs one register of channels at a time over a
    /// zero-padded copy of just those channels ([`SmallMapOp`]).
    fn is_small_map(&self) -> bool {
        let w = &self.window;
        w.output.w <= 16 && w.input.c.is_multiple_of(TILE_LANES) && w.input.c >= 128
    }

    /// Floats of the padded tile of one register of channels (up to 16 lanes).
    fn tile_len(&self) -> usize {
        let w = &self.window;
        let p = &w.padding;
        (w.input.h + p.top + p.bottom) * (w.input.w + p.left + p.right) * TILE_LANES
            // A row's last group may read up to `(N − 1)·s` pixels past the tile's last row.
            + (GROUP - 1).max((STRIDE_2_GROUP - 1) * 2) * TILE_LANES
    }

    /// Output pixels `(first, end)` of a row whose windows lie inside the input's columns.
    fn interior_columns(&self) -> (usize, usize) {
        let w = &self.window;
        let first = w.padding.left.div_ceil(w.stride).min(w.output.w);
        // Pixel `ox` is interior while `ox·s − left + K ≤ W`.
        let end = (w.input.w + w.padding.left)
            .checked_sub(w.kernel)
            .map_or(0, |span| span / w.stride + 1)
            .min(w.output.w)
            .max(first);
        (first, end)
    }

    /// Output rows: the unit a step is split into across threads.
    pub fn output_rows(&self) -> usize {
        self.window.output.h
    }

    /// Floats of one output row.
    pub fn output_row_len(&self) -> usize {
        self.window.output.w * self.window.output.c
    }

    /// Floats of scratch [`run_rows`](Self::run_rows) needs: the zero row, a ring of `K`
    /// input rows if they are produced, and an output row if it is consumed.
    pub fn rows_scratch_len(&self, produced: bool, consumed: bool) -> usize {
        if !produced && !consumed {
            return self.scratch_len();
        }
        let out_row = self.window.output.w * self.window.output.c;
        let zero_row = self.window.input.w * self.window.input.c;
        (1 + if produced { self.window.kernel } else { 0 }) * zero_row
            + if consumed { out_row } else { 0 }
    }

    /// The convolution, output row by output row, reading its input rows from a tensor or as
    /// they are produced, and writing each output row to a tensor or handing it on.
    ///
    /// A produced input (`produce(iy, row)` writes input row `iy` once, in order, just before
    /// the first output row that needs it, into a ring of `K` rows) lets a pointwise
    /// convolution hand its rows over while they are still in cache, and a consumed output
    /// (`consume(oy, row)`) lets the projection after it read each row from L1: neither
    /// intermediate (megabytes at high resolution) is ever written to memory.
    ///
    /// Only output rows `rows` are computed (a thread's band); a tensor output holds just
    /// those rows, from its start.
    pub fn run_rows(
        &self,
        isa: Isa,
        mut input: RowsIn,
        mut output: RowsOut,
        scratch: &mut [f32],
        rows: std::ops::Range<usize>,
    ) {
        if let (true, RowsIn::Tensor(t), RowsOut::Tensor(out)) =
            (self.is_small_map(), &input, &mut output)
        {
            let out_len = self.output_row_len();
            assert!(rows.end <= self.window.output.h && out.len() >= rows.len() * out_len);
            assert!(t.len() >= self.window.input.len());
            let tile = &mut scratch[..self.tile_len()];
            dispatch(
                isa,
                SmallMapOp {
                    conv: self,
                    input: t,
                    out,
                    tile,
                    rows,
                },
            );
            return;
        }
        let w = &self.window;
        let k = w.kernel;
        let row_len = w.input.w * w.input.c;
        let (produced, consumed) = (
            matches!(input, RowsIn::Produced(_)),
            matches!(output, RowsOut::Consumed(_)),
        );
        let scratch = &mut scratch[..self.rows_scratch_len(produced, consumed)];
        let (zero, rest) = scratch.split_at_mut(row_len);
        zero.fill(0.0);
        let (ring, out_row) = rest.split_at_mut(if produced { k * row_len } else { 0 });
        let out_len = w.output.w * w.output.c;
        // A band's first window may start below row 0 (padding) or mid-input.
        let mut next_row = self.top_row(rows.start).max(0) as usize;
        if let RowsIn::Tensor(t) = input {
            assert!(t.len() >= w.input.len());
        }
        if let RowsOut::Tensor(t) = &output {
            assert!(rows.end <= w.output.h && t.len() >= rows.len() * out_len);
        }
        let first = rows.start;
        for oy in rows {
            let top = self.top_row(oy);
            let rows = match &mut input {
                RowsIn::Tensor(t) => {
                    self.window_rows(top, zero, |iy| t[iy * row_len..][..row_len].as_ptr())
                }
                RowsIn::Produced(produce) => {
                    // The ring holds the last K rows produced; an output row's window is K
                    // consecutive rows ending at or before the last one produced.
                    let last = (top + k as isize - 1).min(w.input.h as isize - 1);
                    while (next_row as isize) <= last {
                        produce(next_row, &mut ring[(next_row % k) * row_len..][..row_len]);
                        next_row += 1;
                    }
                    self.window_rows(top, zero, |iy| ring[(iy % k) * row_len..].as_ptr())
                }
            };
            match &mut output {
                RowsOut::Tensor(t) => {
                    self.output_row(isa, rows, &mut t[(oy - first) * out_len..][..out_len])
                }
                RowsOut::Consumed(consume) => {
                    self.output_row(isa, rows, &mut out_row[..out_len]);
                    consume(oy, &out_row[..out_len]);
                }
            }
        }
    }

    /// The input row under output row `oy`'s first kernel row (negative in the padding).
    fn top_row(&self, oy: usize) -> isize {
        (oy * self.window.stride) as isize - self.window.padding.top as isize
    }

    /// The input rows under the kernel rows of a window whose first row is `top`: `row(iy)`
    /// inside the input, the zero row above and below it.
    fn window_rows(
        &self,
        top: isize,
        zero: &[f32],
        row: impl Fn(usize) -> *const f32,
    ) -> [*const f32; 5] {
        let w = &self.window;
        std::array::from_fn(|ky| {
            let iy = top + ky as isize;
            if ky >= w.kernel || iy < 0 || iy >= w.input.h as isize {
                zero.as_ptr()
            } else {
                row(iy as usize)
            }
        })
    }

    /// One output row from its window's rows, each `W · C` floats.
    fn output_row(&self, isa: Isa, rows: [*const f32; 5], out: &mut [f32]) {
        dispatch(
            isa,
            RowOp {
                conv: self,
                rows,
                out,
            },
        );
    }
}

/// A small map's output rows `rows`, [`TILE_LANES`] channels at a time: the channels are
/// copied zero-padded into `tile` (`[padded h][padded w][TILE_LANES]`, 9 KiB for a 5×5 on
/// 8×8), where every pixel is interior and a window's taps are 64 bytes apart.
struct SmallMapOp<'a> {
    conv: &'a Depthwise,
    input: &'a [f32],
    out: &'a mut [f32],
    tile: &'a mut [f32],
    rows: std::ops::Range<usize>,
}

impl SimdOp for SmallMapOp<'_> {
    fn wide(&self) -> bool {
        true
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        match (self.conv.window.kernel, self.conv.window.stride) {
            (3, 1) => self.run_k::<S, 3, 1>(),
            (3, 2) => self.run_k::<S, 3, 2>(),
            (5, 1) => self.run_k::<S, 5, 1>(),
            _ => self.run_k::<S, 5, 2>(),
        }
    }
}

impl SmallMapOp<'_> {
    #[inline(always)]
    fn run_k<S: Simd, const K: usize, const STRIDE: usize>(self) {
        let w = &self.conv.window;
        let (c, p) = (w.input.c, &w.padding);
        let (pw, ph) = (w.input.w + p.left + p.right, w.input.h + p.top + p.bottom);
        let (ow, act) = (w.output.w, self.conv.act);
        let (weight, bias) = (self.conv.weight.as_ptr(), self.conv.bias.as_ptr());
        let tile = self.tile;
        let first = self.rows.start;
        for block in (0..c).step_by(TILE_LANES) {
            // The padded copy of channels `block..block + TILE_LANES`.
            for py in 0..ph {
                let iy = py.checked_sub(p.top).filter(|&iy| iy < w.input.h);
                for px in 0..pw {
                    let dst = &mut tile[(py * pw + px) * TILE_LANES..][..TILE_LANES];
                    match (iy, px.checked_sub(p.left).filter(|&ix| ix < w.input.w)) {
                        (Some(iy), Some(ix)) => dst.copy_from_slice(
                            &self.input[(iy * w.input.w + ix) * c + block..][..TILE_LANES],
                        ),
                        _ => dst.fill(0.0),
                    }
                }
            }
            let t = tile.as_ptr();
            for lane in (0..TILE_LANES).step_by(S::LANES) {
                let ch = block + lane;
                // SAFETY: every window lies inside the padded tile (SAME padding covers
                // `(ow − 1)·s + K ≤ padded w`, asserted at construction, and likewise in
                // height), and a last group's pixels past the row's end read at most
                // `(N − 1)·s` pixels further, inside the tile's margin (`tile_len`); only
                // the row's own pixels are stored, inside `out`'s rows `first..rows.end`.
                unsafe {
                    let b = S::load(bias.add(ch));
                    let taps = weight.add(ch);
                    for oy in self.rows.clone() {
                        let out = self.out.as_mut_ptr().add((oy - first) * ow * c + ch);
                        let mut rows = [t; K];
                        for (ky, row) in rows.iter_mut().enumerate() {
                            *row = t.add(((oy * STRIDE + ky) * pw) * TILE_LANES + lane);
                        }
                        if STRIDE == 1 {
                            tile_row::<S, K, STRIDE, GROUP>(&rows, ow, taps, c, b, out, act);
                        } else {
                            tile_row::<S, K, STRIDE, STRIDE_2_GROUP>(
                                &rows, ow, taps, c, b, out, act,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// One output row of `ow` pixels from a small map's padded tile (`rows[ky]`: kernel row `ky`
/// of pixel 0; pixels [`TILE_LANES`] floats apart), in whole groups of `N`, the last one cut
/// short: a remainder of one or two pixels on its own is a chain of K² dependent FMAs. The
/// outputs go `c` floats apart from `out`.
#[inline(always)]
unsafe fn tile_row<S: Simd, const K: usize, const STRIDE: usize, const N: usize>(
    rows: &[*const f32; K],
    ow: usize,
    taps: *const f32,
    c: usize,
    bias: S::V,
    out: *mut f32,
    act: Activation,
) {
    for ox in (0..ow).step_by(N) {
        let first = offset(rows, ox * STRIDE * TILE_LANES);
        let sums = window_sums::<S, K, STRIDE, N>(&first, TILE_LANES, taps, c, bias);
        store_pixels::<S>(&sums[..N.min(ow - ox)], out.add(ox * c), c, act);
    }
}

/// `rows`, each `by` floats further.
#[inline(always)]
unsafe fn offset<const K: usize>(rows: &[*const f32; K], by: usize) -> [*const f32; K] {
    let mut moved = *rows;
    for row in &mut moved {
        *row = row.add(by);
    }
    moved
}

/// Stores `sums` activated, the pixels `pixel_stride` floats apart from `out`.
#[inline(always)]
unsafe fn store_pixels<S: Simd>(
    sums: &[S::V],
    out: *mut f32,
    pixel_stride: usize,
    act: Activation,
) {
    for (q, &sum) in sums.iter().enumerate() {
        S::store(out.add(q * pixel_stride), activate::<S>(sum, act));
    }
}

/// The sums over the windows of `N` adjacent output pixels for one register of channels,
/// bias included: `rows[ky]` is kernel row `ky`'s first tap of pixel 0, the input's pixels
/// `pixel_stride` floats apart; `taps` is tap (0, 0)'s weights, the taps `tap_stride`
/// floats apart.
///
/// Along each kernel row's input columns every value is loaded once and multiplied into
/// every pixel whose window holds it (tap `ix − q·STRIDE`): `(N − 1)·STRIDE + K` loads for
/// `N·K` FMAs, where loading each tap's value per pixel took `N·K` (8×8 5×5 layers of 1024
/// channels ran 0.7× the time).
//
// The helpers here are functions, not closures: with closures that activated and stored the
// sums, the small-map kernel ran 2× slower (measured; most likely their SIMD code was not
// inlined into the `#[target_feature]` kernel).
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn window_sums<S: Simd, const K: usize, const STRIDE: usize, const N: usize>(
    rows: &[*const f32; K],
    pixel_stride: usize,
    taps: *const f32,
    tap_stride: usize,
    bias: S::V,
) -> [S::V; N] {
    // Kernel rows unrolled only with AVX-512 (the one 16-lane set; 32 registers), where that
    // measured faster. With AVX2's 16 registers the unrolled rows' FMAs interleave and spill
    // the accumulators, so the rows stay a loop the compiler cannot unroll; NEON (32
    // registers, not measured) keeps the loop too.
    let kernel_rows = if S::LANES >= 16 {
        K
    } else {
        std::hint::black_box(K)
    };
    let mut acc = [bias; N];
    for ky in 0..kernel_rows {
        let w: [S::V; K] = std::array::from_fn(|kx| S::load(taps.add((ky * K + kx) * tap_stride)));
        let x = rows[ky];
        for ix in 0..(N - 1) * STRIDE + K {
            let v = S::load(x.add(ix * pixel_stride));
            for q in 0..N {
                if ix >= q * STRIDE && ix - q * STRIDE < K {
                    acc[q] = S::fma(acc[q], v, w[ix - q * STRIDE]);
                }
            }
        }
    }
    acc
}

/// Where [`Depthwise::run_rows`] reads its input rows.
pub enum RowsIn<'a> {
    Tensor(&'a [f32]),
    /// `produce(iy, row)` writes input row `iy`.
    Produced(&'a mut dyn FnMut(usize, &mut [f32])),
}

/// Where [`Depthwise::run_rows`] writes its output rows.
pub enum RowsOut<'a> {
    Tensor(&'a mut [f32]),
    /// `consume(oy, row)` takes output row `oy`.
    Consumed(&'a mut dyn FnMut(usize, &[f32])),
}

/// One output row: `rows[ky]` is the input row under kernel row `ky` (the zero row above or
/// below the input).
struct RowOp<'a> {
    conv: &'a Depthwise,
    rows: [*const f32; 5],
    out: &'a mut [f32],
}

impl SimdOp for RowOp<'_> {
    /// 16 lanes where they are whole registers of channels: a cache line per load, read once
    /// per group (with 8 lanes the group's second register re-reads each line, which layers
    /// of 512 or 1024 channels evict in between: their pixels map to the same L1 sets).
    fn wide(&self) -> bool {
        self.conv.window.input.c.is_multiple_of(16)
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        match (self.conv.window.kernel, self.conv.window.stride) {
            (3, 1) => self.row::<S, 3, 1>(),
            (3, 2) => self.row::<S, 3, 2>(),
            (5, 1) => self.row::<S, 5, 1>(),
            _ => self.row::<S, 5, 2>(),
        }
    }
}

impl RowOp<'_> {
    /// The interior pixels in groups of [`GROUP`] (stride 1; 4 for stride 2), then 2 and 1
    /// for the remainder; then the edge pixels.
    #[inline(always)]
    fn row<S: Simd, const K: usize, const STRIDE: usize>(self) {
        let conv = self.conv;
        let (c, left) = (conv.window.input.c, conv.window.padding.left);
        let (first, end) = conv.interior_columns();
        let out = self.out.as_mut_ptr();
        // SAFETY: interior pixels' windows lie inside the rows (`interior_columns`), and
        // `first · STRIDE ≥ left` by its definition; outputs are below the row's width.
        unsafe {
            let corner = (first * STRIDE - left) * c;
            let rows: [*const f32; K] = std::array::from_fn(|ky| self.rows[ky].add(corner));
            let out_interior = out.add(first * c);
            let mut p = 0;
            let pixels = end - first;
            if STRIDE == 1 {
                while p + GROUP <= pixels {
                    self.group::<S, K, STRIDE, GROUP>(&rows, p, out_interior);
                    p += GROUP;
                }
            }
            while p + STRIDE_2_GROUP <= pixels {
                self.group::<S, K, STRIDE, STRIDE_2_GROUP>(&rows, p, out_interior);
                p += STRIDE_2_GROUP;
            }
            if p + 2 <= pixels {
                self.group::<S, K, STRIDE, 2>(&rows, p, out_interior);
                p += 2;
            }
            if p < pixels {
                self.group::<S, K, STRIDE, 1>(&rows, p, out_interior);
            }
            for ox in (0..first).chain(end..conv.window.output.w) {
                self.edge::<S, K, STRIDE>(ox, out.add(ox * c));
            }
        }
    }

    /// A pixel whose window crosses the left or right edge: only its taps inside the input.
    #[inline(always)]
    unsafe fn edge<S: Simd, const K: usize, const STRIDE: usize>(&self, ox: usize, out: *mut f32) {
        let conv = self.conv;
        let (c, left, width) = (
            conv.window.input.c,
            conv.window.padding.left,
            conv.window.input.w,
        );
        let origin = (ox * STRIDE) as isize - left as isize;
        let kx0 = (-origin).max(0) as usize;
        let kx1 = ((width as isize - origin).min(K as isize)).max(0) as usize;
        let (weight, bias) = (conv.weight.as_ptr(), conv.bias.as_ptr());
        let tap = |ky: usize, kx: usize, ch: usize| {
            let x = self.rows[ky].add((origin + kx as isize) as usize * c + ch);
            (x, weight.add((ky * K + kx) * c + ch))
        };
        let vector_end = c - c % S::LANES;
        let mut ch = 0;
        // One accumulator per kernel row and two registers of channels: 2·K independent FMA
        // chains (one chain was latency-bound, and on an 8-pixel row of a V4 5×5 layer half
        // the pixels are edge pixels: the layer ran at half the peers' speed).
        while ch + 2 * S::LANES <= vector_end {
            let mut acc = [[S::splat(0.0); 2]; K];
            acc[0] = [S::load(bias.add(ch)), S::load(bias.add(ch + S::LANES))];
            for (ky, a) in acc.iter_mut().enumerate() {
                for kx in kx0..kx1 {
                    let (x, w) = tap(ky, kx, ch);
                    a[0] = S::fma(a[0], S::load(x), S::load(w));
                    a[1] = S::fma(a[1], S::load(x.add(S::LANES)), S::load(w.add(S::LANES)));
                }
            }
            for half in 0..2 {
                let mut sum = acc[0][half];
                for a in &acc[1..] {
                    sum = S::add(sum, a[half]);
                }
                S::store(out.add(ch + half * S::LANES), activate::<S>(sum, conv.act));
            }
            ch += 2 * S::LANES;
        }
        while ch < vector_end {
            let mut acc = S::load(bias.add(ch));
            for ky in 0..K {
                for kx in kx0..kx1 {
                    let (x, w) = tap(ky, kx, ch);
                    acc = S::fma(acc, S::load(x), S::load(w));
                }
            }
            S::store(out.add(ch), activate::<S>(acc, conv.act));
            ch += S::LANES;
        }
        for ch in vector_end..c {
            let mut acc = *bias.add(ch);
            for ky in 0..K {
                for kx in kx0..kx1 {
                    let (x, w) = tap(ky, kx, ch);
                    acc += *x * *w;
                }
            }
            *out.add(ch) = activate_one(acc, conv.act);
        }
    }

    /// Interior pixels `p..p + N` over every channel; `rows[ky]` is kernel row `ky`'s first
    /// tap for interior pixel 0, `out` that pixel's output.
    // Index loops on purpose: constant indices keep the accumulators in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn group<S: Simd, const K: usize, const STRIDE: usize, const N: usize>(
        &self,
        rows: &[*const f32; K],
        p: usize,
        out: *mut f32,
    ) {
        let conv = self.conv;
        let c = conv.window.input.c;
        let rows = offset(rows, p * STRIDE * c);
        let out = out.add(p * c);
        let (weight, bias) = (conv.weight.as_ptr(), conv.bias.as_ptr());
        let vector_end = c - c % S::LANES;
        for ch in (0..vector_end).step_by(S::LANES) {
            let sums = window_sums::<S, K, STRIDE, N>(
                &offset(&rows, ch),
                c,
                weight.add(ch),
                c,
                S::load(bias.add(ch)),
            );
            store_pixels::<S>(&sums, out.add(ch), c, conv.act);
        }
        // Channels past the last whole register (counts the zoo does not have), in scalars.
        for ch in vector_end..c {
            for q in 0..N {
                let mut acc = *bias.add(ch);
                for ky in 0..K {
                    for kx in 0..K {
                        let x = *rows[ky].add((q * STRIDE + kx) * c + ch);
                        acc += x * *weight.add((ky * K + kx) * c + ch);
                    }
                }
                *out.add(q * c + ch) = activate_one(acc, conv.act);
            }
        }
    }
}

//! `C = act(A · B + bias) [+ residual]` with B packed once at load: the pointwise
//! convolutions (M = pixels, K = input channels, N = output channels), the stem and V4's full
//! convolutions through an implicit im2col, and the fully connected layers (M = 1).
//!
//! B is packed into panels of [`NR`] = 16 columns, each panel `K` rows of 16 contiguous
//! values (zero past N), so the micro-kernel streams one panel with unit stride. The
//! micro-kernel keeps a tile of C in registers (6 rows × 16 columns: 12 AVX2 registers or 24
//! NEON ones; 7 rows × 48 columns of three adjacent panels with AVX-512, 21 registers — 7 rows
//! divide V1–V3's pixel counts, 7²·4ⁿ; 8 rows, 24 registers, where 8 divide V4's 2ⁿ and 7
//! do not), starts it from the bias, and applies the activation and the residual before its only
//! store: C is written once, never zeroed or re-read. A gathered A (the implicit im2col) is read
//! as runs of adjacent columns, one per row of the window's taps, so within a run the kernel
//! addresses A exactly as it does a dense A.

use mobilebench_models::ir::Activation;

use crate::aligned::AlignedVec;
use crate::simd::{activate, dispatch, prefetch_into_l2, Isa, Simd, SimdOp};

/// Columns of C per micro-kernel tile (and per packed panel).
pub const NR: usize = 16;
/// Rows of C per micro-kernel tile with 8- or 4-lane registers (6 × 2 AVX2 accumulators of
/// 16 registers; 6 × 4 NEON of 32).
const MR: usize = 6;
/// Rows per tile with 16-lane registers (AVX-512: one register per row of a panel, of 32).
const MR_WIDE: usize = 7;
/// Rows per tile with 16-lane registers when 8 divide the rows and 7 do not (V4's 256- and
/// 384-pixel inputs give 2ⁿ and 9·2ⁿ pixels): no ragged last tile. Measured against 7 rows,
/// interleaved in one process on an Intel Xeon: whole V4 models 0.99× (Conv-S, Conv-M,
/// Conv-L, Hybrid-L; Hybrid-M 1.0×), a gain at the edge of the noise, bought with one arm.
const MR_EIGHT: usize = 8;
/// Panels per tile with 16-lane registers: 7 × 48, 21 accumulators. Measured against two
/// panels (14) and one (7), interleaved in one process on an Intel Xeon (two 512-bit FMA
/// units): whole models 4–6% faster than two panels and 12–22% faster than one.
const WIDE_PANELS: usize = 3;
/// Rows per tile with 16-lane registers when B is one panel (N ≤ 16: the stem and the
/// narrow projections at high resolution): 14 accumulators, where 7 leave each FMA unit
/// waiting on its own chain and load one value per FMA.
const MR_TALL: usize = 14;
/// The most rows any tile has (what `unrolled_rows!` is written out for).
const MAX_MR: usize = MR_TALL;
/// Floats per 64-byte cache line (what one prefetch brings in).
const LINE_FLOATS: usize = 16;

/// The GEMM's register tile on `isa`, rows × columns (recorded in the backend's settings as
/// `pointwise=packed-gemm-…`; the gathered convolutions use the same tile).
pub fn tile_label(isa: Isa) -> String {
    match isa {
        Isa::Avx512 => format!("{MR_WIDE}x{}", WIDE_PANELS * NR),
        _ => format!("{MR}x{NR}"),
    }
}

/// Rows per tile for `S`.
#[inline(always)]
fn mr<S: Simd>() -> usize {
    if S::LANES >= 16 {
        MR_WIDE
    } else {
        MR
    }
}
/// A block of rows of A stays in L2 while every panel of B passes over it (each panel then
/// comes from memory once per block, not once per tile): 256 KiB.
const A_BLOCK_FLOATS: usize = 64 * 1024;
/// All of A in one block when B is the larger operand and A fits here (1.5 MiB, three
/// quarters of a 2 MiB L2): V4's 12×12×2048 activations (1.2 MiB) against 4 MiB of weights.
const A_WHOLE_FLOATS: usize = 384 * 1024;
/// A packed B up to this size (16 KiB, half a typical L1) is read from L1 for every tile; the
/// layers with few input channels at high resolution (K = 16–32) have one.
const B_IN_L1_FLOATS: usize = 4 * 1024;

/// A `K × N` row-major matrix and its `N` biases, in panel order.
pub struct PackedB {
    k: usize,
    n: usize,
    /// Each panel starts on a cache line (`K · 16` floats each), and so does each 16-float row.
    panels: AlignedVec,
    bias: Vec<f32>,
}

impl PackedB {
    /// `b` is `K × N` row-major (a 1×1 conv's `[cin][cout]`, an im2col'd HWIO kernel, an FC's
    /// `[in][out]`).
    pub fn new(k: usize, n: usize, b: &[f32], bias: &[f32]) -> PackedB {
        assert_eq!(b.len(), k * n, "B is K × N");
        assert_eq!(bias.len(), n, "one bias per column");
        let count = n.div_ceil(NR);
        let mut panels = AlignedVec::zeros(count * k * NR);
        let mut packed_bias = vec![0.0; count * NR];
        for p in 0..count {
            let cols = (n - p * NR).min(NR);
            for row in 0..k {
                let src = &b[row * n + p * NR..][..cols];
                panels[(p * k + row) * NR..][..cols].copy_from_slice(src);
            }
            packed_bias[p * NR..][..cols].copy_from_slice(&bias[p * NR..][..cols]);
        }
        PackedB {
            k,
            n,
            panels,
            bias: packed_bias,
        }
    }

    /// Packs a new `K × N` matrix of the same shape in place (no allocation): attention's
    /// keys and values, which change every inference.
    pub fn repack(&mut self, b: &[f32]) {
        let (k, n) = (self.k, self.n);
        assert_eq!(b.len(), k * n, "B is K × N");
        for p in 0..n.div_ceil(NR) {
            let cols = (n - p * NR).min(NR);
            for row in 0..k {
                self.panels[(p * k + row) * NR..][..cols]
                    .copy_from_slice(&b[row * n + p * NR..][..cols]);
            }
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Panels of 16 columns.
    pub fn panel_count(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// All of B, as a GEMM reads it.
    pub fn view(&self) -> Packed<'_> {
        self.columns(0..self.panel_count())
    }

    /// Columns `16·first..16·end` (clipped to N) of B: a thread's share of a one-row product.
    pub fn columns(&self, panels: std::ops::Range<usize>) -> Packed<'_> {
        let (k, start) = (self.k, panels.start * NR);
        Packed {
            k,
            n: self.n.min(panels.end * NR).saturating_sub(start),
            panels: &self.panels[panels.start * k * NR..panels.end * k * NR],
            bias: &self.bias[start..panels.end * NR],
        }
    }
}

/// Consecutive panels of a [`PackedB`]: what a GEMM multiplies by.
#[derive(Clone, Copy)]
pub struct Packed<'a> {
    k: usize,
    n: usize,
    panels: &'a [f32],
    bias: &'a [f32],
}

/// Where row `i`, column `kk` of A is.
#[derive(Clone, Copy)]
pub enum AMatrix<'a> {
    /// Row-major: `data[i · stride + kk]` (activations, one pixel per row).
    Rows { data: &'a [f32], stride: usize },
    /// An implicit im2col, each output pixel's window read in place (the full convolutions
    /// over their padded input): row `i` starts at `data[rows[i]]`, and its K columns are the
    /// `runs` in order, run `j` the `runs[j].len` floats from `runs[j].offset` on.
    Gather {
        data: &'a [f32],
        rows: &'a [usize],
        runs: &'a [ColumnRun],
    },
}

/// Consecutive columns of A that lie next to each other in memory: in a convolution's
/// window, one row of taps (`kernel · cin` floats).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnRun {
    pub offset: usize,
    pub len: usize,
}

/// One GEMM: `m` rows of A times `b`, into C (row stride `ldc`), with an optional residual of
/// C's shape added after the activation.
pub struct Gemm<'a> {
    pub m: usize,
    pub a: AMatrix<'a>,
    pub b: Packed<'a>,
    pub act: Activation,
    pub residual: Option<&'a [f32]>,
    pub c: &'a mut [f32],
    pub ldc: usize,
}

impl Gemm<'_> {
    pub fn run(self, isa: Isa) {
        let (m, k, n) = (self.m, self.b.k, self.b.n);
        if m == 0 {
            return;
        }
        // The kernel reads and writes through raw pointers within these extents.
        assert!(self.ldc >= n);
        match self.a {
            AMatrix::Rows { data, stride } => {
                assert!(
                    stride >= k && data.len() >= (m - 1) * stride + k,
                    "A too short"
                )
            }
            AMatrix::Gather { data, rows, runs } => {
                assert!(rows.len() >= m, "one offset per row");
                assert_eq!(runs.iter().map(|r| r.len).sum::<usize>(), k, "runs make K");
                let row_max = rows[..m].iter().max().unwrap();
                let end = runs.iter().map(|r| r.offset + r.len).max().unwrap_or(0);
                assert!(row_max + end <= data.len(), "A too short");
            }
        }
        assert!(self.c.len() >= (m - 1) * self.ldc + n, "C too short");
        if let Some(r) = self.residual {
            assert!(r.len() >= (m - 1) * self.ldc + n, "residual too short");
        }
        dispatch(isa, self);
    }
}

impl SimdOp for Gemm<'_> {
    /// 16 lanes for every product, one-row ones (the FC layers and V4's head) included: there
    /// the tile spans three panels, six chains of loads from B in flight where AVX2's one-panel
    /// tile has two. Measured against AVX2 inside whole models, interleaved in one process on an
    /// Intel Xeon: V4's head and FC (about 5 MB of weights each) 0.63–0.92× the time (a repeated
    /// AVX2 baseline 0.85–1.03×), V1's FC 0.89×, V3's 0.98×. (A 1 × 16 AVX-512 tile had
    /// measured slower than AVX2's.)
    fn wide(&self) -> bool {
        true
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        match self.a {
            AMatrix::Rows { data, stride } => {
                let a = data.as_ptr();
                let whole = [ColumnRun {
                    offset: 0,
                    len: self.b.k,
                }];
                // SAFETY: rows below `m` start inside A (asserted in `run`).
                self.tiles::<S>(|i| unsafe { a.add(i * stride) }, &whole);
            }
            AMatrix::Gather { data, rows, runs } => {
                let a = data.as_ptr();
                // SAFETY: every row offset plus every run's end is inside A (asserted).
                self.tiles::<S>(|i| unsafe { a.add(rows[i]) }, runs);
            }
        }
    }
}

impl Gemm<'_> {
    /// Walks C in `MR × NR` tiles: blocks of rows of A, every panel of B over each block.
    #[inline(always)]
    fn tiles<S: Simd>(self, row: impl Fn(usize) -> *const f32, runs: &[ColumnRun]) {
        let (m, k, n) = (self.m, self.b.k, self.b.n);
        let panels = n.div_ceil(NR);
        let mr = if S::LANES >= NR && panels == 1 {
            MR_TALL
        } else if S::LANES >= NR && m % MR_WIDE != 0 && m % MR_EIGHT == 0 {
            MR_EIGHT
        } else {
            mr::<S>()
        };
        let block = if k * n.div_ceil(NR) * NR <= B_IN_L1_FLOATS {
            // All of B stays in L1: one row tile per block, so each tile of A is read once
            // and C is written a whole row at a time.
            mr
        } else if k * n > m * k && m * k <= A_WHOLE_FLOATS {
            // B outweighs A (a late layer: few pixels, wide weights, megabytes of them): all of
            // A in one block, so B streams from memory once instead of once per 256 KiB of A.
            m.div_ceil(mr) * mr
        } else {
            (A_BLOCK_FLOATS / k.max(1) / mr).max(1) * mr
        };
        let residual = self.residual.map_or(std::ptr::null(), |r| r.as_ptr());
        let c = self.c.as_mut_ptr();
        // With 16-lane registers a tile spans several panels (a register each per row): on
        // a core with two 512-bit FMA units (4-cycle latency) one panel's 7 accumulators
        // leave an FMA idle and its loads outnumber the FMAs. A gathered A (the full
        // convolutions) spans three panels too: read run by run, its rows are addressed as a
        // dense A's are. (Through a table of column offsets, one lookup per step of K, three
        // panels had run 1.4–2× slower than two, likely out of general registers.) Measured
        // against that table with two panels, interleaved in one process on an Intel Xeon
        // (four sweeps): V4's FusedIB convolutions 0.88–1.0× the time, stems 0.88–1.02× (one
        // reading 1.22×), whole models 0.98–1.04×, within this shared host's noise.
        let span = if S::LANES >= NR { WIDE_PANELS } else { 1 };
        // With one block of rows (B outweighs A: the late layers, megabytes of weights), B
        // arrives from beyond L2 once per inference, group by group of panels. Each tile
        // prefetches into L2 its share of the next group, one line per step of K, so that
        // the next group streams in under this one's arithmetic instead of stalling its first
        // tile. Measured on an Intel Xeon, interleaved in one process: V4's 8×8 layers
        // 0.83–0.95× the time, whole models 0.93–0.98× (V1–V3 too); prefetching for every
        // GEMM was no better.
        let prefetch_ahead = block >= m;
        for m0 in (0..m).step_by(block) {
            let m1 = (m0 + block).min(m);
            let mut p = 0;
            while p < panels {
                // Four panels left go as two and two: a last tile of one panel has a third
                // of the accumulators (measured at about half the speed).
                let left = panels - p;
                let width = if span == 3 && left == 4 {
                    2
                } else {
                    span.min(left)
                };
                let ahead: &[f32] = if prefetch_ahead {
                    let next = (p + width).min(panels);
                    &self.b.panels[next * k * NR..(next + span).min(panels) * k * NR]
                } else {
                    &[]
                };
                let ahead_lines = ahead.len() / LINE_FLOATS;
                let lines_per_tile = ahead_lines.div_ceil((m1 - m0).div_ceil(mr)).min(k);
                let mut tile = Tile {
                    b: self.b.panels[p * k * NR..].as_ptr(),
                    panel_stride: k * NR,
                    bias: self.b.bias[p * NR..].as_ptr(),
                    cols: (n - p * NR).min(width * NR),
                    act: self.act,
                    prefetch: ahead.as_ptr(),
                    prefetch_lines: 0,
                };
                let mut prefetched = 0;
                let mut i = m0;
                while i < m1 {
                    let rows = (m1 - i).min(mr);
                    tile.prefetch_lines = lines_per_tile.min(ahead_lines - prefetched);
                    tile.prefetch = ahead.as_ptr().wrapping_add(prefetched * LINE_FLOATS);
                    prefetched += tile.prefetch_lines;
                    let offset = i * self.ldc + p * NR;
                    // SAFETY: rows `i..i + rows` of A, C and the residual and columns
                    // `p·NR..p·NR + cols` of C lie within the extents asserted in `run`.
                    unsafe {
                        let r = if residual.is_null() {
                            residual
                        } else {
                            residual.add(offset)
                        };
                        let c = c.add(offset);
                        let a = |j: usize| row(i + j.min(rows - 1));
                        tile.compute_rows::<S>(rows, a, runs, r, c, self.ldc);
                    }
                    i += rows;
                }
                p += width;
            }
        }
    }
}

/// Runs `$body` for `$r` = 0, 1, … below `$rows` (at most [`MAX_MR`]), written out: with a
/// constant `$rows` every index into the accumulators is a constant, which is what lets the
/// compiler keep them in registers (a loop it declines to unroll leaves them in memory).
macro_rules! unrolled_rows {
    ($rows:expr, |$r:ident| $body:block) => {{
        const _: () = assert!(MAX_MR == 14, "unrolled_rows is written out for 14 rows");
        unrolled_rows!(@each $rows, $r, $body, 0 1 2 3 4 5 6 7 8 9 10 11 12 13);
    }};
    (@each $rows:expr, $r:ident, $body:block, $($i:literal)*) => {
        $(if $i < $rows {
            let $r: usize = $i;
            $body
        })*
    };
}

/// Adjacent packed panels of B (one, or up to three with AVX-512) and what the micro-kernel does with their output.
struct Tile {
    b: *const f32,
    /// Floats from one panel to the next (`K · NR`).
    panel_stride: usize,
    bias: *const f32,
    /// Valid columns in these panels (a multiple of 16 except in the last).
    cols: usize,
    act: Activation,
    /// Cache lines of B (at most K) to prefetch into L2 during the tile, one per step of K,
    /// from `prefetch` on (the one-row loop, which streams B once, prefetches none).
    prefetch: *const f32,
    prefetch_lines: usize,
}

impl Tile {
    /// Picks the micro-kernel for `rows` rows and this panel's width: registers per row are
    /// only those the valid columns need (an 8-column last panel costs one AVX2 register per
    /// row, not two).
    #[inline(always)]
    unsafe fn compute_rows<S: Simd>(
        &self,
        rows: usize,
        a: impl Fn(usize) -> *const f32,
        runs: &[ColumnRun],
        residual: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        macro_rules! with_rows {
            ($vecs:literal) => {
                with_rows!(@arms $vecs, rows, 8 7 6 5 4 3 2)
            };
            ($vecs:literal, tall) => {
                with_rows!(@arms $vecs, rows, 14 13 12 11 10 9 8 7 6 5 4 3 2)
            };
            (@arms $vecs:literal, $rows:expr, $($n:literal)*) => {
                match $rows {
                    $($n => self.compute::<S, $n, $vecs>(
                        std::array::from_fn(a),
                        runs,
                        residual,
                        c,
                        ldc,
                    ),)*
                    _ => self.compute::<S, 1, $vecs>(
                        std::array::from_fn(a),
                        runs,
                        residual,
                        c,
                        ldc,
                    ),
                }
            };
        }
        match self.cols.div_ceil(S::LANES) {
            1 if S::LANES >= NR => with_rows!(1, tall),
            1 => with_rows!(1),
            2 => with_rows!(2),
            3 => with_rows!(3),
            _ => with_rows!(4),
        }
    }

    /// `ROWS × VECS·LANES` of C. Safety: row `r` of A has run `j` of its columns at
    /// `a[r] + runs[j].offset`, `runs[j].len` of them (K in all); the panel's `cols` columns of
    /// C (and of the residual, unless null) at stride `ldc`.
    // Index loops on purpose: constant indices are what keep `acc` in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn compute<S: Simd, const ROWS: usize, const VECS: usize>(
        &self,
        a: [*const f32; ROWS],
        runs: &[ColumnRun],
        residual: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // `VECS` registers per row: up to 2 on AVX2, 3 on AVX-512 (three panels), 4 on NEON
        // and portable. Register `j` reads its panel's columns at `offset[j]` from `b`.
        let vecs = VECS.min(WIDE_PANELS * NR / S::LANES);
        let offset: [usize; VECS] =
            std::array::from_fn(|j| (j * S::LANES / NR) * self.panel_stride + (j * S::LANES) % NR);
        let mut acc = [[S::splat(0.0); VECS]; ROWS];
        unrolled_rows!(ROWS, |r| {
            for j in 0..vecs {
                acc[r][j] = S::load(self.bias.add(j * S::LANES));
            }
        });
        let mut b = self.b;
        let mut prefetch = self.prefetch;
        let mut prefetch_left = self.prefetch_lines;
        // One row (the FC layers): its chain of FMAs would wait on itself every step, so
        // even and odd steps of K go to two sets of accumulators, added at the end.
        let mut odd = [S::splat(0.0); VECS];
        for run in runs {
            let a: [*const f32; ROWS] = std::array::from_fn(|r| a[r].wrapping_add(run.offset));
            let mut kk = 0;
            if ROWS == 1 {
                while kk + 1 < run.len {
                    let (x0, x1) = (S::splat(*a[0].add(kk)), S::splat(*a[0].add(kk + 1)));
                    for j in 0..vecs {
                        acc[0][j] = S::fma(acc[0][j], x0, S::load(b.add(offset[j])));
                        odd[j] = S::fma(odd[j], x1, S::load(b.add(NR + offset[j])));
                    }
                    b = b.add(2 * NR);
                    kk += 2;
                }
            }
            for kk in kk..run.len {
                if prefetch_left > 0 {
                    prefetch_into_l2(prefetch);
                    prefetch = prefetch.wrapping_add(LINE_FLOATS);
                    prefetch_left -= 1;
                }
                let mut bv = [S::splat(0.0); VECS];
                for j in 0..vecs {
                    bv[j] = S::load(b.add(offset[j]));
                }
                unrolled_rows!(ROWS, |r| {
                    let av = S::splat(*a[r].add(kk));
                    for j in 0..vecs {
                        acc[r][j] = S::fma(acc[r][j], av, bv[j]);
                    }
                });
                b = b.add(NR);
            }
        }
        if ROWS == 1 {
            for j in 0..vecs {
                acc[0][j] = S::add(acc[0][j], odd[j]);
            }
        }
        // The activation and residual in registers, then the tile's only store.
        let has_residual = !residual.is_null();
        unrolled_rows!(ROWS, |r| {
            let (c, residual) = (c.add(r * ldc), residual.wrapping_add(r * ldc));
            for j in 0..vecs {
                acc[r][j] = activate::<S>(acc[r][j], self.act);
            }
            if self.cols == vecs * S::LANES {
                for j in 0..vecs {
                    let mut v = acc[r][j];
                    if has_residual {
                        v = S::add(v, S::load(residual.add(j * S::LANES)));
                    }
                    S::store(c.add(j * S::LANES), v);
                }
            } else {
                let mut tmp = [0.0f32; WIDE_PANELS * NR];
                for j in 0..vecs {
                    S::store(tmp.as_mut_ptr().add(j * S::LANES), acc[r][j]);
                }
                for (j, v) in tmp.iter().enumerate().take(self.cols) {
                    let res = if has_residual { *residual.add(j) } else { 0.0 };
                    *c.add(j) = v + res;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = bias[j] + (0..k).map(|x| a[i * k + x] * b[x * n + j]).sum::<f32>();
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32)
            .map(|v| (v / (1u32 << 24) as f32) - 0.5)
            .collect()
    }

    #[test]
    fn every_tile_remainder_and_isa_matches_naive() {
        // Rows cover every remainder of MR, multiples of 8 but not 7 (the 8-row tile), and
        // more than one A block; columns every remainder of NR; K includes 1 and the stem's 27.
        for isa in Isa::available() {
            for (m, k, n) in [
                (1, 1, 1),
                (7, 27, 16),
                (13, 5, 33),
                (15, 24, 40),
                (9, 7, 80),
                (1, 64, 1000),
                (1500, 9, 8),
                (64, 20, 50),
                (16, 3, 100),
            ] {
                let (a, b, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
                let residual = values(m * n, 4);
                let packed = PackedB::new(k, n, &b, &bias);
                let expected = naive(m, k, n, &a, &b, &bias);
                for act in [Activation::None, Activation::Relu6, Activation::HardSwish] {
                    for with_residual in [false, true] {
                        let mut c = vec![f32::NAN; m * n];
                        Gemm {
                            m,
                            a: AMatrix::Rows {
                                data: &a,
                                stride: k,
                            },
                            b: packed.view(),
                            act,
                            residual: with_residual.then_some(&residual[..]),
                            c: &mut c,
                            ldc: n,
                        }
                        .run(isa);
                        for (i, (got, want)) in c.iter().zip(&expected).enumerate() {
                            let want =
                                act.apply(*want) + if with_residual { residual[i] } else { 0.0 };
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * k as f32,
                                "{isa:?} {m}×{k}×{n} {act:?} residual {with_residual}: \
                                 C[{i}] = {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_gathered_in_runs_matches_the_explicit_matrix() {
        // Runs of odd and even lengths (one row's even/odd split restarts in each), rows that
        // overlap; one row, a tall tile (N ≤ 16) and three panels with a remainder.
        let runs = [
            ColumnRun { offset: 0, len: 3 },
            ColumnRun { offset: 11, len: 6 },
            ColumnRun { offset: 40, len: 1 },
        ];
        let k: usize = runs.iter().map(|r| r.len).sum();
        let data = values(400, 5);
        for isa in Isa::available() {
            for (m, n) in [(1, 40), (15, 16), (9, 50), (30, 7)] {
                let rows: Vec<usize> = (0..m).map(|i| i * 7 % 300).collect();
                let explicit: Vec<f32> = rows
                    .iter()
                    .flat_map(|&row| {
                        runs.iter()
                            .flat_map(move |r| (0..r.len).map(move |t| row + r.offset + t))
                    })
                    .map(|at| data[at])
                    .collect();
                let (b, bias) = (values(k * n, 6), values(n, 7));
                let expected = naive(m, k, n, &explicit, &b, &bias);
                let mut c = vec![f32::NAN; m * n];
                Gemm {
                    m,
                    a: AMatrix::Gather {
                        data: &data,
                        rows: &rows,
                        runs: &runs,
                    },
                    b: PackedB::new(k, n, &b, &bias).view(),
                    act: Activation::None,
                    residual: None,
                    c: &mut c,
                    ldc: n,
                }
                .run(isa);
                for (i, (got, want)) in c.iter().zip(&expected).enumerate() {
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * k as f32,
                        "{isa:?} {m}×{k}×{n}: C[{i}] = {got}, want {want}"
                    );
                }
            }
        }
    }
}

//! The core's fp32 FMA peak, measured rather than quoted: a loop of independent fused
//! multiply-adds on registers only (no memory traffic), in the instruction set the engine
//! uses. The fraction of it a model reaches says how much a faster kernel could still win.

use std::time::Instant;

use crate::simd::{dispatch, Isa, Simd, SimdOp};

/// Independent accumulator chains: more than an FMA's latency × issue width (4 × 2 on
/// current x86 cores, 4 × 4 on big ARM cores), so the loop is throughput-bound.
const CHAINS: usize = 12;

struct FmaLoop {
    iterations: u64,
    sink: *mut f32,
    /// Set to the lanes of the registers the loop ran with.
    lanes: *mut usize,
}

impl SimdOp for FmaLoop {
    // The peak of the widest registers the engine uses.
    fn wide(&self) -> bool {
        true
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        // SAFETY: `sink` points at LANES writable floats, `lanes` at a usize (the caller's).
        unsafe {
            *self.lanes = S::LANES;
            let mut acc = [S::splat(0.0); CHAINS];
            let (a, b) = (S::splat(A), S::splat(B));
            for _ in 0..self.iterations {
                for v in acc.iter_mut() {
                    *v = S::fma(*v, a, b);
                }
                // Keeps the compiler from collapsing the loop (the chains stay opaque).
                std::arch::asm!("", options(nomem, nostack, preserves_flags));
            }
            let total = acc.iter().fold(S::splat(0.0), |s, v| S::add(s, *v));
            S::store(self.sink, total);
        }
    }
}

/// Runs the FMA loop `iterations` times on `isa` and returns one lane of its result (the sum
/// of the chains: `CHAINS · iterations · A · B` when every FMA ran) and the lanes it ran with.
fn fma_loop(isa: Isa, iterations: u64) -> (f32, usize) {
    let mut sink = [0.0f32; 16];
    let mut lanes = 0;
    dispatch(
        isa,
        FmaLoop {
            iterations,
            sink: sink.as_mut_ptr(),
            lanes: &mut lanes,
        },
    );
    (sink[0], lanes)
}

/// The loop's multiplicands (`acc + A · B` per step; small, so the sums stay exact enough to
/// check).
const A: f32 = 0.999_999;
const B: f32 = 1e-7;

/// Measured peak in GFLOP/s (one FMA = 2 flops) of the calling thread's core for `isa`:
/// the best of `repeats` runs of about 20 ms each (the best, because interruptions only
/// ever slow a run down).
pub fn fma_peak_gflops(isa: Isa, repeats: usize) -> f64 {
    let iterations = 2_000_000u64;
    (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            let (_, lanes) = std::hint::black_box(fma_loop(isa, iterations));
            let flops = (iterations * CHAINS as u64 * lanes as u64 * 2) as f64;
            flops / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set's loop runs all its FMAs (none folded away by the compiler), so
    /// the flops the peak divides by were done. (Which path is faster is a benchmark's
    /// question, not a test's: on a busy machine a timed comparison fails at random.)
    #[test]
    fn the_peak_loop_runs_every_fma_on_every_isa() {
        let iterations = 10_000u64;
        let expected = CHAINS as f64 * iterations as f64 * A as f64 * B as f64;
        for isa in Isa::available() {
            let got = fma_loop(isa, iterations).0 as f64;
            assert!(
                (got - expected).abs() <= 1e-3 * expected,
                "{isa:?}: {got}, want {expected}"
            );
            let peak = fma_peak_gflops(isa, 1);
            assert!(peak.is_finite() && peak > 0.0, "{isa:?}: peak {peak}");
        }
    }
}

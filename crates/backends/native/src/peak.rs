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
}

impl SimdOp for FmaLoop {
    // The peak of the widest registers the engine uses.
    fn wide(&self) -> bool {
        true
    }
    #[inline(always)]
    fn run<S: Simd>(self) {
        // SAFETY: `sink` points at LANES writable floats (the caller's buffer).
        unsafe {
            let mut acc = [S::splat(0.0); CHAINS];
            let (a, b) = (S::splat(0.999_999), S::splat(1e-7));
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

/// Measured peak in GFLOP/s (one FMA = 2 flops) of the calling thread's core for `isa`:
/// the best of `repeats` runs of about 20 ms each (the best, because interruptions only
/// ever slow a run down).
pub fn fma_peak_gflops(isa: Isa, repeats: usize) -> f64 {
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2Fma => 8,
        Isa::Neon | Isa::Portable => 4,
    };
    let mut sink = [0.0f32; 16];
    let iterations = 2_000_000u64;
    let flops = (iterations * CHAINS as u64 * lanes as u64 * 2) as f64;
    (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            dispatch(
                isa,
                FmaLoop {
                    iterations,
                    sink: sink.as_mut_ptr(),
                },
            );
            flops / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_positive_and_the_simd_path_beats_portable() {
        let best = Isa::detect();
        let peak = fma_peak_gflops(best, 3);
        assert!(peak.is_finite() && peak > 0.1, "peak {peak}");
        // Only where the code runs natively: under qemu-user (how CI runs the aarch64 build)
        // both paths are emulated and their speeds mean nothing.
        if cfg!(target_arch = "x86_64") && best != Isa::Portable {
            // The portable path has no FMA instruction: it cannot reach the SIMD peak. Both
            // run in this test, back to back, so a busy machine slows both.
            let portable = fma_peak_gflops(Isa::Portable, 3);
            assert!(peak > portable, "{best:?} {peak} vs portable {portable}");
        }
    }
}

//! The engine's worker threads: created once at load (each pinned to its core when the
//! engine is given a core set), they run every step's parts beside the calling thread, which
//! is worker 0. A step is one [`Pool::run`]: publish the job, wake whoever sleeps, run part 0,
//! wait for the others — the barrier between steps. Between jobs a worker spins a while
//! (steps follow each other within microseconds) and then parks, so an idle engine costs
//! nothing. No allocation per job.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins of a waiting worker before it parks: about 50–100 µs, longer than the gap between
/// two steps and shorter than a pause a user would notice in `top`.
const SPINS: u32 = 20_000;

/// A part of a job: `job(part)` for parts `1..threads` on the workers.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; a worker runs a job when it sees a generation it has not run.
    generation: AtomicU64,
    /// Workers still running the current job.
    remaining: AtomicUsize,
    stop: AtomicBool,
    /// Written by [`Pool::run`] before it bumps `generation`, read by workers after.
    job: UnsafeCell<Option<Job>>,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only while no worker runs (between jobs, before the generation
// bump that publishes it) and read only after that bump; the closure it points to is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` parts per job: the caller and `threads - 1` workers. With `cores`, worker
    /// `i` is pinned to `cores[i]` (the caller pins itself; the harness does).
    pub fn new(threads: usize, cores: Option<&[usize]>) -> Pool {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|part| {
                let shared = Arc::clone(&shared);
                let core = cores.and_then(|c| c.get(part)).copied();
                std::thread::Builder::new()
                    .name(format!("native-{part}"))
                    .spawn(move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core_affinity::CoreId { id: core });
                        }
                        work(&shared, part)
                    })
                    .expect("the engine's worker threads start")
            })
            .collect();
        Pool { shared, workers }
    }

    /// Parts per job.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `job(part)` for every part, part 0 on the calling thread; returns when all
    /// have finished.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            return job(0);
        }
        let s = &*self.shared;
        // SAFETY: no worker runs now (the last job's `remaining` reached 0), and this call
        // does not return before every worker has finished with `job`, so the erased
        // lifetime never outlives the borrow.
        unsafe {
            *s.job.get() =
                Some(std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(job));
        }
        s.remaining.store(self.workers.len(), SeqCst);
        s.generation.fetch_add(1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        job(0);
        // Spin, then yield: with more threads than free cores (tests, a busy machine) a
        // worker may need this core to finish.
        let mut spins = 0;
        while s.remaining.load(SeqCst) != 0 {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn work(s: &Shared, part: usize) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        seen = loop {
            let generation = s.generation.load(SeqCst);
            if generation != seen {
                break generation;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            while s.generation.load(SeqCst) == seen {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
            spins = 0;
        };
        if s.stop.load(SeqCst) {
            return;
        }
        // SAFETY: published before the generation this worker has just seen.
        let job = unsafe { (*s.job.get()).expect("a job is published with its generation") };
        // SAFETY: `Pool::run` keeps the closure alive until `remaining` reaches 0.
        unsafe { (*job)(part) };
        s.remaining.fetch_sub(1, SeqCst);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, SeqCst);
        s.generation.fetch_add(1, SeqCst);
        {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Part `part` of `parts` of `0..len`, in whole multiples of `align` (the last takes the rest).
pub fn band(len: usize, part: usize, parts: usize, align: usize) -> std::ops::Range<usize> {
    let align = align.max(1);
    let per = len.div_ceil(parts.max(1)).div_ceil(align) * align;
    let start = (part * per).min(len);
    start..((part + 1) * per).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_once_per_job_and_run_waits_for_all() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads, None);
            assert_eq!(pool.threads(), threads);
            let counts: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            for job in 0..2000 {
                if job == 1000 {
                    // Long enough for every worker to park: the next job must wake them.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                pool.run(&|part| {
                    counts[part].fetch_add(1, SeqCst);
                });
                for c in &counts {
                    assert_eq!(c.load(SeqCst), job + 1, "{threads} threads, job {job}");
                }
            }
        }
    }

    #[test]
    fn bands_cover_the_range_once_in_aligned_parts() {
        for (len, parts, align) in [(49, 2, 7), (12544, 3, 14), (5, 4, 1), (0, 2, 7), (7, 2, 7)] {
            let bands: Vec<_> = (0..parts).map(|p| band(len, p, parts, align)).collect();
            assert_eq!(bands.iter().map(|b| b.len()).sum::<usize>(), len);
            for w in bands.windows(2) {
                assert_eq!(w[0].end, w[1].start.max(w[0].end));
            }
            for b in &bands[..parts - 1] {
                assert!(b.start.is_multiple_of(align) || b.is_empty());
            }
        }
        assert_eq!(band(49, 0, 2, 7), 0..28);
        assert_eq!(band(49, 1, 2, 7), 28..49);
    }
}

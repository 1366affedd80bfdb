//! The worker: one process per (model, backend) pair, the same binary re-executed as
//! `bench worker --spec JSON`. It pins itself, loads, times and reports JSON lines on stdout,
//! so a runtime that crashes takes down this process only.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mobilebench_backend::{BackendSettings, FileFormat, ModelSource, OpTiming, Timing, Workload};
use mobilebench_models::{synthetic_for_shape, BnMode, Model, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::affinity;
use crate::probe::{self, pin_current_thread, CoreState, Memory};
use crate::registry;
use crate::timing;

/// `--profile-ops` times at most this many extra runs per pair and round.
pub const MAX_PROFILE_RUNS: u32 = 200;

/// A pair's `--profile-ops` result for one round: the step times, with the core's FMA peak
/// and the instruction set it was measured in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub steps: Vec<OpTiming>,
    pub core_peak_gflops: f64,
    pub isa: String,
}

/// What the worker loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceSpec {
    /// A zoo model, built here from its name and the weight seed.
    Zoo { name: String },
    /// A model file (a zoo model exported by the parent, or the user's).
    File { path: PathBuf, format: FileFormat },
}

/// What the parent asks one worker to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub backend: String,
    pub source: SourceSpec,
    /// The core the measuring thread runs on: the first of `cores`.
    pub core: Option<usize>,
    /// The cores the whole process is confined to, fastest first (`workload.threads` of
    /// them); empty: `core` alone, or nowhere in particular without it.
    #[serde(default)]
    pub cores: Vec<usize>,
    pub warmup: u32,
    pub runs: u32,
    pub weight_seed: u64,
    pub input_seed: u64,
    /// What each iteration does, on how many images.
    pub workload: Workload,
    /// The batch-norm form zoo models are built in.
    pub bn: BnMode,
    /// What a sample covers.
    #[serde(default)]
    pub timing: Timing,
    /// Time every step after the timed loop (`--profile-ops`).
    #[serde(default)]
    pub profile_ops: bool,
    /// Where to write the last output (raw little-endian f32), for the agreement check.
    pub output_path: PathBuf,
    /// After everything else, run this many more inputs (seeds input_seed + 1 ...) and write
    /// their outputs, one after another, to [`agreement_path`] (int8 rows: the comparison
    /// with the float model).
    #[serde(default)]
    pub agreement_inputs: u32,
}

/// Where a worker writes the outputs of its agreement inputs.
pub fn agreement_path(output_path: &std::path::Path) -> PathBuf {
    output_path.with_extension("agreement.f32")
}

/// The worker → parent protocol: one JSON object per stdout line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The core asked for (whether pinning held is in `Finished`, read after the loop).
    Pinned {
        core: Option<usize>,
        before: CoreState,
    },
    Loaded {
        init_ns: u64,
        first_inference_ns: u64,
        input_shape: Vec<usize>,
        settings: BackendSettings,
    },
    /// Runs done so far, warm-up and timed together.
    Progress {
        done: u32,
    },
    Finished {
        samples_ns: Vec<u64>,
        /// GPU time of each timed run, when the session reports it.
        #[serde(default)]
        gpu_ns: Option<Vec<u64>>,
        /// The worker's own memory before loading, after loading and after the loop
        /// (`None` without /proc).
        memory: Option<[Memory; 3]>,
        /// Pinning held: after the loop the measuring thread's affinity was still its core,
        /// and every thread of the process was allowed, and last ran, only on the core set.
        pin_verified: bool,
        /// Threads that burned CPU during the timed loop (`None` without /proc).
        #[serde(default)]
        busy_threads: Option<u32>,
        after: CoreState,
        /// What the worker could not do as asked (keep its helper thread off the core, read
        /// its memory), for `probe_notes`.
        notes: Vec<String>,
    },
    /// `--profile-ops`: the median time of every step of the engine's plan, after the timed
    /// loop, and the core's measured FMA peak.
    Profiled(Profile),
    Failed {
        message: String,
    },
}

/// What `bench worker --probe BACKEND` prints: the backend's availability, checked in a
/// process of its own.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProbeAnswer {
    pub available: bool,
    pub text: String,
}

impl From<ProbeAnswer> for mobilebench_backend::Availability {
    fn from(a: ProbeAnswer) -> Self {
        if a.available {
            mobilebench_backend::Availability::Available { detail: a.text }
        } else {
            mobilebench_backend::Availability::Unavailable { reason: a.text }
        }
    }
}

pub fn probe(backend: &str) -> ExitCode {
    let answer = match registry::find(backend).map(|b| b.availability()) {
        Ok(mobilebench_backend::Availability::Available { detail }) => ProbeAnswer {
            available: true,
            text: detail,
        },
        Ok(mobilebench_backend::Availability::Unavailable { reason }) => ProbeAnswer {
            available: false,
            text: reason,
        },
        Err(e) => ProbeAnswer {
            available: false,
            text: format!("{e:#}"),
        },
    };
    println!("{}", serde_json::to_string(&answer).expect("serialises"));
    ExitCode::SUCCESS
}

fn emit(event: &Event) {
    let line = serde_json::to_string(event).expect("events serialise");
    let mut out = std::io::stdout().lock();
    // The parent reading our stdout is gone if this fails; nothing useful is left to do.
    let _ = writeln!(out, "{line}");
}

pub fn main(spec: &str) -> ExitCode {
    // Die with the parent: an orphaned worker would keep a core busy and skew later runs.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let result = serde_json::from_str::<WorkerSpec>(spec)
        .context("bad worker spec")
        .and_then(|spec| measure(&spec));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            emit(&Event::Failed {
                message: format!("{e:#}"),
            });
            ExitCode::FAILURE
        }
    }
}

/// Reports progress every 100 ms from a thread of its own, kept off the measured cores; the
/// timed loop only stores a counter.
struct ProgressReporter {
    done: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Its thread id: the one thread of the worker allowed off the core set.
    tid: i32,
}

impl ProgressReporter {
    /// Starts the thread; `Err` says why it could not be kept off `cores`.
    fn start(cores: Vec<usize>, allowed: Vec<usize>) -> (Self, Result<(), String>) {
        let done = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let _ = tx.send((tid, probe::keep_off_cores(&cores, &allowed)));
            let mut last = 0;
            while !s.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(100));
                let now = d.load(Ordering::Relaxed);
                if now != last {
                    emit(&Event::Progress { done: now });
                    last = now;
                }
            }
        });
        let (tid, kept_off) = rx
            .recv()
            .unwrap_or_else(|_| (0, Err("the progress thread died".into())));
        let reporter = ProgressReporter {
            done,
            stop,
            thread: Some(thread),
            tid,
        };
        (reporter, kept_off)
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn measure(spec: &WorkerSpec) -> Result<()> {
    let backend = registry::find(&spec.backend)?;
    if let Err(why) = backend.supports(&spec.workload) {
        bail!("{why}");
    }
    let zoo_model = match &spec.source {
        SourceSpec::Zoo { name } => Some(
            Model::from_config(&name.parse::<ModelConfig>()?, spec.weight_seed).with_bn(spec.bn)?,
        ),
        SourceSpec::File { .. } => None,
    };
    let source = match (&spec.source, &zoo_model) {
        (SourceSpec::File { path, format }, _) => ModelSource::File {
            path,
            format: *format,
        },
        (SourceSpec::Zoo { .. }, Some(model)) => ModelSource::Zoo(model),
        (SourceSpec::Zoo { .. }, None) => unreachable!("built above"),
    };

    // Confine the whole process before any runtime starts, so every thread it creates
    // inherits the core set.
    let allowed = probe::current_affinity().unwrap_or_default();
    let core = spec.core;
    let cores = match (&spec.cores[..], core) {
        ([], Some(c)) => vec![c],
        (set, _) => set.to_vec(),
    };
    let mut notes = Vec::new();
    let pinned = !cores.is_empty()
        && match affinity::confine_process(&cores) {
            Ok(()) => true,
            Err(why) => {
                notes.push(why);
                false
            }
        };
    let state_core = core.unwrap_or(0);
    emit(&Event::Pinned {
        core,
        before: CoreState::probe(state_core),
    });
    let (progress, kept_off) = ProgressReporter::start(cores.clone(), allowed);
    if let Err(why) = kept_off {
        notes.push(format!("progress thread: {why}"));
    }
    // With several cores, the measuring thread takes the first while the runtime loads, so
    // every engine's calling thread sits on the same core; the threads the runtime starts
    // are given the whole set once it has run (below).
    let several = pinned && cores.len() > 1;
    if let (true, Some(c)) = (several, core) {
        if !pin_current_thread(c) {
            notes.push(format!("cannot pin the measuring thread to core {c}"));
        }
    }

    // Memory the worker freed before loading (the unfolded model `with_bn` replaced) is
    // handed back to the kernel first: otherwise the allocator reuses it for the backend's
    // allocations, which then add nothing to VmRSS and model_mem_mb undercounts them.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; no live allocation is touched.
    unsafe {
        libc::malloc_trim(0);
    }
    let memory_before = Memory::read();
    let start = Instant::now();
    let mut session = backend.load(&source, &spec.workload)?;
    let init = start.elapsed();
    let memory_loaded = Memory::read();
    let input_shape = session.input_shape();
    if let Some(model) = &zoo_model {
        let mut expected = model.graph.input.nhwc().to_vec();
        expected[0] = spec.workload.batch;
        if input_shape != expected {
            bail!(
                "{} expects input {input_shape:?}, the model is {expected:?}",
                spec.backend
            );
        }
    }
    let input = synthetic_for_shape(&input_shape, spec.input_seed);
    let mut output = vec![0f32; session.output_len()];
    // The timing contract: the input is placed once, before the first inference.
    session.set_input(&input)?;
    let start = Instant::now();
    timing::iteration(session.as_mut(), spec.timing, &input, &mut output)?;
    let first = start.elapsed();
    emit(&Event::Loaded {
        init_ns: init.as_nanos() as u64,
        first_inference_ns: first.as_nanos() as u64,
        input_shape,
        settings: session.settings(),
    });

    // After the first inference (libtorch's OpenMP threads start then), every thread the
    // runtime started may use the whole set.
    if several {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        if let Err(why) = affinity::confine_threads(&cores, &[me, progress.tid]) {
            notes.push(why);
        }
    }
    let threads_before = affinity::threads();
    let measured = timing::timed_loop(
        session.as_mut(),
        spec.timing,
        &input,
        &mut output,
        spec.warmup,
        spec.runs,
        &progress.done,
        &mut Instant::now,
    )?;
    let threads_after = affinity::threads();
    let progress_tids = [progress.tid];
    drop(progress);
    // Pinning is verified, not assumed: the measuring thread's mask is still its core, and
    // every thread of the process (the runtime's included) stayed on the set.
    let busy_threads = (!threads_after.is_empty())
        .then(|| affinity::busy_threads(&threads_before, &threads_after));
    let strays = if pinned {
        let mut runtime_threads = threads_after;
        runtime_threads.retain(|tid, _| !progress_tids.contains(tid));
        affinity::outside(&runtime_threads, &threads_before, &cores)
    } else {
        Vec::new()
    };
    let pin_verified =
        pinned && probe::current_affinity() == core.map(|c| vec![c]) && strays.is_empty();
    notes.extend(strays.into_iter().take(3));
    let after = CoreState::probe(state_core);
    // Read after the loop, outside the timed region.
    session.read_output(&mut output)?;
    let memory_end = Memory::read();
    let memory = match (memory_before, memory_loaded, memory_end) {
        (Some(a), Some(b), Some(c)) => Some([a, b, c]),
        _ => {
            notes.push("no /proc/self/status: memory unknown".into());
            None
        }
    };
    if spec.profile_ops {
        // After the timed loop and the output read: the samples are already taken.
        match session.profile_ops(spec.runs.min(MAX_PROFILE_RUNS)) {
            Some(Ok(steps)) => {
                // The instruction set the native engine ran (MOBILEBENCH_NATIVE_ISA may lower it).
                let isa = mobilebench_native::Isa::chosen()
                    .unwrap_or_else(|_| mobilebench_native::Isa::detect());
                emit(&Event::Profiled(Profile {
                    steps,
                    core_peak_gflops: mobilebench_native::fma_peak_gflops(isa, 5),
                    isa: isa.name().into(),
                }));
            }
            Some(Err(e)) => notes.push(format!("--profile-ops: {e}")),
            None => {}
        }
    }
    let bytes: Vec<u8> = output.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&spec.output_path, bytes)
        .with_context(|| format!("cannot write {}", spec.output_path.display()))?;
    if spec.agreement_inputs > 0 {
        // After the timed loop and the profile: these runs are never timed.
        let mut all = Vec::with_capacity(output.len() * spec.agreement_inputs as usize);
        for i in 1..=spec.agreement_inputs as u64 {
            let input = synthetic_for_shape(&session.input_shape(), spec.input_seed + i);
            session.run(&input, &mut output)?;
            all.extend(output.iter().flat_map(|v| v.to_le_bytes()));
        }
        let path = agreement_path(&spec.output_path);
        std::fs::write(&path, all).with_context(|| format!("cannot write {}", path.display()))?;
    }
    emit(&Event::Finished {
        samples_ns: measured.samples_ns,
        gpu_ns: measured.gpu_ns,
        memory,
        pin_verified,
        busy_threads,
        after,
        notes,
    });
    Ok(())
}

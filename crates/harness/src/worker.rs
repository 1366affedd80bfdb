//! The worker: one process per (model, backend) pair, the same binary re-executed as
//! `bench worker --spec JSON`. It pins itself, loads, times and reports JSON lines on stdout,
//! so a runtime that crashes takes down this process only.

use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mobilebench_backend::{BackendSettings, ModelSource};
use mobilebench_models::{reference, synthetic_input, Model, ModelConfig};
use mobilebench_native::Engine;
use serde::{Deserialize, Serialize};

use crate::probe::{peak_rss_kib, pin_current_thread, CoreState};
use crate::registry;

/// What the parent asks one worker to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub model: String,
    pub backend: String,
    pub core: Option<usize>,
    pub warmup: u32,
    pub runs: u32,
    pub weight_seed: u64,
    pub input_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub reference: String,
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
}

/// The worker → parent protocol: one JSON object per stdout line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Pinned {
        core: Option<usize>,
        pinned: bool,
        before: CoreState,
    },
    Loaded {
        init_ns: u64,
        first_inference_ns: u64,
        input_shape: [usize; 4],
        settings: BackendSettings,
    },
    /// Runs done so far, warm-up and timed together.
    Progress {
        done: u32,
    },
    Finished {
        samples_ns: Vec<u64>,
        peak_rss_kib: Option<u64>,
        agreement: Option<Agreement>,
        after: CoreState,
    },
    Failed {
        message: String,
    },
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

/// Reports progress every 100 ms from a thread started before pinning (so it does not share
/// the measured core); the timed loop only stores a counter.
struct ProgressReporter {
    done: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressReporter {
    fn start() -> Self {
        let done = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
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
        ProgressReporter {
            done,
            stop,
            thread: Some(thread),
        }
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
    let config: ModelConfig = spec.model.parse()?;
    let model = Model::from_config(&config, spec.weight_seed);
    let input = synthetic_input(model.graph.input, spec.input_seed);
    let progress = ProgressReporter::start();

    let core = spec.core;
    let pinned = core.is_some_and(pin_current_thread);
    let state_core = core.unwrap_or(0);
    emit(&Event::Pinned {
        core,
        pinned,
        before: CoreState::probe(state_core),
    });

    let source = ModelSource::Zoo(&model);
    let start = Instant::now();
    let mut session = backend.load(&source)?;
    let init = start.elapsed();
    let expected = model.graph.input.nhwc();
    if session.input_shape() != expected {
        bail!(
            "{} expects input {:?}, the model is {:?}",
            spec.backend,
            session.input_shape(),
            expected
        );
    }
    let mut output = vec![0f32; session.output_len()];
    let start = Instant::now();
    session.run(&input, &mut output)?;
    let first = start.elapsed();
    emit(&Event::Loaded {
        init_ns: init.as_nanos() as u64,
        first_inference_ns: first.as_nanos() as u64,
        input_shape: expected,
        settings: session.settings(),
    });

    for i in 0..spec.warmup {
        session.run(&input, &mut output)?;
        progress.done.store(i + 1, Ordering::Relaxed);
    }
    // One clock reading per iteration: each sample is the time between consecutive readings.
    let mut samples = vec![0u64; spec.runs as usize];
    let mut previous = Instant::now();
    for (i, sample) in samples.iter_mut().enumerate() {
        session.run(&input, &mut output)?;
        let now = Instant::now();
        *sample = (now - previous).as_nanos() as u64;
        previous = now;
        progress
            .done
            .store(spec.warmup + i as u32 + 1, Ordering::Relaxed);
    }
    black_box(&output);
    drop(progress);
    let after = CoreState::probe(state_core);
    let agreement =
        (!backend.is_test_only()).then(|| agreement(&spec.backend, &model, &input, &output));
    emit(&Event::Finished {
        samples_ns: samples,
        peak_rss_kib: peak_rss_kib(),
        agreement,
        after,
    });
    Ok(())
}

/// Compares a backend's output with the reference on the same weights and input: the native
/// engine for every other backend, and the naive reference evaluator for native itself.
fn agreement(backend: &str, model: &Model, input: &[f32], output: &[f32]) -> Agreement {
    let (reference, expected) = if backend == "native" {
        (
            "naive-reference",
            reference::evaluate(&model.graph, &model.weights, input),
        )
    } else {
        let mut engine = Engine::new(model);
        let mut out = vec![0f32; engine.output_len()];
        engine.run(input, &mut out);
        ("native", out)
    };
    let scale = expected.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let max_abs = output
        .iter()
        .zip(&expected)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    Agreement {
        reference: reference.to_string(),
        max_abs_diff: max_abs,
        max_rel_diff: if scale > 0.0 {
            max_abs / scale
        } else {
            max_abs
        },
    }
}

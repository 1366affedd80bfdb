//! The parent side of `bench run`: plans the (model, backend) pairs, runs one worker process
//! per pair, turns its events into a summary row and samples, and appends them to the run
//! directory before starting the next pair.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mobilebench_backend::{Availability, Backend, SourceKind};
use mobilebench_models::{count, ModelConfig};
use mobilebench_results::{self as results, RunManifest, RunWriter, SampleRow, Status, SummaryRow};

use crate::probe::{self, CoreState, Machine};
use crate::registry;
use crate::stats;
use crate::worker::{Event, WorkerSpec};

/// Outputs agreeing within this relative difference (max |a − b| / max |reference|) are
/// "the same result". Measured: native against the naive reference differs by at most
/// 1.3e-5 on whole models (f32 summation order and BN folding; see the native engine's
/// tests), so 1e-4 leaves ~8× margin while any real error (wrong weights, layout, padding)
/// is of order 1e-1.
pub const AGREEMENT_TOLERANCE: f64 = 1e-4;
/// A frequency change of more than this fraction during a pair flags it.
const FREQ_CHANGE: f64 = 0.05;
/// A temperature change of more than this (°C) during a pair flags it.
const TEMP_CHANGE_C: f64 = 5.0;

/// Everything one run needs beyond the manifest.
pub struct RunContext {
    pub dir: PathBuf,
    pub manifest: RunManifest,
}

/// Creates `out/<device>/<UTC timestamp>/` with its manifest.
pub fn create_run_dir(out: &Path, manifest: &RunManifest) -> Result<PathBuf> {
    let stamp = manifest.created_at.replace([':', '-'], "");
    let base = out.join(&manifest.device).join(&stamp);
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    results::write_manifest(&dir, manifest)?;
    Ok(dir)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Runs every pair of the manifest not already measured in `ctx.dir`.
pub fn run(ctx: &RunContext) -> Result<()> {
    let m = &ctx.manifest;
    let backends = registry::select(&m.backends)?;
    let configs: Vec<ModelConfig> = m
        .models
        .iter()
        .map(|name| name.parse::<ModelConfig>())
        .collect::<Result<_, _>>()?;
    let done: HashSet<(String, String)> = match results::read_run(&ctx.dir) {
        Ok(run) => run
            .summary
            .iter()
            .filter(|r| r.is_ok())
            .map(|r| (r.model.clone(), r.backend.clone()))
            .collect(),
        Err(results::ResultsError::NotARun(_)) => HashSet::new(),
        Err(e) => return Err(e.into()),
    };
    let machine = Machine::probe();
    let availability: Vec<Availability> = backends.iter().map(|b| b.availability()).collect();
    let mut writer = RunWriter::open(&ctx.dir)?;
    let total = configs.len() * backends.len();
    let mut index = 0;
    for config in &configs {
        for (backend, available) in backends.iter().zip(&availability) {
            index += 1;
            let name = config.name();
            let label = format!("[{index}/{total}] {name} × {}", backend.name());
            if done.contains(&(name.clone(), backend.name().to_string())) {
                eprintln!("{label}: already measured in this run directory, skipped");
                continue;
            }
            let (row, samples) =
                measure_pair(ctx, &machine, config, backend.as_ref(), available, &label);
            writer
                .append_pair(&row, &samples)
                .with_context(|| format!("cannot record {label}"))?;
            eprintln!("{label}: {}", one_line(&row));
        }
    }
    Ok(())
}

fn one_line(row: &SummaryRow) -> String {
    match (row.status, row.p50_ms) {
        (Some(Status::Ok), Some(p50)) => {
            let flags = if row.flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", row.flags)
            };
            format!(
                "median {} ms (cv {:.1}%){flags}",
                mobilebench_reports::format_ms(p50),
                100.0 * row.cv.unwrap_or(0.0)
            )
        }
        (status, _) => format!(
            "{}: {}",
            status.map_or("?".into(), |s| format!("{s:?}").to_lowercase()),
            row.message
        ),
    }
}

fn base_row(
    ctx: &RunContext,
    machine: &Machine,
    config: &ModelConfig,
    backend: &dyn Backend,
) -> SummaryRow {
    let counts = count(&config.graph());
    SummaryRow {
        device: ctx.manifest.device.clone(),
        model: config.name(),
        backend: backend.name().to_string(),
        started_at: now_rfc3339(),
        source: "zoo".into(),
        input_shape: format!("1x{0}x{0}x3", config.resolution),
        macs: Some(counts.macs),
        params: Some(counts.params),
        warmup: ctx.manifest.warmup,
        runs: ctx.manifest.runs,
        core: ctx.manifest.core,
        cpu_brand: machine.cpu_brand.clone(),
        cpu_cores: Some(machine.cpu_cores),
        os: machine.os.clone(),
        kernel: machine.kernel.clone(),
        load_avg_1m: Some(probe::load_average_1m()),
        harness_commit: probe::COMMIT.into(),
        build_profile: probe::PROFILE.into(),
        governor: "unavailable".into(),
        ..Default::default()
    }
}

fn measure_pair(
    ctx: &RunContext,
    machine: &Machine,
    config: &ModelConfig,
    backend: &dyn Backend,
    availability: &Availability,
    label: &str,
) -> (SummaryRow, Vec<SampleRow>) {
    let mut row = base_row(ctx, machine, config, backend);
    if let Availability::Unavailable { reason } = availability {
        row.status = Some(Status::Unavailable);
        row.message = reason.clone();
        return (row, Vec::new());
    }
    if !backend.accepts(SourceKind::Zoo) {
        row.status = Some(Status::Unavailable);
        row.message = format!("{} does not take zoo models", backend.name());
        return (row, Vec::new());
    }
    let spec = WorkerSpec {
        model: config.name(),
        backend: backend.name().to_string(),
        core: ctx.manifest.core,
        warmup: ctx.manifest.warmup,
        runs: ctx.manifest.runs,
        weight_seed: ctx.manifest.weight_seed,
        input_seed: ctx.manifest.input_seed,
    };
    match run_worker(&spec, label) {
        Ok(outcome) => {
            let samples = fill_row(&mut row, &outcome, ctx.manifest.cv_threshold);
            (row, samples)
        }
        Err(e) => {
            row.status = Some(Status::Failed);
            row.message = format!("{e:#}");
            (row, Vec::new())
        }
    }
}

/// What came back from one worker.
struct Outcome {
    events: Vec<Event>,
    status: ExitStatus,
    stderr: String,
}

fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} runs, ETA {eta}")
            .expect("valid template"),
    );
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn run_worker(spec: &WorkerSpec, label: &str) -> Result<Outcome> {
    let exe =
        std::env::current_exe().context("cannot find the bench executable to start a worker")?;
    let mut child = Command::new(&exe)
        .arg("worker")
        .arg("--spec")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start worker {}", exe.display()))?;
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let bar = progress_bar(u64::from(spec.warmup + spec.runs), label);
    let mut events = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        // Runtimes may print to stdout too: only our JSON events count.
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        match &event {
            Event::Progress { done } => bar.set_position(u64::from(*done)),
            Event::Finished { .. } => bar.set_position(u64::from(spec.warmup + spec.runs)),
            _ => {}
        }
        if !matches!(event, Event::Progress { .. }) {
            events.push(event);
        }
    }
    let status = child.wait().context("lost the worker process")?;
    bar.finish_and_clear();
    let stderr = stderr_thread.join().unwrap_or_default();
    Ok(Outcome {
        events,
        status,
        stderr,
    })
}

/// Last non-empty lines of a worker's stderr, for a crash message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Rounds milliseconds to whole nanoseconds (the clock's unit) so the CSV carries no float
/// noise such as 4.627655270000002.
fn to_ns(ms: f64) -> f64 {
    (ms * 1e6).round() / 1e6
}

/// Fills the row from the worker's events; returns the samples to record.
fn fill_row(row: &mut SummaryRow, outcome: &Outcome, cv_threshold: f64) -> Vec<SampleRow> {
    let mut flags: Vec<&str> = Vec::new();
    let mut before = CoreState::default();
    let mut samples = Vec::new();
    for event in &outcome.events {
        match event {
            Event::Pinned {
                core,
                pinned,
                before: b,
            } => {
                row.core = *core;
                row.pinned = *pinned;
                before = b.clone();
                row.governor = b.governor.clone().unwrap_or_else(|| "unavailable".into());
                row.freq_before_mhz = b.freq_mhz;
                row.freq_max_mhz = b.max_freq_mhz;
                row.temp_before_c = b.temp_c;
                row.probe_notes = b.notes.join("; ");
            }
            Event::Loaded {
                init_ns,
                first_inference_ns,
                input_shape,
                settings,
            } => {
                row.init_ms = Some(*init_ns as f64 / 1e6);
                row.first_inference_ms = Some(*first_inference_ns as f64 / 1e6);
                row.input_shape = input_shape.map(|d| d.to_string()).join("x");
                row.library_version = settings.library_version.clone();
                row.threads = Some(settings.threads);
                row.precision = settings.precision.clone();
                row.adapter = settings.adapter.clone();
                row.settings = settings.settings.clone();
            }
            Event::Finished {
                samples_ns,
                peak_rss_kib,
                agreement,
                after,
            } => {
                row.peak_rss_mb = peak_rss_kib.map(|k| k as f64 / 1024.0);
                row.freq_after_mhz = after.freq_mhz;
                row.temp_after_c = after.temp_c;
                match agreement {
                    Some(a) => {
                        row.reference = a.reference.clone();
                        row.max_abs_diff = Some(a.max_abs_diff);
                        row.max_rel_diff = Some(a.max_rel_diff);
                        if a.max_rel_diff > AGREEMENT_TOLERANCE {
                            flags.push("disagrees");
                        }
                    }
                    None => row.reference = "none (test-only backend computes nothing)".into(),
                }
                if let Some(s) = stats::summarize_ns(samples_ns) {
                    row.mean_ms = Some(to_ns(s.mean));
                    row.std_ms = Some(to_ns(s.std));
                    row.min_ms = Some(to_ns(s.min));
                    row.max_ms = Some(to_ns(s.max));
                    row.p50_ms = Some(to_ns(s.p50));
                    row.p90_ms = Some(to_ns(s.p90));
                    row.p95_ms = Some(to_ns(s.p95));
                    row.p99_ms = Some(to_ns(s.p99));
                    row.cv = Some((s.cv * 1e6).round() / 1e6);
                    row.median_ci_low_ms = Some(to_ns(s.median_ci.0));
                    row.median_ci_high_ms = Some(to_ns(s.median_ci.1));
                    row.outliers_mild = Some(s.outliers_mild);
                    row.outliers_severe = Some(s.outliers_severe);
                    if s.cv > cv_threshold {
                        flags.push("noisy");
                    }
                }
                if let (Some(b), Some(a)) = (before.freq_mhz, after.freq_mhz) {
                    if (a - b).abs() > FREQ_CHANGE * b {
                        flags.push("freq_changed");
                    }
                }
                if let (Some(b), Some(a)) = (before.temp_c, after.temp_c) {
                    if (a - b).abs() > TEMP_CHANGE_C {
                        flags.push("temp_changed");
                    }
                }
                samples = samples_ns
                    .iter()
                    .enumerate()
                    .map(|(i, &ns)| SampleRow {
                        device: row.device.clone(),
                        model: row.model.clone(),
                        backend: row.backend.clone(),
                        iteration: i as u32,
                        latency_ns: ns,
                    })
                    .collect();
            }
            Event::Failed { message } => {
                row.status = Some(Status::Failed);
                row.message = message.clone();
            }
            Event::Progress { .. } => {}
        }
    }
    if row.status.is_none() {
        let finished = outcome
            .events
            .iter()
            .any(|e| matches!(e, Event::Finished { .. }));
        if finished && outcome.status.success() {
            row.status = Some(Status::Ok);
        } else {
            row.status = Some(Status::Crashed);
            let how = match (outcome.status.signal(), outcome.status.code()) {
                (Some(sig), _) => format!("crashed (signal {sig}, {})", signal_name(sig)),
                (None, Some(code)) => format!("crashed (exit code {code})"),
                (None, None) => "crashed".to_string(),
            };
            let err = tail(&outcome.stderr);
            row.message = if err.is_empty() {
                how
            } else {
                format!("{how}: {err}")
            };
            samples.clear();
        }
    }
    if row.status == Some(Status::Ok) && !row.pinned {
        flags.push("unpinned");
    }
    if row.status != Some(Status::Ok) {
        samples.clear();
    }
    row.flags = flags.join(";");
    samples
}

/// Validates a run directory given to `--resume` and returns its manifest.
pub fn manifest_for_resume(dir: &Path) -> Result<RunManifest> {
    if !dir.is_dir() {
        bail!("--resume {}: no such directory", dir.display());
    }
    results::read_manifest(dir).with_context(|| {
        format!(
            "--resume {}: cannot read its {}",
            dir.display(),
            results::MANIFEST_FILE
        )
    })
}

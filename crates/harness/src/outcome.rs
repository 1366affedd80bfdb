//! A worker's outcome turned into a summary row: flags from the core's state before and
//! after, memory, a crash described by how and when the worker died; and the statistics of
//! a pair's rounds combined into the row (median of round medians, between-round spread).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use mobilebench_models::Graph;
use mobilebench_results::stats;
use mobilebench_results::{OpRow, PairSamples, Status, SummaryRow};

use crate::attribution::attribute;
use crate::probe::CoreState;
use crate::worker::{Event, Profile};

/// A frequency change of more than this fraction during a pair flags it.
const FREQ_CHANGE: f64 = 0.05;
/// A temperature change of more than this (°C) during a pair flags it.
const TEMP_CHANGE_C: f64 = 5.0;

/// Why the parent ended a worker itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It ran past `--pair-timeout`.
    TimedOut(std::time::Duration),
    /// The run was interrupted (Ctrl-C, SIGTERM): the round is not recorded.
    Interrupted,
}

/// What came back from one worker.
pub struct Outcome {
    pub events: Vec<Event>,
    pub status: ExitStatus,
    pub stderr: String,
    /// Set when the parent killed it.
    pub ended: Option<Ended>,
}

/// Last non-empty lines of a worker's stderr, for a crash message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

pub fn signal_name(signal: i32) -> &'static str {
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

/// One round's timed runs: latencies, and GPU times where the backend has them.
#[derive(Debug, Clone, Default)]
pub struct RoundSamples {
    pub latencies_ns: Vec<u64>,
    pub gpu_ns: Option<Vec<u64>>,
    /// `--profile-ops`: the step times, with the core's FMA peak and the engine's ISA.
    pub profile: Option<Profile>,
}

impl Profile {
    /// The rows of ops.csv for one pair's round: each step attributed to a layer group of
    /// `graph` (a zoo model's; `None` for a model file, whose steps keep only the runtime's
    /// names), with the coverage of `unprofiled_median_ns`.
    pub fn rows(
        &self,
        row: &SummaryRow,
        round: u32,
        graph: Option<&Graph>,
        unprofiled_median_ns: Option<u64>,
    ) -> Vec<OpRow> {
        let total_ns: u64 = self.steps.iter().map(|s| s.median_ns).sum();
        let coverage = unprofiled_median_ns
            .filter(|&m| m > 0)
            .map(|m| (total_ns as f64 / m as f64 * 1000.0).round() / 1000.0);
        let attributions = graph.map(|g| (g, attribute(g, &self.steps)));
        self.steps
            .iter()
            .enumerate()
            .map(|(step, s)| {
                let ms = s.median_ns as f64 / 1e6;
                let (layer_group, ir_nodes, op_kind, matched_by) = match &attributions {
                    Some((g, a)) => {
                        let a = &a[step];
                        (
                            a.group.map(|x| x.label(g)).unwrap_or_default(),
                            a.group.map(|x| x.node_names(g)).unwrap_or_default(),
                            a.kind.clone(),
                            a.matched_by.clone(),
                        )
                    }
                    None => (
                        String::new(),
                        String::new(),
                        String::new(),
                        "none (a model file: no IR to align to)".into(),
                    ),
                };
                OpRow {
                    device: row.device.clone(),
                    model: row.model.clone(),
                    backend: row.backend.clone(),
                    threads: row.thread_count(),
                    round,
                    step: step as u32,
                    name: s.name.clone(),
                    op: s.op.clone(),
                    layer_group,
                    ir_nodes,
                    op_kind,
                    matched_by,
                    input_shape: s.input_shape.clone(),
                    output_shape: s.output_shape.clone(),
                    macs: s.macs,
                    median_ms: ms,
                    gflops: OpRow::achieved_gflops(s.macs, ms),
                    core_peak_gflops: Some(self.core_peak_gflops),
                    isa: self.isa.clone(),
                    coverage,
                }
            })
            .collect()
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Fills the row from one worker's events (one round) and returns its samples, empty unless
/// the pair is ok. Statistics come after, from every round: [`apply_statistics`].
pub fn fill_row(row: &mut SummaryRow, outcome: &Outcome) -> RoundSamples {
    let mut flags: Vec<&str> = Vec::new();
    let mut before = CoreState::default();
    let mut samples = RoundSamples::default();
    let mut pin_verified = false;
    let mut profile = None;
    // What the worker did other than asked: into probe_notes with its own notes.
    let mut asked_notes: Vec<String> = Vec::new();
    for event in &outcome.events {
        match event {
            Event::Pinned { core, before: b } => {
                row.core = *core;
                before = b.clone();
                row.governor = b.governor.clone().unwrap_or_else(|| "unavailable".into());
                row.freq_before_mhz = b.freq_mhz;
                row.freq_max_mhz = b.max_freq_mhz;
                row.core_type = b.core_type.clone().unwrap_or_default();
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
                row.input_shape = input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x");
                row.library_version = settings.library_version.clone();
                if settings.threads != row.thread_count() {
                    asked_notes.push(format!(
                        "the session reports {} threads, {} were asked for",
                        settings.threads,
                        row.thread_count()
                    ));
                }
                row.precision = settings.precision.clone();
                row.adapter = settings.adapter.clone();
                row.settings = settings.settings.clone();
            }
            Event::Finished {
                samples_ns,
                gpu_ns,
                memory,
                pin_verified: verified,
                busy_threads,
                after,
                notes,
            } => {
                pin_verified = *verified;
                row.busy_threads = *busy_threads;
                if let Some(busy) = busy_threads.filter(|&b| b != row.thread_count()) {
                    asked_notes.push(format!(
                        "{busy} threads burned CPU in the timed loop, {} were asked for",
                        row.thread_count()
                    ));
                }
                if let Some([before_load, _, end]) = memory {
                    row.peak_rss_mb = Some(kib_to_mib(end.peak_kib));
                    row.model_mem_mb =
                        Some(kib_to_mib(end.rss_kib.saturating_sub(before_load.rss_kib)));
                }
                let mut all_notes: Vec<String> = Some(row.probe_notes.clone())
                    .filter(|n| !n.is_empty())
                    .into_iter()
                    .collect();
                all_notes.extend(notes.iter().cloned());
                all_notes.append(&mut asked_notes);
                row.probe_notes = all_notes.join("; ");
                row.freq_after_mhz = after.freq_mhz;
                row.temp_after_c = after.temp_c;
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
                samples = RoundSamples {
                    latencies_ns: samples_ns.clone(),
                    gpu_ns: gpu_ns.clone(),
                    profile: None,
                };
            }
            Event::Failed { message } => {
                row.status = Some(Status::Failed);
                // One line: the first line of the error chain, which names the file and cause.
                row.message = message.lines().next().unwrap_or_default().to_string();
            }
            Event::Profiled(p) => profile = Some(p.clone()),
            Event::Progress { .. } => {}
        }
    }
    if let Some(Ended::TimedOut(limit)) = outcome.ended {
        row.status = Some(Status::TimedOut);
        row.message = format!(
            "timed out: still running after {} s (--pair-timeout), the worker was killed",
            limit.as_secs()
        );
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
            let loaded = outcome
                .events
                .iter()
                .any(|e| matches!(e, Event::Loaded { .. }));
            let when = if loaded {
                "while running"
            } else {
                "while loading the model"
            };
            let how = match (outcome.status.signal(), outcome.status.code()) {
                (Some(sig), _) => format!("crashed {when} (signal {sig}, {})", signal_name(sig)),
                (None, Some(code)) => format!("crashed {when} (exit code {code})"),
                (None, None) => format!("crashed {when}"),
            };
            let err = tail(&outcome.stderr);
            row.message = if err.is_empty() {
                how
            } else {
                format!("{how}: {err}")
            };
        }
    }
    row.pinned = pin_verified;
    if row.status == Some(Status::Ok) && !row.pinned {
        flags.push("unpinned");
    }
    if row.status != Some(Status::Ok) {
        samples = RoundSamples::default();
    } else {
        samples.profile = profile;
    }
    // Keep flags set before the run (`emulated`).
    let earlier: Vec<String> = row.flag_list().iter().map(|f| f.to_string()).collect();
    row.flags = earlier
        .iter()
        .map(String::as_str)
        .chain(flags)
        .collect::<Vec<_>>()
        .join(";");
    samples
}

/// Sets the row's statistics from every round of the pair: the percentiles, mean, spread, CI
/// and outliers of all samples together, but `p50_ms` the median of the round medians (the
/// robust figure across worker processes), `rounds` and `round_cv` the between-round spread;
/// `noisy` from the samples' coefficient of variation.
pub fn apply_statistics(
    row: &mut SummaryRow,
    samples: &PairSamples,
    gpu_ns: &[u64],
    cv_threshold: f64,
) {
    let round_medians = samples.round_medians_ms();
    row.rounds = round_medians.len() as u32;
    row.round_cv =
        stats::coefficient_of_variation(&round_medians).map(|cv| (cv * 1e6).round() / 1e6);
    if let Some(g) = stats::summarize_ns(gpu_ns) {
        row.gpu_p50_ms = Some(to_ns(g.p50));
    }
    let Some(s) = stats::summarize_ns(&samples.all()) else {
        return;
    };
    row.mean_ms = Some(to_ns(s.mean));
    row.std_ms = Some(to_ns(s.std));
    row.min_ms = Some(to_ns(s.min));
    row.max_ms = Some(to_ns(s.max));
    row.p50_ms = Some(to_ns(if round_medians.len() > 1 {
        stats::median(&round_medians)
    } else {
        s.p50
    }));
    row.p90_ms = Some(to_ns(s.p90));
    row.p95_ms = Some(to_ns(s.p95));
    row.p99_ms = Some(to_ns(s.p99));
    row.cv = Some((s.cv * 1e6).round() / 1e6);
    row.median_ci_low_ms = Some(to_ns(s.median_ci.0));
    row.median_ci_high_ms = Some(to_ns(s.median_ci.1));
    row.outliers_mild = Some(s.outliers_mild);
    row.outliers_severe = Some(s.outliers_severe);
    let mut flags: Vec<&str> = row
        .flag_list()
        .into_iter()
        .filter(|f| *f != "noisy")
        .collect();
    if s.cv > cv_threshold {
        flags.push("noisy");
    }
    row.flags = flags.join(";");
}

/// A pair's rounds so far: what the combined row is made of.
#[derive(Debug, Default)]
pub struct PairRounds {
    samples: PairSamples,
    gpu_ns: Vec<u64>,
    init_ms: Vec<f64>,
    first_ms: Vec<f64>,
    peak_rss_mb: Option<f64>,
    model_mem_mb: Option<f64>,
    flags: Vec<String>,
    /// A round was not ok: the pair gets no more rounds in this invocation.
    pub stopped: bool,
}

impl PairRounds {
    /// The rounds a resumed run already holds for a pair (its last row ok, with its samples).
    pub fn resumed(row: &SummaryRow, samples: PairSamples) -> PairRounds {
        PairRounds {
            samples,
            init_ms: row.init_ms.into_iter().collect(),
            first_ms: row.first_inference_ms.into_iter().collect(),
            peak_rss_mb: row.peak_rss_mb,
            model_mem_mb: row.model_mem_mb,
            flags: row.flag_list().iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn rounds_done(&self) -> u32 {
        self.samples.rounds.len() as u32
    }

    /// Adds round `round` (its row ok, agreement checked) and returns the pair's row over
    /// every round so far.
    pub fn add(
        &mut self,
        round: u32,
        row: &SummaryRow,
        samples: RoundSamples,
        cv_threshold: f64,
    ) -> SummaryRow {
        self.samples.rounds.push((round, samples.latencies_ns));
        self.gpu_ns.extend(samples.gpu_ns.unwrap_or_default());
        self.init_ms.extend(row.init_ms);
        self.first_ms.extend(row.first_inference_ms);
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.peak_rss_mb = max(self.peak_rss_mb, row.peak_rss_mb);
        self.model_mem_mb = max(self.model_mem_mb, row.model_mem_mb);
        for f in row.flag_list() {
            if !self.flags.iter().any(|g| g == f) {
                self.flags.push(f.to_string());
            }
        }
        let mut combined = row.clone();
        combined.init_ms = Some(stats::median(&self.init_ms)).filter(|v| v.is_finite());
        combined.first_inference_ms = Some(stats::median(&self.first_ms)).filter(|v| v.is_finite());
        combined.peak_rss_mb = self.peak_rss_mb;
        combined.model_mem_mb = self.model_mem_mb;
        combined.flags = self.flags.join(";");
        apply_statistics(&mut combined, &self.samples, &self.gpu_ns, cv_threshold);
        combined
    }
}

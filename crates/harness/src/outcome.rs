//! A worker's outcome turned into a summary row: statistics of its samples, flags from the
//! core's state before and after, and a crash described by how and when the worker died.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use mobilebench_reports::stats;
use mobilebench_results::{SampleRow, Status, SummaryRow};

use crate::probe::CoreState;
use crate::worker::Event;

/// A frequency change of more than this fraction during a pair flags it.
const FREQ_CHANGE: f64 = 0.05;
/// A temperature change of more than this (°C) during a pair flags it.
const TEMP_CHANGE_C: f64 = 5.0;

/// What came back from one worker.
pub struct Outcome {
    pub events: Vec<Event>,
    pub status: ExitStatus,
    pub stderr: String,
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

/// Fills the row from the worker's events; returns the samples to record.
pub fn fill_row(row: &mut SummaryRow, outcome: &Outcome, cv_threshold: f64) -> Vec<SampleRow> {
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
                row.input_shape = input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x");
                row.library_version = settings.library_version.clone();
                row.threads = Some(settings.threads);
                row.precision = settings.precision.clone();
                row.adapter = settings.adapter.clone();
                row.settings = settings.settings.clone();
            }
            Event::Finished {
                samples_ns,
                gpu_ns,
                peak_rss_kib,
                after,
            } => {
                if let Some(g) = gpu_ns.as_deref().and_then(stats::summarize_ns) {
                    row.gpu_p50_ms = Some(to_ns(g.p50));
                }
                row.peak_rss_mb = peak_rss_kib.map(|k| k as f64 / 1024.0);
                row.freq_after_mhz = after.freq_mhz;
                row.temp_after_c = after.temp_c;
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
                samples = row.sample_rows(samples_ns, gpu_ns.as_deref());
            }
            Event::Failed { message } => {
                row.status = Some(Status::Failed);
                // One line: the first line of the error chain, which names the file and cause.
                row.message = message.lines().next().unwrap_or_default().to_string();
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
            samples.clear();
        }
    }
    if row.status == Some(Status::Ok) && !row.pinned {
        flags.push("unpinned");
    }
    if row.status != Some(Status::Ok) {
        samples.clear();
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

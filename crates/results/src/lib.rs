//! The results contract: `samples.csv` (one row per timed iteration) and `summary.csv` (one
//! row per (model, backend) pair) in one run directory per device and timestamp, plus
//! `run.json`, the plan that `--resume` continues, and with `--profile-ops` `ops.csv` (per-step
//! times of engines that can report them). Every writer and reader uses these types.
//!
//! Rows are appended and flushed one pair at a time, so a crash loses at most the pair that
//! was running. A pair may appear more than once in `summary.csv` (a crashed pair re-run by
//! `--resume`): readers take the last row of each pair.

mod ops;
mod schema;
pub mod stats;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use ops::{read_ops, OpRow, OPS_FILE};
pub use schema::{Column, OP_COLUMNS, SAMPLE_COLUMNS, SUMMARY_COLUMNS};
pub use stats::format_ms;
pub use writer::{RunWriter, CRASH_BEFORE_COMMIT, FULL_DISK};

pub const SAMPLES_FILE: &str = "samples.csv";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const MANIFEST_FILE: &str = "run.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured.
    Ok,
    /// The worker reported an error (load, run, bad input); `message` says which.
    Failed,
    /// The worker died (signal or abnormal exit); `message` says how.
    Crashed,
    /// The backend cannot run here; `message` says why.
    Unavailable,
    /// The worker ran past `--pair-timeout` and was killed; the campaign went on.
    #[serde(rename = "timed_out")]
    TimedOut,
}

impl Status {
    /// The word in the CSV and the reports.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Crashed => "crashed",
            Status::Unavailable => "unavailable",
            Status::TimedOut => "timed_out",
        }
    }
}

/// One timed iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    pub device: String,
    pub model: String,
    pub backend: String,
    /// 1-based round; files written before rounds existed had one.
    #[serde(default = "one")]
    pub round: u32,
    pub iteration: u32,
    pub latency_ns: u64,
    /// GPU time of that run from timestamp queries, where the backend has it.
    #[serde(default)]
    pub gpu_ns: Option<u64>,
    /// Threads the pair ran on (`--threads`); files written before the option: 1.
    #[serde(default = "one")]
    pub threads: u32,
}

impl SampleRow {
    pub fn key(&self) -> PairKey {
        PairKey {
            device: self.device.clone(),
            model: self.model.clone(),
            backend: self.backend.clone(),
            threads: self.threads,
        }
    }
}

/// One (model, backend) pair. Optional fields are empty when not measured (a failed pair)
/// or when this machine does not expose them (then `probe_notes` says so).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub device: String,
    pub model: String,
    pub backend: String,
    pub status: Option<Status>,
    pub message: String,
    pub started_at: String,
    pub source: String,
    pub input_shape: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_batch")]
    pub batch: u32,
    #[serde(default = "default_bn")]
    pub bn: String,
    #[serde(default = "legacy_timing")]
    pub timing: String,
    pub macs: Option<u64>,
    pub params: Option<u64>,
    pub warmup: u32,
    pub runs: u32,
    #[serde(default = "one")]
    pub rounds: u32,
    pub core: Option<usize>,
    pub pinned: bool,
    pub init_ms: Option<f64>,
    pub first_inference_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    pub std_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    #[serde(default)]
    pub gpu_p50_ms: Option<f64>,
    pub cv: Option<f64>,
    #[serde(default)]
    pub round_cv: Option<f64>,
    pub median_ci_low_ms: Option<f64>,
    pub median_ci_high_ms: Option<f64>,
    pub outliers_mild: Option<u32>,
    pub outliers_severe: Option<u32>,
    pub peak_rss_mb: Option<f64>,
    #[serde(default)]
    pub model_mem_mb: Option<f64>,
    pub flags: String,
    pub reference: String,
    pub max_abs_diff: Option<f64>,
    pub max_rel_diff: Option<f64>,
    /// int8 rows: agreement of the logits with the float model's on several inputs.
    #[serde(default)]
    pub agreement_inputs: Option<u32>,
    #[serde(default)]
    pub top1_agreement: Option<f64>,
    #[serde(default)]
    pub cosine_mean: Option<f64>,
    #[serde(default)]
    pub cosine_min: Option<f64>,
    pub library_version: String,
    /// The threads the pair was asked to compute on (`--threads`), part of its identity.
    pub threads: Option<u32>,
    pub precision: String,
    pub adapter: String,
    pub settings: String,
    pub cpu_brand: String,
    pub cpu_cores: Option<usize>,
    pub os: String,
    pub kernel: String,
    /// Added after the first runs: older CSVs read with it empty.
    #[serde(default)]
    pub core_type: String,
    pub governor: String,
    pub freq_before_mhz: Option<f64>,
    pub freq_after_mhz: Option<f64>,
    pub freq_max_mhz: Option<f64>,
    pub temp_before_c: Option<f64>,
    pub temp_after_c: Option<f64>,
    /// Added with `--settle`: older CSVs read with it empty.
    #[serde(default)]
    pub settle_wait_s: Option<f64>,
    /// Added with `--threads`: the cores the worker confined itself to (`2-3`), and how many
    /// of its threads burned CPU during the timed loop. Older CSVs read them empty.
    #[serde(default)]
    pub core_set: String,
    #[serde(default)]
    pub busy_threads: Option<u32>,
    pub load_avg_1m: Option<f64>,
    pub harness_commit: String,
    pub build_profile: String,
    pub probe_notes: String,
}

// Runs recorded before these columns existed were all inference on batch 1 with fused BN.
fn default_mode() -> String {
    "infer".into()
}
fn default_batch() -> u32 {
    1
}
fn default_precisions() -> Vec<String> {
    vec!["float32".into()]
}
fn default_bn() -> String {
    "fused".into()
}
/// An hour: a software GPU adapter takes tens of minutes for 1050 inferences of a large model.
pub const DEFAULT_PAIR_TIMEOUT_S: u64 = 3600;
fn default_pair_timeout() -> u64 {
    DEFAULT_PAIR_TIMEOUT_S
}
fn one() -> u32 {
    1
}
fn one_thread_list() -> Vec<u32> {
    vec![1]
}
/// Runs recorded before the `timing` column: the runtimes timed an input copy, native not.
fn legacy_timing() -> String {
    "legacy".into()
}

impl SummaryRow {
    /// What the pair timed, when it is not the default (inference, batch 1, fused BN), e.g.
    /// `train, batch 4, separate BN`; empty otherwise.
    pub fn workload(&self) -> String {
        let mut parts = vec![self.workload_without_threads()];
        parts.retain(|p| !p.is_empty());
        if self.thread_count() > 1 {
            parts.push(format!("{} threads", self.thread_count()));
        }
        parts.join(", ")
    }

    /// [`SummaryRow::workload`] without the thread count (`train, batch 4`).
    pub fn workload_without_threads(&self) -> String {
        let mut parts = Vec::new();
        if !self.mode.is_empty() && self.mode != "infer" {
            parts.push(self.mode.clone());
        }
        if self.batch > 1 {
            parts.push(format!("batch {}", self.batch));
        }
        if !self.bn.is_empty() && self.bn != "fused" {
            parts.push(format!("{} BN", self.bn));
        }
        parts.join(", ")
    }

    /// The sample rows of one round of this pair, one per latency in iteration order, with
    /// the GPU times where the backend measured them.
    pub fn sample_rows(
        &self,
        round: u32,
        latencies_ns: &[u64],
        gpu_ns: Option<&[u64]>,
    ) -> Vec<SampleRow> {
        latencies_ns
            .iter()
            .enumerate()
            .map(|(i, &ns)| SampleRow {
                device: self.device.clone(),
                model: self.model.clone(),
                backend: self.backend.clone(),
                round,
                iteration: i as u32,
                latency_ns: ns,
                gpu_ns: gpu_ns.and_then(|g| g.get(i).copied()),
                threads: self.thread_count(),
            })
            .collect()
    }

    /// The threads asked for; rows written before `--threads` ran on one.
    pub fn thread_count(&self) -> u32 {
        self.threads.unwrap_or(1).max(1)
    }

    pub fn key(&self) -> PairKey {
        PairKey {
            device: self.device.clone(),
            model: self.model.clone(),
            backend: self.backend.clone(),
            threads: self.thread_count(),
        }
    }
    pub fn is_ok(&self) -> bool {
        self.status == Some(Status::Ok)
    }
    pub fn flag_list(&self) -> Vec<&str> {
        self.flags.split(';').filter(|f| !f.is_empty()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    pub device: String,
    pub model: String,
    pub backend: String,
    pub threads: u32,
}

/// What a run does before each pair to keep heat out of its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThermalPolicy {
    /// Seconds slept before each pair.
    pub cooldown_s: u64,
    /// Before each pair, wait until every thermal zone is within `settle_margin_c` of its
    /// temperature when the campaign started and the measured core's frequency cap is its
    /// maximum, up to `settle_timeout_s`.
    pub settle: bool,
    pub settle_margin_c: f64,
    pub settle_timeout_s: u64,
}

impl Default for ThermalPolicy {
    fn default() -> Self {
        ThermalPolicy {
            cooldown_s: 0,
            settle: false,
            settle_margin_c: 2.0,
            settle_timeout_s: 300,
        }
    }
}

/// What was asked for: written once when a run starts, read back by `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub device: String,
    /// Zoo models (canonical names).
    pub models: Vec<String>,
    /// The user's model files (`--model-file`).
    #[serde(default)]
    pub model_files: Vec<String>,
    pub backends: Vec<String>,
    /// `infer` or `train` (what one timed iteration does).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Images per iteration.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// `fused` or `separate` batch norm.
    #[serde(default = "default_bn")]
    pub bn: String,
    pub warmup: u32,
    pub runs: u32,
    /// Rounds per pair, measured round-robin.
    #[serde(default = "one")]
    pub rounds: u32,
    /// Seconds a worker (one pair, one round) may run before it is killed.
    #[serde(default = "default_pair_timeout")]
    pub pair_timeout_s: u64,
    /// `infer` or `infer-with-io` (what one sample covers).
    #[serde(default = "legacy_timing")]
    pub timing: String,
    /// `--profile-ops`: per-step times into ops.csv after each timed loop.
    #[serde(default)]
    pub profile_ops: bool,
    /// Number formats zoo models run in (`float32`, `int8`); runs before the option: float32.
    #[serde(default = "default_precisions")]
    pub precisions: Vec<String>,
    pub core: Option<usize>,
    /// `--threads`: each count is a pair of its own (older manifests: one thread).
    #[serde(default = "one_thread_list")]
    pub threads: Vec<u32>,
    /// `--cores` as given (`2-5`), or `--core-class` (`big`): where the threads run.
    #[serde(default)]
    pub cores: Option<String>,
    #[serde(default)]
    pub core_class: Option<String>,
    pub weight_seed: u64,
    pub input_seed: u64,
    pub cv_threshold: f64,
    /// `--cooldown`, `--settle`: what happens before each pair (older manifests: nothing).
    #[serde(default)]
    pub thermal: ThermalPolicy,
    pub created_at: String,
    pub command: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    // The cause is part of the message, and not also a `source`: `{:#}` would print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Csv { path: PathBuf, cause: csv::Error },
    #[error("{path}: not a mobilebench run manifest: {cause}")]
    Manifest {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{0} is not a run directory (it has no {SUMMARY_FILE})")]
    NotARun(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |cause| ResultsError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// One pair's latencies (ns), round by round, each in iteration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairSamples {
    /// `(round, latencies)`, rounds ascending.
    pub rounds: Vec<(u32, Vec<u64>)>,
}

impl PairSamples {
    /// One round's latencies.
    pub fn one_round(latencies_ns: Vec<u64>) -> PairSamples {
        PairSamples {
            rounds: vec![(1, latencies_ns)],
        }
    }
    /// Every latency, rounds in order.
    pub fn all(&self) -> Vec<u64> {
        self.rounds
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }
    pub fn is_empty(&self) -> bool {
        self.rounds.iter().all(|(_, v)| v.is_empty())
    }
    /// The median of each round, in ms.
    pub fn round_medians_ms(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| stats::median_ms(v))
            .collect()
    }
}

/// A run directory read back.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    /// The last row of each pair, in first-seen order.
    pub summary: Vec<SummaryRow>,
    /// Latencies of each pair, by round.
    pub samples: HashMap<PairKey, PairSamples>,
    /// Rows that could not be parsed (a line cut by a crash), as `file:line`.
    pub skipped_rows: Vec<String>,
    /// `--profile-ops` steps of the last round each pair's row counts (empty if none).
    pub ops: Vec<OpRow>,
}

impl Run {
    /// The run with each backend named with its workload when that is not the default
    /// (`tch (train, batch 4)`), so runs of different modes can be reported side by side.
    pub fn with_workload_labels(mut self) -> Run {
        let mut samples = HashMap::new();
        for row in &mut self.summary {
            let workload = row.workload();
            if workload.is_empty() {
                continue;
            }
            let key = row.key();
            let label = format!("{} ({workload})", row.backend);
            for op in &mut self.ops {
                if op.key() == key {
                    op.backend = label.clone();
                }
            }
            row.backend = label;
            if let Some(s) = self.samples.remove(&key) {
                samples.insert(row.key(), s);
            }
        }
        self.samples.extend(samples);
        self
    }

    pub fn find(&self, model: &str, backend: &str) -> Option<&SummaryRow> {
        self.summary
            .iter()
            .find(|r| r.model == model && r.backend == backend)
    }
}

/// Reads a run directory's summary (required) and samples (optional).
pub fn read_run(dir: &Path) -> Result<Run, ResultsError> {
    let summary_path = dir.join(SUMMARY_FILE);
    if !summary_path.is_file() {
        return Err(ResultsError::NotARun(dir.to_path_buf()));
    }
    let mut skipped = Vec::new();
    let summary = last_rows(&summary_path, &mut skipped)?;
    // Keyed by (round, iteration), the last row winning: a round measured again after an
    // interruption replaces what the interrupted attempt left.
    let mut by_key: HashMap<PairKey, BTreeMap<(u32, u32), u64>> = HashMap::new();
    let samples_path = dir.join(SAMPLES_FILE);
    if samples_path.is_file() {
        for s in read_rows::<SampleRow>(&samples_path, &mut skipped)? {
            let key = s.key();
            by_key
                .entry(key)
                .or_default()
                .insert((s.round, s.iteration), s.latency_ns);
        }
    }
    let mut samples: HashMap<PairKey, PairSamples> = HashMap::new();
    for (key, rows) in by_key {
        // Rounds beyond what the pair's summary row counts were never committed.
        let rounds = committed_rounds(&summary, &key);
        let mut pair = PairSamples::default();
        for ((round, _), ns) in rows.into_iter().filter(|((r, _), _)| *r <= rounds) {
            match pair.rounds.last_mut() {
                Some((r, v)) if *r == round => v.push(ns),
                _ => pair.rounds.push((round, vec![ns])),
            }
        }
        samples.insert(key, pair);
    }
    let ops = read_ops(dir, &summary)?;
    Ok(Run {
        dir: dir.to_path_buf(),
        summary,
        samples,
        skipped_rows: skipped,
        ops,
    })
}

/// The last row of each pair in a summary.csv, in first-seen order.
fn last_rows(path: &Path, skipped: &mut Vec<String>) -> Result<Vec<SummaryRow>, ResultsError> {
    let mut summary: Vec<SummaryRow> = Vec::new();
    for row in read_rows::<SummaryRow>(path, skipped)? {
        match summary.iter_mut().find(|r| r.key() == row.key()) {
            Some(existing) => *existing = row,
            None => summary.push(row),
        }
    }
    Ok(summary)
}

/// How many rounds of a pair its last summary row commits (none without a row).
fn committed_rounds(summary: &[SummaryRow], key: &PairKey) -> u32 {
    summary.iter().find(|r| &r.key() == key).map_or(0, |r| {
        if r.is_ok() {
            r.rounds.max(1)
        } else {
            r.rounds
        }
    })
}

/// Rewrites `samples.csv` with only its committed samples (those a summary row counts; of a
/// round written twice, the last), so a resumed run appends to a file holding exactly what
/// was measured. Returns how many rows were dropped. The file is replaced by rename.
pub fn drop_uncommitted_samples(dir: &Path) -> Result<usize, ResultsError> {
    let samples_path = dir.join(SAMPLES_FILE);
    let summary_path = dir.join(SUMMARY_FILE);
    if !samples_path.is_file() || !summary_path.is_file() {
        return Ok(0);
    }
    let mut skipped = Vec::new();
    let summary = last_rows(&summary_path, &mut skipped)?;
    let rows: Vec<SampleRow> = read_rows(&samples_path, &mut skipped)?;
    let total = rows.len();
    let mut kept: BTreeMap<(PairKey, u32, u32), SampleRow> = BTreeMap::new();
    let mut order: Vec<(PairKey, u32, u32)> = Vec::new();
    for s in rows {
        let key = s.key();
        if s.round > committed_rounds(&summary, &key) {
            continue;
        }
        let k = (key, s.round, s.iteration);
        if kept.insert(k.clone(), s).is_none() {
            order.push(k);
        }
    }
    if kept.len() == total {
        return Ok(0);
    }
    let partial = dir.join(format!("{SAMPLES_FILE}.partial"));
    {
        let mut w = csv::Writer::from_path(&partial).map_err(|cause| ResultsError::Csv {
            path: partial.clone(),
            cause,
        })?;
        for k in &order {
            w.serialize(&kept[k]).map_err(|cause| ResultsError::Csv {
                path: partial.clone(),
                cause,
            })?;
        }
        w.flush().map_err(io_err(&partial))?;
        w.get_ref().sync_data().map_err(io_err(&partial))?;
    }
    std::fs::rename(&partial, &samples_path).map_err(io_err(&samples_path))?;
    Ok(total - kept.len())
}

/// Whether a run directory's summary.csv was written with this version's columns; `Err`
/// names the first difference.
pub fn check_schema(dir: &Path) -> Result<(), String> {
    let path = dir.join(SUMMARY_FILE);
    let Ok(mut reader) = csv::Reader::from_path(&path) else {
        return Ok(()); // nothing written yet
    };
    let Ok(header) = reader.headers() else {
        return Ok(());
    };
    let have: Vec<&str> = header.iter().collect();
    if have.is_empty() {
        return Ok(()); // created, no row written yet
    }
    let want: Vec<&str> = SUMMARY_COLUMNS.iter().map(|c| c.name).collect();
    if have == want {
        return Ok(());
    }
    let missing: Vec<&str> = want.iter().filter(|c| !have.contains(c)).copied().collect();
    let extra: Vec<&str> = have.iter().filter(|c| !want.contains(c)).copied().collect();
    Err(format!(
        "its {SUMMARY_FILE} has other columns than this version writes (missing: {}; unknown: {})",
        if missing.is_empty() {
            "none".into()
        } else {
            missing.join(", ")
        },
        if extra.is_empty() {
            "none".into()
        } else {
            extra.join(", ")
        },
    ))
}

fn read_rows<T: serde::de::DeserializeOwned>(
    path: &Path,
    skipped: &mut Vec<String>,
) -> Result<Vec<T>, ResultsError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|cause| ResultsError::Csv {
            path: path.to_path_buf(),
            cause,
        })?;
    let mut out = Vec::new();
    for (i, row) in reader.deserialize().enumerate() {
        match row {
            Ok(r) => out.push(r),
            Err(_) => skipped.push(format!("{}:{}", path.display(), i + 2)),
        }
    }
    Ok(out)
}

pub fn write_manifest(dir: &Path, manifest: &RunManifest) -> Result<(), ResultsError> {
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(manifest).expect("manifest serialises");
    std::fs::write(&path, text).map_err(io_err(&path))
}

pub fn read_manifest(dir: &Path) -> Result<RunManifest, ResultsError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|cause| ResultsError::Manifest { path, cause })
}

#[cfg(test)]
mod tests;

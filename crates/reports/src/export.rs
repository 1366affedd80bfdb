//! Machine-readable exports of a run's summary, one exporter per format behind one trait (the
//! markdown report is the human one): mobilebench's own versioned JSON, the Bencher Metric
//! Format, and github-action-benchmark's `customSmallerIsBetter` list, so a project can track
//! its model's latency per commit with tools it already runs. Like the rest of the report,
//! they read CSVs only.

use std::str::FromStr;

use mobilebench_results::{stats, Run, SummaryRow};
use serde_json::{json, Map, Value};

/// The name and version of [`Format::Json`]'s document; the version changes whenever a field
/// is renamed, removed or changes meaning (new summary columns add fields, same version).
pub const JSON_FORMAT: &str = "mobilebench-summary";
pub const JSON_VERSION: u32 = 1;

/// What `bench report --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The tables (stdout) or the report folder with plots (`-o`).
    Markdown,
    /// Every summary row of every run, typed, under a versioned header.
    Json,
    /// Bencher Metric Format: one benchmark per device × model × backend × precision.
    Bmf,
    /// github-action-benchmark's `customSmallerIsBetter` tool input.
    GithubBenchmark,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "markdown" | "md" => Ok(Format::Markdown),
            "json" => Ok(Format::Json),
            "bmf" => Ok(Format::Bmf),
            "github-benchmark" => Ok(Format::GithubBenchmark),
            _ => Err(format!(
                "`{s}`: expected markdown, json, bmf or github-benchmark"
            )),
        }
    }
}

/// One machine-readable format.
pub trait Exporter {
    fn export(&self, runs: &[Run]) -> Value;
}

/// The exporter of a machine-readable format (`None` for markdown, which is not one).
pub fn exporter(format: Format) -> Option<Box<dyn Exporter>> {
    match format {
        Format::Markdown => None,
        Format::Json => Some(Box::new(JsonExporter)),
        Format::Bmf => Some(Box::new(BmfExporter)),
        Format::GithubBenchmark => Some(Box::new(GithubBenchmarkExporter)),
    }
}

/// `runs` in `format`, pretty-printed, with a final newline.
pub fn export_text(runs: &[Run], exporter: &dyn Exporter) -> String {
    let mut text = serde_json::to_string_pretty(&exporter.export(runs)).expect("JSON values print");
    text.push('\n');
    text
}

/// mobilebench's own document: `{format, version, runs: [{dir, rows: [SummaryRow…]}]}`, each
/// row with the CSV's column names and typed values (empty cells are `null`).
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, runs: &[Run]) -> Value {
        let runs: Vec<Value> = runs
            .iter()
            .map(|run| {
                json!({
                    "dir": run.dir.display().to_string(),
                    "rows": run.summary.iter().map(|r| serde_json::to_value(r).expect("rows serialise")).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "format": JSON_FORMAT, "version": JSON_VERSION, "runs": runs })
    }
}

/// A measured pair's latency in one place: the benchmark's name, the median and the 5th and
/// 95th percentiles of its samples (ms).
struct Latency<'a> {
    row: &'a SummaryRow,
    name: String,
    median_ms: f64,
    p5_ms: f64,
    p95_ms: f64,
    samples: usize,
}

/// Every pair measured ok, with its samples: the median is the row's `p50_ms` (the median of
/// round medians with `--rounds`), the percentiles pool every round's samples.
fn latencies(runs: &[Run]) -> Vec<Latency<'_>> {
    let mut out = Vec::new();
    for run in runs {
        for row in run.summary.iter().filter(|r| r.is_ok()) {
            let (Some(median_ms), Some(pair)) = (row.p50_ms, run.samples.get(&row.key())) else {
                continue;
            };
            let mut ms: Vec<f64> = pair.all().iter().map(|&ns| ns as f64 / 1e6).collect();
            if ms.is_empty() {
                continue;
            }
            ms.sort_by(f64::total_cmp);
            out.push(Latency {
                row,
                name: benchmark_name(row),
                median_ms,
                p5_ms: stats::percentile(&ms, 0.05),
                p95_ms: stats::percentile(&ms, 0.95),
                samples: ms.len(),
            });
        }
    }
    out
}

/// `device/model/backend/precision`: stable across runs, so a dashboard keeps one series per
/// pair (an int8 model's name already ends in `_int8`; the precision column says it again).
pub fn benchmark_name(row: &SummaryRow) -> String {
    format!(
        "{}/{}/{}/{}",
        row.device, row.model, row.backend, row.precision
    )
}

/// Bencher Metric Format. Bencher's built-in `latency` measure is in **nanoseconds**, so the
/// values are the median and the 5th/95th percentiles in ns (a value in ms under `latency`
/// would be read as ns).
pub struct BmfExporter;

impl Exporter for BmfExporter {
    fn export(&self, runs: &[Run]) -> Value {
        let mut doc = Map::new();
        for l in latencies(runs) {
            doc.insert(
                l.name,
                json!({ "latency": {
                    "value": l.median_ms * 1e6,
                    "lower_value": l.p5_ms * 1e6,
                    "upper_value": l.p95_ms * 1e6,
                }}),
            );
        }
        Value::Object(doc)
    }
}

/// github-action-benchmark's `customSmallerIsBetter` input: `[{name, unit, value, range,
/// extra}]`, value the median in ms, range half the 5th–95th percentile spread, extra the
/// percentiles themselves and what the row says about its measurement.
pub struct GithubBenchmarkExporter;

impl Exporter for GithubBenchmarkExporter {
    fn export(&self, runs: &[Run]) -> Value {
        let entries: Vec<Value> = latencies(runs)
            .into_iter()
            .map(|l| {
                let flags = if l.row.flags.is_empty() {
                    "none".to_string()
                } else {
                    l.row.flags.replace(';', ", ")
                };
                json!({
                    "name": l.name,
                    "unit": "ms",
                    "value": l.median_ms,
                    "range": format!("± {:.4}", (l.p95_ms - l.p5_ms) / 2.0),
                    "extra": format!(
                        "p5 {:.4} ms, p95 {:.4} ms\n{} samples in {} round(s)\nflags: {flags}",
                        l.p5_ms, l.p95_ms, l.samples, l.row.rounds
                    ),
                })
            })
            .collect();
        Value::Array(entries)
    }
}

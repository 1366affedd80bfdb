//! Markdown tables: per-device latency tables (models × backends), the seed's device table
//! (device, backend × V3 models), the slim seed's model table, and one statistics row per pair.

use std::collections::BTreeSet;
use std::fmt::Write;

use mobilebench_models::{published, ModelConfig};
use mobilebench_results::{Run, SummaryRow};

use crate::{all_rows, distinct, ReportOptions, SEED_COLUMNS};

/// Formats a latency in ms: one decimal from 100 ms, two from 1 ms, three significant
/// digits below (so a 30 ns overhead reads 0.0000300, not 0.0000).
pub fn format_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else if ms > 0.0 {
        let decimals = (2.0 - ms.log10().floor()) as usize;
        format!("{ms:.decimals$}")
    } else {
        "0".into()
    }
}

/// What a cell shows: the median, or why there is none.
fn cell(row: Option<&SummaryRow>) -> String {
    match row {
        None => "–".into(),
        Some(r) if r.is_ok() => {
            let median = r.p50_ms.map_or("?".into(), format_ms);
            if r.flags.is_empty() {
                median
            } else {
                format!("{median} ⚠ {}", r.flag_list().join(", "))
            }
        }
        Some(r) => status_word(r),
    }
}

fn status_word(r: &SummaryRow) -> String {
    r.status
        .map_or("?".into(), |s| format!("{s:?}").to_lowercase())
}

/// One latency table per device found in `runs` (devices and models in first-seen order,
/// backends too), followed by a legend.
pub fn latency_tables(runs: &[Run]) -> String {
    let rows: Vec<&SummaryRow> = runs.iter().flat_map(|r| &r.summary).collect();
    let mut devices: Vec<&str> = Vec::new();
    for r in &rows {
        if !devices.contains(&r.device.as_str()) {
            devices.push(&r.device);
        }
    }
    let mut out = String::new();
    for device in devices {
        let of_device: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| r.device == device)
            .collect();
        let mut models: Vec<&str> = Vec::new();
        let mut backends: Vec<&str> = Vec::new();
        for r in &of_device {
            if !models.contains(&r.model.as_str()) {
                models.push(&r.model);
            }
            if !backends.contains(&r.backend.as_str()) {
                backends.push(&r.backend);
            }
        }
        let cpu: BTreeSet<&str> = of_device
            .iter()
            .map(|r| r.cpu_brand.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        let _ = writeln!(out, "### {device}\n");
        if !cpu.is_empty() {
            let _ = writeln!(
                out,
                "CPU: {}\n",
                cpu.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        let _ = writeln!(out, "Median latency (ms), one pinned core.\n");
        let _ = writeln!(out, "| model | {} |", backends.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(backends.len()));
        for model in &models {
            let cells: Vec<String> = backends
                .iter()
                .map(|b| {
                    cell(
                        of_device
                            .iter()
                            .copied()
                            .find(|r| r.model == *model && r.backend == *b),
                    )
                })
                .collect();
            let _ = writeln!(out, "| {model} | {} |", cells.join(" | "));
        }
        let _ = writeln!(out);
    }
    out.push_str(
        "⚠ flags: noisy (coefficient of variation above the threshold), freq_changed, \
         temp_changed, unpinned, disagrees (output differs from the reference), emulated \
         (measured under qemu user emulation: the timing means nothing), software (a CPU \
         rasteriser stood in for the GPU); `–`: not run.\n",
    );
    out
}

/// The TFLite seed's shape: rows `device, backend`, columns the four V3 models at 1.0/224.
pub fn device_table(runs: &[Run]) -> String {
    let rows = all_rows(runs);
    let mut out = String::from("| device, backend |");
    for (_, label) in SEED_COLUMNS {
        let _ = write!(out, " {label} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(SEED_COLUMNS.len()));
    out.push('\n');
    let mut any = false;
    for device in distinct(rows.iter().map(|r| r.device.as_str())) {
        let backends = distinct(
            rows.iter()
                .filter(|r| r.device == device)
                .map(|r| r.backend.as_str()),
        );
        for backend in backends {
            let cells: Vec<String> =
                SEED_COLUMNS
                    .iter()
                    .map(|(model, _)| {
                        cell(rows.iter().copied().find(|r| {
                            r.device == device && r.backend == backend && r.model == *model
                        }))
                    })
                    .collect();
            if cells.iter().all(|c| c == "–") {
                continue;
            }
            any = true;
            let _ = writeln!(out, "| {device}, {backend} | {} |", cells.join(" | "));
        }
    }
    if !any {
        return "No V3 model at 1.0/224 was measured (run `--models seed`).\n".into();
    }
    out
}

fn millions(v: Option<u64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}", v as f64 / 1e6))
}

fn published_cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v}"))
}

/// The slim seed's shape: model | MACs | params | published top-1 | one latency column per
/// device (the fastest backend, or `options.backend`) | the published Pixel latencies.
pub fn model_table(runs: &[Run], options: &ReportOptions) -> String {
    let rows = all_rows(runs);
    let devices = distinct(rows.iter().map(|r| r.device.as_str()));
    let mut out = String::from("| model | MACs (M) | params (M) | top-1 % (published) |");
    let which = options.backend.as_deref().unwrap_or("fastest backend");
    for d in &devices {
        let _ = write!(out, " {d} (ms, {which}) |");
    }
    out.push_str(" Pixel 1 (ms, published) | Pixel 2 (ms, published) | Pixel 3 (ms, published) |\n|---|---:|---:|---:|");
    out.push_str(&"---:|".repeat(devices.len() + 3));
    out.push('\n');
    for model in distinct(rows.iter().map(|r| r.model.as_str())) {
        let first = rows.iter().find(|r| r.model == model).expect("seen");
        let published = model
            .parse::<ModelConfig>()
            .ok()
            .and_then(|c| published::lookup(&c));
        let mut line = format!(
            "| {model} | {} | {} | {} |",
            millions(first.macs),
            millions(first.params),
            published_cell(published.as_ref().map(|p| p.float.top1)),
        );
        for d in &devices {
            let candidates = rows.iter().filter(|r| {
                r.device == *d
                    && r.model == model
                    && r.is_ok()
                    && options.backend.as_ref().is_none_or(|b| &r.backend == b)
            });
            let best = candidates.min_by(|a, b| {
                a.p50_ms
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.p50_ms.unwrap_or(f64::MAX))
            });
            let text = match (best, &options.backend) {
                (Some(r), None) => {
                    format!("{} ({})", r.p50_ms.map_or("?".into(), format_ms), r.backend)
                }
                (Some(r), Some(_)) => r.p50_ms.map_or("?".into(), format_ms),
                (None, _) => "–".into(),
            };
            let _ = write!(line, " {text} |");
        }
        let p = published.as_ref().map(|p| p.float);
        let _ = writeln!(
            line,
            " {} | {} | {} |",
            published_cell(p.and_then(|r| r.pixel1_ms)),
            published_cell(p.and_then(|r| r.pixel2_ms)),
            published_cell(p.and_then(|r| r.pixel3_ms))
        );
        out.push_str(&line);
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

/// One row per pair: distribution, CI, outliers, flags, init, first inference, memory and
/// output agreement.
pub fn stats_table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| device | model | backend | status | p50 | p90 | p99 | mean ± std | median 95% CI | outliers (mild/severe) | flags | init (ms) | first (ms) | peak RSS (MiB) | max rel. diff |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for r in all_rows(runs) {
        let ms = |v: Option<f64>| opt(v, format_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.device,
            r.model,
            r.backend,
            status_word(r),
            ms(r.p50_ms),
            ms(r.p90_ms),
            ms(r.p99_ms),
            match (r.mean_ms, r.std_ms) {
                (Some(m), Some(s)) => format!("{} ± {}", format_ms(m), format_ms(s)),
                _ => "–".into(),
            },
            match (r.median_ci_low_ms, r.median_ci_high_ms) {
                (Some(l), Some(h)) => format!("[{}, {}]", format_ms(l), format_ms(h)),
                _ => "–".into(),
            },
            match (r.outliers_mild, r.outliers_severe) {
                (Some(m), Some(s)) => format!("{m}/{s}"),
                _ => "–".into(),
            },
            if r.flags.is_empty() {
                "–".to_string()
            } else {
                r.flag_list().join(", ")
            },
            ms(r.init_ms),
            ms(r.first_inference_ms),
            opt(r.peak_rss_mb, |v| format!("{v:.1}")),
            opt(r.max_rel_diff, |v| format!("{v:.1e}")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilebench_results::Status;

    fn row(device: &str, model: &str, backend: &str, p50: f64, flags: &str) -> SummaryRow {
        SummaryRow {
            device: device.into(),
            model: model.into(),
            backend: backend.into(),
            status: Some(Status::Ok),
            p50_ms: Some(p50),
            flags: flags.into(),
            ..Default::default()
        }
    }

    #[test]
    fn table_cell_by_cell() {
        let mut failed = row("local", "m2", "noop", 0.0, "");
        failed.status = Some(Status::Crashed);
        let run = Run {
            dir: "x".into(),
            summary: vec![
                row("local", "m1", "native", 12.3456, ""),
                row("local", "m1", "noop", 0.00012, "noisy"),
                row("local", "m2", "native", 123.45, ""),
                failed,
            ],
            samples: Default::default(),
            skipped_rows: vec![],
        };
        let md = latency_tables(&[run]);
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines.contains(&"| model | native | noop |"), "{md}");
        assert!(lines.contains(&"| m1 | 12.35 | 0.000120 ⚠ noisy |"), "{md}");
        assert!(lines.contains(&"| m2 | 123.5 | crashed |"), "{md}");
    }

    #[test]
    fn latency_formatting() {
        assert_eq!(format_ms(123.456), "123.5");
        assert_eq!(format_ms(4.6507), "4.65");
        assert_eq!(format_ms(0.5), "0.500");
        assert_eq!(format_ms(0.00003), "0.0000300");
        assert_eq!(format_ms(0.0), "0");
    }

    #[test]
    fn one_table_per_device() {
        let run = Run {
            dir: "x".into(),
            summary: vec![
                row("a", "m", "native", 1.0, ""),
                row("b", "m", "native", 2.0, ""),
            ],
            samples: Default::default(),
            skipped_rows: vec![],
        };
        let md = latency_tables(&[run]);
        assert!(md.contains("### a") && md.contains("### b"));
        assert!(md.contains("| m | 1.00 |") && md.contains("| m | 2.00 |"));
    }
}

//! Markdown tables: per-device latency tables (models × backends), the seed's device table
//! (device, backend × V3 models), the slim seed's model table, and one statistics row per pair.

use std::collections::BTreeSet;
use std::fmt::Write;

use mobilebench_models::{published, ModelConfig, Precision};
use mobilebench_results::{format_ms, Run, Status, SummaryRow};

use crate::{all_rows, distinct, ReportOptions, SEED_COLUMNS};

/// The backends of `backends` that were unavailable for every model of these rows, with the
/// reason (the first row's): one line under a table instead of a column of "unavailable".
fn not_run_here<'a>(rows: &[&'a SummaryRow], backends: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    backends
        .iter()
        .filter_map(|&b| {
            let mut of_backend = rows.iter().filter(|r| r.backend == b).peekable();
            let first = *of_backend.peek()?;
            of_backend
                .all(|r| r.status == Some(Status::Unavailable))
                .then_some((b, first.message.as_str()))
        })
        .collect()
}

/// Flags that make a row unfit to be called the fastest: its output is wrong, or its timing
/// is not of the hardware it claims.
const NOT_A_WINNER: [&str; 3] = ["disagrees", "software", "emulated"];

/// Whether a row may be named the fastest backend: measured ok and none of those flags.
pub fn can_win(row: &SummaryRow) -> bool {
    row.is_ok() && !row.flag_list().iter().any(|f| NOT_A_WINNER.contains(f))
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
    r.status.map_or("?", |s| s.word()).to_string()
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
        let not_run = not_run_here(&of_device, &backends);
        backends.retain(|b| !not_run.iter().any(|(n, _)| n == b));
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
        let _ = writeln!(
            out,
            "Median latency (ms), {}.\n",
            crate::cores_phrase(of_device.iter().copied())
        );
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
        for (backend, why) in not_run {
            let _ = writeln!(out, "not run here: {backend} — {why}\n");
        }
        out.push_str(&conditions(&of_device, &models, &backends));
    }
    out.push_str(
        "⚠ flags: noisy (coefficient of variation above the threshold), freq_changed, \
         temp_changed, unpinned, disagrees (output differs from the reference), emulated \
         (measured under qemu user emulation: the timing means nothing), software (a CPU \
         rasteriser stood in for the GPU); `–`: not run.\n",
    );
    out
}

/// What a device's pairs ran in: the measured core types, a warning where the device's
/// profile disagreed with its probe, and — where it has thermal zones — the hottest zone's
/// temperature range over each pair's rounds (and the `--settle` waits).
fn conditions(rows: &[&SummaryRow], models: &[&str], backends: &[&str]) -> String {
    let mut out = String::new();
    let types: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.core_type.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    if !types.is_empty() {
        let types: Vec<&str> = types.into_iter().collect();
        let _ = writeln!(out, "Measured core: {}.\n", types.join(", "));
    }
    let warnings: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.probe_notes.split("; "))
        .filter(|n| n.starts_with("device profile "))
        .collect();
    for w in warnings {
        let _ = writeln!(out, "⚠ {w}\n");
    }
    let range = |r: &SummaryRow| -> Option<(f64, f64)> {
        let t: Vec<f64> = [r.temp_before_c, r.temp_after_c]
            .into_iter()
            .flatten()
            .collect();
        Some((
            t.iter().copied().reduce(f64::min)?,
            t.iter().copied().reduce(f64::max)?,
        ))
    };
    if rows.iter().all(|r| range(r).is_none()) {
        return out;
    }
    let waited: f64 = rows.iter().filter_map(|r| r.settle_wait_s).sum();
    let settle = if rows.iter().any(|r| r.settle_wait_s.is_some()) {
        format!("; `--settle` waited {waited:.0} s in all")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "Hottest thermal zone before and after each pair (°C, lowest–highest){settle}.\n"
    );
    let _ = writeln!(out, "| model | {} |", backends.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(backends.len()));
    for model in models {
        let cells: Vec<String> = backends
            .iter()
            .map(|b| {
                rows.iter()
                    .find(|r| r.model == *model && r.backend == *b)
                    .and_then(|r| range(r))
                    .map_or("–".into(), |(lo, hi)| format!("{lo:.0}–{hi:.0}"))
            })
            .collect();
        let _ = writeln!(out, "| {model} | {} |", cells.join(" | "));
    }
    out.push('\n');
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
    let mut not_run_lines = String::new();
    for device in distinct(rows.iter().map(|r| r.device.as_str())) {
        let of_device: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| r.device == device)
            .collect();
        let mut backends = distinct(of_device.iter().map(|r| r.backend.as_str()));
        for (backend, why) in not_run_here(&of_device, &backends) {
            let _ = writeln!(not_run_lines, "\nnot run on {device}: {backend} — {why}");
            backends.retain(|b| *b != backend);
        }
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
    out.push_str(&not_run_lines);
    out
}

fn millions(v: Option<u64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}", v as f64 / 1e6))
}

fn published_cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v}"))
}

/// An int8 model's agreement with its float model over its rows: the lowest top-1
/// agreement and the lowest cosine (agreement on the harness's inputs, not accuracy).
fn agreement_cell(rows: &[&SummaryRow], model: &str) -> String {
    let ours: Vec<_> = rows
        .iter()
        .filter(|r| r.model == model && r.is_ok() && r.top1_agreement.is_some())
        .collect();
    let low =
        |f: fn(&SummaryRow) -> Option<f64>| ours.iter().filter_map(|r| f(r)).min_by(f64::total_cmp);
    match (low(|r| r.top1_agreement), low(|r| r.cosine_min)) {
        (Some(top1), Some(cos)) => {
            let n = ours
                .iter()
                .filter_map(|r| r.agreement_inputs)
                .max()
                .unwrap_or(0);
            format!("{:.0}% / {cos:.3} (n={n})", 100.0 * top1)
        }
        _ => "–".into(),
    }
}

/// The slim seed's shape: model | precision | MACs | params | published top-1 | one latency
/// column per device (the fastest backend, or `options.backend`) | the published Pixel
/// latencies. An int8 model (`MODEL_int8`) follows its float model, with the published
/// 8-bit figures and its measured agreement with the float model.
pub fn model_table(runs: &[Run], options: &ReportOptions) -> String {
    let rows = all_rows(runs);
    let devices = distinct(rows.iter().map(|r| r.device.as_str()));
    let mut out = String::from(
        "| model | precision | MACs (M) | params (M) | top-1 % (published) | int8 vs float: top-1 agreement / min cosine (measured, not accuracy) |",
    );
    let which = options.backend.as_deref().unwrap_or("fastest backend");
    for d in &devices {
        let _ = write!(out, " {d} (ms, {which}) |");
    }
    out.push_str(" Pixel 1 (ms, published) | Pixel 2 (ms, published) | Pixel 3 (ms, published) |\n|---|---|---:|---:|---:|---:|");
    out.push_str(&"---:|".repeat(devices.len() + 3));
    out.push('\n');
    let mut notes = Vec::new();
    for model in distinct(rows.iter().map(|r| r.model.as_str())) {
        let first = rows.iter().find(|r| r.model == model).expect("seen");
        let (name, precision) = Precision::of_label(model);
        let published = name
            .parse::<ModelConfig>()
            .ok()
            .and_then(|c| published::lookup(&c));
        // The published row of this precision (slim's 8-bit rows are uint8).
        let p = published.as_ref().and_then(|p| match precision {
            Precision::Float32 => Some(p.float),
            Precision::Int8 => p.uint8,
        });
        let agreement = match precision {
            Precision::Int8 => agreement_cell(&rows, model),
            Precision::Float32 => String::new(),
        };
        let mut line = format!(
            "| {model} | {} | {} | {} | {} | {agreement} |",
            precision.name(),
            millions(first.macs),
            millions(first.params),
            published_cell(p.map(|r| r.top1)),
        );
        for d in &devices {
            let candidates = rows.iter().filter(|r| {
                r.device == *d
                    && r.model == model
                    && match &options.backend {
                        // The fastest is chosen among rows fit to win; a named backend is shown
                        // as measured (its flags are in the statistics table).
                        None => can_win(r),
                        Some(b) => r.is_ok() && &r.backend == b,
                    }
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
        let _ = writeln!(
            line,
            " {} | {} | {} |",
            published_cell(p.and_then(|r| r.pixel1_ms)),
            published_cell(p.and_then(|r| r.pixel2_ms)),
            published_cell(p.and_then(|r| r.pixel3_ms))
        );
        out.push_str(&line);
        if precision == Precision::Float32 {
            if let Some(p) = published.as_ref().filter(|p| p.float.has_spec()) {
                notes.push(v4_note(model, p.float));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "\nMobileNetV4 (paper, Qin et al. 2024): MACs and params above are counted from the official spec; {}.",
            published::V4_PAPER_GAP
        );
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// One V4 model's published figures that have no column: the paper's params/MACs, its
/// distilled top-1, and its device latencies (each with its device and precision).
fn v4_note(model: &str, p: &published::PublishedRow) -> String {
    format!(
        "`{model}`: paper {} M params, {} M MACs; top-1 {} (distilled {}); published latency (ms): {}",
        p.params_m,
        p.macs_m,
        p.top1,
        p.top1_distilled.map_or("–".into(), |t| t.to_string()),
        p.published_latency.as_deref().unwrap_or("–")
    )
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

/// One row per pair: distribution, CI, outliers, flags, init, first inference, memory and
/// output agreement.
pub fn stats_table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| device | model | backend | status | p50 | p90 | p99 | mean ± std | median 95% CI | outliers (mild/severe) | flags | init (ms) | first (ms) | peak RSS (MiB) | model mem (MiB) | rounds (spread) | max rel. diff |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in all_rows(runs) {
        let ms = |v: Option<f64>| opt(v, format_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            opt(r.model_mem_mb, |v| format!("{v:.1}")),
            match r.round_cv {
                Some(cv) => format!("{} ({:.1}%)", r.rounds, cv * 100.0),
                None => r.rounds.to_string(),
            },
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
    fn a_device_says_its_core_its_profile_warnings_and_each_pairs_temperatures() {
        let mut a = row("n2", "m1", "native", 10.0, "");
        a.core_type = "Cortex-A73".into();
        a.temp_before_c = Some(48.2);
        a.temp_after_c = Some(55.9);
        a.settle_wait_s = Some(30.0);
        a.probe_notes = "no cpufreq; device profile n2: cluster `big` (cores 2-5, Cortex-A73): the probe found core 2 is a Cortex-A53".into();
        let mut b = row("n2", "m1", "tract", 20.0, "");
        b.core_type = "Cortex-A73".into();
        b.settle_wait_s = Some(12.0);
        let run = Run {
            dir: "x".into(),
            summary: vec![a, b],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![],
        };
        let md = latency_tables(&[run]);
        assert!(md.contains("Measured core: Cortex-A73.\n"), "{md}");
        assert!(md.contains("⚠ device profile n2: cluster `big` (cores 2-5, Cortex-A73): the probe found core 2 is a Cortex-A53"), "{md}");
        assert!(md.contains("`--settle` waited 42 s in all"), "{md}");
        assert!(md.contains("| m1 | 48–56 | – |"), "{md}");
        // This VM: no thermal zones, so no temperature table.
        let run = Run {
            dir: "x".into(),
            summary: vec![row("local", "m1", "native", 1.0, "")],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![],
        };
        assert!(!latency_tables(&[run]).contains("Hottest thermal zone"));
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
            ops: vec![],
        };
        let md = latency_tables(&[run]);
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines.contains(&"| model | native | noop |"), "{md}");
        assert!(lines.contains(&"| m1 | 12.35 | 0.000120 ⚠ noisy |"), "{md}");
        assert!(lines.contains(&"| m2 | 123.5 | crashed |"), "{md}");
    }

    #[test]
    fn a_backend_unavailable_everywhere_is_one_line_not_a_column() {
        let unavailable = |model: &str| SummaryRow {
            status: Some(Status::Unavailable),
            message: "no Vulkan loader".into(),
            ..row("local", model, "litert-gpu", 0.0, "")
        };
        let mut crashed = row("local", "m2", "tch", 0.0, "");
        crashed.status = Some(Status::Crashed);
        let mut tch_unavailable = unavailable("m1");
        tch_unavailable.backend = "tch".into();
        let run = Run {
            dir: "x".into(),
            summary: vec![
                row("local", "m1", "native", 1.0, ""),
                unavailable("m1"),
                tch_unavailable,
                row("local", "m2", "native", 2.0, ""),
                unavailable("m2"),
                crashed,
            ],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![],
        };
        let md = latency_tables(std::slice::from_ref(&run));
        // tch crashed on one model: it keeps its column, with both cells.
        assert!(md.contains("| model | native | tch |"), "{md}");
        assert!(md.contains("| m1 | 1.00 | unavailable |"), "{md}");
        assert!(
            md.contains("not run here: litert-gpu — no Vulkan loader"),
            "{md}"
        );
        assert!(!md.contains("| litert-gpu"), "{md}");
    }

    #[test]
    fn the_fastest_backend_is_one_whose_result_counts() {
        let run = Run {
            dir: "x".into(),
            summary: vec![
                row("local", "m", "native", 3.0, ""),
                row("local", "m", "nan", 0.001, "disagrees"),
                row("local", "m", "wgpu", 0.5, "software"),
                row("local", "m", "slow", 9.0, "noisy"),
            ],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![],
        };
        let md = model_table(std::slice::from_ref(&run), &ReportOptions::default());
        assert!(md.contains("| 3.00 (native) |"), "{md}");
        assert!(
            can_win(&run.summary[3]),
            "noisy is slow to trust, not wrong"
        );
        assert!(!can_win(&run.summary[1]) && !can_win(&run.summary[2]));
    }

    #[test]
    fn int8_rows_follow_their_float_model_with_published_8_bit_figures() {
        let name = "mobilenet_v3_large_1.0_224";
        let label = Precision::Int8.label(name);
        let mut int8 = row("local", &label, "litert-xnnpack", 2.0, "");
        int8.precision = "int8".into();
        int8.agreement_inputs = Some(16);
        int8.top1_agreement = Some(0.9375);
        int8.cosine_min = Some(0.981);
        let run = Run {
            dir: "x".into(),
            summary: vec![row("local", name, "litert-xnnpack", 3.0, ""), int8],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![],
        };
        let md = model_table(std::slice::from_ref(&run), &ReportOptions::default());
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[2].starts_with(&format!("| {name} | float32 |")),
            "{md}"
        );
        // Published 8-bit top-1 of V3-Large 1.0/224: 73.9 (slim's table), beside ours.
        assert!(lines[3].starts_with(&format!("| {label} | int8 |")), "{md}");
        assert!(
            lines[3].contains("| 73.9 | 94% / 0.981 (n=16) | 2.00 (litert-xnnpack) |"),
            "{md}"
        );
    }

    #[test]
    fn v4_rows_carry_the_paper_figures_that_have_no_column() {
        let name = "mobilenet_v4_conv_medium_1.0_256";
        let run = Run {
            dir: "x".into(),
            summary: vec![row("local", name, "native", 7.0, "")],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![],
        };
        let md = model_table(std::slice::from_ref(&run), &ReportOptions::default());
        assert!(md.contains(&format!("| {name} | float32 |")), "{md}");
        assert!(md.contains("| 79.9 |"), "paper top-1 in its column: {md}");
        let note = md
            .lines()
            .find(|l| l.starts_with(&format!("- `{name}`")))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(note.contains("paper 9.2 M params, 1000 M MACs"), "{note}");
        assert!(note.contains("distilled 82.7"), "{note}");
        assert!(note.contains("Pixel 6 CPU int8 11.4"), "{note}");
        assert!(md.contains("counted from the official spec"), "{md}");
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
            ops: vec![],
        };
        let md = latency_tables(&[run]);
        assert!(md.contains("### a") && md.contains("### b"));
        assert!(md.contains("| m | 1.00 |") && md.contains("| m | 2.00 |"));
    }
}

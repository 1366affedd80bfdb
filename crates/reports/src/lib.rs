//! Reports from results CSVs only (never re-running anything). For now: one markdown latency
//! table per device, rows models, columns backends, cells the median in ms.

use std::collections::BTreeSet;
use std::fmt::Write;

use mobilebench_results::{Run, SummaryRow};

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
        Some(r) => r
            .status
            .map_or("?".into(), |s| format!("{s:?}").to_lowercase()),
    }
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
         temp_changed, unpinned, disagrees (output differs from the reference); `–`: not run.\n",
    );
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

//! How the backends scale with threads (`bench run --threads 1,2,4`): per device and model,
//! each backend's median at every thread count, its speed-up over its fewest threads and
//! the parallel efficiency, the fastest backend at each count and native against the
//! fastest peer; and the plot of latency against threads, one line per backend.

use std::path::PathBuf;

use mobilebench_results::{format_ms, Run, SummaryRow};

use crate::{all_rows, distinct};

/// One (device, model) measured at several thread counts.
pub(crate) struct Scaling {
    pub device: String,
    pub model: String,
    /// Thread counts, ascending.
    pub counts: Vec<u32>,
    /// Each backend (its name with its workload other than threads) and its median at each
    /// count, `None` where it did not run.
    pub backends: Vec<(String, Vec<Option<f64>>)>,
}

/// A row's backend without the thread count a workload label may have added
/// (`tch (train, 2 threads)` → `tch (train)`).
fn backend_of(row: &SummaryRow) -> String {
    let name = row.backend.split(" (").next().unwrap_or(&row.backend);
    match row.workload_without_threads() {
        w if w.is_empty() => name.to_string(),
        w => format!("{name} ({w})"),
    }
}

/// Every (device, model) where some backend ran at more than one thread count.
pub(crate) fn scalings(runs: &[Run]) -> Vec<Scaling> {
    let rows: Vec<&SummaryRow> = all_rows(runs)
        .into_iter()
        .filter(|r| r.is_ok() && r.p50_ms.is_some())
        .collect();
    let mut out = Vec::new();
    for device in distinct(rows.iter().map(|r| r.device.as_str())) {
        let of_device: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| r.device == device)
            .collect();
        for model in distinct(of_device.iter().map(|r| r.model.as_str())) {
            let of_model: Vec<&SummaryRow> = of_device
                .iter()
                .copied()
                .filter(|r| r.model == model)
                .collect();
            let mut counts: Vec<u32> = of_model.iter().map(|r| r.thread_count()).collect();
            counts.sort_unstable();
            counts.dedup();
            if counts.len() < 2 {
                continue;
            }
            let names: Vec<String> = of_model.iter().map(|r| backend_of(r)).collect();
            let mut backends = Vec::new();
            for name in distinct(names.iter().map(String::as_str)) {
                let medians: Vec<Option<f64>> = counts
                    .iter()
                    .map(|&t| {
                        of_model
                            .iter()
                            .find(|r| r.thread_count() == t && backend_of(r) == name)
                            .and_then(|r| r.p50_ms)
                    })
                    .collect();
                backends.push((name.to_string(), medians));
            }
            out.push(Scaling {
                device: device.to_string(),
                model: model.to_string(),
                counts,
                backends,
            });
        }
    }
    out
}

fn threads_word(t: u32) -> String {
    format!("{t} thread{}", if t == 1 { "" } else { "s" })
}

/// The file stem of one (model, device)'s scaling plot.
pub fn scaling_stem(model: &str, device: &str) -> String {
    format!(
        "scaling_{}",
        crate::profile::plot_stem(model, device).trim_start_matches("where_the_time_goes_")
    )
}

/// The "Threads" section: per (device, model) measured at several thread counts, a table of
/// medians, speed-ups and efficiencies, the fastest backend per count, and the plot among
/// `plots` (paths relative to the report); empty when no run swept threads.
pub fn scaling_section(runs: &[Run], plots: &[PathBuf]) -> String {
    let all = scalings(runs);
    if all.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "## Threads\n\nMedian latency (ms) at each `--threads` count on the run's cores (the summary's `core_set`); speed-up = median at the fewest threads / median at N, efficiency = speed-up / (N / fewest).\n\n",
    );
    for s in &all {
        md.push_str(&format!("### {} on {}\n\n", s.model, s.device));
        let base = s.counts[0];
        let more = &s.counts[1..];
        let mut header = vec!["backend".to_string()];
        header.extend(s.counts.iter().map(|&t| threads_word(t)));
        header.extend(more.iter().map(|t| format!("speed-up ×{t}")));
        header.extend(more.iter().map(|t| format!("efficiency ×{t}")));
        md.push_str(&format!("| {} |\n", header.join(" | ")));
        md.push_str(&format!("|---|{}\n", "---:|".repeat(header.len() - 1)));
        for (name, medians) in &s.backends {
            let mut cells = vec![name.clone()];
            cells.extend(medians.iter().map(|m| m.map_or("–".into(), format_ms)));
            let speedups: Vec<Option<f64>> = medians[1..]
                .iter()
                .map(|m| Some(medians[0]? / (*m)?))
                .collect();
            cells.extend(
                speedups
                    .iter()
                    .map(|x| x.map_or("–".into(), |x| format!("{x:.2}×"))),
            );
            cells.extend(more.iter().zip(&speedups).map(|(&t, x)| {
                x.map_or("–".into(), |x| {
                    format!("{:.0}%", 100.0 * x / (t as f64 / base as f64))
                })
            }));
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        md.push('\n');
        let mut lines = Vec::new();
        for (i, &t) in s.counts.iter().enumerate() {
            let ran: Vec<(&str, f64)> = s
                .backends
                .iter()
                .filter_map(|(n, m)| Some((n.as_str(), m[i]?)))
                .collect();
            let Some(&(fastest, ms)) = ran.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
                continue;
            };
            let mut line = format!(
                "{}: fastest {fastest} ({} ms)",
                threads_word(t),
                format_ms(ms)
            );
            let native = ran.iter().find(|(n, _)| *n == "native");
            let peer = ran
                .iter()
                .filter(|(n, _)| *n != "native")
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let (Some((_, n)), Some((p, pm))) = (native, peer) {
                line.push_str(&format!("; native / fastest peer ({p}) = {:.2}", n / pm));
            }
            lines.push(line);
        }
        md.push_str(&lines.join(". "));
        md.push_str(".\n\n");
        let stem = scaling_stem(&s.model, &s.device);
        if let Some(png) = crate::png_named(plots, &stem) {
            md.push_str(&format!(
                "![latency vs threads: {} on {}]({})\n\n",
                s.model,
                s.device,
                png.display()
            ));
        }
    }
    md
}

/// Latency against threads, one line per backend (markers differ as well as colours).
#[cfg(feature = "plots")]
pub(crate) fn plot<DB: plotters::prelude::DrawingBackend + 'static>(
    root: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    s: &Scaling,
    font: &'static str,
    color: impl Fn(usize) -> plotters::prelude::RGBColor,
    marker: impl Fn(
        usize,
        (f64, f64),
        plotters::prelude::ShapeStyle,
    ) -> plotters::prelude::DynElement<'static, DB, (f64, f64)>,
) -> Result<(), String> {
    use plotters::prelude::*;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let top = s
        .backends
        .iter()
        .flat_map(|(_, m)| m.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        * 1.1;
    let lo = s.counts[0] as f64 - 0.3;
    let hi = *s.counts.last().expect("two counts or more") as f64 + 0.3;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{} on {}: median latency vs threads", s.model, s.device),
            (font, 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0f64..top.max(1e-6))
        .map_err(|e| e.to_string())?;
    let counts = s.counts.clone();
    chart
        .configure_mesh()
        .x_desc("threads")
        .y_desc("median latency (ms)")
        .x_labels(counts.len() * 4)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && counts.contains(&(i as u32)) {
                format!("{i}")
            } else {
                String::new()
            }
        })
        .label_style((font, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, medians)) in s.backends.iter().enumerate() {
        let style = ShapeStyle::from(&color(i)).stroke_width(2);
        let points: Vec<(f64, f64)> = s
            .counts
            .iter()
            .zip(medians)
            .filter_map(|(&t, m)| Some((t as f64, (*m)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart
            .draw_series(points.into_iter().map(|p| marker(i, p, style)))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((font, 15))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilebench_results::Status;
    use std::collections::HashMap;

    fn row(backend: &str, threads: u32, p50: f64) -> SummaryRow {
        SummaryRow {
            device: "d".into(),
            model: "m".into(),
            backend: backend.into(),
            threads: Some(threads),
            status: Some(Status::Ok),
            p50_ms: Some(p50),
            ..Default::default()
        }
    }

    #[test]
    fn speed_ups_and_efficiencies_per_backend_and_the_fastest_per_count() {
        let run = Run {
            dir: "r".into(),
            summary: vec![
                row("native", 1, 4.0),
                row("onnxruntime", 1, 5.0),
                row("native", 2, 2.5),
                row("onnxruntime", 2, 2.0),
                // `bench report` labels it `tract (2 threads)`: the count is not a backend.
                row("tract", 2, 9.0),
            ],
            samples: HashMap::new(),
            skipped_rows: vec![],
            ops: vec![],
        }
        .with_workload_labels();
        let md = scaling_section(std::slice::from_ref(&run), &[]);
        assert!(
            md.contains("| backend | 1 thread | 2 threads | speed-up ×2 | efficiency ×2 |"),
            "{md}"
        );
        assert!(
            md.contains("| native | 4.00 | 2.50 | 1.60× | 80% |"),
            "{md}"
        );
        assert!(
            md.contains("| onnxruntime | 5.00 | 2.00 | 2.50× | 125% |"),
            "{md}"
        );
        assert!(md.contains("| tract | – | 9.00 | – | – |"), "{md}");
        assert!(
            md.contains(
                "1 thread: fastest native (4.00 ms); native / fastest peer (onnxruntime) = 0.80"
            ),
            "{md}"
        );
        assert!(md.contains("2 threads: fastest onnxruntime (2.00 ms); native / fastest peer (onnxruntime) = 1.25"), "{md}");
        // One thread count only: no section.
        let single = Run {
            summary: vec![row("native", 1, 4.0)],
            ..run
        };
        assert!(scaling_section(&[single], &[]).is_empty());
    }
}

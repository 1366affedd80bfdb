//! "Where the time goes": per (model, device), each backend's profiled time by op kind on
//! layer groups they all agree on ([`crate::breakdown`]), with the fastest backend per kind
//! and the stacked-bar plot; then, per pair, its steps by the runtime's own op and its
//! slowest steps, with the share of the core's measured FMA peak they reach.

use std::path::PathBuf;

use mobilebench_results::{format_ms, OpRow, Run};

use crate::breakdown::{breakdowns, Breakdown};

/// Steps listed individually per pair, slowest first.
const SLOWEST: usize = 8;

/// The file stem of the stacked-bar plot of one (model, device).
pub fn plot_stem(model: &str, device: &str) -> String {
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("where_the_time_goes_{}_{}", safe(model), safe(device))
}

/// The report section with the profiles of every profiled pair in `runs` (and the plots
/// among `plots`, paths relative to the report); empty when none was profiled.
pub fn profile_section(runs: &[Run], plots: &[PathBuf]) -> String {
    let mut md = String::new();
    for b in breakdowns(runs) {
        md.push_str(&kind_table(&b));
        let stem = plot_stem(&b.model, &b.device);
        if let Some(png) = crate::png_named(plots, &stem) {
            md.push_str(&format!(
                "![where the time goes: {} on {}]({})\n\n",
                b.model,
                b.device,
                png.display()
            ));
        }
    }
    for run in runs {
        let mut pairs: Vec<(&str, &str, &str)> = Vec::new();
        for o in &run.ops {
            let key = (o.device.as_str(), o.model.as_str(), o.backend.as_str());
            if !pairs.contains(&key) {
                pairs.push(key);
            }
        }
        for (device, model, backend) in pairs {
            let steps: Vec<&OpRow> = run
                .ops
                .iter()
                .filter(|o| {
                    (o.device.as_str(), o.model.as_str(), o.backend.as_str())
                        == (device, model, backend)
                })
                .collect();
            let p50 = run
                .summary
                .iter()
                .find(|r| r.device == device && r.model == model && r.backend == backend)
                .and_then(|r| r.p50_ms);
            md.push_str(&pair_table(device, model, backend, &steps, p50));
        }
    }
    if md.is_empty() {
        md
    } else {
        format!("## Where the time goes (`--profile-ops`)\n\nHow to read these tables (what each runtime's profiler measures and costs, how events are matched to layers): `docs/profiles.md` in mobilebench's manual.\n\n{md}")
    }
}

/// One row per op kind, one column per backend (ms and share of its profiled time), and
/// the fastest backend per kind.
fn kind_table(b: &Breakdown) -> String {
    let mut md = format!("### {} on {}: time by op kind\n\n", b.model, b.device);
    md.push_str("| op kind |");
    for backend in &b.backends {
        md.push_str(&format!(" {backend} |"));
    }
    md.push_str(" fastest | native ÷ fastest |\n|---|");
    md.push_str(&"---:|".repeat(b.backends.len()));
    md.push_str("---|---:|\n");
    let native = b.backends.iter().position(|x| x == "native");
    for (k, kind) in b.kinds.iter().enumerate() {
        md.push_str(&format!("| {kind} |"));
        for (i, ms) in b.ms[k].iter().enumerate() {
            md.push_str(&format!(
                " {} ({}) |",
                format_ms(*ms),
                percent(*ms, b.total(i))
            ));
        }
        // A kind some runtimes fold into the layers (hard-swish) or no layer's time has no
        // fair winner.
        let comparable = kind != "hard-swish" && kind != "unattributed";
        let fastest = b.ms[k]
            .iter()
            .enumerate()
            .filter(|(_, ms)| **ms > 0.0)
            .min_by(|x, y| x.1.total_cmp(y.1));
        match (comparable, fastest) {
            (true, Some((f, best))) => {
                let ratio = native
                    .filter(|&n| b.ms[k][n] > 0.0)
                    .map_or("–".into(), |n| format!("{:.2}", b.ms[k][n] / best));
                md.push_str(&format!(" {} | {ratio} |\n", b.backends[f]));
            }
            _ => md.push_str(" – | – |\n"),
        }
    }
    md.push_str("| **sum of steps** |");
    for i in 0..b.backends.len() {
        md.push_str(&format!(" {} |", format_ms(b.total(i))));
    }
    md.push_str(" | |\n| coverage |");
    for c in &b.coverage {
        md.push_str(&format!(
            " {} |",
            c.map_or("–".into(), |c| format!("{c:.2}"))
        ));
    }
    md.push_str(" | |\n| attributed |");
    for i in 0..b.backends.len() {
        md.push_str(&format!(" {} |", percent(b.attributed_share(i), 1.0)));
    }
    md.push_str(" | |\n\n");
    md
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.0}%", 100.0 * part / whole)
    } else {
        "–".into()
    }
}

fn gflops(macs: u64, ms: f64) -> String {
    OpRow::achieved_gflops(macs, ms).map_or("–".into(), |g| format!("{g:.1}"))
}

fn pair_table(
    device: &str,
    model: &str,
    backend: &str,
    steps: &[&OpRow],
    p50: Option<f64>,
) -> String {
    let total_ms: f64 = steps.iter().map(|s| s.median_ms).sum();
    let total_macs: u64 = steps.iter().map(|s| s.macs).sum();
    let peak = steps.iter().find_map(|s| s.core_peak_gflops).unwrap_or(0.0);
    let isa = steps.first().map_or("", |s| s.isa.as_str());
    let mut md = format!("<details><summary>{model} × {backend} on {device}: steps</summary>\n\n");
    let median = p50.map_or(String::new(), |p| {
        format!(" (the pair's median {} ms)", format_ms(p))
    });
    match OpRow::achieved_gflops(total_macs, total_ms) {
        Some(achieved) => md.push_str(&format!(
            "Sum of step medians {} ms{median} · {achieved:.1} GFLOP/s = {} of the core's measured FMA peak ({peak:.1} GFLOP/s, {isa}).\n\n",
            format_ms(total_ms),
            percent(achieved, peak),
        )),
        // A runtime's own steps, not matched to the model's layers: no MACs to divide.
        None => md.push_str(&format!(
            "Sum of step medians {} ms{median}, in {backend}'s own step names; its steps are not matched to the model's layers, so no MACs or GFLOP/s.\n\n",
            format_ms(total_ms),
        )),
    }
    md.push_str(
        "| op | steps | ms | share | GFLOP/s | of peak |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let mut kinds: Vec<(&str, usize, f64, u64)> = Vec::new();
    for s in steps {
        match kinds.iter_mut().find(|k| k.0 == s.op) {
            Some(k) => {
                k.1 += 1;
                k.2 += s.median_ms;
                k.3 += s.macs;
            }
            None => kinds.push((s.op.as_str(), 1, s.median_ms, s.macs)),
        }
    }
    kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
    for (op, count, ms, macs) in kinds {
        let achieved = OpRow::achieved_gflops(macs, ms);
        md.push_str(&format!(
            "| {op} | {count} | {} | {} | {} | {} |\n",
            format_ms(ms),
            percent(ms, total_ms),
            gflops(macs, ms),
            achieved.map_or("–".into(), |g| percent(g, peak)),
        ));
    }
    let mut slowest: Vec<&&OpRow> = steps.iter().collect();
    slowest.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));
    md.push_str(&format!(
        "\nSlowest {SLOWEST} steps:\n\n| step | op | shape | MMACs | ms | GFLOP/s |\n|---|---|---|---:|---:|---:|\n"
    ));
    for s in slowest.into_iter().take(SLOWEST) {
        md.push_str(&format!(
            "| {} | {} | {} → {} | {:.1} | {} | {} |\n",
            s.name,
            s.op,
            s.input_shape,
            s.output_shape,
            s.macs as f64 / 1e6,
            format_ms(s.median_ms),
            gflops(s.macs, s.median_ms),
        ));
    }
    md.push_str("\n</details>\n\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(step: u32, op: &str, macs: u64, ms: f64) -> OpRow {
        OpRow {
            device: "local".into(),
            model: "m".into(),
            backend: "native".into(),
            threads: 1,
            round: 1,
            step,
            name: format!("s{step}"),
            op: op.into(),
            input_shape: "7x7x8".into(),
            output_shape: "7x7x8".into(),
            macs,
            median_ms: ms,
            gflops: OpRow::achieved_gflops(macs, ms),
            core_peak_gflops: Some(100.0),
            isa: "avx2+fma".into(),
            ..Default::default()
        }
    }

    #[test]
    fn kinds_are_summed_and_shares_follow_from_the_steps() {
        let run = Run {
            dir: "r".into(),
            summary: vec![],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![
                op(0, "pointwise_conv", 10_000_000, 0.4),
                op(1, "depthwise_conv", 1_000_000, 0.5),
                op(2, "pointwise_conv", 10_000_000, 0.1),
            ],
        };
        let md = profile_section(&[run], &[]);
        // 20 M MACs in 0.5 ms = 80 GFLOP/s = 80% of the 100 GFLOP/s peak, half the time.
        assert!(
            md.contains("| pointwise_conv | 2 | 0.500 | 50% | 80.0 | 80% |"),
            "{md}"
        );
        assert!(
            md.contains("| depthwise_conv | 1 | 0.500 | 50% | 4.0 | 4% |"),
            "{md}"
        );
        // Whole pair: 21 M MACs in 1.0 ms = 42 GFLOP/s, 42% of peak.
        assert!(
            md.contains("42.0 GFLOP/s = 42% of the core's measured FMA peak"),
            "{md}"
        );
        assert!(md.starts_with("## Where the time goes"), "{md}");
        assert!(profile_section(&[], &[]).is_empty());
    }

    #[test]
    fn steps_without_macs_say_so_instead_of_a_zero_share_of_the_peak() {
        let mut steps = vec![op(0, "OptMatMul", 0, 0.4), op(1, "DepthWiseConv", 0, 0.2)];
        for s in &mut steps {
            s.backend = "tract".into();
        }
        let run = Run {
            dir: "r".into(),
            summary: vec![],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: steps,
        };
        let md = profile_section(&[run], &[]);
        assert!(
            md.contains("Sum of step medians 0.600 ms, in tract's own step names; its steps are not matched to the model's layers"),
            "{md}"
        );
        assert!(!md.contains("of the core's measured FMA peak"), "{md}");
        assert!(
            md.contains("| OptMatMul | 1 | 0.400 | 67% | – | – |"),
            "{md}"
        );
    }

    #[test]
    fn the_kind_table_names_the_fastest_backend_and_native_against_it() {
        let row = |backend: &str, nodes: &str, kind: &str, ms: f64| OpRow {
            device: "local".into(),
            model: "m".into(),
            backend: backend.into(),
            threads: 1,
            round: 1,
            layer_group: nodes.into(),
            ir_nodes: nodes.into(),
            op_kind: kind.into(),
            median_ms: ms,
            coverage: Some(0.97),
            ..Default::default()
        };
        let run = Run {
            dir: "r".into(),
            summary: vec![],
            samples: Default::default(),
            skipped_rows: vec![],
            ops: vec![
                row("native", "a", "depthwise", 0.6),
                row("native", "b", "SE", 0.1),
                row("ort", "a", "depthwise", 0.4),
                row("ort", "b", "SE", 0.2),
                row("ort", "", "unattributed", 0.05),
            ],
        };
        let plot = PathBuf::from("where_the_time_goes_m_local.png");
        let md = profile_section(&[run], &[plot]);
        assert!(
            md.contains("| op kind | native | ort | fastest | native ÷ fastest |"),
            "{md}"
        );
        assert!(
            md.contains("| depthwise | 0.600 (86%) | 0.400 (62%) | ort | 1.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| SE | 0.100 (14%) | 0.200 (31%) | native | 1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| unattributed | 0 (0%) | 0.0500 (8%) | – | – |"),
            "{md}"
        );
        assert!(md.contains("| coverage | 0.97 | 0.97 |"), "{md}");
        assert!(md.contains("| attributed | 100% | 92% |"), "{md}");
        assert!(md.contains("](where_the_time_goes_m_local.png)"), "{md}");
    }
}

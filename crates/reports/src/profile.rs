//! "Where the time goes": the `--profile-ops` steps of each profiled pair, by op kind and
//! slowest steps, with the share of the core's measured FMA peak they reach.

use mobilebench_results::{format_ms, OpRow, Run};

/// Steps listed individually per pair, slowest first.
const SLOWEST: usize = 8;

/// The report section with the profile tables of every profiled pair in `runs`; empty when
/// none was profiled.
pub fn profile_section(runs: &[Run]) -> String {
    let mut md = String::new();
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
        format!("## Where the time goes (`--profile-ops`)\n\n{md}")
    }
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
    let mut md = format!("### {model} × {backend} on {device}\n\n");
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
    md.push('\n');
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
        let md = profile_section(&[run]);
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
        assert!(profile_section(&[]).is_empty());
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
        let md = profile_section(&[run]);
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
}

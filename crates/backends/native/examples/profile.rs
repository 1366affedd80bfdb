//! Per-step time of the native engine on one zoo model, one thread, unpinned: a quick look
//! while working on kernels (`bench run --profile-ops` is the measured, pinned version).
//!
//! `cargo run --release -p mobilebench-native --example profile -- mobilenet_v3_large_1.0_224 [runs]`

use std::time::{Duration, Instant};

use mobilebench_models::{sets::select, synthetic_input, BnMode, Model};
use mobilebench_native::Engine;

fn main() {
    let mut args = std::env::args().skip(1);
    let spec = args
        .next()
        .unwrap_or_else(|| "mobilenet_v3_large_1.0_224".into());
    let runs: usize = args
        .next()
        .map_or(200, |r| r.parse().expect("runs is a number"));
    let isa = mobilebench_native::Isa::detect();
    println!(
        "fma peak {:.1} GFLOP/s ({})",
        mobilebench_native::fma_peak_gflops(isa, 5),
        isa.name()
    );
    for cfg in select(&spec).expect("a model spec bench list models knows") {
        let model = Model::from_config(&cfg, 1).with_bn(BnMode::Fused).unwrap();
        let mut engine = Engine::new(&model);
        let input = synthetic_input(model.graph.input, 1);
        let mut out = vec![0.0; engine.output_len()];
        let steps: Vec<_> = engine.steps().cloned().collect();
        let mut times = vec![Duration::ZERO; steps.len()];
        for _ in 0..20 {
            engine.run(&input, &mut out);
        }
        let mut totals = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            engine.run(&input, &mut out);
            totals.push(start.elapsed());
        }
        for _ in 0..runs {
            engine.run_timed(&input, &mut out, &mut times);
        }
        totals.sort();
        let median = totals[runs / 2].as_secs_f64() * 1e3;
        println!(
            "{cfg}: median {median:.3} ms over {runs} runs ({})",
            engine.isa().name()
        );
        let mut by_op: Vec<(String, f64, u64)> = Vec::new();
        for (info, t) in steps.iter().zip(&times) {
            let ms = t.as_secs_f64() * 1e3 / runs as f64;
            match by_op.iter_mut().find(|(op, ..)| *op == info.op) {
                Some(e) => {
                    e.1 += ms;
                    e.2 += info.macs;
                }
                None => by_op.push((info.op.clone(), ms, info.macs)),
            }
            if std::env::var_os("VERBOSE").is_some() {
                println!(
                    "  {:<28} {:<20} {:>12} -> {:<12} {:>7.3} ms {:>6.1} GFLOP/s",
                    info.name,
                    info.op,
                    info.input_shape,
                    info.output_shape,
                    ms,
                    2.0 * info.macs as f64 / ms / 1e6
                );
            }
        }
        for (op, ms, macs) in by_op {
            println!(
                "  {op:<22} {ms:>7.3} ms {:>6.1} GFLOP/s",
                2.0 * macs as f64 / ms / 1e6
            );
        }
    }
}

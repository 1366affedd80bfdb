//! The tiled pointwise kernel against the one-thread-per-output kernel on one layer, 56×56×144
//! → 24 (V2's expanded bottleneck projection), interleaved in one process on this machine's
//! adapter. Prints the median GPU time (timestamp queries; wall time without them) of each,
//! per round and overall, and the ratio.
//!
//! cargo run --release -p mobilebench-wgpu --example pointwise_tiling [ROUNDS] [RUNS]

use std::time::Instant;

use mobilebench_models::ir::{Activation, Graph, Shape};
use mobilebench_models::weights::Weights;
use mobilebench_models::{synthetic_input, Model};
use mobilebench_wgpu::{describe, open, Engine, Pointwise};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median time (ms) of `runs` runs: GPU time where the adapter has timestamps, else wall.
fn time(engine: &mut Engine, input: &[f32], out: &mut [f32], runs: usize) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            engine.run(input, out).expect("the layer runs");
            let wall = start.elapsed();
            engine.last_gpu_time().unwrap_or(wall).as_secs_f64() * 1e3
        })
        .collect();
    median(&mut t)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut graph = Graph::new("pointwise", Shape::new(56, 56, 144));
    graph.conv_bn("pw", 0, 24, 1, 1, Activation::None);
    let weights = Weights::random(&graph, 1);
    let model = Model {
        name: "pointwise 56x56x144->24".into(),
        graph,
        weights,
    };
    let input = synthetic_input(model.graph.input, 1);
    let gpu_for = || open().unwrap_or_else(|e| panic!("{e}"));
    let info = gpu_for();
    println!(
        "adapter: {}; timing: {}",
        describe(&info.info),
        if info.timestamps {
            "GPU timestamps"
        } else {
            "wall clock"
        }
    );
    let mut tiled = Engine::new(info, &model, Pointwise::Tiled);
    let mut naive = Engine::new(gpu_for(), &model, Pointwise::Naive);
    let mut out = vec![0.0; tiled.output_len()];
    // Warm-up (pipeline compilation, caches).
    time(&mut tiled, &input, &mut out, 3);
    time(&mut naive, &input, &mut out, 3);
    let (mut t_all, mut n_all) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let t = time(&mut tiled, &input, &mut out, runs);
        let n = time(&mut naive, &input, &mut out, runs);
        println!(
            "round {round}: tiled {t:.3} ms, one thread per output {n:.3} ms, ratio {:.1}x",
            n / t
        );
        t_all.push(t);
        n_all.push(n);
    }
    let (t, n) = (median(&mut t_all), median(&mut n_all));
    println!(
        "median of rounds: tiled {t:.3} ms, one thread per output {n:.3} ms, ratio {:.1}x",
        n / t
    );
}

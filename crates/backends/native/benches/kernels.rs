//! Criterion micro-benchmarks of the native engine: every distinct kernel shape of the
//! `default` models (one step of the engine's plan each, in place in its model) and each
//! whole model. Throughput is in flops (2 per MAC), so criterion's "elem/s" reads GFLOP/s
//! as Gelem/s; and the thread pool's cost per step (`threads/`). `cargo bench -p
//! mobilebench-native [-- FILTER]`; one core is the engine's
//! design: pin the process (`taskset -c 1 cargo bench …`) for steadier figures.

use std::collections::HashSet;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mobilebench_models::counting::count;
use mobilebench_models::{sets::select, synthetic_input, BnMode, Model};
use mobilebench_native::Engine;

fn models() -> Vec<Model> {
    select("default")
        .expect("the default set exists")
        .iter()
        .map(|cfg| {
            Model::from_config(cfg, 1)
                .with_bn(BnMode::Fused)
                .expect("folding BN never fails")
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let mut seen = HashSet::new();
    for model in models() {
        let mut engine = Engine::new(&model);
        let input = synthetic_input(model.graph.input, 1);
        let mut output = vec![0.0; engine.output_len()];
        engine.run(&input, &mut output);
        let steps: Vec<_> = engine.steps().cloned().collect();
        for (index, step) in steps.iter().enumerate() {
            let id = format!("{}/{}->{}", step.op, step.input_shape, step.output_shape);
            // MAC-free steps (pooling) and shapes another model already had are skipped.
            if step.macs == 0 || !seen.insert(id.clone()) {
                continue;
            }
            group.throughput(Throughput::Elements(2 * step.macs));
            group.bench_function(id, |b| b.iter(|| engine.run_step(&input, index)));
        }
    }
    group.finish();
}

fn whole_models(c: &mut Criterion) {
    let mut group = c.benchmark_group("model");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for model in models() {
        let mut engine = Engine::new(&model);
        let input = synthetic_input(model.graph.input, 1);
        let mut output = vec![0.0; engine.output_len()];
        group.throughput(Throughput::Elements(2 * count(&model.graph).macs));
        group.bench_function(model.name.clone(), |b| {
            b.iter(|| engine.run(&input, &mut output))
        });
    }
    group.finish();
}

/// What the multi-threaded engine pays per step on top of the work: publishing a job, the
/// workers seeing it and the barrier after it, with an empty job (workers spinning, as they
/// are between the steps of an inference); and whole models on one and two threads.
fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for n in [1, 2] {
        let pool = mobilebench_native::pool::Pool::new(n, None);
        group.bench_function(format!("pool_step_{n}"), |b| b.iter(|| pool.run(&|_| {})));
    }
    for model in models() {
        for n in [1, 2] {
            let mut engine =
                Engine::with_threads(&model, mobilebench_native::Isa::detect(), n, None);
            let input = synthetic_input(model.graph.input, 1);
            let mut output = vec![0.0; engine.output_len()];
            group.bench_function(format!("{}/{n}", model.name), |b| {
                b.iter(|| engine.run(&input, &mut output))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, whole_models, threads);
criterion_main!(benches);

//! `--profile-ops`, whole commands: every backend's per-op profile, outside the timed
//! samples, attributed to the model's layer groups, and the report's "where the time goes".
//!
//! The tests of this file take one lock: each measures on the same pinned core.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;

use common::{bench, bench_run, final_rows, number, pair, run_dir, stderr, stdout, BENCH};
use mobilebench_models::ModelConfig;

fn lock() -> std::sync::MutexGuard<'static, ()> {
    common::one_at_a_time()
}

fn ops_of(dir: &std::path::Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("ops.csv")).expect("ops.csv written");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader.deserialize().map(|r| r.unwrap()).collect()
}

/// Every IR node of `model` is in exactly one of the backend's layer groups, and at least
/// `min_attributed` of its profiled time is attributed to one.
fn check_alignment(
    ops: &[HashMap<String, String>],
    model: &str,
    backend: &str,
    min_attributed: f64,
) {
    let steps: Vec<_> = ops
        .iter()
        .filter(|o| o["model"] == model && o["backend"] == backend)
        .collect();
    assert!(!steps.is_empty(), "{model} × {backend}: no steps");
    let graph = model.parse::<ModelConfig>().unwrap().graph();
    let mut groups: HashMap<&str, &str> = HashMap::new();
    for o in steps.iter().filter(|o| !o["layer_group"].is_empty()) {
        let nodes = groups.entry(&o["layer_group"]).or_insert(&o["ir_nodes"]);
        assert_eq!(
            *nodes, o["ir_nodes"],
            "{backend}: a group names one node set"
        );
    }
    let mut seen: HashSet<&str> = HashSet::new();
    for nodes in groups.values() {
        for n in nodes.split('+') {
            assert!(
                seen.insert(n),
                "{model} × {backend}: node {n} in two groups: {groups:?}"
            );
        }
    }
    for n in &graph.nodes {
        assert!(
            seen.contains(n.name.as_str()),
            "{model} × {backend}: node {} in no group: {groups:?}",
            n.name
        );
    }
    let total: f64 = steps.iter().map(|o| number(o, "median_ms")).sum();
    let attributed: f64 = steps
        .iter()
        .filter(|o| o["op_kind"] != "unattributed")
        .map(|o| number(o, "median_ms"))
        .sum();
    assert!(
        attributed >= min_attributed * total,
        "{model} × {backend}: {attributed} of {total} ms attributed: {steps:?}"
    );
    for o in &steps {
        assert!(
            !o["matched_by"].is_empty() && !o["op_kind"].is_empty(),
            "{o:?}"
        );
    }
}

#[test]
fn profile_ops_writes_every_native_step_outside_the_samples() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let model = "mobilenet_v3_small_0.25_64";
    bench_run(
        out.path(),
        &[
            "--models",
            model,
            "--backends",
            "native,noop",
            "--warmup",
            "2",
            "--runs",
            "10",
            "--rounds",
            "2",
            "--profile-ops",
        ],
    );
    let dir = run_dir(out.path());
    // The samples are the timed loop's alone: exactly runs × rounds per pair.
    assert!(common::sample_counts(&dir).values().all(|&n| n == 20));
    let ops = ops_of(&dir);
    // Only native times its steps; noop ran as usual and has none.
    assert!(ops.iter().all(|o| o["backend"] == "native"), "{ops:?}");
    // One profile per round, each the whole plan: its steps' MACs add up to the model's.
    let rows = final_rows(&dir);
    let macs: u64 = pair(&rows, model, "native")["macs"].parse().unwrap();
    for round in ["1", "2"] {
        let steps: Vec<_> = ops.iter().filter(|o| o["round"] == round).collect();
        assert!(steps.len() > 20, "round {round}: {} steps", steps.len());
        let sum: u64 = steps
            .iter()
            .map(|o| o["macs"].parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, macs, "round {round}");
        for o in &steps {
            assert!(number(o, "median_ms") > 0.0, "{o:?}");
            assert!(number(o, "core_peak_gflops") > 0.0, "{o:?}");
        }
    }
    // Both the run's report.md and `bench report` show where the time goes.
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Where the time goes"), "{report}");
    assert!(
        report.contains(&format!(
            "<summary>{model} × native on local: steps</summary>"
        )),
        "{report}"
    );
    let md = stdout(&bench(&["report", dir.to_str().unwrap()]));
    assert!(md.contains("| pointwise_conv |"), "{md}");
}

#[test]
fn profile_ops_times_the_runtimes_own_steps_outside_the_samples() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    // Full size: at 64 px ORT's whole-µs kernel durations and per-kernel cost are a large part
    // of each step (its steps then add up to 1.6–1.8× the median).
    let model = "mobilenet_v3_small_1.0_224";
    bench_run(
        out.path(),
        &[
            "--models",
            model,
            "--backends",
            "native,tch,tract,onnxruntime,litert-xnnpack,litert-builtin,rten",
            "--warmup",
            "2",
            "--runs",
            "30",
            "--profile-ops",
        ],
    );
    let dir = run_dir(out.path());
    // Profiling never adds samples: exactly --runs per pair.
    assert!(common::sample_counts(&dir).values().all(|&n| n == 30));
    let ops = ops_of(&dir);
    let rows = final_rows(&dir);
    // Each in its own names: tract lowers convolutions to matrix products, ORT fuses them,
    // XNNPACK names its microkernels, TFLite its builtin ops.
    for (backend, an_op) in [
        ("native", "depthwise_conv"),
        ("tch", "conv2d"),
        ("tract", "MatMul"),
        ("onnxruntime", "Conv"),
        ("litert-xnnpack", "xnnpack: Convolution (NHWC, F32)"),
        ("litert-builtin", "tflite: CONV_2D"),
        ("rten", "Conv"),
    ] {
        let steps: Vec<_> = ops.iter().filter(|o| o["backend"] == backend).collect();
        assert!(steps.len() > 20, "{backend}: {} steps", steps.len());
        assert!(steps.iter().any(|o| o["op"].contains(an_op)), "{steps:?}");
        for (i, o) in steps.iter().enumerate() {
            assert_eq!(o["step"], i.to_string(), "{backend}: execution order");
            assert!(number(o, "median_ms") >= 0.0, "{o:?}");
            assert!(backend == "native" || o["macs"] == "0", "{o:?}");
        }
        // The steps' medians add up to about the unprofiled median: every step of the run
        // is there, nothing twice. Measured at this size over 8 runs: tract 0.95–1.00, ORT
        // 1.10–1.18 (its profiler's per-kernel cost), litert-builtin 0.95–1.02,
        // litert-xnnpack 0.77–0.93 (LiteRT's run overhead outside the operators, XNNPACK's
        // whole-µs times, and 30 runs of a noisy median); native 0.93–0.97, tch 0.93, rten
        // 0.93–0.96 (printing between its steps is outside them): bounds well outside all.
        let p50 = number(pair(&rows, model, backend), "p50_ms");
        let sum: f64 = steps.iter().map(|o| number(o, "median_ms")).sum();
        assert!(
            sum > 0.5 * p50 && sum < 1.6 * p50,
            "{backend}: step medians add up to {sum} ms against a median of {p50} ms"
        );
        // The recorded coverage is that ratio, on the round's own samples (the summary's
        // p50 rounds to the µs).
        let coverage = number(steps[0], "coverage");
        assert!(
            (coverage - sum / p50).abs() < 0.02,
            "{backend}: {coverage} vs {sum}/{p50}"
        );
        assert!(steps.iter().all(|o| o["coverage"] == steps[0]["coverage"]));
        check_alignment(&ops, model, backend, 0.9);
    }
    // The report lines the backends up by op kind, and draws it.
    let report_dir = out.path().join("report");
    let made = bench(&[
        "report",
        dir.to_str().unwrap(),
        "-o",
        report_dir.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let md = std::fs::read_to_string(report_dir.join("README.md")).unwrap();
    assert!(
        md.contains("| op kind | native | tch | tract | onnxruntime | litert-xnnpack | litert-builtin | rten | fastest | native ÷ fastest |"),
        "{md}"
    );
    for kind in [
        "| stem |",
        "| depthwise |",
        "| SE |",
        "| pointwise + add |",
        "| coverage |",
    ] {
        assert!(md.contains(kind), "{kind} in {md}");
    }
    let stem = format!("where_the_time_goes_{}_local", model.replace('.', "_"));
    for ext in ["svg", "png"] {
        let plot = report_dir.join(format!("{stem}.{ext}"));
        assert!(
            std::fs::metadata(&plot).is_ok_and(|m| m.len() > 1000),
            "{}",
            plot.display()
        );
    }
    assert!(md.contains(&format!("]({stem}.png)")), "{md}");
}

#[test]
fn every_default_model_is_attributed_on_every_profiling_backend() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    // The `default` set's architectures at a small width and resolution.
    let models: Vec<String> = [
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "mobilenet_v3_large_minimalistic",
        "mobilenet_v3_small_minimalistic",
    ]
    .iter()
    .map(|f| format!("{f}_0.5_96"))
    .collect();
    let backends = [
        "native",
        "tch",
        "tract",
        "onnxruntime",
        "litert-xnnpack",
        "litert-builtin",
    ];
    bench_run(
        out.path(),
        &[
            "--models",
            &models.join(","),
            "--backends",
            &backends.join(","),
            "--warmup",
            "1",
            "--runs",
            "5",
            "--profile-ops",
        ],
    );
    let dir = run_dir(out.path());
    let ops = ops_of(&dir);
    for model in &models {
        for backend in backends {
            check_alignment(&ops, model, backend, 0.9);
        }
    }
}

#[test]
fn profiled_runs_never_reach_the_samples() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    // `fixed` spins 500 µs a run, and 3 ms more in each profiled run.
    let result = Command::new(BENCH)
        .env("MOBILEBENCH_FIXED_US", "500")
        .args([
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "fixed",
            "--warmup",
            "5",
            "--runs",
            "50",
            "--profile-ops",
            "-o",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    let dir = run_dir(out.path());
    let rows = final_rows(&dir);
    let p50 = number(pair(&rows, "mobilenet_v3_small_0.25_64", "fixed"), "p50_ms");
    // The 50 profiled runs of 3.5 ms among the samples would be half of them (and the
    // count would be 100): the median would be 2 ms or more.
    assert!(p50 < 2.0, "p50 {p50} ms: profiled runs reached the samples");
    let ops = ops_of(&dir);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(number(&ops[0], "median_ms") >= 3.5, "{ops:?}");
    assert!(common::sample_counts(&dir).values().all(|&n| n == 50));
}

#[test]
fn model_files_profile_in_the_runtimes_own_names_without_alignment() {
    let _guard = lock();
    let py = common::python("MOBILEBENCH_TORCH_PYTHON", "Debian's python3-torchvision");
    let tmp = tempfile::tempdir().unwrap();
    // A file made by another tool: torchvision's MobileNetV3-Small through torch.onnx.
    let onnx = tmp.path().join("torchvision_mobilenet_v3_small.onnx");
    let made = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/torchvision_export.py"
        ))
        .arg(&onnx)
        .output()
        .expect("python runs");
    assert!(made.status.success(), "{}", stderr(&made));
    // A .tflite given as a file is a file like any other: no IR to line it up with.
    let tflite = tmp.path().join("given.tflite");
    let exported = bench(&[
        "export",
        "mobilenet_v3_small_0.25_64",
        "--format",
        "tflite",
        "-o",
        tflite.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let out = tmp.path().join("results");
    bench_run(
        &out,
        &[
            "--model-file",
            onnx.to_str().unwrap(),
            "--model-file",
            tflite.to_str().unwrap(),
            "--backends",
            "onnxruntime,litert-xnnpack,litert-builtin",
            "--warmup",
            "2",
            "--runs",
            "10",
            "--profile-ops",
        ],
    );
    let dir = run_dir(&out);
    let ops = ops_of(&dir);
    for (model, backend, an_op) in [
        ("torchvision_mobilenet_v3_small.onnx", "onnxruntime", "Conv"),
        (
            "given.tflite",
            "litert-xnnpack",
            "xnnpack: Convolution (NHWC, F32)",
        ),
        ("given.tflite", "litert-builtin", "tflite: CONV_2D"),
    ] {
        let steps: Vec<_> = ops
            .iter()
            .filter(|o| o["model"] == model && o["backend"] == backend)
            .collect();
        assert!(steps.len() > 20, "{model} × {backend}: {steps:?}");
        assert!(steps.iter().any(|o| o["op"].contains(an_op)), "{steps:?}");
        for o in &steps {
            assert!(!o["name"].is_empty(), "{o:?}");
            assert!(
                o["layer_group"].is_empty() && o["op_kind"].is_empty(),
                "{o:?}"
            );
            assert!(o["matched_by"].starts_with("none (a model file"), "{o:?}");
        }
    }
    // torch.onnx names nodes after the module path, not ours.
    assert!(
        ops.iter()
            .any(|o| o["backend"] == "onnxruntime" && o["name"].contains("features")),
        "{ops:?}"
    );
    // The report lists their steps, and no op-kind table it cannot draw.
    let md = stdout(&bench(&["report", dir.to_str().unwrap()]));
    assert!(
        md.contains(
            "<summary>torchvision_mobilenet_v3_small.onnx × onnxruntime on local: steps</summary>"
        ),
        "{md}"
    );
    assert!(!md.contains("time by op kind"), "{md}");
}

#[test]
fn wgpu_times_every_dispatch_from_timestamp_queries() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let model = "mobilenet_v3_small_0.25_64";
    bench_run(
        out.path(),
        &[
            "--models",
            model,
            "--backends",
            "wgpu",
            "--warmup",
            "1",
            "--runs",
            "3",
            "--profile-ops",
        ],
    );
    let dir = run_dir(out.path());
    let ops = ops_of(&dir);
    // Every dispatch, named after its IR node and kernel, in GPU time (here llvmpipe's).
    assert!(ops.iter().any(|o| o["name"] == "conv0 (conv)"), "{ops:?}");
    assert!(ops.iter().all(|o| o["matched_by"] == "IR node"), "{ops:?}");
    check_alignment(&ops, model, "wgpu", 0.99);
}

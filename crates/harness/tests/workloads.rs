//! `bench run` with the tch backends and the workload switches: `--bn`, `--mode train`,
//! `--batch`. Small models (V3-Small 0.25 at 128 px; at 64 px the seeded model's logits are
//! too large for a stable training step) and few runs keep it quick.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

/// The fp32 agreement bound the harness flags `disagrees` above (agreement.rs).
const FP32_TOLERANCE: f64 = 1e-4;

fn run(out: &Path, backends: &str, extra: &[&str]) -> Vec<HashMap<String, String>> {
    let mut args = vec![
        "--models",
        "mobilenet_v3_small_0.25_128",
        "--backends",
        backends,
        "--warmup",
        "2",
        "--runs",
        "5",
    ];
    args.extend(extra);
    bench_run(out, &args);
    summary(&run_dir(out))
}

fn assert_agrees(r: &HashMap<String, String>) {
    assert_eq!(r["status"], "ok", "{r:?}");
    let diff: f64 = r["max_rel_diff"].parse().unwrap();
    assert!(diff <= FP32_TOLERANCE, "{}: {diff:e}", r["backend"]);
    assert!(!r["flags"].contains("disagrees"), "{r:?}");
}

#[test]
fn tch_agrees_with_native_with_fused_and_separate_batch_norm() {
    for bn in ["fused", "separate"] {
        let out = tempfile::tempdir().unwrap();
        let rows = run(
            out.path(),
            "native,tch,tch-channels-last,onnxruntime",
            &["--bn", bn],
        );
        for backend in ["native", "tch", "tch-channels-last", "onnxruntime"] {
            let r = row(&rows, backend);
            assert_agrees(r);
            assert_eq!((r["mode"].as_str(), r["bn"].as_str()), ("infer", bn));
            // Each backend says which BN form it ran.
            let said = if bn == "fused" {
                "bn=folded"
            } else {
                "bn=separate"
            };
            if backend != "onnxruntime" {
                assert!(r["settings"].contains(said), "{r:?}");
            }
        }
        assert!(row(&rows, "tch-channels-last")["settings"].contains("memory_format=channels_last"));
    }
}

#[test]
fn tch_cuda_without_a_cuda_libtorch_is_unavailable_with_the_reason() {
    let listing = stdout(&bench(&["list", "backends"]));
    let line = listing
        .lines()
        .find(|l| l.starts_with("tch-cuda "))
        .unwrap_or_else(|| panic!("tch-cuda not listed:\n{listing}"));
    if line.contains(" available ") {
        return; // A machine with CUDA torch on the library path: nothing to check here.
    }
    assert!(
        line.contains("unavailable") && line.contains("CPU-only"),
        "{line}"
    );
    let out = tempfile::tempdir().unwrap();
    let rows = run(out.path(), "tch-cuda", &[]);
    let r = row(&rows, "tch-cuda");
    assert_eq!(r["status"], "unavailable");
    assert!(r["message"].contains("LD_LIBRARY_PATH"), "{r:?}");
}

#[test]
fn train_mode_times_tch_training_steps_and_says_why_native_cannot() {
    let out = tempfile::tempdir().unwrap();
    let rows = run(
        out.path(),
        "native,tch",
        &["--mode", "train", "--batch", "2"],
    );
    let native = row(&rows, "native");
    assert_eq!(native["status"], "unavailable");
    assert!(native["message"].contains("inference only"), "{native:?}");
    let tch = row(&rows, "tch");
    assert_eq!(tch["status"], "ok", "{tch:?}");
    assert_eq!(
        (
            tch["mode"].as_str(),
            tch["batch"].as_str(),
            tch["input_shape"].as_str()
        ),
        ("train", "2", "2x128x128x3")
    );
    assert!(tch["settings"].contains("sgd"), "{tch:?}");
    assert!(tch["reference"].starts_with("none"), "{tch:?}");
    assert_eq!(
        sample_counts(&run_dir(out.path()))[&(tch["model"].clone(), "tch".into())],
        5
    );
}

#[test]
fn an_inference_batch_is_compared_on_its_first_image() {
    let out = tempfile::tempdir().unwrap();
    let rows = run(out.path(), "native,tch", &["--batch", "3"]);
    assert!(row(&rows, "native")["message"].contains("batch 1 only"));
    let tch = row(&rows, "tch");
    assert_agrees(tch);
    assert!(tch["reference"].contains("first image"), "{tch:?}");
}

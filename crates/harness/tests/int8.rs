//! int8 files through the reference Python stacks (`ai_edge_litert`, `onnxruntime`) against
//! our int8 reference, and a deliberately wrong zero point caught by the same check. These
//! need the Python packages that `./scripts/test` installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mobilebench_export::{export_int8, int8_weight_range, Format};
use mobilebench_models::{
    synthetic_input, Calibration, Model, ModelConfig, DEFAULT_INPUT_SEED, DEFAULT_SEED,
};

/// The harness's `INT8_MIN_REFERENCE_COSINE` (int8 runtimes against the int8 reference):
/// see its comment and the README's int8 section for the measurements behind it.
const MIN_COSINE: f64 = 0.95;

/// Runs check_exports.py on `files` with the int8 criterion; returns whether it passed,
/// each run's cosine similarity with `expected`, and its report.
fn python_check(
    dir: &Path,
    input: &[f32],
    expected: &[f32],
    files: &[PathBuf],
) -> (bool, Vec<f64>, String) {
    let py = python("MOBILEBENCH_PYTHON", "onnx, onnxruntime and ai-edge-litert");
    let (inp, exp) = (dir.join("input.f32"), dir.join("expected.f32"));
    write_f32(&inp, input);
    write_f32(&exp, expected);
    let check = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/check_exports.py"
        ))
        .args([&inp, &exp])
        .arg(format!("cosine:{MIN_COSINE}"))
        .args(files)
        .output()
        .expect("python runs");
    let report = format!("{}{}", stdout(&check), stderr(&check));
    let cosines = report
        .lines()
        .filter_map(|l| l.rsplit("cosine ").next()?.trim().parse().ok())
        .collect();
    (check.status.success(), cosines, report)
}

fn model(name: &str) -> Model {
    Model::from_config(&name.parse::<ModelConfig>().unwrap(), DEFAULT_SEED)
}

#[test]
fn int8_files_match_the_int8_reference_in_the_python_runtimes() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "mobilenet_v3_small_1.0_224",
        "mobilenet_v3_large_0.75_160",
        "mobilenet_v2_1.0_96",
        "mobilenet_v1_0.5_128",
    ] {
        let model = model(name);
        let input = synthetic_input(model.graph.input, DEFAULT_INPUT_SEED);
        let calibration = Calibration::run(&model);
        for format in [Format::Tflite, Format::Onnx] {
            // Each format's int8 model (their weight ranges differ) is its files' reference.
            let expected = calibration
                .quantize(int8_weight_range(format))
                .evaluate(&input);
            let ext = format.extension();
            let file = tmp.path().join(format!("{name}_int8.{ext}"));
            let o = bench(&[
                "export",
                name,
                "--format",
                ext,
                "--precision",
                "int8",
                "-o",
                file.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            let (ok, cosines, report) = python_check(tmp.path(), &input, &expected, &[file]);
            eprint!("{report}");
            // ai_edge_litert with XNNPACK and with builtin kernels; onnx.checker+onnxruntime.
            let runs = if format == Format::Tflite { 2 } else { 1 };
            assert_eq!(cosines.len(), runs, "{report}");
            assert!(ok, "{name}: {report}");
        }
    }
}

#[test]
fn a_wrong_zero_point_fails_the_int8_check() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model("mobilenet_v3_small_1.0_224");
    let input = synthetic_input(model.graph.input, DEFAULT_INPUT_SEED);
    let calibration = Calibration::run(&model);
    for format in [Format::Tflite, Format::Onnx] {
        let good = calibration.quantize(int8_weight_range(format));
        let expected = good.evaluate(&input);
        // The input's zero point written with uint8's offset (+128, saturated to int8's
        // range): the mix-up of the two conventions.
        let mut bad = good.clone();
        bad.input.zero_point = (bad.input.zero_point + 128).min(127);
        let file = tmp.path().join(format!("bad.{}", format.extension()));
        std::fs::write(&file, export_int8(&bad, format).unwrap()).unwrap();
        let (ok, cosines, report) = python_check(tmp.path(), &input, &expected, &[file]);
        eprint!("{report}");
        assert!(!ok, "{report}");
        assert!(!cosines.is_empty(), "{report}");
        assert!(
            cosines.iter().all(|&c| c < MIN_COSINE),
            "every runtime must fail: {report}"
        );
    }
}

#[test]
fn bench_run_measures_int8_beside_float() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench(&[
        "run",
        "--models",
        "mobilenet_v3_small_0.5_96",
        "--precision",
        "float32,int8",
        "--backends",
        "litert-xnnpack,onnxruntime,native",
        "--warmup",
        "2",
        "--runs",
        "10",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = summary(&run_dir(tmp.path()));
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let pair = format!("{} × {}", row["model"], row["backend"]);
        let int8 = row["model"] == "mobilenet_v3_small_0.5_96_int8";
        if int8 && row["backend"] == "native" {
            assert_eq!(row["status"], "unavailable", "{pair}");
            assert!(
                row["message"].contains("no int8 path"),
                "{pair}: {}",
                row["message"]
            );
            continue;
        }
        assert_eq!(row["status"], "ok", "{pair}: {}", row["message"]);
        assert!(
            !row["flags"].contains("disagrees"),
            "{pair}: {}",
            row["message"]
        );
        if int8 {
            assert_eq!(row["precision"], "int8", "{pair}");
            assert!(row["reference"].starts_with("int8-reference"), "{pair}");
            assert_eq!(row["agreement_inputs"], "16", "{pair}");
            let top1: f64 = row["top1_agreement"].parse().unwrap();
            let cos: f64 = row["cosine_min"].parse().unwrap();
            assert!((0.0..=1.0).contains(&top1), "{pair}: {top1}");
            assert!(cos > 0.8 && cos <= 1.0, "{pair}: {cos}");
        } else {
            assert_eq!(row["precision"], "fp32", "{pair}");
            assert_eq!(row["top1_agreement"], "", "{pair}");
        }
    }
    // The int8 files sit beside the float ones, under the int8 rows' name.
    let models = run_dir(tmp.path()).join("models");
    for ext in ["onnx", "tflite"] {
        assert!(models
            .join(format!("mobilenet_v3_small_0.5_96_int8.{ext}"))
            .is_file());
        assert!(models
            .join(format!("mobilenet_v3_small_0.5_96.{ext}"))
            .is_file());
    }
}

#[test]
fn int8_needs_folded_batch_norm() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench(&[
        "run",
        "--models",
        "mobilenet_v3_small_0.5_96",
        "--precision",
        "int8",
        "--bn",
        "separate",
        "--backends",
        "onnxruntime",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("drop --bn separate"),
        "{}",
        stderr(&out)
    );
    let bad = bench(&["run", "--precision", "int4", "--backends", "native"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("expected `float32` or `int8`"),
        "{}",
        stderr(&bad)
    );
}

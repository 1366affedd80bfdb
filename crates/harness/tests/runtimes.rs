//! The CPU runtimes end to end: every backend on zoo models, the exported files through the
//! reference Python stacks, a MobileNet made by another tool, and bad files. These need the
//! runtimes and Python packages that `./scripts/test` installs.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// See `FP32_TOLERANCE` in the harness: measured worst cross-runtime difference 8e-6.
const TOLERANCE: f64 = 1e-4;

#[test]
fn every_cpu_backend_runs_zoo_models_and_agrees_with_native() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench(&[
        "run",
        "--models",
        "mobilenet_v3_small_0.5_96,mobilenet_v2_0.35_96,mobilenet_v1_0.25_128",
        "--backends",
        "native,onnxruntime,litert-builtin,litert-xnnpack,tract,rten",
        "--warmup",
        "2",
        "--runs",
        "20",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(tmp.path());
    let rows = summary(&dir);
    assert_eq!(rows.len(), 18);
    for row in &rows {
        let pair = format!("{} × {}", row["model"], row["backend"]);
        assert_eq!(row["status"], "ok", "{pair}: {}", row["message"]);
        let rel: f64 = row["max_rel_diff"].parse().unwrap();
        assert!(rel <= TOLERANCE, "{pair}: relative difference {rel}");
        assert!(
            !row["library_version"].is_empty() && row["threads"] == "1",
            "{pair}"
        );
        let expected_reference = if row["backend"] == "native" {
            "naive-reference"
        } else {
            "native"
        };
        assert_eq!(row["reference"], expected_reference, "{pair}");
        if row["backend"] == "litert-xnnpack" {
            assert!(
                row["settings"].contains("fully_delegated=true"),
                "{pair}: {}",
                row["settings"]
            );
        }
    }
    assert!(sample_counts(&dir).values().all(|&n| n == 20));
    // Each zoo model was exported once per format into the run directory.
    for ext in ["onnx", "tflite"] {
        assert!(dir
            .join("models")
            .join(format!("mobilenet_v2_0.35_96.{ext}"))
            .is_file());
    }
}

#[test]
fn exported_files_are_standard_for_the_reference_python_stacks() {
    let py = python("MOBILEBENCH_PYTHON", "onnx, onnxruntime and ai-edge-litert");
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "mobilenet_v3_small_1.0_224",
        "mobilenet_v3_large_0.75_160",
        "mobilenet_v2_1.0_96",
        "mobilenet_v1_0.5_128",
    ] {
        let forms = [Some("fused"), Some("separate")];
        let report = check_exports_in_python(&py, tmp.path(), name, &forms, TOLERANCE);
        // Two Python stacks per .onnx/.tflite pair and BN form: 2 onnx lines + 4 tflite lines.
        assert_eq!(
            report.matches("max relative difference").count(),
            6,
            "{report}"
        );
    }
}

#[test]
fn a_torchvision_mobilenet_runs_on_every_backend_that_reads_onnx() {
    let py = python("MOBILEBENCH_TORCH_PYTHON", "Debian's python3-torchvision");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("torchvision_mobilenet_v3_small.onnx");
    let made = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/torchvision_export.py"
        ))
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(made.status.success(), "{}{}", stdout(&made), stderr(&made));
    let out = bench(&[
        "run",
        "--model-file",
        file.to_str().unwrap(),
        "--warmup",
        "2",
        "--runs",
        "10",
        "--out",
        tmp.path().join("results").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    for skipped in ["native", "litert-builtin", "litert-xnnpack"] {
        assert!(
            log.contains(&format!("{skipped} does not read Onnx files, skipped")),
            "{log}"
        );
    }
    let rows = summary(&run_dir(&tmp.path().join("results")));
    let backends: Vec<&str> = rows.iter().map(|r| r["backend"].as_str()).collect();
    assert_eq!(backends, ["onnxruntime", "tract", "rten"]);
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:?}");
        assert_eq!(row["input_shape"], "1x3x224x224");
        assert_eq!(row["model"], "torchvision_mobilenet_v3_small.onnx");
        assert!(row["macs"].is_empty() && row["message"].contains("not computed for model files"));
        let rel: f64 = row["max_rel_diff"].parse().unwrap();
        assert!(rel <= TOLERANCE, "{}: {rel}", row["backend"]);
    }
    assert!(rows[0]["reference"].contains("first backend"));
    assert_eq!(rows[1]["reference"], "onnxruntime");
}

#[test]
fn bad_files_give_one_line_errors_and_the_campaign_goes_on() {
    let py = python("MOBILEBENCH_PYTHON", "onnx");
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let good = p("good.tflite");
    assert!(bench(&[
        "export",
        "mobilenet_v3_small_0.25_64",
        "--format",
        "tflite",
        "-o",
        good.to_str().unwrap()
    ])
    .status
    .success());
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(p("truncated.tflite"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(
        p("random.onnx"),
        (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    // An ONNX model whose input height and width are symbolic: no fixed shape to measure.
    let onnx = p("good.onnx");
    assert!(bench(&[
        "export",
        "mobilenet_v3_small_0.25_64",
        "--format",
        "onnx",
        "-o",
        onnx.to_str().unwrap()
    ])
    .status
    .success());
    let edit = Command::new(&py)
        .args(["-c", "import onnx,sys; m=onnx.load(sys.argv[1]); d=m.graph.input[0].type.tensor_type.shape.dim; d[1].dim_param='height'; d[2].dim_param='width'; onnx.save(m, sys.argv[2])"])
        .arg(&onnx)
        .arg(p("dynamic.onnx"))
        .output()
        .unwrap();
    assert!(edit.status.success(), "{}", stderr(&edit));
    let files = [
        "truncated.tflite",
        "random.onnx",
        "dynamic.onnx",
        "missing.tflite",
        "good.tflite",
    ];
    let mut args: Vec<String> = [
        "run",
        "--backends",
        "onnxruntime,litert-xnnpack,tract",
        "--warmup",
        "1",
        "--runs",
        "5",
    ]
    .map(String::from)
    .to_vec();
    for f in files {
        args.push("--model-file".into());
        args.push(p(f).display().to_string());
    }
    args.extend(["--out".into(), p("results").display().to_string()]);
    let out = bench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "the campaign completes: {}",
        stderr(&out)
    );
    let rows = summary(&run_dir(&p("results")));
    let find = |model: &str, backend: &str| {
        rows.iter()
            .find(|r| r["model"] == model && r["backend"] == backend)
            .unwrap_or_else(|| panic!("no row for {model} × {backend}: {rows:#?}"))
    };
    let expect_failure = |model: &str, backend: &str, cause: &str| {
        let row = find(model, backend);
        assert_eq!(row["status"], "failed", "{model} × {backend}: {row:?}");
        let msg = &row["message"];
        assert!(
            !msg.contains('\n'),
            "{model} × {backend}: more than one line: {msg}"
        );
        assert!(
            msg.contains(model),
            "{model} × {backend}: the message does not name the file: {msg}"
        );
        assert!(
            msg.to_lowercase().contains(cause),
            "{model} × {backend}: expected «{cause}» in: {msg}"
        );
    };
    expect_failure("truncated.tflite", "litert-xnnpack", "not a valid .tflite");
    expect_failure("random.onnx", "onnxruntime", "protobuf");
    expect_failure("random.onnx", "tract", "failed to load");
    expect_failure("dynamic.onnx", "onnxruntime", "dynamic dimension");
    expect_failure("dynamic.onnx", "tract", "dynamic");
    expect_failure("missing.tflite", "-", "no such file");
    assert_eq!(
        find("good.tflite", "litert-xnnpack")["status"],
        "ok",
        "the campaign went on"
    );
}

#[test]
fn setup_fetches_aarch64_libraries_for_remote_devices() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(BENCH)
        .args(["setup", "--platform", "linux-aarch64"])
        .env("MOBILEBENCH_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for lib in [
        "onnxruntime-1.31.1/libonnxruntime.so.1.31.1",
        "litert-2.3.0/libLiteRt.so",
    ] {
        let path = cache.path().join("runtimes/linux-aarch64").join(lib);
        let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(
            u16::from_le_bytes([elf[18], elf[19]]),
            183,
            "{lib} is not an aarch64 (EM_AARCH64) library"
        );
    }
}

#[test]
fn a_missing_runtime_is_listed_unavailable_with_the_reason() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BENCH)
        .args(["list", "backends"])
        .env("MOBILEBENCH_CACHE", empty.path())
        .output()
        .unwrap();
    let text = stdout(&out);
    for backend in ["onnxruntime", "litert-xnnpack"] {
        let line = text.lines().find(|l| l.starts_with(backend)).unwrap();
        assert!(
            line.contains("unavailable") && line.contains("run `bench setup`"),
            "{line}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("tract") && l.contains(" available")),
        "{text}"
    );
}

/// The cache `bench` uses when nothing overrides it (as mobilebench_runtimes::cache_root).
fn default_cache() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("MOBILEBENCH_CACHE") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Path::new(&dir).join("mobilebench");
    }
    Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/mobilebench")
}

#[test]
fn a_corrupted_cached_runtime_library_is_detected_and_fetched_again() {
    let installed = default_cache().join("runtimes/linux-x86_64/onnxruntime-1.31.1");
    let manifest = std::fs::read_to_string(installed.join("runtime.json")).unwrap();
    assert!(
        manifest.contains("wheel_sha256"),
        "scripts/setup provisions (and verifies) the runtimes before the tests: {manifest}"
    );
    // A copy of the verified cache entry, in a cache of the test's own, then one byte changed.
    let cache = tempfile::tempdir().unwrap();
    let copy = cache
        .path()
        .join("runtimes/linux-x86_64/onnxruntime-1.31.1");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&installed).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let library = copy.join("libonnxruntime.so.1.31.1");
    let mut bytes = std::fs::read(&library).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&library, &bytes).unwrap();

    let out = tempfile::tempdir().unwrap();
    let run = Command::new(BENCH)
        .env("MOBILEBENCH_CACHE", cache.path())
        .args([
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "onnxruntime",
            "--quick",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(
        err.contains("did not verify (libonnxruntime.so.1.31.1 changed since it was installed"),
        "{err}"
    );
    assert_eq!(
        row(&summary(&run_dir(out.path())), "onnxruntime")["status"],
        "ok"
    );
    assert_ne!(std::fs::read(&library).unwrap(), bytes, "fetched again");
}

//! Helpers shared by the whole-command tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// Writes raw little-endian f32 (what the Python cross-checks read).
pub fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Exports zoo model `name` to .onnx and .tflite, once per `--bn` form in `bn_forms` (None:
/// the default), and checks every file in the reference Python stacks (`check_exports.py`:
/// onnx.checker + onnxruntime; ai_edge_litert with XNNPACK and builtin kernels) against the
/// native engine's logits within `tolerance`. Returns the script's report.
pub fn check_exports_in_python(
    py: &str,
    dir: &Path,
    name: &str,
    bn_forms: &[Option<&str>],
    tolerance: f64,
) -> String {
    use mobilebench_models::{synthetic_input, Model, ModelConfig};
    use mobilebench_models::{DEFAULT_INPUT_SEED, DEFAULT_SEED};
    let model = Model::from_config(&name.parse::<ModelConfig>().unwrap(), DEFAULT_SEED);
    let input = synthetic_input(model.graph.input, DEFAULT_INPUT_SEED);
    let mut engine = mobilebench_native::Engine::new(&model);
    let mut expected = vec![0f32; engine.output_len()];
    engine.run(&input, &mut expected);
    let (inp, exp) = (dir.join("input.f32"), dir.join("expected.f32"));
    write_f32(&inp, &input);
    write_f32(&exp, &expected);
    let mut files = Vec::new();
    for format in ["onnx", "tflite"] {
        for bn in bn_forms {
            let file = dir.join(format!("{name}_{}.{format}", bn.unwrap_or("default")));
            let mut args = vec!["export", name, "--format", format];
            if let Some(bn) = bn {
                args.extend(["--bn", bn]);
            }
            args.extend(["-o", file.to_str().unwrap()]);
            let o = bench(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            files.push(file);
        }
    }
    let check = Command::new(py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/check_exports.py"
        ))
        .args([&inp, &exp])
        .arg(tolerance.to_string())
        .args(&files)
        .output()
        .expect("python runs");
    let report = format!("{}{}", stdout(&check), stderr(&check));
    eprint!("{report}");
    assert!(check.status.success(), "{name}: {report}");
    report
}

pub fn bench(args: &[&str]) -> Output {
    Command::new(BENCH).args(args).output().expect("bench runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The single run directory under `out/local/`, if there is exactly one yet.
pub fn find_run_dir(out: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("local"))
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    (dirs.len() == 1).then(|| dirs.pop()).flatten()
}

/// The single run directory under `out/local/`.
pub fn run_dir(out: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("local"))
        .expect("device folder")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

pub fn summary(dir: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    r.deserialize().map(|row| row.unwrap()).collect()
}

pub fn sample_counts(dir: &Path) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    let mut r = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    for row in r.deserialize::<HashMap<String, String>>() {
        let row = row.unwrap();
        *counts
            .entry((row["model"].clone(), row["backend"].clone()))
            .or_default() += 1;
    }
    counts
}

/// A Python interpreter named by an environment variable that `scripts/test` sets.
pub fn python(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with ./scripts/test, which installs {what}")
    })
}

/// Rows in a run directory's summary.csv (0 before it exists).
pub fn summary_rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("summary.csv"))
        .map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// The direct children of `parent`, from /proc.
pub fn children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: fields follow the last ')'.
        let ppid: i32 = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        if ppid == parent {
            out.push(pid);
        }
    }
    out
}

/// The summary's rows, the last of each pair (a pair gets a row per round, and again when
/// resumed: readers take the last, which covers every round).
pub fn final_rows(dir: &Path) -> Vec<HashMap<String, String>> {
    let mut out: Vec<HashMap<String, String>> = Vec::new();
    for r in summary(dir) {
        match out.iter_mut().find(|o| {
            o["model"] == r["model"]
                && o["backend"] == r["backend"]
                && o.get("threads") == r.get("threads")
        }) {
            Some(o) => *o = r,
            None => out.push(r),
        }
    }
    out
}

/// The summary row of `backend` (panics naming what is there if none).
pub fn row<'a>(rows: &'a [HashMap<String, String>], backend: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["backend"] == backend)
        .unwrap_or_else(|| panic!("no {backend} row in {rows:?}"))
}

/// `bench run ARGS -o OUT`, which must succeed; its output is returned (for stderr).
pub fn bench_run(out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend(["-o", out.to_str().unwrap()]);
    let result = bench(&all);
    assert!(result.status.success(), "{args:?}: {}", stderr(&result));
    result
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lock of the tests of one file that measure on the same pinned core: two at once
/// would make each other's timings (which some of them judge) meaningless.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A CSV row's `column` as a number.
pub fn number(row: &HashMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} is not a number in {row:?}"))
}

/// The row of `model` × `backend`.
pub fn pair<'a>(
    rows: &'a [HashMap<String, String>],
    model: &str,
    backend: &str,
) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["model"] == model && r["backend"] == backend)
        .unwrap_or_else(|| panic!("no {model} × {backend} in {rows:?}"))
}

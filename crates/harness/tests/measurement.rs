//! The measurement contract, whole commands: the worker's own memory, non-finite outputs,
//! rounds, and `bench compare` judging against the between-round spread.
//!
//! The tests of this file take one lock: each measures on the same pinned core, and two at
//! once would make each other's timings (which some of them judge) meaningless.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{
    bench, bench_run, final_rows, number, pair, row, run_dir, stderr, stdout, summary, BENCH,
};

fn lock() -> std::sync::MutexGuard<'static, ()> {
    common::one_at_a_time()
}

#[test]
fn peak_memory_is_each_workers_own() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let (v1, small) = ("mobilenet_v1_1.0_224", "mobilenet_v3_small_0.25_64");
    bench_run(
        out.path(),
        &[
            "--models",
            &format!("{v1},{small}"),
            "--backends",
            "native,noop",
            "--warmup",
            "2",
            "--runs",
            "5",
        ],
    );
    let rows = summary(&run_dir(out.path()));
    let peak = |m, b| number(pair(&rows, m, b), "peak_rss_mb");
    // The large model first, then the small one: a peak carried over from an earlier process
    // (getrusage's ru_maxrss across exec) would make the second at least the first.
    assert!(
        peak(small, "native") < peak(v1, "native"),
        "{} !< {}",
        peak(small, "native"),
        peak(v1, "native")
    );
    let smallest = rows
        .iter()
        .min_by(|a, b| number(a, "peak_rss_mb").total_cmp(&number(b, "peak_rss_mb")))
        .unwrap();
    assert_eq!(smallest["backend"], "noop", "{rows:?}");
    // What the backend added: V1's engine holds its 4.2 M folded weights (16 MiB) and more;
    // noop holds nothing. (Not compared on peak_rss_mb: building V1's weights before loading
    // can set the worker's high-water mark above what the engine then adds.)
    let added = |b| number(pair(&rows, v1, b), "model_mem_mb");
    assert!(added("native") > 16.0, "model_mem_mb {}", added("native"));
    assert!(added("noop") < 2.0, "noop model_mem_mb {}", added("noop"));
    for r in &rows {
        assert_eq!(r["pinned"], "true", "pinning not verified: {r:?}");
        assert!(
            !r["probe_notes"].contains("progress thread"),
            "{}",
            r["probe_notes"]
        );
    }
}

#[test]
fn a_nan_output_disagrees_and_is_never_the_fastest() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let model = "mobilenet_v3_small_0.25_64";
    bench_run(
        out.path(),
        &["--models", model, "--backends", "native,nan", "--quick"],
    );
    let dir = run_dir(out.path());
    let rows = summary(&dir);
    let nan = row(&rows, "nan");
    assert!(nan["flags"].split(';').any(|f| f == "disagrees"), "{nan:?}");
    assert!(
        nan["message"].contains("1001 of the output's values are not finite"),
        "{}",
        nan["message"]
    );
    // It computes nothing, so it is far faster than native: only the flag keeps it out.
    assert!(number(nan, "p50_ms") < number(row(&rows, "native"), "p50_ms"));
    let report = bench(&["report", dir.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    let text = stdout(&report);
    let model_line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {model} |")) && l.contains("(native)"))
        .unwrap_or_else(|| panic!("native is not named fastest:\n{text}"));
    assert!(!model_line.contains("(nan)"), "{model_line}");
}

#[test]
fn rounds_are_round_robin_in_fresh_workers_and_timed_io_is_recorded() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let result = bench_run(
        out.path(),
        &[
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "noop,fixed",
            "--warmup",
            "2",
            "--runs",
            "20",
            "--rounds",
            "3",
            "--timed-io",
        ],
    );
    // A B A B A B: every pair once per round.
    let order: Vec<String> = stderr(&result)
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("median"))
        .map(|l| {
            l.split(" × ")
                .nth(1)
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (1..=3)
        .flat_map(|r| ["noop", "fixed"].map(|b| format!("{b} (round {r}/3)")))
        .collect();
    assert_eq!(order, expected);
    let dir = run_dir(out.path());
    let rows = final_rows(&dir);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(
            (r["rounds"].as_str(), r["timing"].as_str()),
            ("3", "infer-with-io")
        );
        assert!(number(r, "round_cv") >= 0.0);
    }
    // The fixed backend busy-waits 500 µs: the median of its round medians says so.
    let fixed = number(row(&rows, "fixed"), "p50_ms");
    assert!((0.5..0.6).contains(&fixed), "{fixed}");
    let mut per_round: HashMap<(String, String), usize> = HashMap::new();
    let mut r = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    for s in r.deserialize::<HashMap<String, String>>() {
        let s = s.unwrap();
        *per_round
            .entry((s["backend"].clone(), s["round"].clone()))
            .or_default() += 1;
    }
    for b in ["noop", "fixed"] {
        for round in ["1", "2", "3"] {
            assert_eq!(per_round[&(b.to_string(), round.to_string())], 20);
        }
    }
}

/// Three rounds of `fixed` at `micros` per inference.
fn fixed_run(out: &Path, micros: u32) -> std::path::PathBuf {
    let result = Command::new(BENCH)
        .env("MOBILEBENCH_FIXED_US", micros.to_string())
        .args([
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "fixed",
            "--warmup",
            "5",
            "--runs",
            "100",
            "--rounds",
            "3",
            "-o",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    run_dir(out)
}

fn compare(old: &Path, new: &Path) -> Output {
    bench(&[
        "compare",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--fail-on-regression",
    ])
}

#[test]
fn compare_tells_a_thirty_percent_slowdown_from_a_rerun() {
    let _guard = lock();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let old = fixed_run(dirs[0].path(), 400);
    let same = fixed_run(dirs[1].path(), 400);
    let slower = fixed_run(dirs[2].path(), 520);

    let rerun = compare(&old, &same);
    assert!(
        rerun.status.success(),
        "identical code failed --fail-on-regression:\n{}{}",
        stdout(&rerun),
        stderr(&rerun)
    );
    assert!(stdout(&rerun).contains("| 3/3 |"), "{}", stdout(&rerun));
    assert!(
        // Possibly followed by "(noisy in …)": a preempted busy-wait raises the samples' CV.
        stdout(&rerun).contains("| no significant change"),
        "{}",
        stdout(&rerun)
    );

    let regression = compare(&old, &slower);
    assert!(!regression.status.success());
    assert!(
        stdout(&regression).contains("| slower"),
        "{}",
        stdout(&regression)
    );
    assert!(stderr(&regression).contains("judged slower"));
}

#[test]
fn a_run_recorded_before_the_timing_contract_is_not_resumed() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/tests/fixtures/local_run");
    let old = tempfile::tempdir().unwrap();
    for file in ["run.json", "summary.csv", "samples.csv"] {
        std::fs::copy(fixture.join(file), old.path().join(file)).unwrap();
    }
    let before = std::fs::read(old.path().join("summary.csv")).unwrap();
    let result = bench(&["run", "--resume", old.path().to_str().unwrap()]);
    assert!(!result.status.success());
    let err = stderr(&result);
    // Its summary.csv lacks this version's columns (and its plan the timing contract).
    assert!(
        err.contains("written by another version of mobilebench") && err.contains("timing"),
        "{err}"
    );
    assert!(err.contains("start a new run"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read(old.path().join("summary.csv")).unwrap(),
        before,
        "nothing may be appended"
    );
}

#[test]
fn cooldown_and_settle_run_before_each_pair_and_rows_name_the_core_type() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let result = bench_run(
        out.path(),
        &[
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "noop,fixed",
            "--warmup",
            "2",
            "--runs",
            "20",
            "--cooldown",
            "1",
            "--settle",
            "--settle-timeout",
            "3",
        ],
    );
    // Two pairs, each after a one-second cooldown.
    assert!(
        started.elapsed().as_secs_f64() >= 2.0,
        "{}",
        stderr(&result)
    );
    let rows = final_rows(&run_dir(out.path()));
    let brand = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    for backend in ["noop", "fixed"] {
        let r = row(&rows, backend);
        // This machine starts settled (it measures its own starting temperatures); a hot
        // one waits at most the timeout and then says why in probe_notes.
        let waited = number(r, "settle_wait_s");
        assert!((0.0..=4.0).contains(&waited), "{r:?}");
        if waited >= 3.0 {
            assert!(r["probe_notes"].contains("not settled after 3 s"), "{r:?}");
        }
        assert!(
            !r["core_type"].is_empty() && brand.contains(r["core_type"].as_str()),
            "{r:?}"
        );
    }
    let manifest = std::fs::read_to_string(run_dir(out.path()).join("run.json")).unwrap();
    assert!(
        manifest.contains("\"cooldown_s\":1") || manifest.contains("\"cooldown_s\": 1"),
        "{manifest}"
    );
}

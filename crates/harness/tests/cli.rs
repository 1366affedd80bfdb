//! Whole-command tests of the `bench` binary.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Last row per (model, backend): what readers see after a resume.
fn final_status(dir: &Path) -> HashMap<String, String> {
    summary(dir)
        .into_iter()
        .map(|r| {
            (
                format!("{}/{}", r["model"], r["backend"]),
                r["status"].clone(),
            )
        })
        .collect()
}

#[test]
fn list_models_shows_every_published_config_within_tolerance() {
    let out = bench(&["list", "models"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("mobilenet_"))
        .collect();
    // 44 V1–V3 configs + 5 MobileNetV4 (Conv-S/M/L, Hybrid-M/L).
    assert_eq!(rows.len(), 49, "{text}");
    for row in &rows {
        assert!(
            row.contains("MACs ok") || row.contains("MACs excused"),
            "{row}"
        );
        assert!(!row.contains("OUTSIDE"), "{row}");
    }
    // V1 1.0/224: counted 568.74 M MACs against the published 569, top-1 70.9 (8-bit 69.7).
    let v1 = rows
        .iter()
        .find(|r| r.starts_with("mobilenet_v1_1.0_224 "))
        .unwrap();
    for cell in ["568.74", "569", "70.9", "69.7"] {
        assert!(v1.contains(cell), "{v1}");
    }
}

#[test]
fn list_backends_and_devices() {
    let b = stdout(&bench(&["list", "backends"]));
    assert!(b.contains("native") && b.contains("available"), "{b}");
    assert!(b.contains("noop") && b.contains("test only"), "{b}");
    let d = stdout(&bench(&["list", "devices"]));
    assert!(d.contains("local"), "{d}");
}

/// Columns that may be empty on an ok row, and when.
fn may_be_empty(column: &str, row: &HashMap<String, String>) -> bool {
    match column {
        "message" | "flags" => true,
        "governor" => false,
        "freq_max_mhz" => row["probe_notes"].contains("no cpufreq"),
        "temp_before_c" | "temp_after_c" => row["probe_notes"].contains("no thermal zones"),
        // Only GPU backends with timestamp queries measure GPU time.
        "gpu_p50_ms" => !row["settings"].contains("timestamps=true"),
        "probe_notes" => true,
        // Only with --settle.
        "settle_wait_s" => true,
        // The between-round spread needs two rounds.
        "round_cv" => row["rounds"] == "1",
        // Agreement with the float model is measured for int8 rows only.
        "agreement_inputs" | "top1_agreement" | "cosine_mean" | "cosine_min" => {
            row["precision"] != "int8"
        }
        _ => false,
    }
}

/// `bench run` of two small models on native, 3 warm-up runs, into `out`.
fn run_two_small_models(out: &Path, runs: u32) -> std::process::Output {
    let runs = runs.to_string();
    bench(&[
        "run",
        "--models",
        "mobilenet_v3_small_0.25_96,mobilenet_v1_0.25_128",
        "--backends",
        "native",
        "--warmup",
        "3",
        "--runs",
        &runs,
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn run_writes_complete_csvs_and_report_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_two_small_models(tmp.path(), 40);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(tmp.path());
    let rows = summary(&dir);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:?}");
        for (column, value) in row {
            assert!(
                !value.is_empty() || may_be_empty(column, row),
                "column {column} empty: {row:?}"
            );
        }
        assert_eq!(row["runs"], "40");
        assert_eq!(row["reference"], "naive-reference");
        let rel: f64 = row["max_rel_diff"].parse().unwrap();
        assert!(rel < 1e-4, "native disagrees with the reference: {rel}");
        let (p50, lo, hi): (f64, f64, f64) = (
            row["p50_ms"].parse().unwrap(),
            row["median_ci_low_ms"].parse().unwrap(),
            row["median_ci_high_ms"].parse().unwrap(),
        );
        assert!(lo <= p50 && p50 <= hi && p50 > 0.0);
    }
    assert!(sample_counts(&dir).values().all(|&n| n == 40));
    // The run wrote and printed its latency table; `bench report` builds the full report from
    // the CSVs alone.
    let table = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        table.contains("| model | native |") && stdout(&out).contains(&table),
        "{table}"
    );
    let report = bench(&["report", dir.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    let md = stdout(&report);
    assert!(
        md.contains("| mobilenet_v3_small_0.25_96 | float32 | 3.2 | 1.3 | – |  | "),
        "{md}"
    );
    assert!(
        md.contains("| local | mobilenet_v1_0.25_128 | native | ok |"),
        "{md}"
    );
    let out_dir = tmp.path().join("report");
    let written = bench(&[
        "report",
        dir.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(written.status.success(), "{}", stderr(&written));
    let readme = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    assert!(
        readme.contains("![latency distribution local](latency_distribution_local.png)"),
        "{readme}"
    );
    // The dashboards' formats, on stdout and into a file (their shapes are tested against
    // the formats' documentation in the reports crate).
    let bmf = bench(&["report", dir.to_str().unwrap(), "--format", "bmf"]);
    assert!(bmf.status.success(), "{}", stderr(&bmf));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&bmf)).unwrap();
    let name = "local/mobilenet_v1_0.25_128/native/fp32";
    assert!(
        doc[name]["latency"]["value"].as_f64().unwrap() > 0.0,
        "{doc:#}"
    );
    let file = tmp.path().join("summary.json");
    let json = bench(&[
        "report",
        dir.to_str().unwrap(),
        "--format",
        "json",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(json.status.success(), "{}", stderr(&json));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["format"], "mobilebench-summary");
    assert_eq!(doc["runs"][0]["rows"].as_array().unwrap().len(), 2);
    let bad = bench(&["report", dir.to_str().unwrap(), "--format", "yaml"]);
    assert!(stderr(&bad).contains("expected markdown, json, bmf or github-benchmark"));
}

/// Children of `parent` whose command line is a bench worker.
fn worker_pids(parent: u32) -> Vec<i32> {
    children(parent as i32)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("worker"))
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_run(out: &Path, models: &str, runs: &str) -> Child {
    Command::new(BENCH)
        .args([
            "run",
            "--models",
            models,
            "--backends",
            "native",
            "--warmup",
            "2",
            "--runs",
            runs,
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

const THREE: &str =
    "mobilenet_v3_small_0.25_96,mobilenet_v3_small_0.35_96,mobilenet_v3_small_0.5_96";

#[test]
fn a_killed_worker_is_recorded_as_crashed_and_resume_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 1500 runs keep each pair busy for about a second, so the kill lands mid-pair.
    let mut parent = spawn_run(tmp.path(), THREE, "1500");
    // The exact thing read next: the timestamped folder with its plan (`local/` exists a
    // moment before it).
    wait_for(
        "the run directory's run.json",
        Duration::from_secs(60),
        || find_run_dir(tmp.path()).is_some_and(|d| d.join("run.json").is_file()),
    );
    let dir = run_dir(tmp.path());
    wait_for("the first pair", Duration::from_secs(120), || {
        summary_rows(&dir) == 1
    });
    let first_pair_bytes = std::fs::read(dir.join("samples.csv")).unwrap();
    let mut killed = Vec::new();
    wait_for("the second worker", Duration::from_secs(60), || {
        killed = worker_pids(parent.id());
        !killed.is_empty()
    });
    for pid in &killed {
        // SAFETY: plain kill(2) on a child process id we just read from /proc.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(
        parent.wait().unwrap().success(),
        "the campaign goes on after a worker crash"
    );
    let rows = summary(&dir);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["status"], "ok");
    let crashed: Vec<_> = rows.iter().filter(|r| r["status"] == "crashed").collect();
    assert_eq!(crashed.len(), 1, "{rows:?}");
    assert!(
        crashed[0]["message"].contains("signal 9"),
        "{:?}",
        crashed[0]["message"]
    );
    assert!(rows
        .iter()
        .all(|r| r["status"] == "ok" || r["status"] == "crashed"));
    // The first pair's samples are intact: the file only grew after them.
    let samples = std::fs::read(dir.join("samples.csv")).unwrap();
    assert_eq!(&samples[..first_pair_bytes.len()], &first_pair_bytes[..]);

    let resumed = bench(&["run", "--resume", dir.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let log = stderr(&resumed);
    assert_eq!(log.matches("already measured").count(), 2, "{log}");
    assert!(final_status(&dir).values().all(|s| s == "ok"));
    let counts = sample_counts(&dir);
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&n| n == 1500), "{counts:?}");
}

#[test]
fn a_killed_campaign_keeps_finished_pairs_and_resume_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = spawn_run(tmp.path(), THREE, "400");
    // The exact thing read next: the timestamped folder with its plan (`local/` exists a
    // moment before it).
    wait_for(
        "the run directory's run.json",
        Duration::from_secs(60),
        || find_run_dir(tmp.path()).is_some_and(|d| d.join("run.json").is_file()),
    );
    let dir = run_dir(tmp.path());
    wait_for("the first pair", Duration::from_secs(120), || {
        summary_rows(&dir) == 1
    });
    parent.kill().unwrap(); // SIGKILL: no chance to clean up; its worker dies with it
    parent.wait().unwrap();
    let resumed = bench(&["run", "--resume", dir.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let status = final_status(&dir);
    assert_eq!(status.len(), 3);
    assert!(status.values().all(|s| s == "ok"), "{status:?}");
    assert!(sample_counts(&dir).values().all(|&n| n == 400));
}

#[test]
fn noop_backend_measures_the_harness_overhead() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench(&[
        "run",
        "--models",
        "mobilenet_v3_small_0.25_64",
        "--backends",
        "noop",
        "--warmup",
        "100",
        "--runs",
        "20000",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row = summary(&run_dir(tmp.path())).remove(0);
    assert_eq!(row["status"], "ok");
    // No timing assertion here (shared machines are noisy): the figure is for reading.
    eprintln!(
        "harness overhead per iteration: median {} ms, p99 {} ms",
        row["p50_ms"], row["p99_ms"]
    );
}

#[test]
fn bad_input_gets_a_clear_one_line_error_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--models", "mobilenet_v9_1.0_224", "--out", o],
            "unknown family",
        ),
        (
            &["run", "--models", "mobilenet_v2_*_999", "--out", o],
            "matches no model",
        ),
        (
            &["run", "--backends", "tensorflow", "--out", o],
            "unknown backend `tensorflow`",
        ),
        (
            &["run", "--device", "odroid-x", "--out", o],
            "no device profile named `odroid-x`",
        ),
        (&["run", "--core", "4096", "--out", o], "--core 4096"),
        (
            &["run", "--resume", "/nonexistent/run"],
            "no such directory",
        ),
        (&["report", o], "is not a run directory"),
    ];
    for (args, expected) in cases {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    assert!(
        !tmp.path().join("local").exists(),
        "bad input must not create a run directory"
    );
}

/// A copy of a run directory whose samples of one model are scaled (a synthetic change for
/// the comparison test).
fn scaled_copy(dir: &Path, to: &Path, model: &str, factor: f64) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(dir.join("summary.csv"), to.join("summary.csv")).unwrap();
    let mut r = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    let mut w = csv::Writer::from_path(to.join("samples.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (model_col, latency) = (column("model"), column("latency_ns"));
    w.write_record(&headers).unwrap();
    for rec in r.records() {
        let mut rec: Vec<String> = rec.unwrap().iter().map(String::from).collect();
        if rec[model_col] == model {
            rec[latency] = ((rec[latency].parse::<f64>().unwrap()) * factor)
                .round()
                .to_string();
        }
        w.write_record(&rec).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn compare_of_one_round_runs_cannot_judge_a_twenty_percent_change() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_two_small_models(tmp.path(), 300);
    assert!(out.status.success(), "{}", stderr(&out));
    let old = run_dir(tmp.path());
    let new = tmp.path().join("slower");
    scaled_copy(&old, &new, "mobilenet_v3_small_0.25_96", 1.2);
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());
    // One round measures no drift: 20% is within what this machine moves between runs, so
    // the pair is not judged and --fail-on-regression has nothing to fail on. (Whether the
    // rows are flagged noisy depends on the machine; either way the verdict is "cannot
    // judge", which is what the test reads.)
    let strict = bench(&["compare", o, n, "--fail-on-regression"]);
    assert!(strict.status.success(), "{}", stderr(&strict));
    let md = stdout(&strict);
    let row = |model: &str| md.lines().find(|l| l.contains(model)).unwrap().to_string();
    for model in ["mobilenet_v3_small_0.25_96", "mobilenet_v1_0.25_128"] {
        assert!(row(model).contains("| cannot judge: "), "{md}");
        assert!(row(model).contains("| 1/1 |"), "{md}");
    }
    assert!(
        row("mobilenet_v3_small_0.25_96").contains("| +20.0% |"),
        "{md}"
    );
    assert!(bench(&["compare", o, o, "--fail-on-regression"])
        .status
        .success());
}

//! Campaigns that survive, whole commands: a worker that never returns is ended by
//! `--pair-timeout` and the campaign goes on; Ctrl-C keeps every finished pair, writes
//! report.md and prints the exact command that completes the run.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_worker_that_never_returns_is_timed_out_and_the_campaign_goes_on() {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // `fixed` at ten minutes per inference stands for a hung driver.
    let result = Command::new(BENCH)
        .env("MOBILEBENCH_FIXED_US", "600000000")
        .args([
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "fixed,noop",
            "--warmup",
            "0",
            "--runs",
            "3",
            "--pair-timeout",
            "2",
            "-o",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(started.elapsed() < Duration::from_secs(120));
    let rows = final_rows(&run_dir(out.path()));
    let fixed = row(&rows, "fixed");
    assert_eq!(fixed["status"], "timed_out", "{fixed:?}");
    assert!(
        fixed["message"].contains("after 2 s (--pair-timeout)"),
        "{}",
        fixed["message"]
    );
    assert_eq!(row(&rows, "noop")["status"], "ok");
}

#[test]
fn ctrl_c_keeps_finished_pairs_writes_the_report_and_says_how_to_resume() {
    let out = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "--models",
        "mobilenet_v3_small_0.25_64,mobilenet_v3_small_0.25_96",
        "--backends",
        "noop,fixed",
        "--warmup",
        "0",
        "--runs",
        "300",
    ];
    let parent = Command::new(BENCH)
        .env("MOBILEBENCH_FIXED_US", "5000")
        .args(args)
        .arg("-o")
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The exact thing the test acts on: the first pair's row (summary.csv of the one run
    // directory holding its plan).
    let deadline = Instant::now() + Duration::from_secs(120);
    let dir = loop {
        if let Some(d) = find_run_dir(out.path()) {
            if d.join("run.json").is_file() && summary_rows(&d) >= 1 {
                break d;
            }
        }
        assert!(Instant::now() < deadline, "no first pair within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill only sends a signal, to the child we started (not yet reaped).
    assert_eq!(unsafe { libc::kill(parent.id() as i32, libc::SIGINT) }, 0);
    let interrupted = parent.wait_with_output().unwrap();
    assert!(!interrupted.status.success());
    let err = stderr(&interrupted);
    assert!(dir.join("report.md").is_file(), "{err}");
    let resume_line = err
        .lines()
        .skip_while(|l| !l.starts_with("interrupted: every finished pair is kept"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in:\n{err}"))
        .trim()
        .to_string();
    let words = shlex::split(&resume_line).unwrap();
    assert_eq!(words[0], BENCH, "{resume_line}");
    assert_eq!(words[1..], ["run", "--resume", dir.to_str().unwrap()]);
    let kept = summary_rows(&dir);
    assert!((1..4).contains(&kept), "{kept} rows after the interrupt");

    let resumed = Command::new(&words[0])
        .env("MOBILEBENCH_FIXED_US", "5000")
        .args(&words[1..])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let rows = final_rows(&dir);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    // The interrupted pair was not recorded: each pair has exactly its runs.
    assert!(
        sample_counts(&dir).values().all(|&n| n == 300),
        "{:?}",
        sample_counts(&dir)
    );
}

#[test]
fn a_second_run_on_a_live_run_directory_is_refused_with_the_owners_pid() {
    let out = tempfile::tempdir().unwrap();
    let mut parent = Command::new(BENCH)
        .env("MOBILEBENCH_FIXED_US", "100000")
        .args([
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "fixed",
            "--warmup",
            "0",
            "--runs",
            "600",
            "-o",
        ])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The lock is taken before the first worker starts; wait for that worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while children(parent.id() as i32).is_empty() {
        assert!(Instant::now() < deadline, "no worker within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = run_dir(out.path());
    let second = bench(&["run", "--resume", dir.to_str().unwrap()]);
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(
        err.contains(&format!(
            "being measured by another bench run (pid {})",
            parent.id()
        )),
        "{err}"
    );
}

#[test]
fn two_model_files_with_one_name_get_a_row_each() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (folder, seed) in [("a", "1"), ("b", "2")] {
        std::fs::create_dir(tmp.path().join(folder)).unwrap();
        let file = tmp.path().join(folder).join("model.onnx");
        let export = bench(&[
            "export",
            "mobilenet_v3_small_0.25_64",
            "--format",
            "onnx",
            "--seed",
            seed,
            "-o",
            file.to_str().unwrap(),
        ]);
        assert!(export.status.success(), "{}", stderr(&export));
        files.push(file.to_str().unwrap().to_string());
    }
    let out = tmp.path().join("results");
    bench_run(
        &out,
        &[
            "--model-file",
            &files[0],
            "--model-file",
            &files[1],
            "--backends",
            "tract",
            "--quick",
        ],
    );
    let rows = final_rows(&run_dir(&out));
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str()).collect();
    assert_eq!(models, [files[0].as_str(), files[1].as_str()]);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    assert_eq!(sample_counts(&run_dir(&out)).len(), 2);
}

#[test]
fn a_kill_between_samples_and_summary_leaves_nothing_measured_twice() {
    let out = tempfile::tempdir().unwrap();
    // The crash hook aborts `bench` right after fixed's first samples are on disk.
    let crashed =
        noop_and_fixed_with_fault(out.path(), 2, "MOBILEBENCH_CRASH_BEFORE_COMMIT", "fixed");
    assert!(!crashed.status.success());
    let dir = run_dir(out.path());
    assert_eq!(
        sample_counts(&dir)[&(
            "mobilenet_v3_small_0.25_64".to_string(),
            "fixed".to_string()
        )],
        50
    );
    assert_eq!(final_rows(&dir).len(), 1, "only noop's row was committed");

    let resumed = bench(&["run", "--resume", dir.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("dropped 50 samples"),
        "{}",
        stderr(&resumed)
    );
    let rows = final_rows(&dir);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "ok" && r["rounds"] == "2"),
        "{rows:?}"
    );
    // Two rounds of 50 each, and not one orphan: the file holds exactly what was measured.
    assert!(
        sample_counts(&dir).values().all(|&n| n == 100),
        "{:?}",
        sample_counts(&dir)
    );
}

/// `bench run` of noop and fixed on one tiny model (50 samples a round, no warm-up) with a
/// test-only fault hook set.
fn noop_and_fixed_with_fault(
    out: &std::path::Path,
    rounds: u32,
    hook: &str,
    value: &str,
) -> std::process::Output {
    Command::new(BENCH)
        .env(hook, value)
        .args([
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "noop,fixed",
        ])
        .args([
            "--warmup",
            "0",
            "--runs",
            "50",
            "--rounds",
            &rounds.to_string(),
        ])
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// The whole rows of a CSV, leaving out a fragment a full disk left.
fn whole_rows(path: &std::path::Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap();
    let columns = reader.headers().unwrap().len();
    reader
        .deserialize::<HashMap<String, String>>()
        .filter_map(Result::ok)
        .filter(|r| r.len() == columns)
        .collect()
}

#[test]
fn a_disk_that_fills_stops_the_run_with_one_line_and_resume_completes_it() {
    for file in ["samples.csv", "summary.csv"] {
        let out = tempfile::tempdir().unwrap();
        // The disk fills halfway through fixed's rows of `file`.
        let fault = format!("{file}:fixed");
        let full = noop_and_fixed_with_fault(out.path(), 1, "MOBILEBENCH_FULL_DISK", &fault);
        let err = stderr(&full);
        assert!(!full.status.success(), "{file}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{file}: one error line:\n{err}");
        assert!(
            errors[0].contains(file) && errors[0].matches("No space left on device").count() == 1,
            "{file}: the line names the file and the cause: {}",
            errors[0]
        );
        let dir = run_dir(out.path());
        // noop's pair was committed before the disk filled, and is intact.
        let rows = whole_rows(&dir.join("summary.csv"));
        let committed: Vec<&str> = rows.iter().map(|r| r["backend"].as_str()).collect();
        assert_eq!(committed, ["noop"], "{file}");
        assert_eq!(rows[0]["status"], "ok");
        let samples = whole_rows(&dir.join("samples.csv"));
        assert_eq!(
            samples.iter().filter(|s| s["backend"] == "noop").count(),
            50,
            "{file}"
        );

        // Space again: --resume measures fixed and leaves files a strict reader takes.
        let resumed = bench(&["run", "--resume", dir.to_str().unwrap()]);
        assert!(resumed.status.success(), "{file}: {}", stderr(&resumed));
        let rows = final_rows(&dir);
        assert_eq!(rows.len(), 2, "{file}: {rows:?}");
        assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
        let counts = sample_counts(&dir);
        assert!(counts.values().all(|&n| n == 50), "{file}: {counts:?}");
        let report = bench(&["report", dir.to_str().unwrap()]);
        assert!(
            !stderr(&report).contains("unreadable row"),
            "{file}: {}",
            stderr(&report)
        );
    }
}

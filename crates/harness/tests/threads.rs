//! `--threads`, `--cores` and `--core-class`, whole commands: every CPU runtime given a
//! thread count computes on exactly that many threads (counted from the threads that burned
//! CPU in the timed loop, /proc's per-thread CPU time), each thread stays on the run's core
//! set, and what cannot be done is said.

mod common;

use std::collections::HashMap;

use common::{bench, bench_run, final_rows, number, run_dir, stderr};

fn lock() -> std::sync::MutexGuard<'static, ()> {
    common::one_at_a_time()
}

/// The cores this process may use (the tests' whole machine, or what CI gives them).
fn allowed_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn of<'a>(
    rows: &'a [HashMap<String, String>],
    backend: &str,
    threads: u32,
) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["backend"] == backend && r["threads"] == threads.to_string())
        .unwrap_or_else(|| panic!("no {backend} at {threads} threads in {rows:?}"))
}

#[test]
fn each_runtime_computes_on_the_threads_it_is_given_and_stays_on_the_core_set() {
    let _guard = lock();
    assert!(
        allowed_cores() >= 2,
        "this test needs two cores (CI has two); this machine lets it use {}",
        allowed_cores()
    );
    let out = tempfile::tempdir().unwrap();
    let backends = ["native", "onnxruntime", "litert-xnnpack", "tch", "rten"];
    bench_run(
        out.path(),
        &[
            "--models",
            // Large enough that every runtime splits its layers across two threads.
            "mobilenet_v2_1.0_128",
            "--backends",
            &format!("{},tract", backends.join(",")),
            "--threads",
            "1,2",
            "--warmup",
            "10",
            "--runs",
            "100",
        ],
    );
    let rows = final_rows(&run_dir(out.path()));
    for backend in backends {
        for threads in [1u32, 2] {
            let r = of(&rows, backend, threads);
            assert_eq!(r["status"], "ok", "{r:?}");
            // The threads that burned CPU, whatever the runtime was told: a count that
            // silently does nothing shows here.
            assert_eq!(
                number(r, "busy_threads"),
                threads as f64,
                "{backend} at {threads} threads: {r:?}"
            );
            // Confined and verified: every thread of the worker allowed, and last seen,
            // only on the set; the measuring thread on its first core.
            assert_eq!(r["pinned"], "true", "{r:?}");
            let set = mobilebench_devices::parse_cpu_list(&r["core_set"]).unwrap();
            assert_eq!(set.len(), threads as usize, "{r:?}");
            assert!(set.contains(&(number(r, "core") as usize)), "{r:?}");
            // The same weights and input on more threads: the same answer.
            assert!(!r["flags"].contains("disagrees"), "{r:?}");
        }
    }
    // tract has no thread setting here: one thread runs, two are unavailable with the reason.
    assert_eq!(of(&rows, "tract", 1)["status"], "ok");
    let tract = of(&rows, "tract", 2);
    assert_eq!(tract["status"], "unavailable", "{tract:?}");
    assert!(tract["message"].contains("one thread"), "{tract:?}");
    // samples.csv keeps the thread counts apart.
    let mut samples = csv::Reader::from_path(run_dir(out.path()).join("samples.csv")).unwrap();
    let mut per_count: HashMap<(String, String), usize> = HashMap::new();
    for s in samples.deserialize::<HashMap<String, String>>() {
        let s = s.unwrap();
        *per_count
            .entry((s["backend"].clone(), s["threads"].clone()))
            .or_default() += 1;
    }
    assert_eq!(per_count[&("native".to_string(), "2".to_string())], 100);
    assert_eq!(per_count[&("native".to_string(), "1".to_string())], 100);
}

#[test]
fn core_choices_that_cannot_be_met_are_refused_before_anything_runs() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    let cores = allowed_cores();
    let too_many = (cores + 1).to_string();
    let refuse = |args: &[&str], expected: &str| {
        let mut all = vec![
            "run",
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "noop",
        ];
        all.extend_from_slice(args);
        all.extend(["-o", out.path().to_str().unwrap()]);
        let o = bench(&all);
        assert!(!o.status.success(), "{args:?} ran");
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    };
    refuse(
        &["--threads", &too_many],
        &format!("needs {too_many} cores"),
    );
    refuse(&["--threads", "2", "--cores", "0"], "--cores 0 has 1");
    refuse(
        &["--threads", "2", "--core", "0"],
        "give a set with --cores",
    );
    refuse(&["--threads", "0"], "at least 1");
    refuse(&["--cores", "x-y"], "expected a CPU list");
    refuse(&["--core-class", "middle"], "unknown class");
    assert!(
        !out.path().join("local").exists(),
        "a refused run left a run directory"
    );
}

#[test]
fn a_core_set_places_a_one_thread_pair_on_its_fastest_core() {
    let _guard = lock();
    let out = tempfile::tempdir().unwrap();
    bench_run(
        out.path(),
        &[
            "--models",
            "mobilenet_v3_small_0.25_64",
            "--backends",
            "native",
            "--cores",
            "0",
            "--warmup",
            "2",
            "--runs",
            "20",
        ],
    );
    let rows = final_rows(&run_dir(out.path()));
    let r = &rows[0];
    assert_eq!(
        (r["core"].as_str(), r["core_set"].as_str()),
        ("0", "0"),
        "{r:?}"
    );
    assert_eq!(r["threads"], "1");
    assert_eq!(r["pinned"], "true", "{r:?}");
    assert_eq!(number(r, "busy_threads"), 1.0, "{r:?}");
}

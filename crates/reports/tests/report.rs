//! Reports from the committed fixture: the CSVs of a real run on this project's VM
//! (`bench run --models mobilenet_v3_small_1.0_224,mobilenet_v3_large_1.0_224
//! --backends native,litert-xnnpack --warmup 10 --runs 200`).

use std::path::Path;

use mobilebench_reports::compare::{
    compare, markdown as compare_markdown, CompareOptions, Verdict,
};
use mobilebench_reports::{
    device_table, markdown, model_table, stats_table, write_report, ReportOptions,
};
use mobilebench_results::{read_run, Run};

fn fixture() -> Run {
    read_run(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/local_run")).unwrap()
}

/// The fixture as if a second board had measured it: every row and sample relabelled with
/// another device name (a transformation for this test, not a measurement).
fn as_device(run: &Run, device: &str) -> Run {
    let mut other = run.clone();
    for row in &mut other.summary {
        row.device = device.into();
    }
    other.samples = run
        .samples
        .iter()
        .map(|(k, v)| {
            let mut k = k.clone();
            k.device = device.into();
            (k, v.clone())
        })
        .collect();
    other
}

fn lines(md: &str) -> Vec<&str> {
    md.lines().collect()
}

#[test]
fn device_table_in_the_seed_shape() {
    let md = device_table(&[fixture()]);
    assert_eq!(
        lines(&md),
        [
            "| device, backend | Small | Small Minimalistic | Large | Large Minimalistic |",
            "|---|---:|---:|---:|---:|",
            "| local, native | 3.31 | – | 7.94 | – |",
            "| local, litert-xnnpack | 1.00 | – | 3.39 | – |",
        ]
    );
}

#[test]
fn model_table_with_published_figures() {
    let md = model_table(&[fixture()], &ReportOptions::default());
    let l = lines(&md);
    assert_eq!(l[0], "| model | precision | MACs (M) | params (M) | top-1 % (published) | int8 vs float: top-1 agreement / min cosine (measured, not accuracy) | local (ms, fastest backend) | Pixel 1 (ms, published) | Pixel 2 (ms, published) | Pixel 3 (ms, published) |");
    assert_eq!(l[2], "| mobilenet_v3_small_1.0_224 | float32 | 56.5 | 2.5 | 67.5 |  | 1.00 (litert-xnnpack) | 15.8 | 19.4 | 14.4 |");
    assert_eq!(l[3], "| mobilenet_v3_large_1.0_224 | float32 | 216.6 | 5.5 | 75.2 |  | 3.39 (litert-xnnpack) | 51.2 | 61 | 44 |");
    let native = model_table(
        &[fixture()],
        &ReportOptions {
            backend: Some("native".into()),
            ..Default::default()
        },
    );
    assert!(native.contains("| local (ms, native) |"), "{native}");
    assert!(native.contains("| 67.5 |  | 3.31 | 15.8 |"), "{native}");
}

#[test]
fn statistics_table_cell_by_cell() {
    let md = stats_table(&[fixture()]);
    assert_eq!(
        lines(&md)[2],
        "| local | mobilenet_v3_small_1.0_224 | native | ok | 3.31 | 3.59 | 3.70 | 3.34 ± 0.130 | [3.30, 3.31] | 7/19 | – | 9.39 | 4.15 | 38.3 | – | 1 | 2.3e-6 |"
    );
    assert_eq!(
        lines(&md)[5],
        "| local | mobilenet_v3_large_1.0_224 | litert-xnnpack | ok | 3.39 | 3.47 | 3.60 | 3.40 ± 0.0783 | [3.38, 3.40] | 4/2 | – | 26.53 | 7.01 | 112.8 | – | 1 | 2.8e-6 |"
    );
}

#[test]
fn two_devices_give_two_device_rows_and_two_latency_columns() {
    let runs = [fixture(), as_device(&fixture(), "odroid-n2")];
    let devices = device_table(&runs);
    assert!(
        devices.contains("| local, native | 3.31 |")
            && devices.contains("| odroid-n2, native | 3.31 |"),
        "{devices}"
    );
    assert_eq!(devices.lines().count(), 2 + 4);
    let models = model_table(&runs, &ReportOptions::default());
    assert!(models
        .lines()
        .next()
        .unwrap()
        .contains("| local (ms, fastest backend) | odroid-n2 (ms, fastest backend) |"));
    assert!(
        models.contains("| 67.5 |  | 1.00 (litert-xnnpack) | 1.00 (litert-xnnpack) | 15.8 |"),
        "{models}"
    );
}

#[test]
fn same_csvs_same_bytes_and_every_plot_written() {
    let runs = [fixture()];
    assert_eq!(
        markdown(&runs, &ReportOptions::default(), &[]),
        markdown(&runs, &ReportOptions::default(), &[])
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = write_report(&runs, &ReportOptions::default(), a.path()).unwrap();
    write_report(&runs, &ReportOptions::default(), b.path()).unwrap();
    let readme = std::fs::read_to_string(a.path().join("README.md")).unwrap();
    assert_eq!(
        readme,
        std::fs::read_to_string(b.path().join("README.md")).unwrap()
    );
    for name in [
        "madds_vs_top1",
        "latency_vs_top1_local",
        "latency_distribution_local",
        "speedup_vs_native_local",
    ] {
        let png = std::fs::read(a.path().join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{name}");
        // PNG header: width and height, big-endian, at offset 16.
        assert_eq!(
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            960,
            "{name}"
        );
        let svg = std::fs::read_to_string(a.path().join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text"),
            "{name}: an SVG with real text"
        );
        assert!(
            readme.contains(&format!("({name}.png)")),
            "{name} not embedded"
        );
    }
    assert_eq!(files.len(), 1 + 8);
}

/// The fixture's 200 samples per pair cut into four rounds of 50 (a transformation for the
/// test, not a measurement: it gives compare a between-round spread to judge by).
fn in_four_rounds(run: &Run) -> Run {
    let mut out = run.clone();
    for pair in out.samples.values_mut() {
        let all = pair.all();
        pair.rounds = all
            .chunks(50)
            .enumerate()
            .map(|(i, c)| (i as u32 + 1, c.to_vec()))
            .collect();
    }
    out
}

fn scaled(run: &Run, model: &str, factor: f64) -> Run {
    let mut out = run.clone();
    for (key, pair) in out.samples.iter_mut() {
        if key.model == model {
            for (_, v) in pair.rounds.iter_mut() {
                v.iter_mut()
                    .for_each(|ns| *ns = (*ns as f64 * factor).round() as u64);
            }
        }
    }
    out
}

#[test]
fn compare_with_rounds_flags_a_twenty_percent_slowdown_and_nothing_else() {
    let options = CompareOptions::default();
    let old = in_four_rounds(&fixture());
    let new = scaled(&old, "mobilenet_v3_small_1.0_224", 1.2);
    let result = compare(&old, &new, &options);
    assert_eq!(result.changes.len(), 4);
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    for c in &result.changes {
        let expected = if c.model == "mobilenet_v3_small_1.0_224" {
            Verdict::Slower
        } else {
            Verdict::NoChange
        };
        assert_eq!(c.verdict, expected, "{c:?}");
        assert_eq!((c.old_rounds, c.new_rounds), (4, 4));
        if expected == Verdict::Slower {
            assert!(
                (c.ratio - 1.2).abs() < 1e-3 && c.p_adjusted.unwrap() < 0.05,
                "{c:?}"
            );
        }
    }
    assert!(result.any_slower());
    // And the other way round it is faster.
    let back = compare(&new, &old, &options);
    assert_eq!(
        back.changes
            .iter()
            .filter(|c| c.verdict == Verdict::Faster)
            .count(),
        2
    );
    let md = compare_markdown(&result, &options);
    assert!(
        md.contains("| +20.0% |")
            && md.contains("| slower |")
            && md.contains("| no significant change |")
            && md.contains("| 4/4 |"),
        "{md}"
    );
}

#[test]
fn one_round_cannot_judge_what_drift_could_explain() {
    let options = CompareOptions::default();
    let old = fixture();
    let twenty = compare(
        &old,
        &scaled(&old, "mobilenet_v3_small_1.0_224", 1.2),
        &options,
    );
    assert!(twenty
        .changes
        .iter()
        .all(|c| c.verdict == Verdict::CannotJudge("one round".into())));
    assert!(!twenty.any_slower());
    // Beyond the conservative bound a single round is enough.
    let doubled = compare(
        &old,
        &scaled(&old, "mobilenet_v3_small_1.0_224", 2.0),
        &options,
    );
    let slower: Vec<_> = doubled
        .changes
        .iter()
        .filter(|c| c.verdict == Verdict::Slower)
        .map(|c| c.backend.as_str())
        .collect();
    assert_eq!(slower, ["native", "litert-xnnpack"]);
}

#[test]
fn flagged_rows_and_other_machines_are_not_judged_silently() {
    let options = CompareOptions::default();
    let old = in_four_rounds(&fixture());
    let mut new = scaled(&old, "mobilenet_v3_small_1.0_224", 1.2);
    for row in &mut new.summary {
        row.flags = "noisy;disagrees".into();
        row.cpu_brand = "Another CPU".into();
    }
    let result = compare(&old, &new, &options);
    assert!(!result.any_slower());
    assert!(result
        .changes
        .iter()
        .all(|c| c.verdict == Verdict::CannotJudge("flagged disagrees in new".into())));
    // Noisy alone is judged on the round medians, and said.
    for row in &mut new.summary {
        row.flags = "noisy".into();
    }
    let noisy = compare(&old, &new, &options);
    assert!(noisy.any_slower());
    assert!(compare_markdown(&noisy, &options).contains("| slower (noisy in new) |"));
    assert_eq!(result.warnings.len(), 1, "{:?}", result.warnings);
    assert!(result.warnings[0].contains("CPU"));
    assert!(compare_markdown(&result, &options).contains("**WARNING: the runs differ in CPU"));
}

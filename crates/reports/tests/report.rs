//! Reports from the committed fixture: the CSVs of a real run on this project's VM
//! (`bench run --models mobilenet_v3_small_1.0_224,mobilenet_v3_large_1.0_224
//! --backends native,litert-xnnpack --warmup 10 --runs 200`).

use std::path::Path;

use mobilebench_reports::compare::{compare, markdown as compare_markdown, Verdict};
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
    assert_eq!(l[0], "| model | MACs (M) | params (M) | top-1 % (published) | local (ms, fastest backend) | Pixel 1 (ms, published) | Pixel 2 (ms, published) | Pixel 3 (ms, published) |");
    assert_eq!(l[2], "| mobilenet_v3_small_1.0_224 | 56.5 | 2.5 | 67.5 | 1.00 (litert-xnnpack) | 15.8 | 19.4 | 14.4 |");
    assert_eq!(l[3], "| mobilenet_v3_large_1.0_224 | 216.6 | 5.5 | 75.2 | 3.39 (litert-xnnpack) | 51.2 | 61 | 44 |");
    let native = model_table(
        &[fixture()],
        &ReportOptions {
            backend: Some("native".into()),
            ..Default::default()
        },
    );
    assert!(native.contains("| local (ms, native) |"), "{native}");
    assert!(native.contains("| 67.5 | 3.31 | 15.8 |"), "{native}");
}

#[test]
fn statistics_table_cell_by_cell() {
    let md = stats_table(&[fixture()]);
    assert_eq!(
        lines(&md)[2],
        "| local | mobilenet_v3_small_1.0_224 | native | ok | 3.31 | 3.59 | 3.70 | 3.34 ± 0.130 | [3.30, 3.31] | 7/19 | – | 9.39 | 4.15 | 38.3 | 2.3e-6 |"
    );
    assert_eq!(
        lines(&md)[5],
        "| local | mobilenet_v3_large_1.0_224 | litert-xnnpack | ok | 3.39 | 3.47 | 3.60 | 3.40 ± 0.0783 | [3.38, 3.40] | 4/2 | – | 26.53 | 7.01 | 112.8 | 2.8e-6 |"
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
        models.contains("| 67.5 | 1.00 (litert-xnnpack) | 1.00 (litert-xnnpack) | 15.8 |"),
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

#[test]
fn compare_flags_a_twenty_percent_slowdown_and_nothing_else() {
    let old = fixture();
    let mut new = fixture();
    for (key, samples) in new.samples.iter_mut() {
        if key.model == "mobilenet_v3_small_1.0_224" {
            samples
                .iter_mut()
                .for_each(|ns| *ns = (*ns as f64 * 1.2).round() as u64);
        }
    }
    let changes = compare(&old, &new, 0.01);
    assert_eq!(changes.len(), 4);
    for c in &changes {
        let expected = if c.model == "mobilenet_v3_small_1.0_224" {
            Verdict::Slower
        } else {
            Verdict::NoChange
        };
        assert_eq!(c.verdict, expected, "{c:?}");
        if expected == Verdict::Slower {
            assert!((c.ratio - 1.2).abs() < 1e-3 && c.ci.0 > 1.1, "{c:?}");
        }
    }
    // And the other way round it is faster.
    let back = compare(&new, &old, 0.01);
    assert!(back.iter().filter(|c| c.verdict == Verdict::Faster).count() == 2);
    let md = compare_markdown(&changes);
    assert!(
        md.contains("| +20.0% |")
            && md.contains("| slower |")
            && md.contains("| no significant change |"),
        "{md}"
    );
}

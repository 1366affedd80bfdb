use super::*;

fn header_of<T: Serialize>(row: &T) -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(row).unwrap();
    let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
    text.lines()
        .next()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

fn sample(model: &str, i: u32) -> SampleRow {
    SampleRow {
        device: "local".into(),
        model: model.into(),
        backend: "native".into(),
        iteration: i,
        latency_ns: 1000 + i as u64,
        gpu_ns: None,
    }
}

fn summary(model: &str, status: Status) -> SummaryRow {
    SummaryRow {
        device: "local".into(),
        model: model.into(),
        backend: "native".into(),
        status: Some(status),
        p50_ms: Some(1.5),
        ..Default::default()
    }
}

#[test]
fn documented_columns_are_the_serialised_headers() {
    let names = |cols: &[Column]| cols.iter().map(|c| c.name.to_string()).collect::<Vec<_>>();
    assert_eq!(header_of(&SummaryRow::default()), names(SUMMARY_COLUMNS));
    assert_eq!(header_of(&sample("m", 0)), names(SAMPLE_COLUMNS));
}

#[test]
fn append_read_back_and_last_row_wins() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w = RunWriter::open(dir.path()).unwrap();
        w.append_pair(&summary("a", Status::Ok), &[sample("a", 0), sample("a", 1)])
            .unwrap();
        w.append_pair(&summary("b", Status::Crashed), &[]).unwrap();
    }
    // Reopening appends without a second header; a re-run of b replaces its row.
    let mut w = RunWriter::open(dir.path()).unwrap();
    w.append_pair(&summary("b", Status::Ok), &[sample("b", 0)])
        .unwrap();
    let run = read_run(dir.path()).unwrap();
    assert_eq!(run.summary.len(), 2);
    assert!(run.summary.iter().all(|r| r.is_ok()));
    assert_eq!(run.samples[&run.summary[0].key()], vec![1000, 1001]);
    assert!(run.skipped_rows.is_empty());
}

#[test]
fn a_line_cut_by_a_crash_is_skipped_and_not_glued_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    RunWriter::open(dir.path())
        .unwrap()
        .append_pair(&summary("a", Status::Ok), &[])
        .unwrap();
    let path = dir.path().join(SUMMARY_FILE);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"local,half-written-row,nat").unwrap();
    drop(f);
    RunWriter::open(dir.path())
        .unwrap()
        .append_pair(&summary("c", Status::Ok), &[])
        .unwrap();
    let run = read_run(dir.path()).unwrap();
    let models: Vec<_> = run.summary.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["a", "c"]);
    assert_eq!(run.skipped_rows.len(), 1);
}

#[test]
fn not_a_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_run(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a run directory"), "{err}");
}

#[test]
fn manifest_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let m = RunManifest {
        device: "local".into(),
        models: vec!["mobilenet_v1_1.0_224".into()],
        model_files: vec![],
        backends: vec!["native".into()],
        mode: "train".into(),
        batch: 4,
        bn: "separate".into(),
        warmup: 50,
        runs: 1000,
        core: Some(1),
        weight_seed: 1,
        input_seed: 2,
        cv_threshold: 0.1,
        created_at: "2026-11-22T00:00:00Z".into(),
        command: "bench run".into(),
    };
    write_manifest(dir.path(), &m).unwrap();
    assert_eq!(read_manifest(dir.path()).unwrap(), m);
}

#[test]
fn older_manifests_and_summaries_read_as_inference_batch_1_fused() {
    // A manifest written before mode/batch/bn existed.
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"device":"local","models":[],"backends":["native"],"warmup":1,"runs":2,
        "core":null,"weight_seed":1,"input_seed":2,"cv_threshold":0.1,"created_at":"x","command":"y"}"#;
    std::fs::write(dir.path().join(MANIFEST_FILE), text).unwrap();
    let m = read_manifest(dir.path()).unwrap();
    assert_eq!(
        (m.mode.as_str(), m.batch, m.bn.as_str()),
        ("infer", 1, "fused")
    );
}

#[test]
fn workload_labels_name_only_what_differs_from_the_default() {
    let row = |mode: &str, batch: u32, bn: &str| SummaryRow {
        device: "d".into(),
        model: "m".into(),
        backend: "tch".into(),
        mode: mode.into(),
        batch,
        bn: bn.into(),
        ..Default::default()
    };
    let mut run = Run {
        dir: "r".into(),
        summary: vec![row("infer", 1, "fused"), row("train", 4, "separate")],
        samples: HashMap::new(),
        skipped_rows: vec![],
    };
    run.samples.insert(run.summary[1].key(), vec![7]);
    let run = run.with_workload_labels();
    assert_eq!(run.summary[0].backend, "tch");
    assert_eq!(run.summary[1].backend, "tch (train, batch 4, separate BN)");
    assert_eq!(run.samples[&run.summary[1].key()], vec![7]);
}

#[test]
fn readme_documents_every_column() {
    let readme = include_str!("../../../README.md");
    for c in SUMMARY_COLUMNS.iter().chain(SAMPLE_COLUMNS) {
        let line = format!("| `{}` | {} | {} |", c.name, c.unit, c.meaning);
        assert!(readme.contains(&line), "README lacks or differs on: {line}");
    }
}

use super::*;
use crate::writer::append_ops;
use std::fs::OpenOptions;
use std::io::Write;

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
        threads: 1,
        round: 1,
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
    assert_eq!(header_of(&op_row(1, 0)), names(OP_COLUMNS));
}

fn op_row(round: u32, step: u32) -> OpRow {
    OpRow {
        device: "local".into(),
        model: "m".into(),
        backend: "native".into(),
        threads: 1,
        round,
        step,
        name: format!("n{step}"),
        op: "pointwise_conv".into(),
        input_shape: "7x7x8".into(),
        output_shape: "7x7x16".into(),
        macs: 6272,
        median_ms: 0.01 * f64::from(round),
        gflops: OpRow::achieved_gflops(6272, 0.01),
        core_peak_gflops: Some(100.0),
        isa: "avx2+fma".into(),
        layer_group: format!("n{step}"),
        ir_nodes: format!("n{step}"),
        op_kind: "pointwise".into(),
        matched_by: "IR node".into(),
        coverage: Some(0.98),
    }
}

#[test]
fn ops_written_before_layer_groups_existed_still_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(OPS_FILE),
        "device,model,backend,round,step,name,op,input_shape,output_shape,macs,median_ms,gflops,core_peak_gflops,isa\n\
         local,m,native,1,0,n0,pointwise_conv,7x7x8,7x7x16,6272,0.01,1.25,100.0,avx2+fma\n",
    )
    .unwrap();
    let mut summary = summary("m", Status::Ok);
    summary.rounds = 1;
    let ops = read_ops(dir.path(), &[summary]).unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].layer_group, "");
    assert_eq!(ops[0].coverage, None);
}

#[test]
fn ops_of_the_last_committed_round_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<OpRow> = (1..=3)
        .flat_map(|round| (0..2).map(move |step| op_row(round, step)))
        .collect();
    append_ops(dir.path(), &rows).unwrap();
    // The summary counts two rounds: round 3's rows (a crash before its commit) are ignored.
    let mut committed = summary("m", Status::Ok);
    committed.rounds = 2;
    let read = read_ops(dir.path(), &[committed]).unwrap();
    assert_eq!(read.len(), 2);
    assert!(read.iter().all(|r| r.round == 2), "{read:?}");
    assert_eq!(
        read_ops(dir.path(), &[]).unwrap(),
        vec![],
        "no summary row: nothing counts"
    );
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
    assert_eq!(run.samples[&run.summary[0].key()].all(), vec![1000, 1001]);
    assert!(run.skipped_rows.is_empty());
}

#[test]
fn samples_keep_their_round_and_uncommitted_rounds_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = RunWriter::open(dir.path()).unwrap();
    let in_round = |round: u32, i: u32, ns: u64| SampleRow {
        round,
        latency_ns: ns,
        ..sample("a", i)
    };
    let committed = |rounds: u32| SummaryRow {
        rounds,
        ..summary("a", Status::Ok)
    };
    w.append_pair(&committed(1), &[in_round(1, 0, 10), in_round(1, 1, 30)])
        .unwrap();
    // Round 2 interrupted after its samples, then measured again and committed; round 3's
    // samples were written by a worker that never got its row.
    w.append_pair(&committed(1), &[in_round(2, 0, 99), in_round(2, 1, 99)])
        .unwrap();
    w.append_pair(&committed(2), &[in_round(2, 0, 20), in_round(2, 1, 40)])
        .unwrap();
    w.append_pair(&committed(2), &[in_round(3, 0, 7)]).unwrap();
    let run = read_run(dir.path()).unwrap();
    let pair = &run.samples[&run.summary[0].key()];
    assert_eq!(pair.rounds, vec![(1, vec![10, 30]), (2, vec![20, 40])]);
    let medians = pair.round_medians_ms();
    assert_eq!(medians.len(), 2);
    assert!((medians[0] - 20e-6).abs() < 1e-15 && (medians[1] - 30e-6).abs() < 1e-15);
}

#[test]
fn rows_written_before_rounds_and_timing_read_as_one_legacy_round() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(SUMMARY_FILE),
        "device,model,backend,status,message,started_at,source,input_shape,macs,params,warmup,runs,core,pinned,init_ms,first_inference_ms,mean_ms,std_ms,min_ms,max_ms,p50_ms,p90_ms,p95_ms,p99_ms,cv,median_ci_low_ms,median_ci_high_ms,outliers_mild,outliers_severe,peak_rss_mb,flags,reference,max_abs_diff,max_rel_diff,library_version,threads,precision,adapter,settings,cpu_brand,cpu_cores,os,kernel,governor,freq_before_mhz,freq_after_mhz,freq_max_mhz,temp_before_c,temp_after_c,load_avg_1m,harness_commit,build_profile,probe_notes\n\
         local,m,native,ok,,t,zoo,1x8x8x3,1,1,1,2,1,true,1,1,1,0,1,1,1.5,1,1,1,0,1,1,0,0,10,,r,0,0,v,1,fp32,cpu,,c,2,o,k,g,,,,,,,h,release,\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(SAMPLES_FILE),
        "device,model,backend,iteration,latency_ns\nlocal,m,native,0,1000\nlocal,m,native,1,2000\n",
    )
    .unwrap();
    let run = read_run(dir.path()).unwrap();
    assert!(run.skipped_rows.is_empty(), "{:?}", run.skipped_rows);
    let row = &run.summary[0];
    assert_eq!((row.rounds, row.timing.as_str()), (1, "legacy"));
    assert_eq!(run.samples[&row.key()].rounds, vec![(1, vec![1000, 2000])]);
}

#[test]
fn a_line_cut_by_a_crash_is_cut_off_and_not_glued_to_the_next() {
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
    // The fragment was never a row: reopening cut it off, so nothing is left to skip.
    assert!(run.skipped_rows.is_empty(), "{:?}", run.skipped_rows);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("half-written"), "{text}");
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
        rounds: 3,
        pair_timeout_s: 60,
        timing: "infer".into(),
        profile_ops: true,
        precisions: vec!["float32".into(), "int8".into()],
        core: Some(1),
        threads: vec![1, 2],
        cores: Some("0-1".into()),
        core_class: None,
        weight_seed: 1,
        input_seed: 2,
        cv_threshold: 0.1,
        thermal: ThermalPolicy {
            cooldown_s: 5,
            settle: true,
            settle_margin_c: 1.5,
            settle_timeout_s: 60,
        },
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
        ops: vec![],
    };
    run.samples
        .insert(run.summary[1].key(), PairSamples::one_round(vec![7]));
    let run = run.with_workload_labels();
    assert_eq!(run.summary[0].backend, "tch");
    assert_eq!(run.summary[1].backend, "tch (train, batch 4, separate BN)");
    assert_eq!(run.samples[&run.summary[1].key()].all(), vec![7]);
    // A thread count other than one is part of the label, and of the pair's identity.
    let two = SummaryRow {
        threads: Some(2),
        ..row("infer", 1, "fused")
    };
    assert_ne!(two.key(), row("infer", 1, "fused").key());
    assert_eq!(two.workload(), "2 threads");
}

#[test]
fn the_schema_page_documents_every_column() {
    let readme = include_str!("../../../docs/schema.md");
    for c in SUMMARY_COLUMNS
        .iter()
        .chain(SAMPLE_COLUMNS)
        .chain(OP_COLUMNS)
    {
        let line = format!("| `{}` | {} | {} |", c.name, c.unit, c.meaning);
        assert!(
            readme.contains(&line),
            "docs/schema.md lacks or differs on: {line}"
        );
    }
}

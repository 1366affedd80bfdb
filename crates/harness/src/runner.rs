//! The parent side of `bench run`: plans the (model, backend) pairs, runs them round-robin
//! for each round, one worker process per pair and round, turns its events into a summary
//! row and samples, and appends them to the run directory before starting the next.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mobilebench_backend::{Availability, Backend, FileFormat, Mode, SourceKind, Timing, Workload};
use mobilebench_models::{count, BnMode, ModelConfig, Precision};
use mobilebench_results::{
    self as results, OpRow, RunManifest, RunWriter, SampleRow, Status, SummaryRow,
};

use crate::agreement::{self, Agreement, PreparedZoo};
use crate::children::{probe_availability, run_worker, stop_requested};
use crate::outcome::{fill_row, PairRounds, RoundSamples};
use crate::probe::{self, Machine};
use crate::registry;
use crate::rundir::{now_rfc3339, output_path};
use crate::worker::{SourceSpec, WorkerSpec};

/// Everything one run needs beyond the manifest.
pub struct RunContext {
    pub dir: PathBuf,
    pub manifest: RunManifest,
    /// The device name written into every row.
    pub device: String,
    /// Measured under emulation: rows are flagged, and backends that cannot run there are
    /// recorded unavailable.
    pub emulated: bool,
    /// Print each finished pair on stdout (for the machine that started this run remotely).
    pub emit_rows: bool,
    /// Run workers under this command (the device's emulator), e.g. `qemu-aarch64 -L ...`.
    pub worker_prefix: Vec<String>,
    /// The clusters the device's profile claims, checked against the probe at the start.
    pub claimed_clusters: Vec<mobilebench_devices::ClusterSpec>,
}

/// Prints an already-recorded pair again for the machine that started this run.
fn resend(ctx: &RunContext, run: &results::Run, model: &str, backend: &str) -> Result<()> {
    let Some(row) = run
        .summary
        .iter()
        .find(|r| r.model == model && r.backend == backend && r.device == ctx.device)
    else {
        return Ok(());
    };
    let samples = run
        .samples
        .get(&row.key())
        .map(|pair| {
            pair.rounds
                .iter()
                .flat_map(|(round, v)| row.sample_rows(*round, v, None))
                .collect()
        })
        .unwrap_or_default();
    let ops = mobilebench_results::read_ops(&ctx.dir, std::slice::from_ref(row))?;
    let msg = crate::remote::RowMessage {
        summary: row.clone(),
        samples,
        ops,
    };
    println!(
        "{}{}",
        crate::remote::ROW_PREFIX,
        serde_json::to_string(&msg)?
    );
    Ok(())
}

/// Appends a pair and, for a remote run, sends it to the machine that started the run.
fn record(
    ctx: &RunContext,
    writer: &Mutex<RunWriter>,
    row: &SummaryRow,
    samples: &[SampleRow],
    ops: &[OpRow],
) -> Result<()> {
    writer
        .lock()
        .expect("writer lock")
        .append_round(row, samples, ops)?;
    if ctx.emit_rows {
        let msg = crate::remote::RowMessage {
            summary: row.clone(),
            samples: samples.to_vec(),
            ops: ops.to_vec(),
        };
        println!(
            "{}{}",
            crate::remote::ROW_PREFIX,
            serde_json::to_string(&msg)?
        );
    }
    Ok(())
}

/// One thing to measure: a zoo model in one precision, or a user's model file.
enum Item {
    Zoo(ModelConfig, Precision),
    /// A file and its label: its name, or its path as given where two files share a name.
    File(PathBuf, String),
}

impl Item {
    fn label(&self) -> String {
        match self {
            Item::Zoo(c, precision) => precision.label(&c.name()),
            Item::File(_, label) => label.clone(),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The user's files as items, each with a label of its own (the key of its rows).
fn file_items(files: &[String]) -> Vec<Item> {
    files
        .iter()
        .map(|f| {
            let path = PathBuf::from(f);
            let name = file_name(&path);
            let shared = files
                .iter()
                .filter(|g| file_name(Path::new(g)) == name)
                .count()
                > 1;
            let label = if shared { f.clone() } else { name };
            Item::File(path, label)
        })
        .collect()
}

fn file_format(path: &Path) -> Result<FileFormat> {
    let format = FileFormat::from_path(path).with_context(|| {
        format!(
            "model file {}: unknown format (expected .onnx or .tflite)",
            path.display()
        )
    })?;
    let meta = std::fs::metadata(path).with_context(|| format!("model file {}", path.display()))?;
    if !meta.is_file() {
        bail!("model file {}: not a file", path.display());
    }
    Ok(format)
}

/// Runs every pair of the manifest not already measured in `ctx.dir`: `rounds` times,
/// round-robin (every pair once, then every pair again), each time in a fresh worker, so
/// slow drift of the machine hits every pair alike.
pub fn run(ctx: &RunContext, writer: &Mutex<RunWriter>) -> Result<()> {
    let m = &ctx.manifest;
    let backends = registry::select(&m.backends)?;
    let precisions = precisions_of(m)?;
    let mut items: Vec<Item> = Vec::new();
    for name in &m.models {
        let config = name.parse::<ModelConfig>()?;
        // A model's precisions one after another, so its rows sit side by side.
        items.extend(precisions.iter().map(|&p| Item::Zoo(config, p)));
    }
    items.extend(file_items(&m.model_files));
    let rounds = m.rounds.max(1);
    // What this run directory already holds (read once: resumed remote runs resend from it).
    let existing = match results::read_run(&ctx.dir) {
        Ok(run) => Some(run),
        Err(results::ResultsError::NotARun(_)) => None,
        Err(e) => return Err(e.into()),
    };
    // Pairs whose last row is ok keep their rounds; those with every round are done.
    let mut pairs: HashMap<(String, String), PairRounds> = HashMap::new();
    let mut done: HashSet<(String, String)> = HashSet::new();
    for row in existing
        .iter()
        .flat_map(|run| &run.summary)
        .filter(|r| r.is_ok() && r.device == ctx.device)
    {
        let key = (row.model.clone(), row.backend.clone());
        if row.rounds >= rounds {
            done.insert(key.clone());
        }
        let samples = existing
            .as_ref()
            .and_then(|run| run.samples.get(&row.key()).cloned())
            .unwrap_or_default();
        pairs.insert(key, PairRounds::resumed(row, samples));
    }
    registry::provision_missing(&backends);
    let machine = Machine::probe();
    // A profile that disagrees with the device about its cores: said now, and in every row.
    let cluster_warnings = crate::cores::check_clusters(
        &ctx.device,
        &ctx.claimed_clusters,
        &crate::cores::probe(Path::new("/")),
    );
    for warning in &cluster_warnings {
        eprintln!("warning: {warning}");
    }
    // `--settle` waits for the temperatures the campaign started at (on this device).
    let start_temperatures = crate::thermal::Sysfs::default().temperatures();
    let measured_core = ctx.manifest.core.or_else(probe::fastest_core).unwrap_or(0);
    let availability: Vec<Availability> = backends
        .iter()
        .map(|b| match b.emulation_blocker() {
            Some(why) if ctx.emulated => Availability::Unavailable {
                reason: format!("unavailable under emulation: {why}"),
            },
            _ => probe_availability(b.as_ref(), &ctx.worker_prefix),
        })
        .collect();
    std::fs::create_dir_all(ctx.dir.join("outputs")).context("cannot create the outputs folder")?;
    let total = items.len() * backends.len() * rounds as usize;
    let mut index = 0;
    let mut item_contexts: Vec<Option<ItemContext>> = items.iter().map(|_| None).collect();
    for round in 1..=rounds {
        for (item, item_ctx) in items.iter().zip(item_contexts.iter_mut()) {
            let label = item.label();
            let remaining = backends.iter().any(|b| {
                let key = (label.clone(), b.name().to_string());
                !done.contains(&key)
                    && pairs
                        .get(&key)
                        .is_none_or(|p| !p.stopped && p.rounds_done() < round)
            });
            if !remaining {
                index += backends.len();
                if round == 1 {
                    eprintln!(
                        "{label}: every backend already measured in this run directory, skipped"
                    );
                }
                continue;
            }
            if item_ctx.is_none() {
                match prepare_item(ctx, item, &label, &backends, &done) {
                    Ok(prepared) => *item_ctx = Some(prepared),
                    Err(e) => {
                        // A bad model file: one failed row, and no more rounds for it.
                        eprintln!("error: {e:#}");
                        let Item::File(path, _) = item else {
                            return Err(e);
                        };
                        let mut row = file_row(ctx, &machine, &label, path, "-");
                        row.status = Some(Status::Failed);
                        row.message = format!("{e:#}");
                        record(ctx, writer, &row, &[], &[])?;
                        for b in &backends {
                            done.insert((label.clone(), b.name().to_string()));
                        }
                        index += backends.len();
                        continue;
                    }
                }
            }
            let item_ctx = item_ctx.as_mut().expect("prepared above");
            for (backend, available) in backends.iter().zip(&availability) {
                index += 1;
                let key = (label.clone(), backend.name().to_string());
                let round_tag = if rounds > 1 {
                    format!(" (round {round}/{rounds})")
                } else {
                    String::new()
                };
                let tag = format!("[{index}/{total}] {label} × {}{round_tag}", backend.name());
                let pair = pairs.entry(key.clone()).or_default();
                if done.contains(&key) {
                    if round == 1 {
                        eprintln!("{tag}: already measured in this run directory, skipped");
                        if ctx.emit_rows {
                            // The machine that started this run may have missed it (a dropped link).
                            if let Some(run) = &existing {
                                resend(ctx, run, &label, backend.name())?;
                            }
                        }
                    }
                    continue;
                }
                if pair.stopped || pair.rounds_done() >= round {
                    continue;
                }
                if stop_requested() {
                    return Ok(());
                }
                let settled = available
                    .is_available()
                    .then(|| {
                        crate::thermal::before_pair(
                            &ctx.manifest.thermal,
                            &start_temperatures,
                            measured_core,
                        )
                    })
                    .flatten();
                let measured =
                    measure_pair(ctx, &machine, item_ctx, backend.as_ref(), available, &tag)?;
                if stop_requested() {
                    // Interrupted: this round of this pair is not recorded; --resume redoes it.
                    eprintln!("{tag}: interrupted, not recorded");
                    return Ok(());
                }
                let Some((mut row, samples)) = measured else {
                    pair.stopped = true;
                    continue;
                };
                if let Some(settled) = &settled {
                    row.settle_wait_s = Some(settled.waited.as_secs_f64());
                    if let Some(why) = &settled.timed_out {
                        eprintln!("{tag}: {why}; measuring anyway");
                    }
                }
                let unsettled = settled.as_ref().and_then(|s| s.timed_out.as_ref());
                for warning in cluster_warnings.iter().chain(unsettled) {
                    row.probe_notes = [row.probe_notes.as_str(), warning]
                        .iter()
                        .filter(|n| !n.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join("; ");
                }
                let mut op_rows = Vec::new();
                let (row, sample_rows) = if row.is_ok() {
                    let sample_rows =
                        row.sample_rows(round, &samples.latencies_ns, samples.gpu_ns.as_deref());
                    if let Some(profile) = &samples.profile {
                        let graph = match &*item_ctx {
                            ItemContext::Zoo(prepared) => Some(prepared.graph()),
                            ItemContext::File { .. } => None,
                        };
                        let median = (!samples.latencies_ns.is_empty()).then(|| {
                            (mobilebench_results::stats::median_ms(&samples.latencies_ns) * 1e6)
                                .round() as u64
                        });
                        op_rows = profile.rows(&row, round, graph, median);
                    }
                    (
                        pair.add(round, &row, samples, ctx.manifest.cv_threshold),
                        sample_rows,
                    )
                } else {
                    // Earlier rounds' samples stay in samples.csv; the row says what failed.
                    pair.stopped = true;
                    let mut row = row;
                    if rounds > 1 && row.status != Some(Status::Unavailable) {
                        row.message = format!("round {round}/{rounds}: {}", row.message);
                    }
                    (row, Vec::new())
                };
                record(ctx, writer, &row, &sample_rows, &op_rows)
                    .with_context(|| format!("cannot record {tag}"))?;
                eprintln!("{tag}: {}", one_line(&row));
            }
        }
    }
    Ok(())
}

/// Builds what every pair of an item shares: the zoo model prepared (exported on demand),
/// or the user's file checked.
fn prepare_item(
    ctx: &RunContext,
    item: &Item,
    label: &str,
    backends: &[Box<dyn Backend>],
    done: &HashSet<(String, String)>,
) -> Result<ItemContext> {
    let m = &ctx.manifest;
    Ok(match item {
        Item::Zoo(config, precision) => ItemContext::Zoo(Box::new(PreparedZoo::new(
            *config,
            m.weight_seed,
            m.input_seed,
            workload_of(m)?.1,
            *precision,
        )?)),
        Item::File(path, _) => ItemContext::File {
            path: path.clone(),
            label: label.to_string(),
            format: file_format(path)?,
            reference: first_reference(&ctx.dir, label, backends, done),
        },
    })
}

/// Per-item state shared by its pairs.
enum ItemContext {
    Zoo(Box<PreparedZoo>),
    File {
        path: PathBuf,
        label: String,
        format: FileFormat,
        /// The first backend that ran this file, and its output.
        reference: Option<(String, Vec<f32>)>,
    },
}

/// On `--resume`, the reference of a file is the output of the first backend already done.
fn first_reference(
    dir: &Path,
    label: &str,
    backends: &[Box<dyn Backend>],
    done: &HashSet<(String, String)>,
) -> Option<(String, Vec<f32>)> {
    backends.iter().find_map(|b| {
        if !done.contains(&(label.to_string(), b.name().to_string())) {
            return None;
        }
        let out = agreement::read_output(&output_path(dir, label, b.name())).ok()?;
        Some((b.name().to_string(), out))
    })
}

fn one_line(row: &SummaryRow) -> String {
    match (row.status, row.p50_ms) {
        (Some(Status::Ok), Some(p50)) => {
            let flags = if row.flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", row.flags)
            };
            format!(
                "median {} ms (cv {:.1}%){flags}",
                results::format_ms(p50),
                100.0 * row.cv.unwrap_or(0.0)
            )
        }
        (status, _) => format!("{}: {}", status.map_or("?", |s| s.word()), row.message),
    }
}

/// The manifest's timing contract, parsed.
pub fn timing_of(m: &RunManifest) -> Result<Timing> {
    m.timing.parse::<Timing>().map_err(|e| {
        anyhow::anyhow!(
            "run.json timing {e} (a run recorded before the timing contract cannot be resumed)"
        )
    })
}

/// The manifest's precisions, parsed.
pub fn precisions_of(m: &RunManifest) -> Result<Vec<Precision>> {
    m.precisions
        .iter()
        .map(|p| p.parse::<Precision>().map_err(anyhow::Error::msg))
        .collect()
}

/// The manifest's workload and BN form, parsed.
pub fn workload_of(m: &RunManifest) -> Result<(Workload, BnMode)> {
    let mode = m.mode.parse::<Mode>().map_err(anyhow::Error::msg)?;
    let bn = m.bn.parse::<BnMode>().map_err(anyhow::Error::msg)?;
    let batch = usize::try_from(m.batch)?;
    Ok((Workload { mode, batch }, bn))
}

fn zoo_row(ctx: &RunContext, machine: &Machine, zoo: &PreparedZoo, backend: &str) -> SummaryRow {
    let config = &zoo.config;
    let counts = count(&config.graph());
    SummaryRow {
        precision: zoo.precision.column().into(),
        source: "zoo".into(),
        input_shape: format!("{}x{1}x{1}x3", ctx.manifest.batch, config.resolution),
        macs: Some(counts.macs),
        params: Some(counts.params),
        ..common_row(ctx, machine, &zoo.label(), backend)
    }
}

fn file_row(
    ctx: &RunContext,
    machine: &Machine,
    label: &str,
    path: &Path,
    backend: &str,
) -> SummaryRow {
    SummaryRow {
        source: path.display().to_string(),
        ..common_row(ctx, machine, label, backend)
    }
}

fn common_row(ctx: &RunContext, machine: &Machine, label: &str, backend: &str) -> SummaryRow {
    SummaryRow {
        device: ctx.device.clone(),
        timing: ctx.manifest.timing.clone(),
        rounds: 0,
        flags: if ctx.emulated {
            "emulated".into()
        } else {
            String::new()
        },
        model: label.to_string(),
        backend: backend.to_string(),
        started_at: now_rfc3339(),
        mode: ctx.manifest.mode.clone(),
        batch: ctx.manifest.batch,
        bn: ctx.manifest.bn.clone(),
        warmup: ctx.manifest.warmup,
        runs: ctx.manifest.runs,
        core: ctx.manifest.core,
        cpu_brand: machine.cpu_brand.clone(),
        cpu_cores: Some(machine.cpu_cores),
        os: machine.os.clone(),
        kernel: machine.kernel.clone(),
        load_avg_1m: Some(probe::load_average_1m()),
        harness_commit: probe::COMMIT.into(),
        build_profile: probe::PROFILE.into(),
        governor: "unavailable".into(),
        ..Default::default()
    }
}

/// Measures one round of one pair: the row of that round (statistics not yet set) and its
/// samples; `None` when the backend does not read this kind of file (said on stderr, no
/// row: a user's .onnx simply has no LiteRT pair).
fn measure_pair(
    ctx: &RunContext,
    machine: &Machine,
    item: &mut ItemContext,
    backend: &dyn Backend,
    availability: &Availability,
    tag: &str,
) -> Result<Option<(SummaryRow, RoundSamples)>> {
    let name = backend.name();
    let (mut row, source) = match item {
        ItemContext::Zoo(prepared) => {
            let row = zoo_row(ctx, machine, prepared, name);
            let models_dir = ctx.dir.join("models");
            (row, prepared.source_for(backend, &models_dir)?)
        }
        ItemContext::File {
            path,
            label,
            format,
            ..
        } => {
            if !backend.accepts(SourceKind::File(*format)) {
                eprintln!("{tag}: {name} does not read {format:?} files, skipped");
                return Ok(None);
            }
            let mut row = file_row(ctx, machine, label, path, name);
            row.message = "MACs and params are not computed for model files".into();
            let source = SourceSpec::File {
                path: path.clone(),
                format: *format,
            };
            (row, Some(source))
        }
    };
    if let Availability::Unavailable { reason } = availability {
        row.status = Some(Status::Unavailable);
        row.message = reason.clone();
        return Ok(Some((row, RoundSamples::default())));
    }
    let (workload, bn) = workload_of(&ctx.manifest)?;
    let int8 = matches!(item, ItemContext::Zoo(z) if z.precision == Precision::Int8);
    if let (true, Err(why)) = (int8, backend.runs_int8()) {
        row.status = Some(Status::Unavailable);
        row.message = format!("{why} (--precision int8)");
        return Ok(Some((row, RoundSamples::default())));
    }
    if let Err(why) = backend.supports(&workload) {
        row.status = Some(Status::Unavailable);
        row.message = format!(
            "{why} (--mode {} --batch {})",
            ctx.manifest.mode, ctx.manifest.batch
        );
        return Ok(Some((row, RoundSamples::default())));
    }
    let Some(source) = source else {
        row.status = Some(Status::Unavailable);
        row.message = format!("{name} takes neither zoo models nor a format they export to");
        return Ok(Some((row, RoundSamples::default())));
    };
    let output = output_path(&ctx.dir, &row.model, name);
    let spec = WorkerSpec {
        backend: name.to_string(),
        source,
        core: ctx.manifest.core,
        warmup: ctx.manifest.warmup,
        runs: ctx.manifest.runs,
        weight_seed: ctx.manifest.weight_seed,
        input_seed: ctx.manifest.input_seed,
        workload,
        bn,
        timing: timing_of(&ctx.manifest)?,
        profile_ops: ctx.manifest.profile_ops,
        output_path: output.clone(),
        agreement_inputs: if int8 { agreement::AGREEMENT_INPUTS } else { 0 },
    };
    if backend.software_adapter().is_some() {
        row.flags = match row.flags.as_str() {
            "" => "software".into(),
            f => format!("{f};software"),
        };
    }
    let note = std::mem::take(&mut row.message);
    let timeout = Duration::from_secs(ctx.manifest.pair_timeout_s);
    let samples = match run_worker(&spec, tag, &ctx.worker_prefix, timeout) {
        Ok(outcome) => {
            let samples = fill_row(&mut row, &outcome);
            if int8 {
                // The session ran an int8 file; it reports the float I/O it sees.
                row.precision = Precision::Int8.column().into();
            }
            samples
        }
        Err(e) => {
            row.status = Some(Status::Failed);
            row.message = format!("{e:#}");
            RoundSamples::default()
        }
    };
    if row.is_ok() {
        row.message = note;
        if workload.mode == Mode::Train {
            row.reference =
                "none: a training step changes the weights, so no engine has the same output (the tch tests check the step)".into();
        } else if backend.computes() {
            let out = agreement::read_output(&output)?;
            let agreement = match item {
                ItemContext::Zoo(prepared) => prepared.agreement(name, &out),
                ItemContext::File { reference, .. } => match reference {
                    Some((first, expected)) => agreement::compare(first, expected, &out),
                    None => {
                        *reference = Some((name.to_string(), out.clone()));
                        agreement::compare(
                            &format!("{name} (itself: first backend to run this file)"),
                            &out,
                            &out,
                        )
                    }
                },
            };
            record_agreement(&mut row, &agreement);
            if let (true, ItemContext::Zoo(prepared)) = (int8, &mut *item) {
                let outputs = agreement::read_output(&crate::worker::agreement_path(&output))?;
                record_float_agreement(&mut row, &prepared.float_agreement(&outputs));
            }
        } else {
            row.reference = "none (a test-only backend that computes nothing)".into();
        }
    }
    Ok(Some((row, samples)))
}

/// An int8 row's agreement with the float model; below [`agreement::INT8_MIN_COSINE`] the
/// row is flagged.
fn record_float_agreement(row: &mut SummaryRow, a: &mobilebench_models::agreement::Agreement) {
    row.agreement_inputs = Some(a.inputs as u32);
    row.top1_agreement = Some(a.top1_agreement);
    row.cosine_mean = Some(a.mean_cosine);
    row.cosine_min = Some(a.min_cosine);
    if a.inputs == 0 || a.min_cosine.is_nan() || a.min_cosine < agreement::INT8_MIN_COSINE {
        flag_disagreement(
            row,
            format!(
                "int8 logits far from the float model's: smallest cosine {:.3} over {} inputs (at least {} expected)",
                a.min_cosine,
                a.inputs,
                agreement::INT8_MIN_COSINE
            ),
        );
    }
}

fn flag_disagreement(row: &mut SummaryRow, problem: String) {
    if !row.flag_list().contains(&"disagrees") {
        row.flags = if row.flags.is_empty() {
            "disagrees".into()
        } else {
            format!("{};disagrees", row.flags)
        };
    }
    row.message = if row.message.is_empty() {
        problem
    } else {
        format!("{}; {problem}", row.message)
    };
}

fn record_agreement(row: &mut SummaryRow, a: &Agreement) {
    row.reference = match a.cosine {
        // int8 rows are judged by the cosine: the reference column carries it.
        Some(c) => format!("{}, cosine {c:.4}", a.reference),
        None => a.reference.clone(),
    };
    row.max_abs_diff = Some(a.max_abs_diff);
    row.max_rel_diff = Some(a.max_rel_diff);
    if let Some(problem) = a.problem(agreement::tolerance(&row.precision)) {
        flag_disagreement(row, problem);
    }
}

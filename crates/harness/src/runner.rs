//! The parent side of `bench run`: plans the (model, backend, threads) pairs, runs them
//! round-robin for each round, one worker process per pair and round, turns its events into a summary
//! row and samples, and appends them to the run directory before starting the next.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mobilebench_backend::{Availability, Backend, FileFormat, Mode, SourceKind, Timing, Workload};
use mobilebench_models::{BnMode, ModelConfig, Precision};
use mobilebench_results::{
    self as results, OpRow, RunManifest, RunWriter, SampleRow, Status, SummaryRow,
};

use crate::agreement::{self, PreparedZoo};
use crate::children::{probe_availability, run_worker, stop_requested};
use crate::outcome::{fill_row, PairRounds, RoundSamples};
use crate::placement::{self, CoreChoice};
use crate::probe::{self, Machine};
use crate::registry;
use crate::rows::{file_row, one_line, record_agreement, record_float_agreement, zoo_row};
use crate::rundir::output_path;
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
fn resend(ctx: &RunContext, run: &results::Run, id: &PairId) -> Result<()> {
    let Some(row) = run
        .summary
        .iter()
        .find(|r| r.device == ctx.device && &PairId::of_row(r) == id)
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

/// One pair's identity, the key of its rows: the item's label (a zoo model with its
/// precision, or a file), the backend and the thread count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PairId {
    pub label: String,
    pub backend: String,
    pub threads: u32,
}

impl PairId {
    fn of_row(row: &SummaryRow) -> PairId {
        PairId {
            label: row.model.clone(),
            backend: row.backend.clone(),
            threads: row.thread_count(),
        }
    }
}

/// What the run directory already holds: pairs whose last row is ok keep their rounds, and
/// those with every round are done.
fn resumed_pairs(
    ctx: &RunContext,
    existing: Option<&results::Run>,
    rounds: u32,
) -> (HashMap<PairId, PairRounds>, HashSet<PairId>) {
    let mut pairs = HashMap::new();
    let mut done = HashSet::new();
    for row in existing
        .iter()
        .flat_map(|run| &run.summary)
        .filter(|r| r.is_ok() && r.device == ctx.device)
    {
        let id = PairId::of_row(row);
        if row.rounds >= rounds {
            done.insert(id.clone());
        }
        let samples = existing
            .and_then(|run| run.samples.get(&row.key()).cloned())
            .unwrap_or_default();
        pairs.insert(id, PairRounds::resumed(row, samples));
    }
    (pairs, done)
}

/// The manifest's thread counts (older manifests: one thread).
fn thread_counts(m: &RunManifest) -> Vec<u32> {
    let mut counts: Vec<u32> = m.threads.iter().copied().filter(|&t| t > 0).collect();
    if counts.is_empty() {
        counts.push(1);
    }
    counts
}

/// What stays the same for every pair of a run on this device.
struct Bench<'a> {
    ctx: &'a RunContext,
    writer: &'a Mutex<RunWriter>,
    machine: Machine,
    existing: Option<results::Run>,
    cluster_warnings: Vec<String>,
    start_temperatures: Vec<(String, f64)>,
    rounds: u32,
}

/// Runs every pair of the manifest not already measured in `ctx.dir`: `rounds` times,
/// round-robin (every pair once, then every pair again; within a round each item's thread
/// counts and backends in turn), each time in a fresh worker, so slow drift of the machine
/// hits every pair alike.
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
    let (mut pairs, mut done) = resumed_pairs(ctx, existing.as_ref(), rounds);
    registry::provision_missing(&backends);
    let cpus = crate::cores::probe(Path::new("/"));
    // Each thread count's cores, fastest first, resolved on the device itself.
    let choice = CoreChoice::of(m).map_err(anyhow::Error::msg)?;
    let allowed = probe::initial_affinity();
    let core_sets: Vec<(u32, Vec<usize>)> = thread_counts(m)
        .into_iter()
        .map(|t| {
            placement::core_set(t, &choice, &ctx.claimed_clusters, &cpus, &allowed)
                .map(|set| (t, set))
                .map_err(|e| anyhow::anyhow!("device {}: {e}", ctx.device))
        })
        .collect::<Result<_>>()?;
    let bench = Bench {
        ctx,
        writer,
        machine: Machine::probe(),
        // A profile that disagrees with the device about its cores: said now, and in every row.
        cluster_warnings: crate::cores::check_clusters(&ctx.device, &ctx.claimed_clusters, &cpus),
        // `--settle` waits for the temperatures the campaign started at (on this device).
        start_temperatures: crate::thermal::Sysfs::default().temperatures(),
        existing,
        rounds,
    };
    for warning in &bench.cluster_warnings {
        eprintln!("warning: {warning}");
    }
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
    let per_item = core_sets.len() * backends.len();
    let total = items.len() * per_item * rounds as usize;
    let mut index = 0;
    let mut item_contexts: Vec<Option<ItemContext>> = items.iter().map(|_| None).collect();
    for round in 1..=rounds {
        for (item, item_ctx) in items.iter().zip(item_contexts.iter_mut()) {
            let label = item.label();
            let ids: Vec<PairId> = core_sets
                .iter()
                .flat_map(|(t, _)| {
                    backends.iter().map(|b| PairId {
                        label: label.clone(),
                        backend: b.name().to_string(),
                        threads: *t,
                    })
                })
                .collect();
            let remaining = ids.iter().any(|id| {
                !done.contains(id)
                    && pairs
                        .get(id)
                        .is_none_or(|p| !p.stopped && p.rounds_done() < round)
            });
            if !remaining {
                index += per_item;
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
                        let mut row = file_row(ctx, &bench.machine, &label, path, "-");
                        row.status = Some(Status::Failed);
                        row.message = format!("{e:#}");
                        record(ctx, writer, &row, &[], &[])?;
                        done.extend(ids);
                        index += per_item;
                        continue;
                    }
                }
            }
            let item_ctx = item_ctx.as_mut().expect("prepared above");
            let mut id = ids.into_iter();
            for (threads, cores) in &core_sets {
                for (backend, available) in backends.iter().zip(&availability) {
                    index += 1;
                    let id = id.next().expect("one id per pair");
                    let round_tag = if rounds > 1 {
                        format!(" (round {round}/{rounds})")
                    } else {
                        String::new()
                    };
                    let thread_tag = if core_sets.len() > 1 || *threads > 1 {
                        format!(", {threads} thread{}", if *threads > 1 { "s" } else { "" })
                    } else {
                        String::new()
                    };
                    let tag = format!(
                        "[{index}/{total}] {label} × {}{thread_tag}{round_tag}",
                        backend.name()
                    );
                    let pair = pairs.entry(id.clone()).or_default();
                    if done.contains(&id) {
                        if round == 1 {
                            eprintln!("{tag}: already measured in this run directory, skipped");
                            if ctx.emit_rows {
                                // The machine that started this run may have missed it (a dropped link).
                                if let Some(run) = &bench.existing {
                                    resend(ctx, run, &id)?;
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
                    let placed = Placement {
                        threads: *threads,
                        cores,
                    };
                    let go_on = bench.pair_round(
                        round,
                        item_ctx,
                        backend.as_ref(),
                        available,
                        &placed,
                        pair,
                        &tag,
                    )?;
                    if !go_on {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a pair runs: its thread count and the cores, fastest first.
struct Placement<'a> {
    threads: u32,
    cores: &'a [usize],
}

impl Bench<'_> {
    /// Measures and records one round of one pair; `false` when the user interrupted.
    #[allow(clippy::too_many_arguments)]
    fn pair_round(
        &self,
        round: u32,
        item_ctx: &mut ItemContext,
        backend: &dyn Backend,
        available: &Availability,
        placed: &Placement,
        pair: &mut PairRounds,
        tag: &str,
    ) -> Result<bool> {
        let ctx = self.ctx;
        let settled = available
            .is_available()
            .then(|| {
                crate::thermal::before_pair(
                    &ctx.manifest.thermal,
                    &self.start_temperatures,
                    placed.cores[0],
                )
            })
            .flatten();
        let measured = measure_pair(
            ctx,
            &self.machine,
            item_ctx,
            backend,
            available,
            placed,
            tag,
        )?;
        if stop_requested() {
            // Interrupted: this round of this pair is not recorded; --resume redoes it.
            eprintln!("{tag}: interrupted, not recorded");
            return Ok(false);
        }
        let Some((mut row, samples)) = measured else {
            pair.stopped = true;
            return Ok(true);
        };
        if let Some(settled) = &settled {
            row.settle_wait_s = Some(settled.waited.as_secs_f64());
            if let Some(why) = &settled.timed_out {
                eprintln!("{tag}: {why}; measuring anyway");
            }
        }
        let unsettled = settled.as_ref().and_then(|s| s.timed_out.as_ref());
        for warning in self.cluster_warnings.iter().chain(unsettled) {
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
                    (mobilebench_results::stats::median_ms(&samples.latencies_ns) * 1e6).round()
                        as u64
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
            if self.rounds > 1 && row.status != Some(Status::Unavailable) {
                row.message = format!("round {round}/{}: {}", self.rounds, row.message);
            }
            (row, Vec::new())
        };
        record(ctx, self.writer, &row, &sample_rows, &op_rows)
            .with_context(|| format!("cannot record {tag}"))?;
        eprintln!("{tag}: {}", one_line(&row));
        Ok(true)
    }
}

/// Builds what every pair of an item shares: the zoo model prepared (exported on demand),
/// or the user's file checked.
fn prepare_item(
    ctx: &RunContext,
    item: &Item,
    label: &str,
    backends: &[Box<dyn Backend>],
    done: &HashSet<PairId>,
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

/// On `--resume`, the reference of a file is the output of the first backend already done
/// (at any thread count: the output does not depend on it).
fn first_reference(
    dir: &Path,
    label: &str,
    backends: &[Box<dyn Backend>],
    done: &HashSet<PairId>,
) -> Option<(String, Vec<f32>)> {
    backends.iter().find_map(|b| {
        let id = done
            .iter()
            .find(|id| id.label == label && id.backend == b.name())?;
        let out = agreement::read_output(&output_path(dir, label, b.name(), id.threads)).ok()?;
        Some((b.name().to_string(), out))
    })
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
    Ok((
        Workload {
            mode,
            batch,
            threads: 1,
        },
        bn,
    ))
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
    placed: &Placement,
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
    row.threads = Some(placed.threads);
    row.core = placed.cores.first().copied();
    row.core_set = crate::affinity::format_cpu_list(placed.cores);
    if let Availability::Unavailable { reason } = availability {
        row.status = Some(Status::Unavailable);
        row.message = reason.clone();
        return Ok(Some((row, RoundSamples::default())));
    }
    if let Err(why) = backend.runs_threads(placed.threads) {
        row.status = Some(Status::Unavailable);
        row.message = format!("{why} (--threads {})", placed.threads);
        return Ok(Some((row, RoundSamples::default())));
    }
    let (mut workload, bn) = workload_of(&ctx.manifest)?;
    workload.threads = placed.threads;
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
    let output = output_path(&ctx.dir, &row.model, name, placed.threads);
    let spec = WorkerSpec {
        backend: name.to_string(),
        source,
        core: placed.cores.first().copied(),
        cores: placed.cores.to_vec(),
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

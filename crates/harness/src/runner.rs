//! The parent side of `bench run`: plans the (model, backend) pairs, runs one worker process
//! per pair, turns its events into a summary row and samples, and appends them to the run
//! directory before starting the next pair.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mobilebench_backend::{Availability, Backend, FileFormat, Mode, SourceKind, Workload};
use mobilebench_models::{count, BnMode, ModelConfig};
use mobilebench_results::{self as results, RunManifest, RunWriter, SampleRow, Status, SummaryRow};

use crate::agreement::{self, Agreement, PreparedZoo};
use crate::outcome::{fill_row, signal_name, Outcome};
use crate::probe::{self, Machine};
use crate::registry;
use crate::worker::{Event, SourceSpec, WorkerSpec};

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
        .map(|v| row.sample_rows(v, None))
        .unwrap_or_default();
    let msg = crate::remote::RowMessage {
        summary: row.clone(),
        samples,
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
) -> Result<()> {
    writer
        .lock()
        .expect("writer lock")
        .append_pair(row, samples)?;
    if ctx.emit_rows {
        let msg = crate::remote::RowMessage {
            summary: row.clone(),
            samples: samples.to_vec(),
        };
        println!(
            "{}{}",
            crate::remote::ROW_PREFIX,
            serde_json::to_string(&msg)?
        );
    }
    Ok(())
}

/// Creates `out/<device>/<UTC timestamp>/` with its manifest.
pub fn create_run_dir(out: &Path, manifest: &RunManifest) -> Result<PathBuf> {
    let stamp = manifest.created_at.replace([':', '-'], "");
    let devices: Vec<String> = manifest
        .device
        .split(',')
        .map(|d| {
            Path::new(d)
                .file_stem()
                .map_or(d.to_string(), |s| s.to_string_lossy().into_owned())
        })
        .collect();
    let base = out.join(devices.join("+")).join(&stamp);
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    results::write_manifest(&dir, manifest)?;
    Ok(dir)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// One thing to measure: a zoo model or a user's model file.
enum Item {
    Zoo(ModelConfig),
    File(PathBuf),
}

impl Item {
    fn label(&self) -> String {
        match self {
            Item::Zoo(c) => c.name(),
            Item::File(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
        }
    }
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

/// Where a pair's last output is kept, for agreement checks (also across `--resume`).
fn output_path(dir: &Path, label: &str, backend: &str) -> PathBuf {
    dir.join("outputs").join(format!("{label}__{backend}.f32"))
}

/// Runs every pair of the manifest not already measured in `ctx.dir`.
pub fn run(ctx: &RunContext, writer: &Mutex<RunWriter>) -> Result<()> {
    let m = &ctx.manifest;
    let backends = registry::select(&m.backends)?;
    let mut items: Vec<Item> = m
        .models
        .iter()
        .map(|name| name.parse::<ModelConfig>().map(Item::Zoo))
        .collect::<Result<_, _>>()?;
    items.extend(m.model_files.iter().map(|p| Item::File(PathBuf::from(p))));
    // What this run directory already holds (read once: resumed remote runs resend from it).
    let existing = match results::read_run(&ctx.dir) {
        Ok(run) => Some(run),
        Err(results::ResultsError::NotARun(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let done: HashSet<(String, String)> = existing
        .iter()
        .flat_map(|run| &run.summary)
        .filter(|r| r.is_ok() && r.device == ctx.device)
        .map(|r| (r.model.clone(), r.backend.clone()))
        .collect();
    registry::provision_missing(&backends);
    let machine = Machine::probe();
    let availability: Vec<Availability> = backends
        .iter()
        .map(|b| match b.engine() {
            "litert" if ctx.emulated => Availability::Unavailable {
                reason: "unavailable under emulation: LiteRT's CPU kernels read the host's /proc/cpuinfo under qemu-user and crash".into(),
            },
            _ => probe_availability(b.as_ref(), &ctx.worker_prefix),
        })
        .collect();
    std::fs::create_dir_all(ctx.dir.join("outputs")).context("cannot create the outputs folder")?;
    let total = items.len() * backends.len();
    let mut index = 0;
    for item in &items {
        let label = item.label();
        let remaining = backends
            .iter()
            .any(|b| !done.contains(&(label.clone(), b.name().to_string())));
        if !remaining {
            index += backends.len();
            eprintln!("{label}: every backend already measured in this run directory, skipped");
            continue;
        }
        let mut item_ctx = match item {
            Item::Zoo(config) => ItemContext::Zoo(Box::new(PreparedZoo::new(
                *config,
                m.weight_seed,
                m.input_seed,
                workload_of(m)?.1,
            )?)),
            Item::File(path) => match file_format(path) {
                Ok(format) => ItemContext::File {
                    path: path.clone(),
                    format,
                    reference: first_reference(&ctx.dir, &label, &backends, &done),
                },
                Err(e) => {
                    eprintln!("error: {e:#}");
                    let mut row = file_row(ctx, &machine, &label, path, "-");
                    row.status = Some(Status::Failed);
                    row.message = format!("{e:#}");
                    record(ctx, writer, &row, &[])?;
                    index += backends.len();
                    continue;
                }
            },
        };
        for (backend, available) in backends.iter().zip(&availability) {
            index += 1;
            let tag = format!("[{index}/{total}] {label} × {}", backend.name());
            if done.contains(&(label.clone(), backend.name().to_string())) {
                eprintln!("{tag}: already measured in this run directory, skipped");
                if ctx.emit_rows {
                    // The machine that started this run may have missed it (a dropped link).
                    if let Some(run) = &existing {
                        resend(ctx, run, &label, backend.name())?;
                    }
                }
                continue;
            }
            let Some(row_and_samples) = measure_pair(
                ctx,
                &machine,
                &mut item_ctx,
                backend.as_ref(),
                available,
                &tag,
            )?
            else {
                continue;
            };
            let (row, samples) = row_and_samples;
            record(ctx, writer, &row, &samples).with_context(|| format!("cannot record {tag}"))?;
            eprintln!("{tag}: {}", one_line(&row));
        }
    }
    Ok(())
}

/// Per-item state shared by its pairs.
enum ItemContext {
    Zoo(Box<PreparedZoo>),
    File {
        path: PathBuf,
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
                mobilebench_reports::format_ms(p50),
                100.0 * row.cv.unwrap_or(0.0)
            )
        }
        (status, _) => format!(
            "{}: {}",
            status.map_or("?".into(), |s| format!("{s:?}").to_lowercase()),
            row.message
        ),
    }
}

/// The manifest's workload and BN form, parsed.
pub fn workload_of(m: &RunManifest) -> Result<(Workload, BnMode)> {
    let mode = m.mode.parse::<Mode>().map_err(anyhow::Error::msg)?;
    let bn = m.bn.parse::<BnMode>().map_err(anyhow::Error::msg)?;
    let batch = usize::try_from(m.batch)?;
    Ok((Workload { mode, batch }, bn))
}

fn zoo_row(ctx: &RunContext, machine: &Machine, config: &ModelConfig, backend: &str) -> SummaryRow {
    let counts = count(&config.graph());
    SummaryRow {
        source: "zoo".into(),
        input_shape: format!("{}x{1}x{1}x3", ctx.manifest.batch, config.resolution),
        macs: Some(counts.macs),
        params: Some(counts.params),
        ..common_row(ctx, machine, &config.name(), backend)
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

/// Measures one pair; `None` when the backend does not read this kind of file (said on
/// stderr, no row: a user's .onnx simply has no LiteRT pair).
fn measure_pair(
    ctx: &RunContext,
    machine: &Machine,
    item: &mut ItemContext,
    backend: &dyn Backend,
    availability: &Availability,
    tag: &str,
) -> Result<Option<(SummaryRow, Vec<SampleRow>)>> {
    let name = backend.name();
    let (mut row, source) = match item {
        ItemContext::Zoo(prepared) => {
            let row = zoo_row(ctx, machine, &prepared.config, name);
            let models_dir = ctx.dir.join("models");
            (row, prepared.source_for(backend, &models_dir)?)
        }
        ItemContext::File { path, format, .. } => {
            if !backend.accepts(SourceKind::File(*format)) {
                eprintln!("{tag}: {name} does not read {format:?} files, skipped");
                return Ok(None);
            }
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut row = file_row(ctx, machine, &label, path, name);
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
        return Ok(Some((row, Vec::new())));
    }
    let (workload, bn) = workload_of(&ctx.manifest)?;
    if let Err(why) = backend.supports(&workload) {
        row.status = Some(Status::Unavailable);
        row.message = format!(
            "{why} (--mode {} --batch {})",
            ctx.manifest.mode, ctx.manifest.batch
        );
        return Ok(Some((row, Vec::new())));
    }
    let Some(source) = source else {
        row.status = Some(Status::Unavailable);
        row.message = format!("{name} takes neither zoo models nor a format they export to");
        return Ok(Some((row, Vec::new())));
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
        output_path: output.clone(),
    };
    if backend.software_adapter().is_some() {
        row.flags = match row.flags.as_str() {
            "" => "software".into(),
            f => format!("{f};software"),
        };
    }
    let note = std::mem::take(&mut row.message);
    let samples = match run_worker(&spec, tag, &ctx.worker_prefix) {
        Ok(outcome) => fill_row(&mut row, &outcome, ctx.manifest.cv_threshold),
        Err(e) => {
            row.status = Some(Status::Failed);
            row.message = format!("{e:#}");
            Vec::new()
        }
    };
    if row.is_ok() {
        row.message = note;
        if workload.mode == Mode::Train {
            row.reference =
                "none: a training step changes the weights, so no engine has the same output (the tch tests check the step)".into();
        } else if !backend.is_test_only() {
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
        } else {
            row.reference = "none (test-only backend computes nothing)".into();
        }
    }
    Ok(Some((row, samples)))
}

fn record_agreement(row: &mut SummaryRow, a: &Agreement) {
    row.reference = a.reference.clone();
    row.max_abs_diff = Some(a.max_abs_diff);
    row.max_rel_diff = Some(a.max_rel_diff);
    if a.max_rel_diff > agreement::tolerance(&row.precision) {
        row.flags = if row.flags.is_empty() {
            "disagrees".into()
        } else {
            format!("{};disagrees", row.flags)
        };
    }
}

fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} runs, ETA {eta}")
            .expect("valid template"),
    );
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// `bench worker ...` as a child process, through the device's run prefix (an emulator) if
/// it has one: a worker is the same binary, and under qemu-user it must run under qemu too.
pub fn worker_command(prefix: &[String]) -> Result<Command> {
    let exe =
        std::env::current_exe().context("cannot find the bench executable to start a worker")?;
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.arg("worker");
    Ok(cmd)
}

/// Whether a backend can run, asked of a child process when the check loads a runtime
/// library: a library whose loading crashes (ONNX Runtime under qemu-user) then makes the
/// backend unavailable instead of taking the campaign down.
pub fn probe_availability(backend: &dyn Backend, prefix: &[String]) -> Availability {
    if registry::runtime_of(backend).is_none() {
        return backend.availability();
    }
    let out = worker_command(prefix).and_then(|mut c| {
        c.args(["--probe", backend.name()])
            .stdin(Stdio::null())
            .output()
            .context("cannot start the availability probe")
    });
    match out {
        Ok(o) if o.status.success() => {
            match serde_json::from_slice::<crate::worker::ProbeAnswer>(&o.stdout) {
                Ok(answer) => answer.into(),
                Err(e) => Availability::Unavailable {
                    reason: format!("its availability probe answered nonsense: {e}"),
                },
            }
        }
        Ok(o) => Availability::Unavailable {
            reason: match o.status.signal() {
                Some(sig) => format!(
                    "loading its runtime library crashed (signal {sig}, {})",
                    signal_name(sig)
                ),
                None => format!("its availability probe failed ({})", o.status),
            },
        },
        Err(e) => Availability::Unavailable {
            reason: format!("{e:#}"),
        },
    }
}

fn run_worker(spec: &WorkerSpec, label: &str, prefix: &[String]) -> Result<Outcome> {
    let mut child = worker_command(prefix)?
        .arg("--spec")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start a worker")?;
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let bar = progress_bar(u64::from(spec.warmup + spec.runs), label);
    let mut events = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        // Runtimes may print to stdout too: only our JSON events count.
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        match &event {
            Event::Progress { done } => bar.set_position(u64::from(*done)),
            Event::Finished { .. } => bar.set_position(u64::from(spec.warmup + spec.runs)),
            _ => {}
        }
        if !matches!(event, Event::Progress { .. }) {
            events.push(event);
        }
    }
    let status = child.wait().context("lost the worker process")?;
    bar.finish_and_clear();
    let stderr = stderr_thread.join().unwrap_or_default();
    Ok(Outcome {
        events,
        status,
        stderr,
    })
}

/// Validates a run directory given to `--resume` and returns its manifest.
pub fn manifest_for_resume(dir: &Path) -> Result<RunManifest> {
    if !dir.is_dir() {
        bail!("--resume {}: no such directory", dir.display());
    }
    results::read_manifest(dir).with_context(|| {
        format!(
            "--resume {}: cannot read its {}",
            dir.display(),
            results::MANIFEST_FILE
        )
    })
}

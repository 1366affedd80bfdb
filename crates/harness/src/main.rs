//! `bench`: measure how fast MobileNets run across inference runtimes and devices.

mod agreement;
mod children;
mod list;
mod outcome;
mod probe;
mod registry;
mod remote;
mod rundir;
mod runner;
mod timing;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mobilebench_backend::{Mode, Timing};
use mobilebench_models::{sets, BnMode, DEFAULT_INPUT_SEED, DEFAULT_SEED};
use mobilebench_results::RunManifest;

#[derive(Parser)]
#[command(
    name = "bench",
    version,
    about = "Measure how fast MobileNets run, across inference runtimes and devices",
    long_about = "Measure how fast MobileNets run, across inference runtimes and devices.\n\n\
        `bench run` measures every (model, backend) pair on one pinned core (50 warm-up and 1000 \
        timed runs by default: the protocol of the published MobileNetV3 TFLite device table; \
        TFLite's own benchmark_model defaults to 1 warm-up and 50 runs) and writes samples.csv \
        and summary.csv into a run directory; `bench report` turns run directories into \
        markdown; `bench compare` judges two runs against their between-round spread."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List models (counted vs published MACs, params, top-1), backends or devices
    #[command(subcommand)]
    List(ListCmd),
    /// Measure every (model, backend) pair, one worker process per pair
    Run(RunArgs),
    /// Report run directories (any number of devices): tables on stdout, or with -o a folder
    /// with README.md and SVG/PNG plots
    Report(ReportArgs),
    /// Compare two run directories pair by pair: change of the median of round medians,
    /// judged against the between-round spread (run with --rounds), with a verdict
    Compare(CompareArgs),
    /// Write a zoo model as an .onnx or .tflite file (NHWC float input, [1, 1001] logits)
    Export(ExportArgs),
    /// Fetch the runtimes (ONNX Runtime, LiteRT) from their PyPI wheels into the cache and
    /// check that they load (libtorch, needed at build time, comes from scripts/setup)
    Setup(SetupArgs),
    /// Internal: measure one pair and report JSON lines on stdout
    #[command(hide = true)]
    Worker {
        #[arg(long, required_unless_present = "probe")]
        spec: Option<String>,
        /// Print one backend's availability as JSON
        #[arg(long)]
        probe: Option<String>,
    },
}

#[derive(Subcommand)]
enum ListCmd {
    /// Zoo models with counted and published MACs/params and published top-1
    Models {
        /// Models to show: set names (seed, default, all), globs or names, comma-separated
        #[arg(long, default_value = "all")]
        models: String,
    },
    /// Backends in this build, whether each can run here, and why not
    Backends,
    /// Device profiles
    Devices,
}

#[derive(Args)]
struct RunArgs {
    /// Models: named sets (seed, default, v3-widths, all), globs over the published configs
    /// ('mobilenet_v2_*_224') or names with any width and resolution
    /// (mobilenet_v3_small_0.25_64), comma-separated [default: `default`, or none when
    /// --model-file is given]
    #[arg(long)]
    models: Option<String>,
    /// Your own .onnx or .tflite file, run on every selected backend that reads its format
    /// (repeatable)
    #[arg(long = "model-file", value_name = "PATH")]
    model_files: Vec<PathBuf>,
    /// Backends, comma-separated, or `all` for every backend that is not test-only (see
    /// `bench list backends`); runtimes missing from the cache are fetched first
    #[arg(long, default_value = "all", value_delimiter = ',')]
    backends: Vec<String>,
    /// Device to run on: a profile name (see `bench list devices`) or a profile file's path;
    /// repeat it to measure several devices at once (each device's pairs run one after
    /// another, devices run concurrently, into one run directory)
    #[arg(long = "device", default_value = "local")]
    devices: Vec<String>,
    /// Core to pin each worker to [default: the fastest core by maximum frequency, highest
    /// index on ties]
    #[arg(long)]
    core: Option<usize>,
    /// Untimed warm-up runs per pair and round (50: the published MobileNetV3 TFLite device
    /// table's protocol)
    #[arg(long, default_value_t = 50)]
    warmup: u32,
    /// Timed runs per pair and round (1000: the same protocol; TFLite's benchmark_model
    /// defaults to 50)
    #[arg(long, default_value_t = 1000)]
    runs: u32,
    /// Measure every pair this many times, round-robin (A B C A B C ...), each time in a
    /// fresh worker: the summary's p50_ms is then the median of round medians and round_cv
    /// the between-round spread, which `bench compare` needs to tell change from drift
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seconds one worker (one pair, one round) may run before it is killed and recorded
    /// `timed_out`; the campaign goes on (default an hour: a software GPU adapter takes tens
    /// of minutes for 1050 inferences of a large model)
    #[arg(long, value_name = "SECONDS", default_value_t = mobilebench_results::DEFAULT_PAIR_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..))]
    pair_timeout: u64,
    /// Time input placement and output read inside every sample, for every backend alike
    /// (default: the input is placed once before warm-up and the output read after the
    /// loop, so a sample is the inference alone; the CSV's `timing` column says which)
    #[arg(long)]
    timed_io: bool,
    /// What one timed run does: `infer` (a forward pass) or `train` (forward, cross-entropy
    /// loss, backward and an SGD update of every weight, in training mode). Backends without a
    /// training step (all but the tch ones) are recorded unavailable, with the reason
    #[arg(long, default_value = "infer")]
    mode: Mode,
    /// Images per timed run. The tch backends take any batch; the others run batch 1 only and
    /// are recorded unavailable otherwise
    #[arg(long, default_value_t = 1)]
    batch: u32,
    /// Batch norm folded into the convolutions (`fused`, what deployments ship) or kept as a
    /// separate normalisation after each convolution (`separate`, what training frameworks
    /// run). Applies to native, tch, and the files exported for the other runtimes
    #[arg(long, default_value = "fused")]
    bn: BnMode,
    /// Smoke run: 10 warm-up and 100 timed runs (overrides --warmup/--runs)
    #[arg(long)]
    quick: bool,
    /// Where run directories are created (OUT/DEVICE/TIMESTAMP)
    #[arg(long, short, default_value = "results")]
    out: PathBuf,
    /// Continue a run directory: its plan is reused, pairs already ok are skipped, the rest
    /// (not run, failed, crashed) are measured
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["models", "model_files", "backends", "devices", "quick", "mode", "batch", "bn", "rounds", "timed_io", "pair_timeout"])]
    resume: Option<PathBuf>,
    /// Seed of the deterministic weights
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Coefficient of variation above which a pair is flagged `noisy`
    #[arg(long, default_value_t = 0.10)]
    cv_threshold: f64,
    /// Internal (remote runs): use exactly this run directory, resuming it if it exists
    #[arg(long, hide = true)]
    run_dir: Option<PathBuf>,
    /// Internal (remote runs): the device name to write into the rows
    #[arg(long, hide = true)]
    as_device: Option<String>,
    /// Internal (remote runs): flag every row as measured under emulation
    #[arg(long, hide = true)]
    emulated: bool,
    /// Internal (remote runs): print each finished pair on stdout
    #[arg(long, hide = true)]
    emit_rows: bool,
    /// Internal (remote runs): start workers under this command (the device's emulator)
    #[arg(long, hide = true, allow_hyphen_values = true)]
    worker_prefix: Option<String>,
}

#[derive(Args)]
struct SetupArgs {
    /// Platform to fetch for: linux-x86_64 or linux-aarch64 [default: this machine's]
    #[arg(long)]
    platform: Option<String>,
}

#[derive(Args)]
struct ExportArgs {
    /// Canonical model name, e.g. mobilenet_v3_small_1.0_224
    model: String,
    /// File format
    #[arg(long, value_parser = ["onnx", "tflite"])]
    format: String,
    /// Output file
    #[arg(long, short)]
    output: PathBuf,
    /// Batch norm folded into the convolutions (`fused`) or kept as separate ops (`separate`)
    #[arg(long, default_value = "fused")]
    bn: BnMode,
    /// Seed of the deterministic weights
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
}

#[derive(Args)]
struct ReportArgs {
    /// Run directories (each holds summary.csv), from any number of devices
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Write DIR/README.md and the plots (SVG and PNG) here instead of printing the tables
    #[arg(long, short, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Backend whose latency the model table shows [default: the fastest per device]
    #[arg(long)]
    backend: Option<String>,
    /// Backend the speed-up plots are relative to
    #[arg(long, default_value = "native")]
    baseline: String,
}

#[derive(Args)]
struct CompareArgs {
    /// The earlier run directory
    old: PathBuf,
    /// The later run directory
    new: PathBuf,
    /// Changes of the median smaller than this fraction are never called, whatever the test
    /// says (run-to-run drift of the whole machine that rounds within one run cannot see)
    #[arg(long, default_value_t = 0.05)]
    noise: f64,
    /// Significance level of the per-pair t-test on round medians, after Holm's correction
    /// for the number of pairs compared
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// With one round on either side there is no spread to judge by: only a change beyond
    /// this fraction is called (else "cannot judge: one round")
    #[arg(long, default_value_t = 0.30)]
    one_round_bound: f64,
    /// Exit with status 1 when any pair is judged slower (flagged and one-round pairs that
    /// cannot be judged do not count)
    #[arg(long)]
    fail_on_regression: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Cmd::Worker {
            probe: Some(backend),
            ..
        } => return worker::probe(backend),
        Cmd::Worker {
            spec: Some(spec), ..
        } => return worker::main(spec),
        _ => {}
    }
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::List(ListCmd::Models { models }) => print!("{}", list::models(&models)?),
        Cmd::List(ListCmd::Backends) => print!("{}", list::backends()),
        Cmd::List(ListCmd::Devices) => print!("{}", list::devices()?),
        Cmd::Run(args) => run(args)?,
        Cmd::Report(args) => report(&args)?,
        Cmd::Compare(args) => {
            if compare(&args)? && args.fail_on_regression {
                bail!("a pair is judged slower (--fail-on-regression)");
            }
        }
        Cmd::Export(args) => export(&args)?,
        Cmd::Setup(args) => setup(args.platform.as_deref())?,
        Cmd::Worker { .. } => unreachable!("handled in main"),
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    use mobilebench_devices::DeviceKind;
    children::install_interrupt_handler()?;
    // A run started by another machine on this one (a remote device) uses exactly the run
    // directory it is given, resuming it when it already holds a plan.
    let (dir, manifest, resuming) = match (&args.resume, &args.run_dir) {
        (Some(dir), _) => (dir.clone(), rundir::manifest_for_resume(dir)?, true),
        (None, Some(dir)) if dir.join(mobilebench_results::MANIFEST_FILE).is_file() => {
            (dir.clone(), rundir::manifest_for_resume(dir)?, true)
        }
        _ => {
            let manifest = new_manifest(&args)?;
            let dir = match &args.run_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    mobilebench_results::write_manifest(dir, &manifest)?;
                    dir.clone()
                }
                None => {
                    // Unreachable devices fail before a run directory is created.
                    for profile in device_profiles(&manifest)? {
                        if profile.kind == DeviceKind::Ssh {
                            remote::Remote::new(&profile)?.check_reachable()?;
                        }
                    }
                    rundir::create_run_dir(&args.out, &manifest)?
                }
            };
            (dir, manifest, false)
        }
    };
    eprintln!(
        "run directory {}{}: {} models × {} backends on {}, {} round(s) of {} warm-up + {} timed runs ({}, batch {}, {} BN, timing {})",
        dir.display(),
        if resuming { " (resumed)" } else { "" },
        manifest.models.len() + manifest.model_files.len(),
        manifest.backends.len(),
        manifest.device,
        manifest.rounds,
        manifest.warmup,
        manifest.runs,
        manifest.mode,
        manifest.batch,
        manifest.bn,
        manifest.timing,
    );
    if !resuming {
        for note in registry::left_out_of_all(&args.backends) {
            eprintln!("{note}");
        }
    }
    let _dir_lock = rundir::lock_run_dir(&dir)?;
    let writer = std::sync::Mutex::new(mobilebench_results::RunWriter::open(&dir)?);
    let profiles = device_profiles(&manifest)?;
    keep_off_measured_cores(&manifest, &profiles);
    let _core_lock = lock_measured_core(&manifest, &profiles);
    let run_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcomes: Vec<(String, Result<()>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = profiles
            .iter()
            .map(|profile| {
                let (dir, writer, run_id, args) = (&dir, &writer, &run_id, &args);
                let mut manifest = manifest.clone();
                manifest.backends.retain(|b| profile.allows(b));
                if args.as_device.is_none() {
                    manifest.core = manifest.core.or(profile.core);
                }
                scope.spawn(move || {
                    let result = match profile.kind {
                        DeviceKind::Local => {
                            let ctx = runner::RunContext {
                                dir: dir.clone(),
                                device: args
                                    .as_device
                                    .clone()
                                    .unwrap_or_else(|| profile.name.clone()),
                                emulated: args.emulated || profile.emulated,
                                emit_rows: args.emit_rows,
                                worker_prefix: args
                                    .worker_prefix
                                    .as_deref()
                                    .unwrap_or_default()
                                    .split_whitespace()
                                    .map(String::from)
                                    .collect(),
                                manifest,
                            };
                            runner::run(&ctx, writer)
                        }
                        DeviceKind::Ssh => remote::Remote::new(profile)
                            .and_then(|r| r.run(&manifest, run_id, writer)),
                    };
                    (profile.name.clone(), result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a device thread panicked"))
            .collect()
    });
    drop(writer);
    // Whatever happened, what was measured is on disk: show it.
    let report_path = dir.join("report.md");
    let tables = mobilebench_reports::latency_tables(&read_runs(std::slice::from_ref(&dir))?);
    std::fs::write(&report_path, &tables)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    if !args.emit_rows {
        print!("{tables}");
    }
    eprintln!("CSVs and report.md in {}", dir.display());
    if children::stop_requested() {
        let program = std::env::args().next().unwrap_or_else(|| "bench".into());
        let quote = |s: &str| shlex::try_quote(s).map_or(s.to_string(), |q| q.into_owned());
        eprintln!(
            "interrupted: every finished pair is kept; continue with:\n  {} run --resume {}",
            quote(&program),
            quote(&dir.display().to_string())
        );
        bail!("interrupted");
    }
    let failed: Vec<String> = outcomes
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e:#}")))
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// Takes this machine's lock on the core local workers pin, warning when another run holds it.
fn lock_measured_core(
    manifest: &RunManifest,
    profiles: &[mobilebench_devices::DeviceProfile],
) -> Option<rundir::Lock> {
    let local = profiles
        .iter()
        .any(|p| p.kind == mobilebench_devices::DeviceKind::Local);
    let core = manifest.core.filter(|_| local)?;
    match rundir::lock_core(core) {
        Ok(lock) => Some(lock),
        Err(why) => {
            if !why.is_empty() {
                eprintln!("warning: {why}");
            }
            None
        }
    }
}

/// Keeps this process (its threads now and those it starts: progress bars, pipes, device
/// threads) off the core local workers measure on. Said on stderr when it cannot be.
fn keep_off_measured_cores(
    manifest: &RunManifest,
    profiles: &[mobilebench_devices::DeviceProfile],
) {
    let local = profiles
        .iter()
        .any(|p| p.kind == mobilebench_devices::DeviceKind::Local);
    let Some(core) = manifest.core.filter(|_| local) else {
        return;
    };
    let allowed = probe::current_affinity().unwrap_or_default();
    if let Err(why) = probe::keep_off_core(core, &allowed) {
        eprintln!("note: the harness could not keep off the measured core: {why}");
    }
}

/// The profiles of a manifest's devices (`device` holds them comma-separated).
fn device_profiles(manifest: &RunManifest) -> Result<Vec<mobilebench_devices::DeviceProfile>> {
    manifest
        .device
        .split(',')
        .map(|d| mobilebench_devices::find(d).map_err(anyhow::Error::from))
        .collect()
}

fn new_manifest(args: &RunArgs) -> Result<RunManifest> {
    let profiles = args
        .devices
        .iter()
        .map(|d| mobilebench_devices::find(d))
        .collect::<Result<Vec<_>, _>>()?;
    let models = match (&args.models, args.model_files.is_empty()) {
        (Some(spec), _) => sets::select(spec).context("--models")?,
        (None, true) => sets::select("default")?,
        (None, false) => Vec::new(),
    };
    let backends = registry::select(&args.backends).context("--backends")?;
    let (warmup, runs) = if args.quick {
        (10, 100)
    } else {
        (args.warmup, args.runs)
    };
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let only_local = profiles
        .iter()
        .all(|p| p.kind == mobilebench_devices::DeviceKind::Local);
    let core = match args.core {
        Some(c) if only_local && c >= probe::Machine::probe().cpu_cores => {
            bail!(
                "--core {c}: this machine has cores 0..{}",
                probe::Machine::probe().cpu_cores - 1
            )
        }
        Some(c) => Some(c),
        None if only_local => probe::fastest_core(),
        None => None,
    };
    Ok(RunManifest {
        // Profiles given by path are recorded by path, so `--resume` finds them again.
        device: args.devices.join(","),
        models: models.iter().map(|m| m.name()).collect(),
        model_files: args
            .model_files
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        backends: backends.iter().map(|b| b.name().to_string()).collect(),
        mode: args.mode.name().into(),
        batch: args.batch,
        bn: args.bn.name().into(),
        warmup,
        runs,
        rounds: args.rounds,
        pair_timeout_s: args.pair_timeout,
        timing: if args.timed_io {
            Timing::InferWithIo
        } else {
            Timing::Infer
        }
        .name()
        .into(),
        core,
        weight_seed: args.seed,
        input_seed: DEFAULT_INPUT_SEED,
        cv_threshold: args.cv_threshold,
        created_at: rundir::now_rfc3339(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

fn setup(platform: Option<&str>) -> Result<()> {
    use mobilebench_runtimes::{self as runtimes, Platform};
    let host = Platform::host();
    let platform = match platform {
        Some(p) => Platform::parse(p)
            .with_context(|| format!("--platform {p}: expected linux-x86_64 or linux-aarch64"))?,
        None => host.context("no runtime wheels exist for this machine's architecture")?,
    };
    let mut failed = Vec::new();
    for rt in runtimes::ALL {
        match runtimes::ensure(rt, platform) {
            Ok(i) => eprintln!("{}: {} in {}", rt.name, i.describe(), i.dir.display()),
            Err(e) => {
                eprintln!("error: {e}");
                failed.push(rt.name);
            }
        }
    }
    if Some(platform) == host {
        print!("{}", list::backends());
    }
    if !failed.is_empty() {
        bail!("could not provision {}", failed.join(", "));
    }
    Ok(())
}

fn export(args: &ExportArgs) -> Result<()> {
    use mobilebench_export::Format;
    let config: mobilebench_models::ModelConfig = args.model.parse()?;
    let model = mobilebench_models::Model::from_config(&config, args.seed);
    let format = if args.format == "onnx" {
        Format::Onnx
    } else {
        Format::Tflite
    };
    let bytes = mobilebench_export::export(&model, format, args.bn)?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes)", args.output.display(), bytes.len());
    Ok(())
}

fn read_runs(dirs: &[PathBuf]) -> Result<Vec<mobilebench_results::Run>> {
    let mut runs = Vec::new();
    for dir in dirs {
        let run = mobilebench_results::read_run(dir)?.with_workload_labels();
        for skipped in &run.skipped_rows {
            eprintln!("warning: skipped an unreadable row at {skipped} (cut short by a crash?)");
        }
        runs.push(run);
    }
    Ok(runs)
}

fn report(args: &ReportArgs) -> Result<()> {
    let runs = read_runs(&args.dirs)?;
    let options = mobilebench_reports::ReportOptions {
        backend: args.backend.clone(),
        baseline: args.baseline.clone(),
    };
    match &args.output {
        Some(dir) => {
            let files = mobilebench_reports::write_report(&runs, &options, dir)?;
            eprintln!("wrote {} files into {}", files.len(), dir.display());
        }
        None => print!("{}", mobilebench_reports::markdown(&runs, &options, &[])),
    }
    Ok(())
}

/// Prints the comparison; returns whether any pair is judged slower.
fn compare(args: &CompareArgs) -> Result<bool> {
    use mobilebench_reports::compare::{self, CompareOptions};
    let old = mobilebench_results::read_run(&args.old)?.with_workload_labels();
    let new = mobilebench_results::read_run(&args.new)?.with_workload_labels();
    let options = CompareOptions {
        noise: args.noise,
        alpha: args.alpha,
        one_round_bound: args.one_round_bound,
    };
    let comparison = compare::compare(&old, &new, &options);
    if comparison.changes.is_empty() {
        bail!(
            "{} and {} share no pair measured ok in both (same device, model and backend)",
            args.old.display(),
            args.new.display()
        );
    }
    for w in &comparison.warnings {
        eprintln!("WARNING: {w}");
    }
    print!("{}", compare::markdown(&comparison, &options));
    Ok(comparison.any_slower())
}

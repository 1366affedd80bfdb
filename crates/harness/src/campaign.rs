//! `bench run` on the parent's side: the plan (manifest) from the options or a resumed run
//! directory, the locks, one thread per device, and what is said at the end.

use anyhow::{bail, Context, Result};
use mobilebench_backend::Timing;
use mobilebench_models::{sets, BnMode, Precision, DEFAULT_INPUT_SEED};
use mobilebench_results::RunManifest;

use crate::cli::RunArgs;
use crate::{children, probe, read_runs, registry, remote, rundir, runner};

/// `bench run`: a new run directory (or the one resumed), every device's pairs, then the
/// report of what was measured.
pub fn run(args: RunArgs) -> Result<()> {
    use mobilebench_devices::DeviceKind;
    children::install_interrupt_handler()?;
    // A run started by another machine on this one (a remote device) uses exactly the run
    // directory it is given, with the plan the host put there: every option the user gave.
    let (dir, manifest, resuming) = match (&args.resume, &args.run_dir) {
        (Some(dir), _) => (dir.clone(), rundir::manifest_for_resume(dir)?, true),
        (None, Some(dir)) if dir.join(mobilebench_results::MANIFEST_FILE).is_file() => {
            // The host cannot know this machine's fastest cores: the runner picks them here.
            let manifest = rundir::manifest_for_resume(dir)?;
            (dir.clone(), manifest, true)
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
        "run directory {}{}: {} models{} × {} backends{} on {}, {} round(s) of {} warm-up + {} timed runs ({}, batch {}, {} BN, timing {})",
        dir.display(),
        if resuming { " (resumed)" } else { "" },
        manifest.models.len() + manifest.model_files.len(),
        match manifest.precisions.as_slice() {
            [only] if only == "float32" => String::new(),
            all => format!(" in {}", all.join(" and ")),
        },
        manifest.backends.len(),
        match manifest.threads.as_slice() {
            [1] => String::new(),
            counts => format!(
                " × threads {}",
                counts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        },
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
    if resuming {
        let dropped = mobilebench_results::drop_uncommitted_samples(&dir)?;
        if dropped > 0 {
            eprintln!(
                "{}: dropped {dropped} samples whose summary row was never written (a run killed mid-pair); that round is measured again",
                dir.display()
            );
        }
    }
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
                // A profile's own core stands for the default placement of one-thread runs.
                let default_placement = manifest.threads.iter().all(|&t| t == 1)
                    && manifest.cores.is_none()
                    && manifest.core_class.is_none();
                if args.as_device.is_none() && default_placement {
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
                                // On a device, the profile it runs as (a built-in one).
                                claimed_clusters: match &args.as_device {
                                    Some(name) => mobilebench_devices::find(name)
                                        .map(|p| p.clusters)
                                        .unwrap_or_default(),
                                    None => profile.clusters.clone(),
                                },
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
    let runs = read_runs(std::slice::from_ref(&dir))?;
    let tables = mobilebench_reports::latency_tables(&runs);
    let profiles = mobilebench_reports::profile_section(&runs, &[]);
    let report = if profiles.is_empty() {
        tables.clone()
    } else {
        format!("{tables}\n{profiles}")
    };
    std::fs::write(&report_path, &report)
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
    let core = *local_measured_cores(manifest, profiles).first()?;
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

/// The cores local workers measure on, fastest first (the first is in every thread count's
/// set); empty when no device is local or the choice does not resolve.
fn local_measured_cores(
    manifest: &RunManifest,
    profiles: &[mobilebench_devices::DeviceProfile],
) -> Vec<usize> {
    let Some(local) = profiles
        .iter()
        .find(|p| p.kind == mobilebench_devices::DeviceKind::Local)
    else {
        return Vec::new();
    };
    let mut manifest = manifest.clone();
    manifest.core = manifest.core.or(local.core);
    let Ok(choice) = crate::placement::CoreChoice::of(&manifest) else {
        return Vec::new();
    };
    let cpus = crate::cores::probe(std::path::Path::new("/"));
    let allowed = probe::initial_affinity();
    let mut measured: Vec<usize> = Vec::new();
    for &t in &manifest.threads {
        let set = crate::placement::core_set(t, &choice, &local.clusters, &cpus, &allowed);
        for c in set.unwrap_or_default() {
            if !measured.contains(&c) {
                measured.push(c);
            }
        }
    }
    measured
}

/// Keeps this process (its threads now and those it starts: progress bars, pipes, device
/// threads) off the cores local workers measure on. Said on stderr when it cannot be.
fn keep_off_measured_cores(
    manifest: &RunManifest,
    profiles: &[mobilebench_devices::DeviceProfile],
) {
    let measured = local_measured_cores(manifest, profiles);
    let allowed = probe::initial_affinity();
    if let Err(why) = probe::keep_off_cores(&measured, &allowed) {
        eprintln!("note: the harness could not keep off the measured cores: {why}");
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
    let mut precisions = args.precision.clone();
    precisions.sort();
    precisions.dedup();
    if precisions.contains(&Precision::Int8) && args.bn == BnMode::Separate {
        bail!("--precision int8 folds batch norm into the convolutions (no runtime has an int8 batch norm): drop --bn separate, or run int8 separately");
    }
    if precisions.contains(&Precision::Int8) {
        // Per model, why it has no int8 form (the same decision the runner and exporters use).
        let float_only: Vec<String> = models
            .iter()
            .filter_map(|c| {
                mobilebench_models::quant::int8_obstacle(&c.graph())
                    .map(|why| format!("{}: {why}", c.name()))
            })
            .collect();
        if !float_only.is_empty() {
            let list = float_only.join("; ");
            let none_has_int8 = float_only.len() == models.len();
            if none_has_int8 && args.model_files.is_empty() && precisions == [Precision::Int8] {
                bail!("--precision int8: no int8 form for {list}");
            }
            eprintln!("note: no int8 form for {list} (its int8 pairs are skipped)");
        }
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
        // Unset: each device takes its fastest cores (placement.rs), resolved where it runs.
        c => c,
    };
    let mut threads = args.threads.clone();
    if threads.contains(&0) {
        bail!("--threads: a thread count is at least 1");
    }
    threads.sort_unstable();
    threads.dedup();
    let choice = crate::placement::CoreChoice::from_options(
        args.core,
        args.cores.as_deref(),
        args.core_class.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    // Local devices say now, before anything is measured, when a count has no cores.
    for profile in profiles
        .iter()
        .filter(|p| p.kind == mobilebench_devices::DeviceKind::Local)
    {
        let cpus = crate::cores::probe(std::path::Path::new("/"));
        let allowed = probe::initial_affinity();
        for &t in &threads {
            crate::placement::core_set(t, &choice, &profile.clusters, &cpus, &allowed)
                .map_err(|e| anyhow::anyhow!("device {}: {e}", profile.name))?;
        }
    }
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
        profile_ops: args.profile_ops,
        precisions: precisions.iter().map(|p| p.name().to_string()).collect(),
        core,
        threads,
        cores: args.cores.clone(),
        core_class: args.core_class.clone(),
        weight_seed: args.seed,
        input_seed: DEFAULT_INPUT_SEED,
        cv_threshold: args.cv_threshold,
        thermal: mobilebench_results::ThermalPolicy {
            cooldown_s: args.cooldown,
            settle: args.settle,
            settle_margin_c: args.settle_margin,
            settle_timeout_s: args.settle_timeout,
        },
        created_at: rundir::now_rfc3339(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

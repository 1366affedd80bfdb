//! `bench`: measure how fast MobileNets run across inference runtimes and devices.

mod affinity;
mod agreement;
mod attribution;
mod campaign;
mod children;
mod cli;
mod context;
mod cores;
mod list;
mod outcome;
mod pair;
mod placement;
mod plan;
mod probe;
mod registry;
mod remote;
mod rows;
mod rundir;
mod runner;
mod thermal;
mod timing;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cli::{Cli, Cmd, CompareArgs, ExportArgs, ListCmd, ReportArgs};
use mobilebench_models::{BnMode, Precision, QuantModel};

fn main() -> ExitCode {
    // Before anything moves this process's threads off the cores it measures on.
    probe::initial_affinity();
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
        Cmd::Run(args) => campaign::run(*args)?,
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
        match registry::ensure_runtime(rt, platform) {
            Ok(i) => eprintln!("{}: {} in {}", rt.name, i.describe(), i.dir.display()),
            Err(e) => {
                eprintln!("error: {e:#}");
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
    let bytes = match args.precision {
        Precision::Float32 => mobilebench_export::export(&model, format, args.bn)?,
        Precision::Int8 => {
            if args.bn == BnMode::Separate {
                bail!(
                    "--precision int8 folds batch norm into the convolutions: drop --bn separate"
                );
            }
            mobilebench_models::quant::check_int8(&model)?;
            let range = mobilebench_export::int8_weight_range(format);
            let quantized = QuantModel::quantize(&model, range);
            mobilebench_export::export_int8(&quantized, format)?
        }
    };
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes)", args.output.display(), bytes.len());
    Ok(())
}

pub(crate) fn read_runs(dirs: &[PathBuf]) -> Result<Vec<mobilebench_results::Run>> {
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
    if let Some(exporter) = mobilebench_reports::export::exporter(args.format) {
        let text = mobilebench_reports::export::export_text(&runs, exporter.as_ref());
        match &args.output {
            Some(path) => {
                std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            None => print!("{text}"),
        }
        return Ok(());
    }
    match &args.output {
        #[cfg(feature = "plots")]
        Some(dir) => {
            let files = mobilebench_reports::write_report(&runs, &options, dir)?;
            eprintln!("wrote {} files into {}", files.len(), dir.display());
        }
        #[cfg(not(feature = "plots"))]
        Some(dir) => anyhow::bail!(
            "cannot write a report with plots into {}: this bench was built without the `plots` feature (a device build); run `bench report` on the host",
            dir.display()
        ),
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

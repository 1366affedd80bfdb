//! One round of one pair: its row and what the worker it starts measures, checked against
//! the reference.

use std::time::Duration;

use anyhow::Result;
use mobilebench_backend::{Availability, Backend, Mode, SourceKind};
use mobilebench_models::Precision;
use mobilebench_results::{Status, SummaryRow};

use crate::agreement;
use crate::children::run_worker;
use crate::context::{timing_of, workload_of, RunContext};
use crate::outcome::{fill_row, RoundSamples};
use crate::plan::ItemContext;
use crate::probe::Machine;
use crate::rows::{file_row, record_agreement, record_float_agreement, zoo_row};
use crate::rundir::output_path;
use crate::worker::{SourceSpec, WorkerSpec};

/// Where a pair runs: its thread count and the cores, fastest first.
pub(crate) struct Placement<'a> {
    pub threads: u32,
    pub cores: &'a [usize],
}

/// Measures one round of one pair: the row of that round (statistics not yet set) and its
/// samples; `None` when the backend does not read this kind of file (said on stderr, no
/// row: a user's .onnx simply has no LiteRT pair).
pub(crate) fn measure_pair(
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

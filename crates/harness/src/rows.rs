//! The summary row of one pair: its fixed columns from the run and the item, its agreement
//! with the reference, and its one-line account on stderr.

use std::path::Path;

use mobilebench_models::count_config;
use mobilebench_results::{self as results, Status, SummaryRow};

use crate::agreement::{self, Agreement, PreparedZoo};
use crate::context::RunContext;
use crate::probe::{self, Machine};
use crate::rundir::now_rfc3339;

pub(crate) fn one_line(row: &SummaryRow) -> String {
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

pub(crate) fn zoo_row(
    ctx: &RunContext,
    machine: &Machine,
    zoo: &PreparedZoo,
    backend: &str,
) -> SummaryRow {
    let config = &zoo.config;
    let counts = count_config(config);
    SummaryRow {
        precision: zoo.precision.column().into(),
        source: "zoo".into(),
        input_shape: format!("{}x{1}x{1}x3", ctx.manifest.batch, config.resolution),
        macs: Some(counts.macs),
        params: Some(counts.params),
        ..common_row(ctx, machine, &zoo.label(), backend)
    }
}

pub(crate) fn file_row(
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

pub(crate) fn common_row(
    ctx: &RunContext,
    machine: &Machine,
    label: &str,
    backend: &str,
) -> SummaryRow {
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

/// An int8 row's agreement with the float model; below [`agreement::INT8_MIN_COSINE`] the
/// row is flagged.
pub(crate) fn record_float_agreement(
    row: &mut SummaryRow,
    a: &mobilebench_models::agreement::Agreement,
) {
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

pub(crate) fn flag_disagreement(row: &mut SummaryRow, problem: String) {
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

pub(crate) fn record_agreement(row: &mut SummaryRow, a: &Agreement) {
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

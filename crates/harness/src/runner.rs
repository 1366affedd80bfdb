//! The parent side of `bench run`: plans the (model, backend, threads) pairs, runs them
//! round-robin for each round, one worker process per pair and round, turns its events into a summary
//! row and samples, and appends them to the run directory before starting the next.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use mobilebench_backend::{Availability, Backend};
use mobilebench_models::{ModelConfig, Precision};
use mobilebench_results::{
    self as results, OpRow, RunManifest, RunWriter, SampleRow, Status, SummaryRow,
};

use crate::children::{probe_availability, stop_requested};
use crate::context::precisions_of;
pub use crate::context::RunContext;
use crate::outcome::PairRounds;
use crate::pair::{measure_pair, Placement};
use crate::placement::{self, CoreChoice};
use crate::plan::{file_items, prepare_item, Item, ItemContext, PairId};
use crate::probe::{self, Machine};
use crate::registry;
use crate::rows::{file_row, one_line};

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
        // A model's precisions one after another, so its rows sit side by side; int8 only
        // where the model has an int8 form (`bench run` said which it skips).
        let int8 = mobilebench_models::quant::has_int8_form(&config.graph());
        items.extend(
            precisions
                .iter()
                .filter(|&&p| p != Precision::Int8 || int8)
                .map(|&p| Item::Zoo(config, p)),
        );
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

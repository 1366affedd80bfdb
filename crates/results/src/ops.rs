//! `ops.csv` (`bench run --profile-ops`): one row per step of an engine's plan, per pair and
//! round, beside samples.csv. Written before the round's summary row, so a round the summary
//! does not count may have rows here; readers keep, per pair, the last round the summary
//! counts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ResultsError, SummaryRow};

pub const OPS_FILE: &str = "ops.csv";

/// One step of one pair's plan in one round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpRow {
    pub device: String,
    pub model: String,
    pub backend: String,
    /// The pair's `--threads` (ops.csv files written before it: 1).
    #[serde(default = "crate::one")]
    pub threads: u32,
    pub round: u32,
    pub step: u32,
    /// The runtime's own name for the event and its op (native: the IR nodes it runs).
    pub name: String,
    pub op: String,
    /// The layer group the event is attributed to (`block3_project..block3_add`), empty
    /// when unattributed or the model is a file without our IR.
    #[serde(default)]
    pub layer_group: String,
    /// The IR nodes of that group, joined by `+`.
    #[serde(default)]
    pub ir_nodes: String,
    /// `stem`, `pointwise`, `pointwise + add`, `depthwise`, `SE`, `FC`, `pooling`,
    /// `hard-swish`, `other`, `unattributed` (several joined by ` + ` for a merged group);
    /// empty for a model file.
    #[serde(default)]
    pub op_kind: String,
    /// How the event was matched to the group (`event name`, `op index`, `position and op
    /// kind`, `IR node`, `position (after ...)`).
    #[serde(default)]
    pub matched_by: String,
    pub input_shape: String,
    pub output_shape: String,
    pub macs: u64,
    pub median_ms: f64,
    pub gflops: Option<f64>,
    pub core_peak_gflops: Option<f64>,
    pub isa: String,
    /// The pair's sum of per-op medians over the median of its unprofiled samples in this
    /// round (the same on every row of the pair and round): how much of the measured
    /// latency the profile accounts for.
    #[serde(default)]
    pub coverage: Option<f64>,
}

impl OpRow {
    /// Achieved GFLOP/s (one MAC = 2 flops) of `macs` in `ms`; `None` for steps without MACs
    /// or without time.
    pub fn key(&self) -> crate::PairKey {
        crate::PairKey {
            device: self.device.clone(),
            model: self.model.clone(),
            backend: self.backend.clone(),
            threads: self.threads,
        }
    }

    pub fn achieved_gflops(macs: u64, ms: f64) -> Option<f64> {
        (macs > 0 && ms > 0.0).then(|| 2.0 * macs as f64 / ms / 1e6)
    }
}

/// The rows of `dir/ops.csv` (none if the run was not profiled) of the last round each pair's
/// summary row counts, in step order.
pub fn read_ops(dir: &Path, summary: &[SummaryRow]) -> Result<Vec<OpRow>, ResultsError> {
    let path = dir.join(OPS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(&path).map_err(|cause| ResultsError::Csv {
        path: path.clone(),
        cause,
    })?;
    let all: Vec<OpRow> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(|cause| ResultsError::Csv {
            path: path.clone(),
            cause,
        })?;
    let committed = |r: &OpRow| {
        let key = r.key();
        summary
            .iter()
            .rev()
            .find(|s| s.key() == key)
            .map_or(0, |s| s.rounds)
    };
    let mut last_round = std::collections::HashMap::new();
    for r in all.iter().filter(|r| r.round <= committed(r)) {
        let best = last_round.entry(r.key()).or_insert(r.round);
        *best = (*best).max(r.round);
    }
    let mut kept: Vec<OpRow> = all
        .iter()
        .filter(|r| last_round.get(&r.key()) == Some(&r.round))
        .cloned()
        .collect();
    // A round re-run by --resume appends again: the last row of each step wins.
    kept.reverse();
    let mut seen = std::collections::HashSet::new();
    kept.retain(|r| seen.insert((r.key(), r.step)));
    kept.reverse();
    Ok(kept)
}

//! What a run on one device is given: where it writes, the manifest and how to read it, and
//! how the device is reached.

use std::path::PathBuf;

use anyhow::Result;
use mobilebench_backend::{Mode, Timing, Workload};
use mobilebench_models::{BnMode, Precision};
use mobilebench_results::RunManifest;

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

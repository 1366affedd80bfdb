//! The run directory on the parent's side: creating it with its plan, validating one given
//! to `--resume`, and where each pair's last output is kept.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use mobilebench_results::{self as results, RunManifest};

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

/// Where a pair's last output is kept, for agreement checks (also across `--resume`).
pub fn output_path(dir: &Path, label: &str, backend: &str) -> PathBuf {
    dir.join("outputs").join(format!("{label}__{backend}.f32"))
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

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
pub fn output_path(dir: &Path, label: &str, backend: &str, threads: u32) -> PathBuf {
    // A file's label may be a path (two files with one name): one flat name per pair.
    let flat = label.replace(['/', '\\'], "_");
    let threads = if threads > 1 {
        format!("__{threads}t")
    } else {
        String::new()
    };
    dir.join("outputs")
        .join(format!("{flat}__{backend}{threads}.f32"))
}

/// Validates a run directory given to `--resume` and returns its manifest.
pub fn manifest_for_resume(dir: &Path) -> Result<RunManifest> {
    if !dir.is_dir() {
        bail!("--resume {}: no such directory", dir.display());
    }
    let manifest = results::read_manifest(dir).with_context(|| {
        format!(
            "--resume {}: cannot read its {}",
            dir.display(),
            results::MANIFEST_FILE
        )
    })?;
    if let Err(why) = results::check_schema(dir) {
        bail!(
            "--resume {}: written by another version of mobilebench: {why}; start a new run",
            dir.display()
        );
    }
    if manifest
        .timing
        .parse::<mobilebench_backend::Timing>()
        .is_err()
    {
        bail!(
            "--resume {}: recorded before the timing contract (its samples timed input copies for some backends and not others), so new pairs would not be comparable with it; start a new run",
            dir.display()
        );
    }
    Ok(manifest)
}

/// A held lock: released when dropped, or by the kernel when the process dies.
pub struct Lock {
    _file: std::fs::File,
}

/// Takes an exclusive `flock` on `path` and writes this process's pid into it; `Err(pid)`
/// names the live owner when another process holds it.
fn try_lock(path: &Path) -> std::io::Result<Result<Lock, String>> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut owner = String::new();
        let _ = file.read_to_string(&mut owner);
        return Ok(Err(owner.trim().to_string()));
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(Ok(Lock { _file: file }))
}

/// The run directory's lock: a second live `bench run` on the same directory is refused.
pub fn lock_run_dir(dir: &Path) -> Result<Lock> {
    let path = dir.join("run.lock");
    match try_lock(&path).with_context(|| format!("cannot lock {}", path.display()))? {
        Ok(lock) => Ok(lock),
        Err(pid) => bail!(
            "{} is being measured by another bench run (pid {pid}); wait for it to finish or stop it, then --resume",
            dir.display()
        ),
    }
}

/// A machine-wide lock per measured core: two runs pinned to one core would each time the
/// other. `Err` says who holds it (the caller warns: a user may mean it).
pub fn lock_core(core: usize) -> Result<Lock, String> {
    let path = std::env::temp_dir().join(format!("mobilebench-core-{core}.lock"));
    match try_lock(&path) {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(pid)) => Err(format!(
            "another bench run (pid {pid}) is measuring on core {core} of this machine: both runs' timings will suffer (stop it, or pick another --core)"
        )),
        // Someone else's lock file we cannot open: say nothing rather than guess.
        Err(_) => Err(String::new()),
    }
}

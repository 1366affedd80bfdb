//! Runtime provisioning: the inference runtimes' shared libraries come from their PyPI wheels
//! (the only registry that ships them), fetched with pip for a platform, extracted into a
//! cache and loaded at run time. Nothing is downloaded at build time; the binary builds and
//! runs without any runtime present and says so.
//!
//! Cache layout: `CACHE/runtimes/<platform>/<name>-<version>/` holding the libraries and
//! `runtime.json` (what was installed, from which wheel). `CACHE` is `$MOBILEBENCH_CACHE`,
//! else `$XDG_CACHE_HOME/mobilebench`, else `~/.cache/mobilebench`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod libtorch;
pub use libtorch::{
    ensure_libtorch, libtorch_dir, link_libtorch, locate_libtorch, Libtorch, LIBTORCH_VERSION,
};

/// A runtime pinned to one wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// Short name used in the cache and in messages.
    pub name: &'static str,
    /// The PyPI distribution.
    pub distribution: &'static str,
    pub version: &'static str,
    /// Wheel members to extract (file names inside the wheel).
    pub libraries: &'static [&'static str],
    /// The library to dlopen (its file name, after extraction).
    pub main_library: &'static str,
}

pub const ONNXRUNTIME: Runtime = Runtime {
    name: "onnxruntime",
    distribution: "onnxruntime",
    version: "1.31.1",
    libraries: &[
        "onnxruntime/capi/libonnxruntime.so.1.31.1",
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
    ],
    main_library: "libonnxruntime.so.1.31.1",
};

pub const LITERT: Runtime = Runtime {
    name: "litert",
    distribution: "ai-edge-litert",
    version: "2.3.0",
    libraries: &[
        "ai_edge_litert/libLiteRt.so",
        "ai_edge_litert/libLiteRtWebGpuAccelerator.so",
    ],
    main_library: "libLiteRt.so",
};

pub const ALL: &[Runtime] = &[ONNXRUNTIME, LITERT];

/// Where the libraries are meant to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Platform {
    LinuxX86_64,
    LinuxAarch64,
}

impl Platform {
    pub fn host() -> Option<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Platform::LinuxX86_64),
            "aarch64" => Some(Platform::LinuxAarch64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Platform::LinuxX86_64 => "linux-x86_64",
            Platform::LinuxAarch64 => "linux-aarch64",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        match s {
            "linux-x86_64" | "x86_64" => Some(Platform::LinuxX86_64),
            "linux-aarch64" | "aarch64" | "manylinux_2_28_aarch64" => Some(Platform::LinuxAarch64),
            _ => None,
        }
    }

    /// The manylinux tags pip may pick, newest first (the wheels are built for 2.25 to 2.28).
    fn wheel_tags(self) -> Vec<String> {
        let arch = match self {
            Platform::LinuxX86_64 => "x86_64",
            Platform::LinuxAarch64 => "aarch64",
        };
        [
            "manylinux_2_28",
            "manylinux_2_27",
            "manylinux_2_25",
            "manylinux_2_17",
            "manylinux2014",
        ]
        .iter()
        .map(|t| format!("{t}_{arch}"))
        .collect()
    }
}

/// What `runtime.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub distribution: String,
    pub version: String,
    pub platform: Platform,
    pub wheel: String,
    pub libraries: Vec<String>,
    /// Set when read back: the folder holding the libraries.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Installed {
    pub fn main_library(&self, runtime: &Runtime) -> PathBuf {
        self.dir.join(runtime.main_library)
    }
    /// `ai-edge-litert 2.3.0 (PyPI wheel)`, for the CSV.
    pub fn describe(&self) -> String {
        format!(
            "{} {} (PyPI wheel {})",
            self.distribution, self.version, self.wheel
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{runtime}: cannot run pip ({cmd}): {why}. Install Python 3 with pip (Debian: apt-get install python3-pip)")]
    NoPip {
        runtime: String,
        cmd: String,
        why: String,
    },
    #[error("{runtime}: pip could not download {spec} for {platform}: {stderr}")]
    Download {
        runtime: String,
        spec: String,
        platform: String,
        stderr: String,
    },
    #[error("{runtime}: wheel {wheel} has no {member}")]
    MissingMember {
        runtime: String,
        wheel: String,
        member: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable wheel: {why}")]
    BadWheel { path: PathBuf, why: String },
    #[error("libtorch: cannot build the empty libtorch.so stub: {why}")]
    Stub { why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOBILEBENCH_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("mobilebench");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("mobilebench")
}

fn install_dir(runtime: &Runtime, platform: Platform) -> PathBuf {
    cache_root()
        .join("runtimes")
        .join(platform.name())
        .join(format!("{}-{}", runtime.name, runtime.version))
}

const MANIFEST: &str = "runtime.json";

/// The installed runtime, if its manifest and every library are in the cache.
pub fn locate(runtime: &Runtime, platform: Platform) -> Option<Installed> {
    let dir = install_dir(runtime, platform);
    let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let mut installed: Installed = serde_json::from_str(&text).ok()?;
    installed.dir = dir;
    let complete = installed.version == runtime.version
        && installed
            .libraries
            .iter()
            .all(|l| installed.dir.join(l).is_file());
    complete.then_some(installed)
}

/// The runtime's libraries for `platform`, fetching them with pip if they are not cached.
pub fn ensure(runtime: &Runtime, platform: Platform) -> Result<Installed, RuntimeError> {
    match locate(runtime, platform) {
        Some(installed) => Ok(installed),
        None => provision(runtime, platform),
    }
}

/// Downloads the wheel with pip and extracts the libraries (replacing any partial install).
pub fn provision(runtime: &Runtime, platform: Platform) -> Result<Installed, RuntimeError> {
    let target = install_dir(runtime, platform);
    let parent = target.parent().expect("install dir has a parent");
    fs::create_dir_all(parent).map_err(io(parent))?;
    let download = tempdir_in(parent, "download")?;
    let wheel = download_wheel(
        runtime.name,
        runtime.distribution,
        runtime.version,
        platform,
        &download,
    )?;
    let staging = tempdir_in(parent, "staging")?;
    let libraries = extract(runtime, &wheel, &staging)?;
    let installed = Installed {
        name: runtime.name.into(),
        distribution: runtime.distribution.into(),
        version: runtime.version.into(),
        platform,
        wheel: file_name(&wheel),
        libraries,
        dir: target.clone(),
    };
    let manifest = serde_json::to_string_pretty(&installed).expect("serialises");
    fs::write(staging.join(MANIFEST), manifest).map_err(io(&staging))?;
    let _ = fs::remove_dir_all(&target);
    fs::rename(&staging, &target).map_err(io(&target))?;
    let _ = fs::remove_dir_all(&download);
    Ok(installed)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// `pip download`s one wheel of `distribution==version` for `platform` into `dir` and
/// returns its path. `runtime` names what it is for, in errors.
fn download_wheel(
    runtime: &str,
    distribution: &str,
    version: &str,
    platform: Platform,
    dir: &Path,
) -> Result<PathBuf, RuntimeError> {
    let spec = format!("{distribution}=={version}");
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
    ])
    .args(["--python-version", "3.11", "--implementation", "cp"])
    .arg("--dest")
    .arg(dir);
    for tag in platform.wheel_tags() {
        cmd.args(["--platform", &tag]);
    }
    cmd.arg(&spec);
    let shown = format!(
        "python3 -m pip download {spec} --platform {}",
        platform.wheel_tags()[0]
    );
    let output = cmd.output().map_err(|e| RuntimeError::NoPip {
        runtime: runtime.into(),
        cmd: shown.clone(),
        why: e.to_string(),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let _ = fs::remove_dir_all(dir);
        if stderr.contains("No module named pip") {
            return Err(RuntimeError::NoPip {
                runtime: runtime.into(),
                cmd: shown,
                why: "pip is not installed".into(),
            });
        }
        return Err(RuntimeError::Download {
            runtime: runtime.into(),
            spec,
            platform: platform.name().into(),
            stderr: stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string(),
        });
    }
    let prefix = distribution.replace('-', "_");
    fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "whl")
                && file_name(p).to_ascii_lowercase().starts_with(&prefix)
        })
        .ok_or_else(|| RuntimeError::BadWheel {
            path: dir.to_path_buf(),
            why: format!("pip reported success but saved no {distribution} wheel"),
        })
}

fn tempdir_in(parent: &Path, what: &str) -> Result<PathBuf, RuntimeError> {
    let dir = parent.join(format!(".{what}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Extracts the runtime's libraries (flattened to their file names) from a wheel.
fn extract(runtime: &Runtime, wheel: &Path, into: &Path) -> Result<Vec<String>, RuntimeError> {
    let bad = |why: String| RuntimeError::BadWheel {
        path: wheel.to_path_buf(),
        why,
    };
    let file = fs::File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut names = Vec::new();
    for member in runtime.libraries {
        let mut entry = archive
            .by_name(member)
            .map_err(|_| RuntimeError::MissingMember {
                runtime: runtime.name.into(),
                wheel: wheel.display().to_string(),
                member: member.to_string(),
            })?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string()))?;
        let name = Path::new(member)
            .file_name()
            .expect("members are file paths")
            .to_string_lossy()
            .into_owned();
        let path = into.join(&name);
        fs::write(&path, bytes).map_err(io(&path))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_root_honours_the_override() {
        // Only reads the variable: other tests may run concurrently, so do not set it.
        let root = cache_root();
        assert!(root.is_absolute() || root.starts_with("."));
    }

    #[test]
    fn platform_names_round_trip() {
        for p in [Platform::LinuxX86_64, Platform::LinuxAarch64] {
            assert_eq!(Platform::parse(p.name()), Some(p));
        }
        assert!(Platform::wheel_tags(Platform::LinuxAarch64)[0].ends_with("aarch64"));
    }
}

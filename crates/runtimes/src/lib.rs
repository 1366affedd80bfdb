//! Runtime provisioning: the inference runtimes' shared libraries come from their PyPI wheels
//! (the only registry that ships them), fetched with pip for a platform, extracted into a
//! cache and loaded at run time. Nothing is downloaded at build time; the binary builds and
//! runs without any runtime present and says so.
//!
//! Wheels are pinned by content: each pin is a version and, per platform, the wheel's
//! SHA-256, which pip checks (`--require-hashes`) and this crate checks again. Cache layout:
//! `CACHE/runtimes/<platform>/<name>-<version>/` holding the libraries and `runtime.json`
//! (what was installed, from which wheel, and every file's SHA-256, checked before use by
//! [`ensure`]: a cache entry whose files changed is fetched again). `CACHE` is `$MOBILEBENCH_CACHE`,
//! else `$XDG_CACHE_HOME/mobilebench`, else `~/.cache/mobilebench`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod libtorch;
pub use libtorch::{
    ensure_libtorch, libtorch_dir, link_libtorch, locate_libtorch, verify_libtorch, Libtorch,
    LIBTORCH_VERSION,
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
    /// The SHA-256 of the wheel pip downloads, per platform.
    pub wheels: &'static [WheelPin],
}

/// One platform's wheel of a pinned distribution version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPin {
    pub platform: Platform,
    pub sha256: &'static str,
}

/// The pinned SHA-256 of a wheel for `platform`, or the error saying there is none.
fn pinned(
    runtime: &str,
    distribution: &str,
    pins: &[WheelPin],
    platform: Platform,
) -> Result<&'static str, RuntimeError> {
    pins.iter()
        .find(|p| p.platform == platform)
        .map(|p| p.sha256)
        .ok_or_else(|| RuntimeError::NoPin {
            runtime: runtime.into(),
            distribution: distribution.into(),
            platform: platform.name().into(),
        })
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, RuntimeError> {
    use sha2::{Digest, Sha256};
    let mut file = fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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
    wheels: &[
        WheelPin {
            platform: Platform::LinuxX86_64,
            sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        },
        WheelPin {
            platform: Platform::LinuxAarch64,
            sha256: "da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3",
        },
    ],
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
    wheels: &[
        WheelPin {
            platform: Platform::LinuxX86_64,
            sha256: "1f15078a6725d2357d9de9221664c29afa0545d807559c5f7199ce5e40b96b23",
        },
        WheelPin {
            platform: Platform::LinuxAarch64,
            sha256: "853fc608f96da87bd5f3458465dfb9abbf18d5ae6b94eceacead407146f175ae",
        },
    ],
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
    /// The wheel's SHA-256 (its pin).
    #[serde(default)]
    pub wheel_sha256: String,
    pub libraries: Vec<String>,
    /// Each extracted file's SHA-256, checked before the cache entry is used.
    #[serde(default)]
    pub library_sha256: std::collections::BTreeMap<String, String>,
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
    #[error("{runtime}: no pinned wheel hash for {distribution} on {platform}")]
    NoPin {
        runtime: String,
        distribution: String,
        platform: String,
    },
    #[error("{runtime}: the downloaded {wheel} has SHA-256 {got}, the pin says {expected}")]
    HashMismatch {
        runtime: String,
        wheel: String,
        got: String,
        expected: String,
    },
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

/// Whether a located install is what was installed: its wheel is the pinned one and every
/// file has the SHA-256 recorded then. `Err` says what differs.
pub fn verify(runtime: &Runtime, installed: &Installed) -> Result<(), String> {
    let pin = pinned(
        runtime.name,
        runtime.distribution,
        runtime.wheels,
        installed.platform,
    )
    .map_err(|e| e.to_string())?;
    if installed.wheel_sha256.is_empty() {
        return Err("installed before wheels were pinned by SHA-256".into());
    }
    if installed.wheel_sha256 != pin {
        return Err(format!(
            "its wheel has SHA-256 {}, the pin says {pin}",
            installed.wheel_sha256
        ));
    }
    for name in &installed.libraries {
        let expected = installed
            .library_sha256
            .get(name)
            .ok_or_else(|| format!("{name} has no recorded SHA-256"))?;
        let got = sha256_file(&installed.dir.join(name)).map_err(|e| e.to_string())?;
        if &got != expected {
            return Err(format!(
                "{name} changed since it was installed (SHA-256 {got}, recorded {expected})"
            ));
        }
    }
    Ok(())
}

/// The runtime's libraries for `platform`: the cached ones if they verify, else fetched
/// with pip. The second value says why a cached entry was fetched again.
pub fn ensure(
    runtime: &Runtime,
    platform: Platform,
) -> Result<(Installed, Option<String>), RuntimeError> {
    match locate(runtime, platform) {
        Some(installed) => match verify(runtime, &installed) {
            Ok(()) => Ok((installed, None)),
            Err(why) => provision(runtime, platform).map(|i| (i, Some(why))),
        },
        None => provision(runtime, platform).map(|i| (i, None)),
    }
}

/// Downloads the wheel with pip and extracts the libraries (replacing any partial install).
pub fn provision(runtime: &Runtime, platform: Platform) -> Result<Installed, RuntimeError> {
    let target = install_dir(runtime, platform);
    let parent = target.parent().expect("install dir has a parent");
    fs::create_dir_all(parent).map_err(io(parent))?;
    let download = tempdir_in(parent, "download")?;
    let sha256 = pinned(runtime.name, runtime.distribution, runtime.wheels, platform)?;
    let wheel = download_wheel(
        runtime.name,
        runtime.distribution,
        runtime.version,
        sha256,
        platform,
        &download,
    )?;
    let staging = tempdir_in(parent, "staging")?;
    let libraries = extract(runtime, &wheel, &staging)?;
    let library_sha256 = libraries
        .iter()
        .map(|l| Ok((l.clone(), sha256_file(&staging.join(l))?)))
        .collect::<Result<_, RuntimeError>>()?;
    let installed = Installed {
        name: runtime.name.into(),
        distribution: runtime.distribution.into(),
        version: runtime.version.into(),
        platform,
        wheel: file_name(&wheel),
        wheel_sha256: sha256.into(),
        libraries,
        library_sha256,
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

/// `pip download`s the wheel of `distribution==version` whose SHA-256 is `sha256` for
/// `platform` into `dir` (pip checks the hash: `--require-hashes`), checks the hash again and
/// returns its path. `runtime` names what it is for, in errors.
fn download_wheel(
    runtime: &str,
    distribution: &str,
    version: &str,
    sha256: &str,
    platform: Platform,
    dir: &Path,
) -> Result<PathBuf, RuntimeError> {
    let spec = format!("{distribution}=={version}");
    let requirements = dir.join("requirements.txt");
    fs::write(&requirements, format!("{spec} --hash=sha256:{sha256}\n"))
        .map_err(io(&requirements))?;
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
    ])
    .args(["--python-version", "3.11", "--implementation", "cp"])
    .arg("--dest")
    .arg(dir);
    for tag in platform.wheel_tags() {
        cmd.args(["--platform", &tag]);
    }
    cmd.arg("-r").arg(&requirements);
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
    let wheel = fs::read_dir(dir)
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
        })?;
    let got = sha256_file(&wheel)?;
    if got != sha256 {
        return Err(RuntimeError::HashMismatch {
            runtime: runtime.into(),
            wheel: file_name(&wheel),
            got,
            expected: sha256.into(),
        });
    }
    Ok(wheel)
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

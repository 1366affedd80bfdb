//! libtorch for the `tch` backend, assembled CPU-only from PyPI wheels.
//!
//! The `torch` wheel is a CUDA build: its `libtorch.so` pulls in `libtorch_cuda.so` and
//! gigabytes of CUDA libraries. A CPU-only folder needs only `libc10.so`, `libtorch_cpu.so`
//! and `libgomp.so.1` from it, plus the two small CUDA libraries `libtorch_cpu.so` itself
//! links (`libcudart.so.13`, `libcupti.so.13`, from their own wheels), the headers, and a
//! `libtorch.so` with no content. That stub keeps the linker's `-ltorch` satisfied; where a
//! real CUDA libtorch is put first on `LD_LIBRARY_PATH`, its `libtorch.so` loads instead and
//! brings CUDA with it.
//!
//! Unlike the other runtimes, libtorch is needed at build time (tch compiles a C++ wrapper
//! and links it), so it is provisioned by `scripts/setup` before cargo builds the harness,
//! and `.cargo/config.toml` points `LIBTORCH` at the link that script makes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    cache_root, download_wheel, file_name, io, pinned, sha256_file, tempdir_in, Platform,
    RuntimeError, WheelPin,
};

/// The libtorch version tch 0.24 is built for.
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// What one wheel contributes: files copied to a folder of the install, and whole trees.
struct Part {
    distribution: &'static str,
    version: &'static str,
    /// `(member, destination folder)`.
    files: &'static [(&'static str, &'static str)],
    /// `(member prefix, destination folder)`: every file under the prefix, paths kept.
    trees: &'static [(&'static str, &'static str)],
    /// The wheel's SHA-256 per platform.
    wheels: &'static [WheelPin],
}

const PARTS: &[Part] = &[
    Part {
        distribution: "torch",
        version: LIBTORCH_VERSION,
        files: &[
            ("torch/lib/libc10.so", "lib"),
            ("torch/lib/libtorch_cpu.so", "lib"),
            ("torch/lib/libgomp.so.1", "lib"),
        ],
        trees: &[("torch/include/", "include")],
        wheels: &[WheelPin {
            platform: Platform::LinuxX86_64,
            sha256: "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a",
        }],
    },
    // The versions torch 2.11.0's wheel requires (through `cuda-toolkit==13.0.2`).
    Part {
        distribution: "nvidia-cuda-runtime",
        version: "13.0.96",
        files: &[("nvidia/cu13/lib/libcudart.so.13", "lib")],
        trees: &[],
        wheels: &[WheelPin {
            platform: Platform::LinuxX86_64,
            sha256: "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
        }],
    },
    Part {
        distribution: "nvidia-cuda-cupti",
        version: "13.0.85",
        files: &[("nvidia/cu13/lib/libcupti.so.13", "lib")],
        trees: &[],
        wheels: &[WheelPin {
            platform: Platform::LinuxX86_64,
            sha256: "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
        }],
    },
];

const MANIFEST: &str = "libtorch.json";

/// What `libtorch.json` records about an assembled folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Libtorch {
    pub version: String,
    pub platform: Platform,
    /// The wheels it was assembled from.
    pub wheels: Vec<String>,
    /// SHA-256 of every file assembled (relative path → hex digest; symlinks are not files),
    /// checked again before the folder is used. Empty in manifests written before it was
    /// recorded, which therefore do not verify.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Set when read back: the folder (what `LIBTORCH` points at).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Libtorch {
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib")
    }
}

/// `CACHE/runtimes/<platform>/libtorch-<version>-cpu/`.
pub fn libtorch_dir(platform: Platform) -> PathBuf {
    cache_root()
        .join("runtimes")
        .join(platform.name())
        .join(format!("libtorch-{LIBTORCH_VERSION}-cpu"))
}

/// The files a complete install has (relative to its folder), beyond the headers.
const REQUIRED: &[&str] = &[
    "lib/libc10.so",
    "lib/libtorch_cpu.so",
    "lib/libtorch.so",
    "lib/libgomp.so.1",
    "lib/libcudart.so.13",
    "lib/libcupti.so.13",
    "include/torch/torch.h",
    "build-version",
];

/// The assembled libtorch, if it is complete in the cache (not yet verified: see
/// [`verify_libtorch`]).
pub fn locate_libtorch(platform: Platform) -> Option<Libtorch> {
    locate_in(&libtorch_dir(platform))
}

fn locate_in(dir: &Path) -> Option<Libtorch> {
    let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let mut found: Libtorch = serde_json::from_str(&text).ok()?;
    found.dir = dir.to_path_buf();
    let complete =
        found.version == LIBTORCH_VERSION && REQUIRED.iter().all(|f| found.dir.join(f).exists());
    complete.then_some(found)
}

/// Whether a located folder holds what was assembled: every recorded file has the SHA-256
/// recorded then. `Err` names the first file that differs.
pub fn verify_libtorch(found: &Libtorch) -> Result<(), String> {
    if found.files.is_empty() {
        return Err("assembled before its files' SHA-256 were recorded".into());
    }
    for (name, expected) in &found.files {
        let got = sha256_file(&found.dir.join(name)).map_err(|e| e.to_string())?;
        if &got != expected {
            return Err(format!(
                "{name} changed since it was assembled (SHA-256 {got}, recorded {expected})"
            ));
        }
    }
    Ok(())
}

/// The assembled libtorch, assembling it if it is not cached or no longer verifies. The
/// second value says why a cached folder was assembled again.
pub fn ensure_libtorch(platform: Platform) -> Result<(Libtorch, Option<String>), RuntimeError> {
    ensure_in(&libtorch_dir(platform), || assemble(platform))
}

fn ensure_in(
    dir: &Path,
    assemble: impl FnOnce() -> Result<Libtorch, RuntimeError>,
) -> Result<(Libtorch, Option<String>), RuntimeError> {
    match locate_in(dir) {
        Some(found) => match verify_libtorch(&found) {
            Ok(()) => Ok((found, None)),
            Err(why) => assemble().map(|f| (f, Some(why))),
        },
        None => assemble().map(|f| (f, None)),
    }
}

/// SHA-256 of every regular file under `dir` (paths relative to it), but the manifest.
fn hash_files(dir: &Path) -> Result<BTreeMap<String, String>, RuntimeError> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).map_err(io(&folder))? {
            let path = entry.map_err(io(&folder))?.path();
            let kind = fs::symlink_metadata(&path).map_err(io(&path))?.file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path != dir.join(MANIFEST) {
                let name = path
                    .strip_prefix(dir)
                    .expect("walked from dir")
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, sha256_file(&path)?);
            }
        }
    }
    Ok(files)
}

fn assemble(platform: Platform) -> Result<Libtorch, RuntimeError> {
    let target = libtorch_dir(platform);
    let parent = target.parent().expect("install dir has a parent");
    fs::create_dir_all(parent).map_err(io(parent))?;
    let download = tempdir_in(parent, "libtorch-download")?;
    let staging = tempdir_in(parent, "libtorch-staging")?;
    let mut wheels = Vec::new();
    for part in PARTS {
        let sha256 = pinned("libtorch", part.distribution, part.wheels, platform)?;
        let wheel = download_wheel(
            "libtorch",
            part.distribution,
            part.version,
            sha256,
            platform,
            &download,
        )?;
        extract_part(part, &wheel, &staging)?;
        wheels.push(file_name(&wheel));
        // The torch wheel is 530 MB: do not keep it once extracted.
        let _ = fs::remove_file(&wheel);
    }
    let lib = staging.join("lib");
    build_stub(&lib)?;
    // `-lgomp` (which tch's build asks for) must find the wheel's OpenMP, not a system one.
    std::os::unix::fs::symlink("libgomp.so.1", lib.join("libgomp.so")).map_err(io(&lib))?;
    // torch-sys checks this file against the version it was written for.
    let version_file = staging.join("build-version");
    fs::write(&version_file, format!("{LIBTORCH_VERSION}+cpu\n")).map_err(io(&version_file))?;
    let found = Libtorch {
        version: LIBTORCH_VERSION.into(),
        platform,
        wheels,
        files: hash_files(&staging)?,
        dir: target.clone(),
    };
    let manifest = serde_json::to_string_pretty(&found).expect("serialises");
    fs::write(staging.join(MANIFEST), manifest).map_err(io(&staging))?;
    let _ = fs::remove_dir_all(&target);
    fs::rename(&staging, &target).map_err(io(&target))?;
    let _ = fs::remove_dir_all(&download);
    Ok(found)
}

/// Copies a part's files and trees out of its wheel, streaming (libtorch_cpu is 440 MB).
fn extract_part(part: &Part, wheel: &Path, into: &Path) -> Result<(), RuntimeError> {
    let bad = |why: String| RuntimeError::BadWheel {
        path: wheel.to_path_buf(),
        why,
    };
    let file = fs::File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut wanted: Vec<(usize, PathBuf)> = Vec::new();
    for (member, folder) in part.files {
        let index = archive
            .index_for_name(member)
            .ok_or_else(|| RuntimeError::MissingMember {
                runtime: "libtorch".into(),
                wheel: wheel.display().to_string(),
                member: member.to_string(),
            })?;
        let name = Path::new(member).file_name().expect("members are files");
        wanted.push((index, into.join(folder).join(name)));
    }
    for (prefix, folder) in part.trees {
        let before = wanted.len();
        for index in 0..archive.len() {
            let Some(Ok(name)) = archive.name_for_index(index) else {
                continue;
            };
            if let Some(rest) = name.strip_prefix(prefix) {
                // Wheel members are relative paths; refuse anything that would climb out.
                if !rest.is_empty() && !rest.ends_with('/') && !rest.contains("..") {
                    wanted.push((index, into.join(folder).join(rest)));
                }
            }
        }
        if wanted.len() == before {
            return Err(RuntimeError::MissingMember {
                runtime: "libtorch".into(),
                wheel: wheel.display().to_string(),
                member: prefix.to_string(),
            });
        }
    }
    for (index, path) in wanted {
        let mut entry = archive.by_index(index).map_err(|e| bad(e.to_string()))?;
        let folder = path.parent().expect("joined paths have parents");
        fs::create_dir_all(folder).map_err(io(folder))?;
        let mut out = fs::File::create(&path).map_err(io(&path))?;
        io::copy(&mut entry, &mut out).map_err(io(&path))?;
    }
    Ok(())
}

/// Compiles an empty shared library named `libtorch.so` (the C compiler is the one Rust
/// links with, so it is present wherever this builds).
fn build_stub(lib: &Path) -> Result<(), RuntimeError> {
    let source = lib.join("libtorch_stub.c");
    fs::write(
        &source,
        "/* stands in for libtorch.so, which would load libtorch_cuda */\n",
    )
    .map_err(io(&source))?;
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = lib.join("libtorch.so");
    let result = Command::new(&compiler)
        .args(["-shared", "-fPIC", "-Wl,-soname,libtorch.so", "-o"])
        .arg(&output)
        .arg(&source)
        .output();
    let _ = fs::remove_file(&source);
    match result {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(RuntimeError::Stub {
            why: format!(
                "{compiler} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }),
        Err(e) => Err(RuntimeError::Stub {
            why: format!("cannot run {compiler}: {e} (install a C compiler, e.g. Debian's gcc)"),
        }),
    }
}

/// Points `link` (a symlink, replaced if it exists) at the assembled folder: the fixed path
/// `.cargo/config.toml` gives cargo as `LIBTORCH`.
pub fn link_libtorch(found: &Libtorch, link: &Path) -> Result<(), RuntimeError> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => fs::remove_file(link).map_err(io(link))?,
        Ok(_) => {
            return Err(RuntimeError::Io {
                path: link.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a symlink; move it away so setup can link libtorch here",
                ),
            })
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&found.dir, link).map_err(io(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_file_comes_from_a_part_or_setup() {
        // Files setup makes itself: the stub, and the version file.
        let made = ["lib/libtorch.so", "build-version"];
        for required in REQUIRED {
            let from_part = PARTS.iter().any(|p| {
                p.files.iter().any(|(member, folder)| {
                    let name = Path::new(member).file_name().unwrap().to_string_lossy();
                    *required == format!("{folder}/{name}")
                }) || p
                    .trees
                    .iter()
                    .any(|(_, folder)| required.starts_with(&format!("{folder}/")))
            });
            assert!(
                from_part || made.contains(required),
                "{required} has no source"
            );
        }
    }

    #[test]
    fn the_stub_is_a_shared_library_named_libtorch() {
        let dir = std::env::temp_dir().join(format!("mobilebench-stub-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        build_stub(&dir).unwrap();
        let bytes = fs::read(dir.join("libtorch.so")).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        // ET_DYN: a shared object.
        assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A folder shaped like an assembled libtorch (tiny fake files) with its manifest.
    fn fake_install(dir: &Path) -> Libtorch {
        for file in REQUIRED {
            let path = dir.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, format!("contents of {file}")).unwrap();
        }
        let found = Libtorch {
            version: LIBTORCH_VERSION.into(),
            platform: Platform::LinuxX86_64,
            wheels: vec!["fake.whl".into()],
            files: hash_files(dir).unwrap(),
            dir: dir.to_path_buf(),
        };
        fs::write(
            dir.join(MANIFEST),
            serde_json::to_string_pretty(&found).unwrap(),
        )
        .unwrap();
        found
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mobilebench-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_manifest_records_every_assembled_file() {
        let dir = temp("libtorch-record");
        let found = fake_install(&dir);
        for file in REQUIRED {
            assert!(found.files.contains_key(*file), "{file} not recorded");
        }
        assert!(!found.files.contains_key(MANIFEST));
        assert_eq!(verify_libtorch(&locate_in(&dir).unwrap()), Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_byte_makes_ensure_assemble_again_and_say_which_file() {
        let dir = temp("libtorch-corrupt");
        fake_install(&dir);
        // Untouched: used as it is, nothing assembled.
        let (_, why) = ensure_in(&dir, || panic!("a verified folder is not reassembled")).unwrap();
        assert_eq!(why, None);
        // One byte of libtorch_cpu flipped.
        let victim = dir.join("lib/libtorch_cpu.so");
        let mut bytes = fs::read(&victim).unwrap();
        bytes[0] ^= 1;
        fs::write(&victim, bytes).unwrap();
        let mut assembled = false;
        let (_, why) = ensure_in(&dir, || {
            assembled = true;
            Ok(fake_install(&dir))
        })
        .unwrap();
        assert!(assembled, "a corrupted folder must be assembled again");
        let why = why.expect("the reason is reported");
        assert!(
            why.contains("lib/libtorch_cpu.so changed since it was assembled"),
            "{why}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_manifest_without_hashes_does_not_verify() {
        let dir = temp("libtorch-old");
        let mut found = fake_install(&dir);
        found.files.clear();
        let old = serde_json::to_string(&found)
            .unwrap()
            .replace(",\"files\":{}", "");
        assert!(!old.contains("files"), "{old}");
        fs::write(dir.join(MANIFEST), old).unwrap();
        let located = locate_in(&dir).expect("an old manifest still parses");
        assert!(verify_libtorch(&located)
            .unwrap_err()
            .contains("before its files' SHA-256 were recorded"));
        fs::remove_dir_all(&dir).unwrap();
    }
}

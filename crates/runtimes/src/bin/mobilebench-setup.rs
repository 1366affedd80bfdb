//! `mobilebench-setup [--libtorch-link PATH]`: fetches every runtime for this machine into
//! the cache: ONNX Runtime and LiteRT (which `bench` would also fetch on first use) and
//! libtorch, which must exist before cargo can build the `tch` backend. With
//! `--libtorch-link`, points that path at libtorch (what `.cargo/config.toml` reads).
//!
//! A binary of its own, apart from `bench`, because `bench` cannot be built before libtorch
//! is here. `scripts/setup` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use mobilebench_runtimes::{ensure, ensure_libtorch, link_libtorch, Platform, ALL};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut link: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--libtorch-link" => match args.next() {
                Some(path) => link = Some(PathBuf::from(path)),
                None => return usage("--libtorch-link needs a path"),
            },
            "-h" | "--help" => {
                println!(
                    "usage: mobilebench-setup [--libtorch-link PATH]\n\n\
                     Fetches ONNX Runtime, LiteRT and a CPU-only libtorch {} from their PyPI\n\
                     wheels into {} (set MOBILEBENCH_CACHE to move it).\n\
                     --libtorch-link PATH   make PATH a symlink to the libtorch folder",
                    mobilebench_runtimes::LIBTORCH_VERSION,
                    mobilebench_runtimes::cache_root().display()
                );
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let Some(platform) = Platform::host() else {
        eprintln!(
            "error: no runtime wheels for {} (x86_64 and aarch64 Linux only)",
            std::env::consts::ARCH
        );
        return ExitCode::FAILURE;
    };
    let mut failed = false;
    for runtime in ALL {
        match ensure(runtime, platform) {
            Ok((found, refetched)) => {
                if let Some(why) = refetched {
                    eprintln!(
                        "{}: the cached copy did not verify ({why}): fetched it again",
                        runtime.name
                    );
                }
                println!("{}: {}", runtime.name, found.dir.display())
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if platform == Platform::LinuxX86_64 {
        eprintln!(
            "libtorch {}: fetching and assembling if not cached (the torch wheel is 530 MB)",
            mobilebench_runtimes::LIBTORCH_VERSION
        );
        match ensure_libtorch(platform) {
            Ok((found, reassembled)) => {
                if let Some(why) = reassembled {
                    eprintln!(
                        "libtorch: the cached copy did not verify ({why}): assembled it again"
                    );
                }
                println!("libtorch: {}", found.dir.display());
                if let Some(link) = &link {
                    match link_libtorch(&found, link) {
                        Ok(()) => println!("libtorch: linked at {}", link.display()),
                        Err(e) => {
                            eprintln!("error: {e}");
                            failed = true;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    } else {
        eprintln!("libtorch: assembled for x86_64 hosts only; the tch backend is left out here");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("error: {why}\nusage: mobilebench-setup [--libtorch-link PATH]");
    ExitCode::from(2)
}

//! The backends this build knows, in listing order. Adding a backend = one line here.

use anyhow::{bail, Result};
use mobilebench_backend::{noop::NoopBackend, Backend};
use mobilebench_litert::{CpuKernels, LiteRtBackend};
use mobilebench_native::NativeBackend;
use mobilebench_onnxruntime::OnnxRuntimeBackend;
use mobilebench_runtimes::{self as runtimes, Platform, Runtime};
use mobilebench_tract::TractBackend;

pub fn all() -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(NativeBackend),
        Box::new(OnnxRuntimeBackend),
        Box::new(LiteRtBackend {
            kernels: CpuKernels::Builtin,
        }),
        Box::new(LiteRtBackend {
            kernels: CpuKernels::Xnnpack,
        }),
        Box::new(TractBackend),
        Box::new(NoopBackend),
    ]
}

/// The provisioned runtime a backend loads, if any.
pub fn runtime_of(backend: &dyn Backend) -> Option<&'static Runtime> {
    match backend.engine() {
        "onnxruntime" => Some(&runtimes::ONNXRUNTIME),
        "litert" => Some(&runtimes::LITERT),
        _ => None,
    }
}

/// Fetches the runtimes of the selected backends that are not in the cache yet (what
/// `bench setup` does, for just these). A failure is reported and leaves the backend
/// unavailable, with the reason in the CSV.
pub fn provision_missing(backends: &[Box<dyn Backend>]) {
    let Some(platform) = Platform::host() else {
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for b in backends {
        let Some(rt) = runtime_of(b.as_ref()) else {
            continue;
        };
        if seen.contains(&rt.name) || runtimes::locate(rt, platform).is_some() {
            continue;
        }
        seen.push(rt.name);
        eprintln!(
            "{} {} is not provisioned: fetching its PyPI wheel...",
            rt.distribution, rt.version
        );
        match runtimes::provision(rt, platform) {
            Ok(i) => eprintln!("  {} libraries in {}", i.describe(), i.dir.display()),
            Err(e) => eprintln!("  {e}"),
        }
    }
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|b| b.name()).collect()
}

pub fn find(name: &str) -> Result<Box<dyn Backend>> {
    match all().into_iter().find(|b| b.name() == name) {
        Some(b) => Ok(b),
        None => bail!(
            "unknown backend `{name}` (known: {}; see `bench list backends`)",
            names().join(", ")
        ),
    }
}

/// Resolves `--backends`: names, or `all` for every backend that is not test-only.
pub fn select(names: &[String]) -> Result<Vec<Box<dyn Backend>>> {
    let mut out: Vec<Box<dyn Backend>> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let found = if name == "all" {
            all().into_iter().filter(|b| !b.is_test_only()).collect()
        } else {
            vec![find(name)?]
        };
        for b in found {
            if !out.iter().any(|o| o.name() == b.name()) {
                out.push(b);
            }
        }
    }
    if out.is_empty() {
        bail!("no backend selected (see `bench list backends`)");
    }
    Ok(out)
}

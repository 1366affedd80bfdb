//! The backends this build knows, in listing order. Adding a backend = one line here.

use anyhow::{bail, Result};
use mobilebench_backend::{
    testing::TestBackend, Availability, Backend, BackendError, ModelSource, Session, SourceKind,
    Workload,
};
use mobilebench_litert::{Accelerator, LiteRtBackend};
use mobilebench_native::NativeBackend;
use mobilebench_onnxruntime::OnnxRuntimeBackend;
use mobilebench_rten::RtenBackend;
use mobilebench_runtimes::{self as runtimes, Platform, Runtime};
use mobilebench_tract::TractBackend;

pub fn all() -> Vec<Box<dyn Backend>> {
    let cpu: Vec<Box<dyn Backend>> = vec![Box::new(NativeBackend), Box::new(OnnxRuntimeBackend)];
    let rest: Vec<Box<dyn Backend>> = vec![
        Box::new(TractBackend),
        Box::new(RtenBackend),
        wgpu_backend(),
    ];
    let litert = Accelerator::ALL
        .into_iter()
        .map(|accelerator| Box::new(LiteRtBackend { accelerator }) as Box<dyn Backend>);
    cpu.into_iter()
        .chain(litert)
        .chain(rest)
        .chain(tch_backends())
        .chain(
            TestBackend::ALL
                .into_iter()
                .map(|b| Box::new(b) as Box<dyn Backend>),
        )
        .collect()
}

#[cfg(feature = "wgpu")]
fn wgpu_backend() -> Box<dyn Backend> {
    Box::new(mobilebench_wgpu::WgpuBackend)
}

/// Without the feature the wgpu backend is still listed, unavailable, saying why.
#[cfg(not(feature = "wgpu"))]
fn wgpu_backend() -> Box<dyn Backend> {
    Box::new(NotBuilt {
        name: "wgpu",
        engine: "wgpu",
    })
}

#[cfg(feature = "tch")]
fn tch_backends() -> Vec<Box<dyn Backend>> {
    mobilebench_tch::TchBackend::all()
        .into_iter()
        .map(|b| Box::new(b) as Box<dyn Backend>)
        .collect()
}

/// Without the feature the tch backends are still listed, unavailable, saying why.
#[cfg(not(feature = "tch"))]
fn tch_backends() -> Vec<Box<dyn Backend>> {
    ["tch", "tch-channels-last", "tch-cuda"]
        .into_iter()
        .map(|name| {
            Box::new(NotBuilt {
                name,
                engine: "tch",
            }) as Box<dyn Backend>
        })
        .collect()
}

/// A backend this build left out (a cargo feature turned off).
#[cfg_attr(all(feature = "tch", feature = "wgpu"), allow(dead_code))]
struct NotBuilt {
    name: &'static str,
    engine: &'static str,
}

impl Backend for NotBuilt {
    fn name(&self) -> &'static str {
        self.name
    }
    fn engine(&self) -> &'static str {
        self.engine
    }
    fn description(&self) -> &'static str {
        "not in this build"
    }
    fn availability(&self) -> Availability {
        Availability::Unavailable {
            reason: format!(
                "this bench was built without the `{}` feature (a remote device's build leaves libtorch and the wgpu engine out; on the host, run scripts/setup and build with default features)",
                self.engine
            ),
        }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::Zoo
    }
    fn load(&self, _: &ModelSource, _: &Workload) -> Result<Box<dyn Session>, BackendError> {
        Err(BackendError::Unavailable {
            backend: self.name.into(),
            reason: "not in this build".into(),
        })
    }
}

/// The provisioned runtime a backend loads, if any.
pub fn runtime_of(backend: &dyn Backend) -> Option<&'static Runtime> {
    let name = backend.runtime()?;
    runtimes::ALL.iter().find(|rt| rt.name == name)
}

/// Makes sure the runtime is in the cache and unchanged (what `bench setup` does, for just
/// this one), saying on stderr what it fetches and why.
pub fn ensure_runtime(rt: &Runtime, platform: Platform) -> Result<runtimes::Installed> {
    if runtimes::locate(rt, platform).is_none() {
        eprintln!(
            "{} {} is not provisioned for {}: fetching its PyPI wheel...",
            rt.distribution,
            rt.version,
            platform.name()
        );
    }
    let (installed, refetched) = runtimes::ensure(rt, platform)?;
    if let Some(why) = refetched {
        eprintln!(
            "{} {} in the cache did not verify ({why}): fetched it again",
            rt.distribution, rt.version
        );
    }
    Ok(installed)
}

/// Fetches the runtimes of the selected backends that are missing from the cache or no
/// longer match what was installed. A failure is reported and leaves the backend
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
        if seen.contains(&rt.name) {
            continue;
        }
        seen.push(rt.name);
        if let Err(e) = ensure_runtime(rt, platform) {
            eprintln!("  {e:#}");
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

/// Why `all` in `requested` left backends out: those whose only adapter is software.
pub fn left_out_of_all(requested: &[String]) -> Vec<String> {
    if !requested.iter().any(|n| n.trim() == "all") {
        return Vec::new();
    }
    all()
        .iter()
        .filter(|b| !b.is_test_only())
        .filter_map(|b| {
            b.software_adapter().map(|adapter| {
                format!(
                    "{}: left out of `all`: its only adapter here is the software rasteriser {adapter} (seconds per inference); name it in --backends to run it anyway",
                    b.name()
                )
            })
        })
        .collect()
}

/// Resolves `--backends`: names, or `all` for every backend that is not test-only and does
/// not run on a software GPU adapter.
pub fn select(names: &[String]) -> Result<Vec<Box<dyn Backend>>> {
    let mut out: Vec<Box<dyn Backend>> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let found = if name == "all" {
            all()
                .into_iter()
                .filter(|b| !b.is_test_only())
                .filter(|b| b.software_adapter().is_none())
                .collect()
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

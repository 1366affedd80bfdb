//! The backends this build knows, in listing order. Adding a backend = one line here.

use anyhow::{bail, Result};
use mobilebench_backend::{noop::NoopBackend, Backend};
use mobilebench_native::NativeBackend;

pub fn all() -> Vec<Box<dyn Backend>> {
    vec![Box::new(NativeBackend), Box::new(NoopBackend)]
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

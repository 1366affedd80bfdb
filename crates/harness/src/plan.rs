//! What a run measures: its items (a zoo model in one precision, or a user's file), what
//! every pair of an item shares once prepared, and the pairs' identity.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mobilebench_backend::{Backend, FileFormat};
use mobilebench_models::{ModelConfig, Precision};
use mobilebench_results::SummaryRow;

use crate::agreement::{self, PreparedZoo};
use crate::context::{workload_of, RunContext};
use crate::rundir::output_path;

/// One thing to measure: a zoo model in one precision, or a user's model file.
pub(crate) enum Item {
    Zoo(ModelConfig, Precision),
    /// A file and its label: its name, or its path as given where two files share a name.
    File(PathBuf, String),
}

impl Item {
    pub(crate) fn label(&self) -> String {
        match self {
            Item::Zoo(c, precision) => precision.label(&c.name()),
            Item::File(_, label) => label.clone(),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The user's files as items, each with a label of its own (the key of its rows).
pub(crate) fn file_items(files: &[String]) -> Vec<Item> {
    files
        .iter()
        .map(|f| {
            let path = PathBuf::from(f);
            let name = file_name(&path);
            let shared = files
                .iter()
                .filter(|g| file_name(Path::new(g)) == name)
                .count()
                > 1;
            let label = if shared { f.clone() } else { name };
            Item::File(path, label)
        })
        .collect()
}

fn file_format(path: &Path) -> Result<FileFormat> {
    let format = FileFormat::from_path(path).with_context(|| {
        format!(
            "model file {}: unknown format (expected .onnx or .tflite)",
            path.display()
        )
    })?;
    let meta = std::fs::metadata(path).with_context(|| format!("model file {}", path.display()))?;
    if !meta.is_file() {
        bail!("model file {}: not a file", path.display());
    }
    Ok(format)
}

/// One pair's identity, the key of its rows: the item's label (a zoo model with its
/// precision, or a file), the backend and the thread count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PairId {
    pub label: String,
    pub backend: String,
    pub threads: u32,
}

impl PairId {
    pub(crate) fn of_row(row: &SummaryRow) -> PairId {
        PairId {
            label: row.model.clone(),
            backend: row.backend.clone(),
            threads: row.thread_count(),
        }
    }
}

/// Builds what every pair of an item shares: the zoo model prepared (exported on demand),
/// or the user's file checked.
pub(crate) fn prepare_item(
    ctx: &RunContext,
    item: &Item,
    label: &str,
    backends: &[Box<dyn Backend>],
    done: &HashSet<PairId>,
) -> Result<ItemContext> {
    let m = &ctx.manifest;
    Ok(match item {
        Item::Zoo(config, precision) => ItemContext::Zoo(Box::new(PreparedZoo::new(
            *config,
            m.weight_seed,
            m.input_seed,
            workload_of(m)?.1,
            *precision,
        )?)),
        Item::File(path, _) => ItemContext::File {
            path: path.clone(),
            label: label.to_string(),
            format: file_format(path)?,
            reference: first_reference(&ctx.dir, label, backends, done),
        },
    })
}

/// Per-item state shared by its pairs.
pub(crate) enum ItemContext {
    Zoo(Box<PreparedZoo>),
    File {
        path: PathBuf,
        label: String,
        format: FileFormat,
        /// The first backend that ran this file, and its output.
        reference: Option<(String, Vec<f32>)>,
    },
}

/// On `--resume`, the reference of a file is the output of the first backend already done
/// (at any thread count: the output does not depend on it).
fn first_reference(
    dir: &Path,
    label: &str,
    backends: &[Box<dyn Backend>],
    done: &HashSet<PairId>,
) -> Option<(String, Vec<f32>)> {
    backends.iter().find_map(|b| {
        let id = done
            .iter()
            .find(|id| id.label == label && id.backend == b.name())?;
        let out = agreement::read_output(&output_path(dir, label, b.name(), id.threads)).ok()?;
        Some((b.name().to_string(), out))
    })
}

//! The report stage: markdown tables, plots, and comparisons of runs (the statistics they use
//! are `mobilebench_results::stats`, shared with the measuring side). Everything here reads results CSVs only and never re-runs anything;
//! the same CSVs give byte-identical markdown.

mod breakdown;
pub mod compare;
pub mod export;
#[cfg(feature = "plots")]
pub mod plots;
mod profile;
#[cfg(feature = "plots")]
mod profile_plot;
mod scaling;
mod tables;

#[cfg(feature = "plots")]
use std::path::Path;
use std::path::PathBuf;

use mobilebench_results::{Run, SummaryRow};

pub use mobilebench_results::format_ms;
pub use profile::{plot_stem, profile_section};
pub use scaling::{scaling_section, scaling_stem};
pub use tables::{can_win, device_table, latency_tables, model_table, stats_table};

/// How the report picks what it shows.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The backend whose latency the model table shows; `None`: the fastest per device.
    pub backend: Option<String>,
    /// The backend speed-ups are relative to.
    pub baseline: String,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            backend: None,
            baseline: "native".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plot {path}: {why}")]
    Plot { path: PathBuf, why: String },
    #[error("no TrueType font for the plots ({0}); install fonts-dejavu-core")]
    NoFont(String),
}

/// The seed's V3 columns, in its order, with the seed's labels.
pub const SEED_COLUMNS: [(&str, &str); 4] = [
    ("mobilenet_v3_small_1.0_224", "Small"),
    (
        "mobilenet_v3_small_minimalistic_1.0_224",
        "Small Minimalistic",
    ),
    ("mobilenet_v3_large_1.0_224", "Large"),
    (
        "mobilenet_v3_large_minimalistic_1.0_224",
        "Large Minimalistic",
    ),
];

/// Every summary row of the runs, in file order.
pub(crate) fn all_rows(runs: &[Run]) -> Vec<&SummaryRow> {
    runs.iter().flat_map(|r| &r.summary).collect()
}

/// Where the latencies were measured, in words: one pinned core, unless some pair ran on
/// several threads.
pub(crate) fn cores_phrase<'a>(rows: impl IntoIterator<Item = &'a SummaryRow>) -> &'static str {
    if rows.into_iter().any(|r| r.thread_count() > 1) {
        "one pinned core per thread (`(N threads)` rows ran on N)"
    } else {
        "one pinned core"
    }
}

/// The PNG among `plots` whose file stem is `stem`.
pub(crate) fn png_named<'a>(plots: &'a [PathBuf], stem: &str) -> Option<&'a PathBuf> {
    plots.iter().find(|p| {
        p.file_stem().is_some_and(|s| s == stem) && p.extension().is_some_and(|e| e == "png")
    })
}

/// Distinct values in first-seen order.
pub(crate) fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The full markdown report; `plots` are the image files to embed (relative paths).
pub fn markdown(runs: &[Run], options: &ReportOptions, plots: &[PathBuf]) -> String {
    let mut md = String::from("# mobilebench report\n\n");
    let dirs: Vec<String> = runs
        .iter()
        .map(|r| format!("`{}`", r.dir.display()))
        .collect();
    md.push_str(&format!(
        "From {}. Latencies are medians in ms on {}.\n\n",
        dirs.join(", "),
        cores_phrase(all_rows(runs))
    ));
    let emulated = distinct(
        all_rows(runs)
            .into_iter()
            .filter(|r| r.flag_list().contains(&"emulated"))
            .map(|r| r.device.as_str()),
    );
    if !emulated.is_empty() {
        md.push_str(&format!(
            "**{}: measured under qemu user emulation. Those timings mean nothing**; the rows only show that the path works and the outputs agree.\n\n",
            emulated.join(", ")
        ));
    }
    md.push_str("## Devices (MobileNet V3 at 1.0/224)\n\n");
    md.push_str(&device_table(runs));
    md.push_str("\n## Models\n\n");
    md.push_str(&model_table(runs, options));
    if !plots.is_empty() {
        md.push_str("\n## Plots\n\n");
        // The profile and scaling plots sit in their own sections.
        for p in plots.iter().filter(|p| {
            p.extension().is_some_and(|e| e == "png")
                && !p.file_stem().is_some_and(|s| {
                    let s = s.to_string_lossy();
                    s.starts_with("where_the_time_goes") || s.starts_with("scaling_")
                })
        }) {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().replace('_', " "))
                .unwrap_or_default();
            md.push_str(&format!("![{name}]({})\n\n", p.display()));
        }
    }
    let threads = scaling_section(runs, plots);
    if !threads.is_empty() {
        md.push('\n');
        md.push_str(&threads);
    }
    md.push_str("\n## Every pair\n\n");
    md.push_str(&stats_table(runs));
    let profiles = profile_section(runs, plots);
    if !profiles.is_empty() {
        md.push('\n');
        md.push_str(&profiles);
    }
    md
}

/// Writes `dir/README.md` and the plots (SVG and PNG) into `dir`.
#[cfg(feature = "plots")]
pub fn write_report(
    runs: &[Run],
    options: &ReportOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let written = plots::write_all(runs, options, dir)?;
    let relative: Vec<PathBuf> = written
        .iter()
        .filter_map(|p| p.strip_prefix(dir).ok().map(Path::to_path_buf))
        .collect();
    let readme = dir.join("README.md");
    std::fs::write(&readme, markdown(runs, options, &relative)).map_err(|source| {
        ReportError::Io {
            path: readme.clone(),
            source,
        }
    })?;
    let mut all = vec![readme];
    all.extend(written);
    Ok(all)
}

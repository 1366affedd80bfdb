//! `bench compare OLD NEW`: per pair, the change of the median of round medians, judged
//! against the between-round variation, never against the samples of one run (thousands of
//! samples of one run give a tight interval that knows nothing of how the machine drifts).
//!
//! Method: for each pair measured ok and unflagged in both runs with at least two rounds on
//! each side, Welch's t-test on the logarithms of the round medians gives a p-value; the
//! p-values of all pairs compared at once are adjusted with Holm's method; a pair is
//! `slower`/`faster` when its adjusted p is below `alpha` (0.05) and its median moved more
//! than `noise`. With one round on either side nothing measures the drift: the pair is
//! `cannot judge: one round` unless it moved more than the conservative `one_round_bound`.
//! Rows flagged emulated, software, disagrees, unpinned, freq_changed or temp_changed are
//! shown and left out of the verdict. `noisy` (the samples' CV within a run) is judged, since
//! the test already works on round medians, and the verdict says so. Differences of machine,
//! kernel, commit, build profile or timing are warnings.

use std::fmt::Write;

use mobilebench_results::{format_ms, stats, Run, SummaryRow};

/// How `bench compare` decides.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Changes of the median smaller than this fraction are never called.
    pub noise: f64,
    /// Family-wise significance level (after Holm's correction).
    pub alpha: f64,
    /// With one round on either side, the fraction a median must move to be called anyway.
    pub one_round_bound: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            noise: 0.05,
            alpha: 0.05,
            one_round_bound: 0.30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Faster,
    Slower,
    NoChange,
    /// Not judged, and why (one round, flagged rows, no samples).
    CannotJudge(String),
}

impl Verdict {
    pub fn word(&self) -> String {
        match self {
            Verdict::Faster => "faster".into(),
            Verdict::Slower => "slower".into(),
            Verdict::NoChange => "no significant change".into(),
            Verdict::CannotJudge(why) => format!("cannot judge: {why}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub device: String,
    pub model: String,
    pub backend: String,
    pub old_rounds: usize,
    pub new_rounds: usize,
    /// Medians of the round medians.
    pub old_median_ms: f64,
    pub new_median_ms: f64,
    /// new / old.
    pub ratio: f64,
    /// Holm-adjusted p-value of the t-test, where there was one.
    pub p_adjusted: Option<f64>,
    pub verdict: Verdict,
    /// Said beside the verdict: the rows were noisy.
    pub note: Option<String>,
}

/// Flags that are about the samples' spread only: judged anyway, and said.
const SPREAD_FLAGS: [&str; 1] = ["noisy"];

/// Every pair compared, and what makes the two runs hard to compare at all.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn any_slower(&self) -> bool {
        self.changes.iter().any(|c| c.verdict == Verdict::Slower)
    }
}

/// Round medians (ms) of a pair, or of its summary row when the samples are gone.
fn round_medians(run: &Run, row: &SummaryRow) -> Vec<f64> {
    match run.samples.get(&row.key()) {
        Some(s) if !s.is_empty() => s.round_medians_ms(),
        _ => row.p50_ms.into_iter().collect(),
    }
}

/// A text column of a summary row.
type Field = fn(&SummaryRow) -> &str;

/// Differences between the runs' machines and builds, one warning each.
fn warnings(old: &Run, new: &Run) -> Vec<String> {
    let fields: [(&str, Field); 5] = [
        ("CPU", |r| &r.cpu_brand),
        ("kernel", |r| &r.kernel),
        ("harness commit", |r| &r.harness_commit),
        ("build profile", |r| &r.build_profile),
        ("timing", |r| &r.timing),
    ];
    let values = |run: &Run, f: Field| {
        let mut v: Vec<String> = run
            .summary
            .iter()
            .filter(|r| r.is_ok())
            .map(|r| f(r).to_string())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut out = Vec::new();
    for (what, f) in fields {
        let (a, b) = (values(old, f), values(new, f));
        if !a.is_empty() && !b.is_empty() && a != b {
            out.push(format!(
                "the runs differ in {what}: {} (old) vs {} (new)",
                a.join(", "),
                b.join(", ")
            ));
        }
    }
    out
}

/// Compares every pair (matched on device, model and backend) present in both runs.
pub fn compare(old: &Run, new: &Run, options: &CompareOptions) -> Comparison {
    let mut changes = Vec::new();
    let mut tested: Vec<(usize, f64)> = Vec::new();
    for row in &new.summary {
        let Some(before) = old.summary.iter().find(|r| r.key() == row.key()) else {
            continue;
        };
        if !row.is_ok() || !before.is_ok() {
            continue;
        }
        let (a, b) = (round_medians(old, before), round_medians(new, row));
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let (old_median, new_median) = (stats::median(&a), stats::median(&b));
        let ratio = new_median / old_median;
        let flags_of = |spread: bool| -> Vec<String> {
            [("old", before), ("new", row)]
                .iter()
                .filter_map(|(side, r)| {
                    let f: Vec<&str> = r
                        .flag_list()
                        .into_iter()
                        .filter(|f| SPREAD_FLAGS.contains(f) == spread)
                        .collect();
                    (!f.is_empty()).then(|| format!("{} in {side}", f.join(", ")))
                })
                .collect()
        };
        let flags = flags_of(false);
        let noisy = flags_of(true);
        let verdict = if !flags.is_empty() {
            Verdict::CannotJudge(format!("flagged {}", flags.join("; ")))
        } else if let Some(p) = stats::welch_log_p(&a, &b) {
            tested.push((changes.len(), p));
            Verdict::NoChange // decided below, once every p-value is known
        } else if ratio > 1.0 + options.one_round_bound {
            Verdict::Slower
        } else if ratio < 1.0 / (1.0 + options.one_round_bound) {
            Verdict::Faster
        } else {
            Verdict::CannotJudge("one round".into())
        };
        changes.push(Change {
            device: row.device.clone(),
            model: row.model.clone(),
            backend: row.backend.clone(),
            old_rounds: a.len(),
            new_rounds: b.len(),
            old_median_ms: old_median,
            new_median_ms: new_median,
            ratio,
            p_adjusted: None,
            verdict,
            note: (!noisy.is_empty()).then(|| noisy.join("; ")),
        });
    }
    let p: Vec<f64> = tested.iter().map(|t| t.1).collect();
    for ((i, _), adjusted) in tested.iter().zip(stats::holm_adjust(&p)) {
        let c = &mut changes[*i];
        c.p_adjusted = Some(adjusted);
        c.verdict = if adjusted >= options.alpha {
            Verdict::NoChange
        } else if c.ratio > 1.0 + options.noise {
            Verdict::Slower
        } else if c.ratio < 1.0 - options.noise {
            Verdict::Faster
        } else {
            Verdict::NoChange
        };
    }
    Comparison {
        changes,
        warnings: warnings(old, new),
    }
}

fn percent(r: f64) -> String {
    format!("{:+.1}%", (r - 1.0) * 100.0)
}

/// The comparison as markdown: warnings first, then one row per pair and how it was judged.
pub fn markdown(comparison: &Comparison, options: &CompareOptions) -> String {
    let mut out = String::new();
    for w in &comparison.warnings {
        let _ = writeln!(
            out,
            "**WARNING: {w}.** Differences may come from that, not from the code.\n"
        );
    }
    let _ = writeln!(
        out,
        "Medians are medians of round medians. A pair is called slower or faster when Welch's t-test on the log round medians, Holm-corrected over the {} pairs tested, gives p < {} and the median moved more than {:.0}%; with one round on either side only a move beyond {:.0}% is called.\n",
        comparison.changes.iter().filter(|c| c.p_adjusted.is_some()).count(),
        options.alpha,
        options.noise * 100.0,
        options.one_round_bound * 100.0
    );
    out.push_str(
        "| device | model | backend | rounds (old/new) | old median (ms) | new median (ms) | change | p (Holm) | verdict |\n\
         |---|---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for c in &comparison.changes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}/{} | {} | {} | {} | {} | {} |",
            c.device,
            c.model,
            c.backend,
            c.old_rounds,
            c.new_rounds,
            format_ms(c.old_median_ms),
            format_ms(c.new_median_ms),
            percent(c.ratio),
            c.p_adjusted.map_or("–".into(), |p| format!("{p:.3}")),
            match &c.note {
                Some(note) => format!("{} ({note})", c.verdict.word()),
                None => c.verdict.word(),
            }
        );
    }
    out
}

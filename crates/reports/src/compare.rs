//! `bench compare OLD NEW`: for each pair in both runs, the change of the median with a
//! percentile-bootstrap 95% CI of the ratio new/old (each run resampled independently,
//! seeded) and a verdict. A change is significant when the CI excludes 1 and the median moved
//! more than the noise threshold (as criterion does: tiny but consistent shifts are noise).

use std::fmt::Write;

use mobilebench_results::Run;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::stats::percentile;
use crate::tables::format_ms;

const RESAMPLES: usize = 2000;
const SEED: u64 = 0xc0de;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Faster,
    Slower,
    NoChange,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::NoChange => "no significant change",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub device: String,
    pub model: String,
    pub backend: String,
    pub old_median_ms: f64,
    pub new_median_ms: f64,
    /// new / old.
    pub ratio: f64,
    pub ci: (f64, f64),
    pub verdict: Verdict,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.5)
}

fn ms(samples: &[u64]) -> Vec<f64> {
    samples.iter().map(|&ns| ns as f64 / 1e6).collect()
}

/// Compares every pair (matched on device, model and backend) measured ok in both runs.
pub fn compare(old: &Run, new: &Run, noise: f64) -> Vec<Change> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut out = Vec::new();
    for row in new.summary.iter().filter(|r| r.is_ok()) {
        let key = row.key();
        let (Some(a), Some(b)) = (old.samples.get(&key), new.samples.get(&key)) else {
            continue;
        };
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let (a, b) = (ms(a), ms(b));
        let (old_median, new_median) = (median(&mut a.clone()), median(&mut b.clone()));
        let mut ra = vec![0.0; a.len()];
        let mut rb = vec![0.0; b.len()];
        let mut ratios: Vec<f64> = (0..RESAMPLES)
            .map(|_| {
                ra.iter_mut()
                    .for_each(|x| *x = a[rng.random_range(0..a.len())]);
                rb.iter_mut()
                    .for_each(|x| *x = b[rng.random_range(0..b.len())]);
                median(&mut rb) / median(&mut ra)
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let ci = (percentile(&ratios, 0.025), percentile(&ratios, 0.975));
        let ratio = new_median / old_median;
        let verdict = if ci.0 > 1.0 && ratio > 1.0 + noise {
            Verdict::Slower
        } else if ci.1 < 1.0 && ratio < 1.0 - noise {
            Verdict::Faster
        } else {
            Verdict::NoChange
        };
        out.push(Change {
            device: key.device,
            model: key.model,
            backend: key.backend,
            old_median_ms: old_median,
            new_median_ms: new_median,
            ratio,
            ci,
            verdict,
        });
    }
    out
}

fn percent(r: f64) -> String {
    format!("{:+.1}%", (r - 1.0) * 100.0)
}

pub fn markdown(changes: &[Change]) -> String {
    let mut out = String::from(
        "| device | model | backend | old median (ms) | new median (ms) | change | 95% CI | verdict |\n\
         |---|---|---|---:|---:|---:|---:|---|\n",
    );
    for c in changes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | [{}, {}] | {} |",
            c.device,
            c.model,
            c.backend,
            format_ms(c.old_median_ms),
            format_ms(c.new_median_ms),
            percent(c.ratio),
            percent(c.ci.0),
            percent(c.ci.1),
            c.verdict.word()
        );
    }
    out
}

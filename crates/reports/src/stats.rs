//! Statistics of one pair's timed runs.
//!
//! Percentiles interpolate linearly between order statistics (Hyndman & Fan type 7, numpy's
//! default). The median's 95% confidence interval is a percentile bootstrap (2000 resamples,
//! seeded, so the same samples always give the same interval). Outliers follow Tukey's fences.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BOOTSTRAP_RESAMPLES: usize = 2000;
const BOOTSTRAP_SEED: u64 = 0xb007;

/// All values in milliseconds except `cv` (a ratio) and the outlier counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub cv: f64,
    pub median_ci: (f64, f64),
    pub outliers_mild: u32,
    pub outliers_severe: u32,
}

/// Type-7 percentile of sorted data, `q` in [0, 1].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty());
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Median of unsorted data, reordering it.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, &mut upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = v[..mid].iter().copied().fold(f64::MIN, f64::max);
        (lower + upper) / 2.0
    }
}

/// Percentile-bootstrap 95% interval of the median.
pub fn bootstrap_median_ci(data: &[f64]) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut resample = vec![0.0; data.len()];
    let mut medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for r in resample.iter_mut() {
                *r = data[rng.random_range(0..data.len())];
            }
            median_in_place(&mut resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (percentile(&medians, 0.025), percentile(&medians, 0.975))
}

pub fn summarize_ns(samples_ns: &[u64]) -> Option<Summary> {
    if samples_ns.is_empty() {
        return None;
    }
    let ms: Vec<f64> = samples_ns.iter().map(|&ns| ns as f64 / 1e6).collect();
    Some(summarize(&ms))
}

pub fn summarize(data: &[f64]) -> Summary {
    let n = data.len() as f64;
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = data.iter().sum::<f64>() / n;
    let var = if data.len() > 1 {
        data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let std = var.sqrt();
    let (q1, q3) = (percentile(&sorted, 0.25), percentile(&sorted, 0.75));
    let iqr = q3 - q1;
    let (mut mild, mut severe) = (0, 0);
    for &x in data {
        let distance = if x < q1 { q1 - x } else { x - q3 };
        if distance > 3.0 * iqr {
            severe += 1;
        } else if distance > 1.5 * iqr {
            mild += 1;
        }
    }
    Summary {
        mean,
        std,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        p50: percentile(&sorted, 0.5),
        p90: percentile(&sorted, 0.9),
        p95: percentile(&sorted, 0.95),
        p99: percentile(&sorted, 0.99),
        cv: if mean > 0.0 { std / mean } else { 0.0 },
        median_ci: bootstrap_median_ci(data),
        outliers_mild: mild,
        outliers_severe: severe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        // numpy.percentile([1,2,3,4], [50, 90, 25]) = 2.5, 3.7, 1.75
        assert_eq!(percentile(&s, 0.5), 2.5);
        assert!((percentile(&s, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&s, 0.25), 1.75);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn moments_and_outliers() {
        // 1..=100 plus two far points: q1 = 26.25, q3 = 76.75, IQR = 50.5, so the mild fence
        // is 152.5 and the severe one 228.25.
        let mut d: Vec<f64> = (1..=100).map(f64::from).collect();
        d.push(200.0); // mild
        d.push(400.0); // severe
        let s = summarize(&d);
        assert_eq!((s.outliers_mild, s.outliers_severe), (1, 1));
        assert_eq!((s.min, s.max), (1.0, 400.0));
        let plain = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(plain.mean, 5.0);
        assert!((plain.std - 2.138089935).abs() < 1e-6); // sample std (n - 1)
        assert!((plain.cv - plain.std / 5.0).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_interval_brackets_the_median_and_shrinks_with_n() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let small: Vec<f64> = (0..50).map(|_| 10.0 + rng.random_range(0.0..1.0)).collect();
        let large: Vec<f64> = (0..2000)
            .map(|_| 10.0 + rng.random_range(0.0..1.0))
            .collect();
        let (s, l) = (summarize(&small), summarize(&large));
        assert!(s.median_ci.0 <= s.p50 && s.p50 <= s.median_ci.1);
        assert!(l.median_ci.0 <= l.p50 && l.p50 <= l.median_ci.1);
        assert!(l.median_ci.1 - l.median_ci.0 < s.median_ci.1 - s.median_ci.0);
        assert_eq!(summarize(&small).median_ci, s.median_ci, "deterministic");
    }

    #[test]
    fn even_median() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place(&mut v), 2.5);
    }
}

//! Statistics, one definition of each for the measuring and the reporting side.
//!
//! Percentiles interpolate linearly between order statistics (Hyndman & Fan type 7, numpy's
//! default). The median's 95% confidence interval is a percentile bootstrap (2000 resamples,
//! seeded, so the same samples always give the same interval). Outliers follow Tukey's fences.
//! Two sets of round medians are compared with Welch's t-test on their logarithms, and many
//! such tests at once are corrected with Holm's step-down method.

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

/// Formats a latency in ms: one decimal from 100 ms, two from 1 ms, three significant
/// digits below (so a 30 ns overhead reads 0.0000300, not 0.0000).
pub fn format_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else if ms > 0.0 {
        let decimals = (2.0 - ms.log10().floor()) as usize;
        format!("{ms:.decimals$}")
    } else {
        "0".into()
    }
}

/// The median of latencies given in ns, in ms.
pub fn median_ms(samples_ns: &[u64]) -> f64 {
    let mut ms: Vec<f64> = samples_ns.iter().map(|&ns| ns as f64 / 1e6).collect();
    ms.sort_by(f64::total_cmp);
    percentile(&ms, 0.5)
}

/// The median of unsorted data (NaN for none).
pub fn median(data: &[f64]) -> f64 {
    if data.is_empty() {
        return f64::NAN;
    }
    let mut v = data.to_vec();
    median_in_place(&mut v)
}

/// Mean and sample standard deviation (n − 1) over mean; `None` for fewer than two values.
pub fn coefficient_of_variation(data: &[f64]) -> Option<f64> {
    if data.len() < 2 {
        return None;
    }
    let n = data.len() as f64;
    let mean = data.iter().sum::<f64>() / n;
    let var = data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean > 0.0).then(|| var.sqrt() / mean)
}

/// Welch's two-sided t-test of "same location" for two samples of positive values (round
/// medians), on their logarithms so that a change is a ratio. `None` when either side has
/// fewer than two values. Two samples without any spread give p = 1 if equal, else 0.
pub fn welch_log_p(old: &[f64], new: &[f64]) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if old.len() < 2 || new.len() < 2 {
        return None;
    }
    let moments = |v: &[f64]| {
        let logs: Vec<f64> = v.iter().map(|x| x.ln()).collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var / n, n)
    };
    let (ma, va, na) = moments(old);
    let (mb, vb, nb) = moments(new);
    let se2 = va + vb;
    if se2 == 0.0 {
        return Some(if ma == mb { 1.0 } else { 0.0 });
    }
    let t = (mb - ma) / se2.sqrt();
    // Welch–Satterthwaite degrees of freedom.
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(2.0 * (1.0 - dist.cdf(t.abs())))
}

/// Holm's step-down adjustment of p-values for testing them all at once: each adjusted
/// value is compared with the plain level and the family-wise error stays below it.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
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
    fn welch_matches_a_textbook_value() {
        // Equal variances, n = 3 each: t = (mean_b - mean_a) / sqrt(2 s² / 3). With logs of
        // e^{0,1,2} and e^{3,4,5}: means 1 and 4, s² = 1, t = 3 / sqrt(2/3) = 3.674, df = 4;
        // scipy.stats.ttest_ind(..., equal_var=False) gives p = 0.02131.
        let a: Vec<f64> = [0.0f64, 1.0, 2.0].iter().map(|x| x.exp()).collect();
        let b: Vec<f64> = [3.0f64, 4.0, 5.0].iter().map(|x| x.exp()).collect();
        let p = welch_log_p(&a, &b).unwrap();
        assert!((p - 0.02131).abs() < 1e-4, "{p}");
        assert_eq!(welch_log_p(&[1.0], &b), None);
        assert_eq!(welch_log_p(&[2.0, 2.0], &[2.0, 2.0]), Some(1.0));
    }

    #[test]
    fn holm_multiplies_by_rank_and_stays_monotone() {
        // m = 3: sorted 0.01, 0.02, 0.04 → 0.03, 0.04, 0.04 (monotone, capped at 1).
        assert_eq!(holm_adjust(&[0.04, 0.01, 0.02]), vec![0.04, 0.03, 0.04]);
        assert_eq!(holm_adjust(&[0.9, 0.8]), vec![1.0, 1.0]);
    }

    #[test]
    fn round_spread() {
        assert_eq!(coefficient_of_variation(&[1.0]), None);
        let cv = coefficient_of_variation(&[9.0, 10.0, 11.0]).unwrap();
        assert!((cv - 0.1).abs() < 1e-12);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_ms(&[2_000_000, 1_000_000]), 1.5);
    }

    #[test]
    fn latency_formatting() {
        assert_eq!(format_ms(123.456), "123.5");
        assert_eq!(format_ms(4.6507), "4.65");
        assert_eq!(format_ms(0.5), "0.500");
        assert_eq!(format_ms(0.00003), "0.0000300");
        assert_eq!(format_ms(0.0), "0");
    }

    #[test]
    fn even_median() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place(&mut v), 2.5);
    }
}

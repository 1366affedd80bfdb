//! How two models' logits agree, measured on the same inputs (labelled agreement, never
//! accuracy: no labels exist here).

/// How an int8 model's logits agree with its float model's over several inputs: labelled
/// agreement, never accuracy (no labels exist here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub inputs: usize,
    /// Inputs on which both models' largest logit is the same class.
    pub top1_agreement: f64,
    /// Cosine similarity of the two logit vectors: the mean and the smallest over the inputs.
    pub mean_cosine: f64,
    pub min_cosine: f64,
}

impl Agreement {
    /// `pairs`: (float logits, int8 logits) per input.
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a [f32], &'a [f32])>) -> Agreement {
        let (mut n, mut same, mut sum, mut min) = (0usize, 0usize, 0f64, f64::MAX);
        for (float, int8) in pairs {
            n += 1;
            same += usize::from(argmax(float) == argmax(int8));
            let c = cosine(float, int8);
            sum += c;
            min = min.min(c);
        }
        let n_f = n.max(1) as f64;
        Agreement {
            inputs: n,
            top1_agreement: same as f64 / n_f,
            mean_cosine: sum / n_f,
            min_cosine: if n == 0 { f64::NAN } else { min },
        }
    }
}

pub fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
        .0
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_counts_top1_and_cosine() {
        let a = [1.0, 3.0, 2.0];
        let b = [1.0, 2.0, 3.0];
        let same = Agreement::of([(&a[..], &a[..])]);
        assert_eq!(same.top1_agreement, 1.0);
        assert!((same.mean_cosine - 1.0).abs() < 1e-12);
        let mixed = Agreement::of([(&a[..], &a[..]), (&a[..], &b[..])]);
        assert_eq!((mixed.inputs, mixed.top1_agreement), (2, 0.5));
        assert!(mixed.min_cosine < 1.0 && mixed.min_cosine > 0.9);
        assert_eq!(argmax(&b), 2);
    }
}

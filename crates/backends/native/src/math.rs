//! Transcendental functions in branch-free, straight-line f32 code, so that the compiler
//! vectorises the loops that call them (softmax's exp, GELU's erf): no table lookups, no
//! `floor` (baseline x86-64 lacks it), no branches.

/// Adding 1.5·2^23 to a float below 2^22 in magnitude leaves it rounded to an integer in the
/// low mantissa bits; subtracting it again gives round(t) (no `floor`/`round` instruction).
pub const ROUND: f32 = 12_582_912.0;

/// `e^f` for |f| ≤ ln 2 / 2: Taylor to degree 6 (remainder below 2e-7 relative).
pub const EXP_TAYLOR: [f32; 7] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
];

/// Abramowitz & Stegun 7.1.26: `erfc(z) ≈ t·(a1 + a2·t + … + a5·t⁴)·e^{−z²}` with
/// `t = 1/(1 + p·z)`, z ≥ 0, |error| ≤ 1.5e-7.
pub const ERFC_P: f32 = 0.327_591_1;
pub const ERFC_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_8,
    -1.453_152,
    1.061_405_4,
];

/// `e^x` for `x ≤ 0`: `2^i · e^r` after `x = i·ln 2 + r`, `|r| ≤ ln 2 / 2`, `i` rounded by
/// [`ROUND`], `e^r` by [`EXP_TAYLOR`], clamped at 2^−125.
#[inline(always)]
pub fn exp_non_positive(x: f32) -> f32 {
    let t = (x * std::f32::consts::LOG2_E).max(-125.0);
    let shifted = t + ROUND;
    let i = shifted - ROUND;
    let f = (t - i) * std::f32::consts::LN_2;
    let p = EXP_TAYLOR[..6]
        .iter()
        .rev()
        .fold(EXP_TAYLOR[6], |acc, &c| c + acc * f);
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32) + 127;
    f32::from_bits((exponent << 23) as u32) * p
}

/// The exact-form GELU, `x · Φ(x)`, to about 5e-7 absolute, written without a branch as
/// `max(x, 0) − |x|·erfc(|x|/√2)/2` (both sides of zero: `x·Φ(x) = x − x·erfc/2` above,
/// `x·erfc/2` below), with erfc by [`ERFC_A`]. The negative tail keeps its relative accuracy
/// since nothing cancels there. [`crate::simd::gelu`] is the same on registers.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let abs = x.abs();
    let z = abs * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + ERFC_P * z);
    let poly = t * ERFC_A[..4]
        .iter()
        .rev()
        .fold(ERFC_A[4], |acc, &c| c + acc * t);
    let erfc = poly * exp_non_positive(-z * z);
    x.max(0.0) - 0.5 * abs * erfc
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilebench_models::ir::Activation;

    #[test]
    fn the_vectorisable_exp_matches_std_on_a_softmax_range() {
        let worst = |lo: f32| {
            (0..=20_000)
                .map(|i| lo * i as f32 / 20_000.0)
                .map(|x| (exp_non_positive(x) - x.exp()).abs() / x.exp())
                .fold(0f32, f32::max)
        };
        // Taylor to degree 6 on |r| ≤ ln 2 / 2 leaves 1.2e-7; the reduction t = x·log2 e
        // rounds t by half an ulp, which grows with |x|: about 5e-7 relative down to −10,
        // 4e-6 at −80 (on weights below e^−80 of the row's largest, which the sum ignores).
        assert!(worst(-10.0) < 1e-6, "worst relative error {}", worst(-10.0));
        assert!(worst(-80.0) < 1e-5, "worst relative error {}", worst(-80.0));
        assert!(exp_non_positive(-200.0) < 1e-37);
    }

    #[test]
    fn gelu_matches_the_exact_reference() {
        // Against the reference's f64 erfc form on [−10, 10]: measured 4.2e-7 absolute (A&S's
        // 1.5e-7 on erfc times |x|/2, plus f32 rounding). A&S bounds the absolute error, so
        // on the negative side, where x·Φ(x) shrinks, the relative error grows as erfc falls:
        // measured below 1e-4 down to −3 (erfc 2.7e-3) and 4.7e-4 down to −4 (erfc 6e-5).
        let xs = (0..=200_000).map(|i| -10.0 + 20.0 * i as f32 / 200_000.0);
        let (mut abs, mut rel3, mut rel4) = (0f32, 0f32, 0f32);
        for x in xs {
            let (got, want) = (gelu(x), Activation::Gelu.apply(x));
            abs = abs.max((got - want).abs());
            let rel = (got - want).abs() / want.abs();
            if (-3.0..-1e-3).contains(&x) {
                rel3 = rel3.max(rel);
            } else if (-4.0..-3.0).contains(&x) {
                rel4 = rel4.max(rel);
            }
        }
        assert!(abs < 6e-7, "worst absolute error {abs}");
        assert!(rel3 < 1e-4, "worst relative error on [-3, 0) {rel3}");
        assert!(rel4 < 1e-3, "worst relative error on [-4, -3) {rel4}");
        assert_eq!(gelu(0.0), 0.0);
    }
}

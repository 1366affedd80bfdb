//! The deterministic input every backend receives: a smooth image-like pattern plus noise,
//! in [-1, 1] (MobileNet's preprocessing range), NHWC.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ir::Shape;

/// The default input seed.
pub const DEFAULT_INPUT_SEED: u64 = 42;

pub fn synthetic_input(shape: Shape, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(shape.len());
    for y in 0..shape.h {
        for x in 0..shape.w {
            let (u, v) = (x as f32 / shape.w as f32, y as f32 / shape.h as f32);
            for c in 0..shape.c {
                let pattern = (6.0 * u + 4.0 * v + c as f32).sin() * (3.0 * v - 2.0 * u).cos();
                let noise: f32 = rng.random_range(-1.0..1.0);
                out.push((0.7 * pattern + 0.3 * noise).clamp(-1.0, 1.0));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let s = Shape::new(8, 8, 3);
        let a = synthetic_input(s, 1);
        assert_eq!(a, synthetic_input(s, 1));
        assert_ne!(a, synthetic_input(s, 2));
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}

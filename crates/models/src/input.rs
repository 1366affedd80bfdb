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

/// The same image for a model file's declared input shape: NHWC `[1, H, W, C]` (C ≤ 4) is
/// exactly [`synthetic_input`]; NCHW `[1, C, H, W]` is that image transposed; a batch
/// `[N, H, W, C]` holds the images of seeds `seed..seed + N` (the first is the batch-1
/// input); any other shape gets the image's values in order. Every backend of a file sees
/// the same values.
pub fn synthetic_for_shape(shape: &[usize], seed: u64) -> Vec<f32> {
    let len: usize = shape.iter().product();
    match *shape {
        [1, h, w, c] if c <= 4 => synthetic_input(Shape::new(h, w, c), seed),
        [n, h, w, c] if c <= 4 && n > 1 => (0..n as u64)
            .flat_map(|i| synthetic_input(Shape::new(h, w, c), seed + i))
            .collect(),
        [1, c, h, w] if c <= 4 => {
            let nhwc = synthetic_input(Shape::new(h, w, c), seed);
            let mut out = vec![0.0; len];
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        out[(ch * h + y) * w + x] = nhwc[(y * w + x) * c + ch];
                    }
                }
            }
            out
        }
        _ => {
            let side = (len as f64).sqrt().ceil() as usize;
            let mut v = synthetic_input(Shape::new(side.max(1), side.max(1), 1), seed);
            v.truncate(len);
            v
        }
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    #[test]
    fn layouts_hold_the_same_image() {
        let nhwc = synthetic_for_shape(&[1, 5, 7, 3], 9);
        assert_eq!(nhwc, synthetic_input(Shape::new(5, 7, 3), 9));
        let nchw = synthetic_for_shape(&[1, 3, 5, 7], 9);
        // pixel (y=2, x=4), channel 1 in both layouts
        assert_eq!(nchw[(5 + 2) * 7 + 4], nhwc[(2 * 7 + 4) * 3 + 1]);
        assert_eq!(synthetic_for_shape(&[2, 10], 1).len(), 20);
        let batch = synthetic_for_shape(&[3, 5, 7, 3], 9);
        assert_eq!(batch[..nhwc.len()], nhwc[..]);
        assert_eq!(
            batch[2 * nhwc.len()..],
            synthetic_input(Shape::new(5, 7, 3), 11)[..]
        );
    }
}

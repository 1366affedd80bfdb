//! Float buffers that start on a cache line. A large `Vec<f32>` comes from `mmap` with the
//! allocator's 16-byte header in front, so every row of activations or packed weights would
//! start 16 bytes into a line and a full-register load would straddle two lines (every
//! 64-byte AVX-512 load, every other 32-byte AVX2 one).

/// One cache line of floats; a `Vec` of them is 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// `len` zero-initialised floats starting on a 64-byte boundary.
#[derive(Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    pub fn zeros(len: usize) -> AlignedVec {
        AlignedVec {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }
}

impl std::ops::Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is 16 f32 with no padding (`repr(C)`, size 64), so the lines are
        // `16 · lines.len() ≥ len` initialised, contiguous floats.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_and_holds_len_zeros() {
        for len in [0, 1, 15, 16, 17, 100_000] {
            let mut v = AlignedVec::zeros(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0);
            assert!(v.iter().all(|&x| x == 0.0));
            if len > 0 {
                v[len - 1] = 1.0;
                assert_eq!(v[len - 1], 1.0);
            }
        }
    }
}

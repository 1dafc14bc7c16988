//! A float buffer whose first element sits on a 64-byte boundary.
//!
//! The kernels stream their B operands (packed weights, gate-gradient panels) one
//! vector per load. A `Vec<f32>` from the system allocator starts 16 bytes past a
//! 64-byte line for large sizes, so with AVX-512 every 64-byte load spans two cache
//! lines; that cost the step kernel 8-14% per core here (`step_gflops`, aligned against
//! unaligned panels). Panels are whole multiples of 64 bytes for every ISA, so aligning
//! the start aligns every panel row.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Floats per 64-byte line.
const LINE: usize = 16;

/// A growable `[f32]` aligned to 64 bytes (contents zero-initialised).
pub(crate) struct AlignedVec {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedVec {
    /// `n` zeros.
    pub fn zeroed(n: usize) -> Self {
        let buf = vec![0.0; n + LINE];
        let off = buf.as_ptr().align_offset(64).min(LINE);
        AlignedVec { buf, off, len: n }
    }

    /// A copy of `s`.
    pub fn from_slice(s: &[f32]) -> Self {
        let mut v = AlignedVec::zeroed(s.len());
        v.copy_from_slice(s);
        v
    }

    /// Grows to at least `n` elements (allocates only when the size is new; the old
    /// contents are not kept).
    pub fn grow(&mut self, n: usize) {
        if self.len < n {
            *self = AlignedVec::zeroed(n);
        }
    }
}

impl Default for AlignedVec {
    fn default() -> Self {
        AlignedVec::zeroed(0)
    }
}

impl Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

impl Clone for AlignedVec {
    // A derived clone would keep `off`, which is only right for the original allocation.
    fn clone(&self) -> Self {
        AlignedVec::from_slice(self)
    }
}

impl fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedVec")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_keeps_its_contents() {
        for n in [0, 1, 15, 16, 17, 1000, 300_000] {
            let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let v = AlignedVec::from_slice(&src);
            assert_eq!(v.as_ptr() as usize % 64, 0, "n = {n}");
            assert_eq!(&v[..], &src[..]);
            let c = v.clone();
            assert_eq!(c.as_ptr() as usize % 64, 0, "clone, n = {n}");
            assert_eq!(&c[..], &src[..]);
        }
        let mut g = AlignedVec::default();
        g.grow(100);
        assert_eq!((g.len(), g.as_ptr() as usize % 64), (100, 0));
        g.grow(50);
        assert_eq!(g.len(), 100, "grow never shrinks");
    }
}

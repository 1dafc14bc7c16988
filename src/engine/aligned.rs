//! A float buffer whose first element sits on a 64-byte boundary.
//!
//! The kernels stream their B operands (packed weights, gate-gradient panels) one
//! vector per load. A `Vec<f32>` from the system allocator starts 16 bytes past a
//! 64-byte line for large sizes, so with AVX-512 every 64-byte load spans two cache
//! lines; that cost the step kernel 8-14% per core here (`step_gflops`, aligned against
//! unaligned panels). Panels are whole multiples of 64 bytes for every ISA, so aligning
//! the start aligns every panel row.
//!
//! Buffers of `HUGE_PAGES_FROM` bytes or more (4 MiB: the packed weights of large
//! layers, a forward's gathered inputs, projections and packed outputs, the saved gates
//! and the gate gradients of a training batch) start on a 2 MiB boundary and are backed
//! by huge pages where Linux grants them (see the constant for the measurements).
//!
//! [`grow`] does the same for the plain `Vec`s the engine keeps.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::plan::HUGE_PAGES_FROM;

/// Floats per 64-byte line.
const LINE: usize = 16;
/// Bytes of a huge page (x86_64 and aarch64 Linux with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;
const HUGE_FLOATS: usize = HUGE_PAGE / std::mem::size_of::<f32>();
/// Buffers of this many bytes or more start on a huge page and ask for huge pages.
const HUGE_FROM: usize = HUGE_PAGES_FROM;

/// Asks Linux to back the whole huge pages of `s` with 2 MiB pages (transparent huge
/// pages in `madvise` mode, as on this machine, give them only on request). A hint: it
/// changes no byte, and a refusal leaves 4 KiB pages.
fn advise_huge(s: &[f32]) {
    #[cfg(target_os = "linux")]
    {
        let bytes = std::mem::size_of_val(s) / HUGE_PAGE * HUGE_PAGE;
        if bytes > 0 {
            // SAFETY: the range is inside `s`, which is borrowed for the call;
            // MADV_HUGEPAGE changes how the kernel backs the pages, never their contents.
            unsafe {
                libc::madvise(s.as_ptr() as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = s;
}

/// A growable `[f32]` aligned to 64 bytes (contents zero-initialised).
pub(crate) struct AlignedVec {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedVec {
    /// `n` zeros.
    pub fn zeroed(n: usize) -> Self {
        if n * std::mem::size_of::<f32>() >= HUGE_FROM {
            // On a 2 MiB boundary, and (Linux) asked to be backed by 2 MiB pages. An
            // allocation this large is normally a fresh mapping whose pages nobody has
            // touched yet, so they are faulted in after the advice; where it is not, the
            // advice still lets the kernel collapse them later.
            let buf = vec![0.0; n + HUGE_FLOATS];
            let off = buf.as_ptr().align_offset(HUGE_PAGE).min(HUGE_FLOATS);
            advise_huge(&buf[off..off + n]);
            return AlignedVec { buf, off, len: n };
        }
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

/// Grows `v` to at least `n` elements (allocates only the first time a size is seen).
pub(crate) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
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

    #[test]
    fn a_large_buffer_starts_on_a_huge_page_and_is_zero() {
        let n = HUGE_FROM / 4 + 12_345;
        let v = AlignedVec::zeroed(n);
        assert_eq!(v.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|&x| x == 0.0));
        let src: Vec<f32> = (0..n).map(|i| (i % 977) as f32).collect();
        let c = AlignedVec::from_slice(&src).clone();
        assert_eq!(c.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(c[..] == src[..]);
    }
}

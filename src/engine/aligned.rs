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
//! Every size comes from a caller's batch and lengths, so allocation is fallible here
//! (see `model::alloc`, which grows the plain `Vec`s the engine keeps).

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::plan::HUGE_PAGES_FROM;
use crate::model::alloc::{out_of_memory, reserve_for};
use crate::model::error::Result;

/// Floats per 64-byte line.
const LINE: usize = 16;
/// Bytes of a huge page (x86_64 and aarch64 Linux with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;
const HUGE_FLOATS: usize = HUGE_PAGE / std::mem::size_of::<f32>();
/// Buffers of this many bytes or more start on a huge page and ask for huge pages.
const HUGE_FROM: usize = HUGE_PAGES_FROM;

/// Asks Linux to back the whole huge pages of the `len` floats at `ptr` with 2 MiB pages
/// (transparent huge pages in `madvise` mode, as on this machine, give them only on
/// request). A hint: it changes no byte, and a refusal leaves 4 KiB pages.
fn advise_huge(ptr: *const f32, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let bytes = len * std::mem::size_of::<f32>() / HUGE_PAGE * HUGE_PAGE;
        if bytes > 0 {
            // SAFETY: the caller passes a range inside one live allocation it owns;
            // MADV_HUGEPAGE changes how the kernel backs the pages, never their contents,
            // and reads none of them (they may be uninitialised).
            unsafe {
                libc::madvise(ptr as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// A growable `[f32]` aligned to 64 bytes (contents zero-initialised).
#[derive(Default)]
pub(crate) struct AlignedVec {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedVec {
    /// `n` zeros; [`Error::OutOfMemory`](crate::Error::OutOfMemory) naming `buffer` when
    /// they cannot be allocated.
    pub fn zeroed(n: usize, buffer: &str) -> Result<Self> {
        let huge = n.saturating_mul(std::mem::size_of::<f32>()) >= HUGE_FROM;
        let (pad, align) = if huge {
            (HUGE_FLOATS, HUGE_PAGE)
        } else {
            (LINE, 64)
        };
        let total = n
            .checked_add(pad)
            .ok_or_else(|| out_of_memory::<f32>(buffer, n))?;
        let mut buf: Vec<f32> = Vec::new();
        reserve_for(&mut buf, total, buffer)?;
        let off = buf.as_ptr().align_offset(align).min(pad);
        if huge {
            // On a 2 MiB boundary, and (Linux) asked to be backed by 2 MiB pages before
            // the zeros below touch them: an allocation this large is a fresh mapping, so
            // its pages are faulted in after the advice.
            // `off + n <= total`, the capacity just reserved.
            advise_huge(buf.as_ptr().wrapping_add(off), n);
        }
        buf.resize(total, 0.0);
        Ok(AlignedVec { buf, off, len: n })
    }

    /// A copy of `s`.
    pub fn from_slice(s: &[f32]) -> Self {
        // A copy of a buffer that exists: its size was allocated once already.
        let mut v = AlignedVec::zeroed(s.len(), "copy").unwrap_or_else(|e| panic!("{e}"));
        v.copy_from_slice(s);
        v
    }

    /// Grows to at least `n` elements (allocates only when the size is new; the old
    /// contents are not kept). On error it is unchanged.
    pub fn grow(&mut self, n: usize, buffer: &str) -> Result<()> {
        if self.len < n {
            *self = AlignedVec::zeroed(n, buffer)?;
        }
        Ok(())
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
        g.grow(100, "g").unwrap();
        assert_eq!((g.len(), g.as_ptr() as usize % 64), (100, 0));
        g.grow(50, "g").unwrap();
        assert_eq!(g.len(), 100, "grow never shrinks");
        let e = g.grow(usize::MAX / 8, "panels").unwrap_err();
        assert!(e.to_string().contains("`panels`"), "{e}");
        assert_eq!(
            (g.len(), g.as_ptr() as usize % 64),
            (100, 0),
            "unchanged on error"
        );
    }

    #[test]
    fn a_large_buffer_starts_on_a_huge_page_and_is_zero() {
        let n = HUGE_FROM / 4 + 12_345;
        let v = AlignedVec::zeroed(n, "v").unwrap();
        assert_eq!(v.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|&x| x == 0.0));
        let src: Vec<f32> = (0..n).map(|i| (i % 977) as f32).collect();
        let c = AlignedVec::from_slice(&src).clone();
        assert_eq!(c.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(c[..] == src[..]);
    }
}

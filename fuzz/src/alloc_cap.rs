//! The system allocator with a cap on each allocation's size (64 MiB unless set), for
//! the fuzz driver and the regression test: a huge size is refused at once instead of
//! paging a shared machine to death (or waking the OOM killer), and the library must
//! turn the refusal into `Error::OutOfMemory` wherever it allocates from a caller's
//! numbers. Install it with `#[global_allocator] static A: CappedAlloc = CappedAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Sets the cap, in bytes.
pub fn set_alloc_cap(bytes: usize) {
    ALLOC_CAP.store(bytes, Ordering::Relaxed);
}

/// Makes the next refusal print the library's frame that asked (the abort that may
/// follow says only the size).
pub fn report_next_refusal() {
    OOM_WHERE.store(true, Ordering::Relaxed);
}

/// The system allocator with a cap on each allocation's size.
pub struct CappedAlloc;

static ALLOC_CAP: AtomicUsize = AtomicUsize::new(64 << 20);
/// When set (`--replay`), a refused allocation first prints the library's frame that
/// asked for it, since the abort that follows says only the size.
static OOM_WHERE: AtomicBool = AtomicBool::new(false);

/// The refusal of an allocation over the cap (null: out of memory), after saying where
/// it came from when asked to.
fn refuse(size: usize) -> *mut u8 {
    if OOM_WHERE.swap(false, Ordering::Relaxed) {
        // The backtrace allocates, which is fine here: nothing of this allocator is
        // locked, and its allocations are small.
        let at = crate::first_own_frame().unwrap_or_else(|| "unknown".into());
        eprintln!("OOM allocation of {size} bytes refused, called from {at}");
    }
    std::ptr::null_mut()
}

// SAFETY: every method forwards to `System` unchanged, except that allocations over the
// cap return null, which `GlobalAlloc` allows (it means "out of memory").
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP.load(Ordering::Relaxed) {
            return refuse(layout.size());
        }
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP.load(Ordering::Relaxed) {
            return refuse(layout.size());
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP.load(Ordering::Relaxed) {
            return refuse(new_size);
        }
        // SAFETY: `ptr` came from `System` with `layout`; the caller's contract holds.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

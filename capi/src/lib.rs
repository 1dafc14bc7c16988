//! The C ABI of `lstm-kernels`: `liblstm_kernels.so` / `liblstm_kernels.a` and the
//! header `include/lstm_kernels.h`, thin over the Rust API.
//!
//! # Handles
//! Opaque handles, each made by a `*_create` (or a weights constructor) and freed by its
//! `*_destroy` (NULL is a no-op): `lstm_spec` (sizes and cell options), `lstm_weights`,
//! `lstm` (the weights packed for this CPU, with its threads), `lstm_workspace` (a
//! pass's buffers, output and final state), `lstm_reserve` (what training keeps for
//! backward) and `lstm_gradients`. A handle holds its own copy of what it was made from:
//! the spec may be destroyed once the weights, workspaces and gradients exist, the
//! weights once the `lstm` exists.
//!
//! # Status and errors
//! Every function but `lstm_last_error`, `lstm_status_name` and `lstm_version` returns an
//! `lstm_status`; on failure `lstm_last_error()` has the message (the argument or tensor
//! at fault, the expected and the actual size), valid until the next call on the thread,
//! and out-handles are set to NULL. No panic crosses the boundary: one is caught and
//! returned as `LSTM_STATUS_INTERNAL_ERROR`.
//!
//! # Pointers and lengths
//! Every buffer comes with its length in elements, checked against what the sizes need
//! (exactly: a larger buffer is a mistake too) with checked arithmetic. NULL is
//! `LSTM_STATUS_NULL_POINTER` unless the length is 0 (an empty buffer) or the argument
//! is documented as optional; a `float*` or `int32_t*` not aligned to 4 bytes is
//! `LSTM_STATUS_MISALIGNED_POINTER`. What the library cannot check is the caller's part:
//! a non-NULL pointer points at memory of the stated length, a handle is live (made here
//! and not destroyed), and a handle the call changes is not used by another thread
//! meanwhile.
//!
//! # State buffers
//! A state (initial, final, or their gradients) is one `float` buffer for `B` sequences:
//! for each cell `k = layer * D + direction` in order (`D` = 2 when bidirectional), its
//! `c` `[B, H]` then its `h` `[B, R]` (`R` = the layer's projection `P`, or `H`), each
//! row-major. `lstm_spec_state_len` gives its length.
//!
//! # Threads
//! `lstm_spec`, `lstm_weights` and `lstm` are immutable once made: any number of threads
//! may use one at once (`lstm_forward_inference`, `lstm_forward_training`,
//! `lstm_backward` and `lstm_reserve_create` take the `lstm` `const`). A workspace, a
//! reserve and gradients are used by one thread at a time: give each thread its own.
//! The last error is per thread.

#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]
// The C names of the ABI (`lstm_status`, `LSTM_STATUS_OK`): the header is generated from
// these items, so they carry C's spelling.
#![allow(non_camel_case_types)]

mod args;
pub mod lstm;
pub mod spec;
pub mod status;
pub mod train;
pub mod weights;

use std::ffi::c_char;

/// The library's version, `"MAJOR.MINOR.PATCH"` (`LSTM_KERNELS_VERSION_STRING` of the
/// header it was built with). Static; never NULL; never changes the last error.
#[no_mangle]
pub extern "C" fn lstm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_packages() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(lstm_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn the_shared_handles_are_thread_safe() {
        fn sync_and_send<T: Sync + Send>() {}
        sync_and_send::<lstm::lstm>();
        sync_and_send::<spec::lstm_spec>();
        sync_and_send::<weights::lstm_weights>();
    }
}

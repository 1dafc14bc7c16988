//! Turning a C caller's pointers and lengths into references and slices: NULL,
//! misalignment and lengths whose byte counts cannot exist are errors, before anything is
//! read. What cannot be checked (that a non-NULL pointer points at live memory of the
//! stated length, that a handle was not destroyed) is the caller's contract, stated in
//! the crate docs.

use std::ffi::{c_char, CStr};
use std::mem::{align_of, size_of};

use crate::status::{guard, lstm_status, CResult, Failure};

/// Null and alignment checks of a pointer to one or more `T`.
fn check_ptr<T>(ptr: *const T, name: &str) -> CResult {
    if ptr.is_null() {
        return Err(Failure::new(
            lstm_status::LSTM_STATUS_NULL_POINTER,
            format!("argument `{name}` is NULL"),
        ));
    }
    if !ptr.is_aligned() {
        return Err(Failure::new(
            lstm_status::LSTM_STATUS_MISALIGNED_POINTER,
            format!(
                "argument `{name}` ({ptr:p}) is not aligned to {} bytes",
                align_of::<T>()
            ),
        ));
    }
    Ok(())
}

/// `len` elements of `T` when their bytes fit in `isize` (what a Rust slice may span).
fn check_len<T>(len: usize, name: &str) -> CResult {
    match len.checked_mul(size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(Failure::shape(format!(
            "buffer `{name}`: {len} elements of {} bytes overflow the address space",
            size_of::<T>()
        ))),
    }
}

/// A handle or struct the caller passes by pointer.
///
/// # Safety
/// `ptr` is NULL or points at a live `T` that nothing writes for `'a`.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> CResult<&'a T> {
    check_ptr(ptr, name)?;
    // SAFETY: non-NULL and aligned (checked); live and unaliased by the caller's contract.
    Ok(unsafe { &*ptr })
}

/// A handle the call changes.
///
/// # Safety
/// `ptr` is NULL or points at a live `T` that nothing else reads or writes for `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(ptr: *mut T, name: &str) -> CResult<&'a mut T> {
    check_ptr(ptr, name)?;
    // SAFETY: non-NULL and aligned (checked); exclusive by the caller's contract.
    Ok(unsafe { &mut *ptr })
}

/// A caller's input buffer of `len` elements. `len == 0` gives an empty slice whatever
/// `ptr` is (C callers often pass NULL for an empty array).
///
/// # Safety
/// When `len > 0`, `ptr` is NULL or points at `len` initialised `T`s that nothing writes
/// for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> CResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_ptr(ptr, name)?;
    check_len::<T>(len, name)?;
    // SAFETY: non-NULL, aligned, at most isize::MAX bytes (checked); `len` readable
    // elements by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// An optional input buffer: NULL with `len == 0` is absent; NULL with `len > 0` is an
/// error (a forgotten buffer, not an absent one).
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn optional_slice<'a, T>(
    ptr: *const T,
    len: usize,
    name: &str,
) -> CResult<Option<&'a [T]>> {
    if ptr.is_null() && len == 0 {
        return Ok(None);
    }
    // SAFETY: the caller's contract, passed on.
    unsafe { slice(ptr, len, name) }.map(Some)
}

/// A caller's output buffer of `len` elements.
///
/// # Safety
/// When `len > 0`, `ptr` is NULL or points at `len` writable `T`s that nothing else
/// reads or writes for `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, name: &str) -> CResult<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_ptr(ptr, name)?;
    check_len::<T>(len, name)?;
    // SAFETY: non-NULL, aligned, at most isize::MAX bytes (checked); `len` writable
    // elements, exclusive, by the caller's contract. Every `T` used here (f32, usize,
    // pointers) is valid for any bit pattern the caller left in it.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Writes `value` through an out-pointer.
///
/// # Safety
/// `ptr` is NULL or points at writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T, name: &str) -> CResult {
    check_ptr(ptr, name)?;
    // SAFETY: non-NULL and aligned (checked), writable by the caller's contract; `write`
    // does not drop the old contents (plain data or a handle pointer).
    unsafe { ptr.write(value) };
    Ok(())
}

/// Checks an out-handle pointer and sets it to NULL, so that a failed create leaves the
/// caller's handle NULL (safe to destroy) rather than stale.
///
/// # Safety
/// As [`write_out`].
pub(crate) unsafe fn clear_out<T>(ptr: *mut *mut T, name: &str) -> CResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { write_out(ptr, std::ptr::null_mut(), name) }
}

/// A NUL-terminated string argument, as bytes.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that nothing writes for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> CResult<&'a CStr> {
    check_ptr(ptr, name)?;
    // SAFETY: non-NULL (checked); NUL-terminated and live by the caller's contract.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// A NUL-terminated UTF-8 string argument (tensor names are UTF-8, as in `.safetensors`).
///
/// # Safety
/// As [`c_str`].
pub(crate) unsafe fn utf8<'a>(ptr: *const c_char, name: &str) -> CResult<&'a str> {
    // SAFETY: the caller's contract, passed on.
    let s = unsafe { c_str(ptr, name) }?;
    s.to_str()
        .map_err(|e| Failure::invalid(format!("argument `{name}` is not UTF-8: {e}")))
}

/// Moves `value` to the heap and hands C its pointer; the matching destroy function
/// takes it back with [`destroy`].
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Every create function's shell, under [`guard`]: `*out` is set to NULL first (so that
/// a failure leaves the caller's handle NULL, safe to destroy), then to the handle of what
/// `make` builds.
///
/// # Safety
/// `out` is NULL or writable.
pub(crate) unsafe fn create<T>(out: *mut *mut T, make: impl FnOnce() -> CResult<T>) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        unsafe { clear_out(out, "out") }?;
        let handle = into_handle(make()?);
        // SAFETY: checked writable just above.
        unsafe { write_out(out, handle, "out") }
    })
}

/// Frees a handle made by [`into_handle`]; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or was returned by [`into_handle`] for the same `T` and not freed since.
pub(crate) unsafe fn destroy<T>(ptr: *mut T, name: &str) -> CResult {
    if ptr.is_null() {
        return Ok(());
    }
    check_ptr(ptr.cast_const(), name)?;
    // SAFETY: made by Box::into_raw for this T and not freed (the caller's contract).
    drop(unsafe { Box::from_raw(ptr) });
    Ok(())
}

/// `a * b`, or a shape failure naming what overflowed.
pub(crate) fn mul(a: usize, b: usize, what: &str) -> CResult<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Failure::shape(format!("{what}: {a} * {b} overflows size_t")))
}

/// That a caller's buffer has exactly the `want` elements a result needs.
pub(crate) fn expect_len(name: &str, want: usize, got: usize) -> CResult {
    if want != got {
        return Err(Failure::shape(format!(
            "buffer `{name}`: expected {want} elements, got {got}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_misaligned_and_oversized_buffers_are_refused() {
        let data = [1.0_f32, 2.0, 3.0];
        // SAFETY: NULL is refused before any read.
        let null = unsafe { slice::<f32>(std::ptr::null(), 3, "x") }.unwrap_err();
        assert_eq!(null.status, lstm_status::LSTM_STATUS_NULL_POINTER);
        let odd = data.as_ptr().cast::<u8>().wrapping_add(1).cast::<f32>();
        // SAFETY: a misaligned pointer is refused before any read.
        let mis = unsafe { slice(odd, 2, "x") }.unwrap_err();
        assert_eq!(mis.status, lstm_status::LSTM_STATUS_MISALIGNED_POINTER);
        assert!(mis.message.contains("`x`"), "{}", mis.message);
        // SAFETY: a length past isize::MAX bytes is refused before any read.
        let big = unsafe { slice(data.as_ptr(), usize::MAX / 2, "x") }.unwrap_err();
        assert_eq!(big.status, lstm_status::LSTM_STATUS_SHAPE_MISMATCH);
        // SAFETY: `data` holds 3 floats.
        assert_eq!(unsafe { slice(data.as_ptr(), 3, "x") }.unwrap(), &data);
        // SAFETY: an empty buffer reads nothing.
        assert!(unsafe { slice::<f32>(std::ptr::null(), 0, "x") }
            .unwrap()
            .is_empty());
        // SAFETY: NULL and 0 is an absent optional buffer; NULL and 3 is refused.
        assert!(unsafe { optional_slice::<f32>(std::ptr::null(), 0, "x") }
            .unwrap()
            .is_none());
        // SAFETY: as above.
        assert!(unsafe { optional_slice::<f32>(std::ptr::null(), 3, "x") }.is_err());
    }

    #[test]
    fn products_that_overflow_are_errors() {
        assert_eq!(mul(3, 4, "n").unwrap(), 12);
        let e = mul(usize::MAX, 2, "state").unwrap_err();
        assert!(e.message.contains("state"), "{}", e.message);
    }
}

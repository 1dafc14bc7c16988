//! Buffers sized from a caller's numbers, allocated fallibly.
//!
//! A batch, a length or a file's shape can ask for more memory than the machine has
//! while every product still fits in `usize`. `Vec::resize` would then abort the whole
//! process (the global allocation-error handler), which a C or Python caller cannot
//! catch; these helpers reserve first and turn a refusal into
//! [`Error::OutOfMemory`] naming the buffer.

use crate::model::error::{Error, Result};

/// The error for `n` elements of `T` in `buffer`.
pub(crate) fn out_of_memory<T>(buffer: &str, n: usize) -> Error {
    Error::OutOfMemory {
        buffer: buffer.to_string(),
        bytes: n.saturating_mul(std::mem::size_of::<T>()),
    }
}

/// Makes room for `v` to hold `n` elements without another allocation (nothing changes
/// when it already can, or on error).
pub(crate) fn reserve_for<T>(v: &mut Vec<T>, n: usize, buffer: &str) -> Result<()> {
    if let Some(more) = n.checked_sub(v.len()).filter(|&m| m > 0) {
        v.try_reserve_exact(more)
            .map_err(|_| out_of_memory::<T>(buffer, n))?;
    }
    Ok(())
}

/// Resizes `v` to exactly `n` elements, new ones `value`; on error `v` is unchanged.
pub(crate) fn resize<T: Clone>(v: &mut Vec<T>, n: usize, value: T, buffer: &str) -> Result<()> {
    reserve_for(v, n, buffer)?;
    v.resize(n, value);
    Ok(())
}

/// Grows `v` to at least `n` elements, new ones zero (never shrinks; on error `v` is
/// unchanged).
pub(crate) fn grow(v: &mut Vec<f32>, n: usize, buffer: &str) -> Result<()> {
    if v.len() < n {
        resize(v, n, 0.0, buffer)?;
    }
    Ok(())
}

/// `n` zeros.
pub(crate) fn zeros(n: usize, buffer: &str) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    resize(&mut v, n, 0.0, buffer)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_no_machine_has_is_an_error_naming_the_buffer() {
        // 2^60 floats (4 EiB) fit in usize on 64-bit targets but in no machine's memory;
        // on 32-bit targets the count already overflows `isize`, the same error.
        let n = usize::MAX / 16;
        let err = zeros(n, "output").unwrap_err();
        assert_eq!(
            err,
            Error::OutOfMemory {
                buffer: "output".into(),
                bytes: n * 4
            }
        );
        assert!(err.to_string().contains("`output`"), "{err}");
        let mut v = vec![1.0f32; 3];
        assert!(grow(&mut v, n, "c").is_err());
        assert_eq!(v, [1.0; 3], "a failed grow leaves the buffer as it was");
        let mut w = vec![7usize; 2];
        assert!(resize(&mut w, usize::MAX, 0, "lengths").is_err());
        assert_eq!(w, [7, 7]);
    }

    #[test]
    fn sizes_that_exist_behave_as_vec() {
        let mut v = vec![1.0f32; 3];
        grow(&mut v, 2, "v").unwrap();
        assert_eq!(v.len(), 3, "grow never shrinks");
        grow(&mut v, 5, "v").unwrap();
        assert_eq!(v, [1.0, 1.0, 1.0, 0.0, 0.0]);
        resize(&mut v, 2, 9.0, "v").unwrap();
        assert_eq!(v, [1.0, 1.0]);
        assert_eq!(zeros(4, "z").unwrap(), [0.0; 4]);
    }
}

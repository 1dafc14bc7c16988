//! The crate's `Error` as Python exceptions, so that a caller catches what it expects:
//! `ValueError` for shapes and values, `TypeError` for dtypes, `MemoryError` when the
//! machine lacks the memory, `OSError` when a file cannot be read. The message is the
//! crate's own (it names the tensor, the expected and the actual shape).

use lstm_kernels::Error;
use pyo3::exceptions::{PyMemoryError, PyOSError, PyTypeError, PyValueError};
use pyo3::PyErr;

/// The Python exception for a crate error.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Dtype { .. } => PyTypeError::new_err(msg),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
        Error::Io(_) => PyOSError::new_err(msg),
        // A file that was read but is not valid `.safetensors` is bad input, as a
        // malformed argument is.
        Error::Config(_)
        | Error::Shape { .. }
        | Error::Length { .. }
        | Error::MissingTensor(_)
        | Error::Format(_) => PyValueError::new_err(msg),
    }
}

/// A shape error in the crate's words, for the checks the bindings make themselves
/// (the number of dimensions, which the crate never sees).
pub fn shape_error(tensor: &str, expected: &str, actual: &[usize]) -> PyErr {
    PyValueError::new_err(format!(
        "tensor `{tensor}`: expected shape {expected}, got {actual:?}"
    ))
}

//! NumPy arrays in and out: float32 arrays borrowed without a copy when they are
//! C-contiguous, a clear `TypeError` for another dtype and `ValueError` for a layout the
//! kernels cannot read in place.

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// The dtype of `obj` as NumPy spells it, or its Python type when it is not an array.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.getattr("dtype") {
        Ok(d) => format!("dtype {d}"),
        Err(_) => match obj.get_type().name() {
            Ok(n) => format!("an object of type {n}"),
            Err(_) => "an object of unknown type".into(),
        },
    }
}

/// `obj` as a read-only float32 array, or a `TypeError` naming `tensor`.
pub fn f32_array<'py>(
    obj: &Bound<'py, PyAny>,
    tensor: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    obj.extract::<PyReadonlyArrayDyn<'py, f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "tensor `{tensor}`: expected a numpy.ndarray of dtype float32, got {}",
            describe(obj)
        ))
    })
}

/// The elements of a C-contiguous array, borrowed; a `ValueError` for any other layout
/// (a copy would hide a cost the caller can avoid, `numpy.ascontiguousarray`).
pub fn contiguous<'a>(a: &'a PyReadonlyArrayDyn<'_, f32>, tensor: &str) -> PyResult<&'a [f32]> {
    a.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "tensor `{tensor}`: expected a C-contiguous array, got strides {:?} \
             (numpy.ascontiguousarray makes one)",
            a.strides()
        ))
    })
}

/// The elements of any float32 array in C order, copied (weights, which the crate
/// copies into its own layout anyway).
pub fn to_vec(a: &PyReadonlyArrayDyn<'_, f32>) -> Vec<f32> {
    match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    }
}

/// Sequence lengths from an int32 or int64 array (PyTorch's lengths are int64); an
/// int64 length outside `i32` is reported as the crate reports any length out of range.
pub fn lengths(obj: &Bound<'_, PyAny>, steps: usize) -> PyResult<Vec<i32>> {
    if let Ok(a) = obj.extract::<numpy::PyReadonlyArrayDyn<'_, i32>>() {
        check_1d(a.shape())?;
        return Ok(a.as_array().iter().copied().collect());
    }
    if let Ok(a) = obj.extract::<numpy::PyReadonlyArrayDyn<'_, i64>>() {
        check_1d(a.shape())?;
        return a
            .as_array()
            .iter()
            .enumerate()
            .map(|(index, &v)| {
                i32::try_from(v).map_err(|_| {
                    crate::errors::to_py(lstm_kernels::Error::Length {
                        index,
                        value: v,
                        steps,
                    })
                })
            })
            .collect();
    }
    Err(PyTypeError::new_err(format!(
        "tensor `sequence_length`: expected a numpy.ndarray of dtype int32 or int64, got {}",
        describe(obj)
    )))
}

fn check_1d(shape: &[usize]) -> PyResult<()> {
    if shape.len() != 1 {
        return Err(crate::errors::shape_error("sequence_length", "[B]", shape));
    }
    Ok(())
}

/// A new array of `shape` holding `data` (moved, not copied).
pub fn new_array<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    PyArray1::from_vec(py, data).reshape(shape)
}

//! `lstm_kernels._lstm_kernels`: the crate's LSTM over NumPy arrays, the native half of
//! the `lstm_kernels` Python package (the Python half, `lstm_kernels/`, adds the
//! friendly constructors and the `torch.nn.LSTM` drop-in).
//!
//! Every argument is checked before the crate runs, and every crate error becomes a
//! Python exception (`errors.rs`): nothing panics across the boundary. The GIL is
//! released while the kernels compute.

mod arrays;
mod convert;
mod errors;
mod lstm;

use pyo3::prelude::*;

/// The ISAs this build and CPU can run, best first.
#[pyfunction]
fn available_isas() -> Vec<&'static str> {
    lstm_kernels::available_isas()
        .into_iter()
        .map(|i| i.name())
        .collect()
}

#[pymodule]
fn _lstm_kernels(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<lstm::Lstm>()?;
    m.add_class::<lstm::Trace>()?;
    m.add_function(wrap_pyfunction!(available_isas, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

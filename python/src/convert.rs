//! Between Python values and the crate's types: specs from keyword arguments, named
//! tensors from dicts of arrays (and back), states from lists of `(h, c)` pairs.

use lstm_kernels::{CellState, Convention, LstmSpec, LstmState, Tensor, TensorData, Tensors};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{f32_array, new_array, to_vec};
use crate::errors::{shape_error, to_py};

/// A size given as a Python int: a negative one is a `ValueError` in the crate's words
/// (rather than PyO3's `OverflowError`).
pub fn size(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| {
        PyValueError::new_err(format!(
            "invalid configuration: {name} must be at least 1, got {v}"
        ))
    })
}

/// The crate's spec from the bindings' keyword arguments.
#[allow(clippy::too_many_arguments)]
pub fn spec(
    input_size: i64,
    hidden_sizes: &[i64],
    proj_sizes: Option<&[Option<i64>]>,
    forget_bias: f32,
    peepholes: bool,
    cell_clip: Option<f32>,
    proj_clip: Option<f32>,
    bidirectional: bool,
    time_major: bool,
) -> PyResult<LstmSpec> {
    let hidden: Vec<usize> = hidden_sizes
        .iter()
        .enumerate()
        .map(|(l, &h)| size(&format!("hidden_sizes[{l}]"), h))
        .collect::<PyResult<_>>()?;
    let mut b = LstmSpec::builder(size("input_size", input_size)?, &hidden)
        .forget_bias(forget_bias)
        .peepholes(peepholes)
        .bidirectional(bidirectional)
        .time_major(time_major);
    if let Some(p) = proj_sizes {
        let p: Vec<Option<usize>> = p
            .iter()
            .enumerate()
            .map(|(l, p)| p.map(|v| size(&format!("proj_sizes[{l}]"), v)).transpose())
            .collect::<PyResult<_>>()?;
        b = b.proj_sizes(&p);
    }
    if let Some(c) = cell_clip {
        b = b.cell_clip(c);
    }
    if let Some(c) = proj_clip {
        b = b.proj_clip(c);
    }
    b.build().map_err(to_py)
}

/// A convention by name: `pytorch` (or `torch`), `tensorflow` (or `tf`), `keras`, `onnx`.
pub fn convention(name: &str) -> PyResult<Convention> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "pytorch" | "torch" => Convention::PyTorch,
        "tensorflow" | "tf" => Convention::TensorFlow,
        "keras" => Convention::Keras,
        "onnx" => Convention::Onnx,
        _ => {
            return Err(PyValueError::new_err(format!(
                "convention must be one of 'pytorch', 'tensorflow', 'keras', 'onnx', got {name:?}"
            )))
        }
    })
}

/// Named float32 arrays (a state dict) as the crate's tensors, copied: the import
/// rearranges them into the crate's layout anyway, so any strides are accepted.
pub fn tensors_from_dict(d: &Bound<'_, PyDict>) -> PyResult<Tensors> {
    let mut t = Tensors::new();
    for (k, v) in d.iter() {
        let name: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "weights: keys must be str, got {}",
                k.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })?;
        let a = f32_array(&v, &name)?;
        t.insert_f32(&name, a.shape(), to_vec(&a)).map_err(to_py)?;
    }
    Ok(t)
}

/// The crate's float tensors as a dict of new arrays (other dtypes are left out: weights
/// and gradients are all float).
pub fn dict_from_tensors<'py>(py: Python<'py>, t: &Tensors) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for name in t.names() {
        if let Some(Tensor {
            shape,
            data: TensorData::F32(data),
        }) = t.get(name)
        {
            d.set_item(name, new_array(py, data.clone(), shape)?)?;
        }
    }
    Ok(d)
}

/// One array of a state pair, checked to be exactly `[batch, width]`.
fn state_part(
    obj: &Bound<'_, PyAny>,
    name: &str,
    batch: usize,
    width: usize,
) -> PyResult<Vec<f32>> {
    let a: PyReadonlyArrayDyn<'_, f32> = f32_array(obj, name)?;
    if a.shape() != [batch, width] {
        return Err(shape_error(
            name,
            &format!("{:?}", [batch, width]),
            a.shape(),
        ));
    }
    Ok(to_vec(&a))
}

/// A state from a sequence of `(h, c)` pairs, one per cell (`k = layer * D + direction`,
/// as PyTorch's `h_n`); `None` in a pair (an unused gradient) is zeros.
pub fn state_from_pairs(
    spec: &LstmSpec,
    obj: &Bound<'_, PyAny>,
    batch: usize,
    tensor: &str,
) -> PyResult<LstmState> {
    /// An `(h, c)` pair as given; either may be `None`.
    type Pair<'py> = (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>);
    let pairs: Vec<Pair<'_>> = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "`{tensor}`: expected a sequence of (h, c) pairs of arrays, one per cell"
        ))
    })?;
    if pairs.len() != spec.num_cells() {
        return Err(PyValueError::new_err(format!(
            "tensor `{tensor}`: expected shape {} cells, got {} cells",
            spec.num_cells(),
            pairs.len()
        )));
    }
    let mut cells = Vec::with_capacity(pairs.len());
    for (k, (h, c)) in pairs.iter().enumerate() {
        let layer = spec.layers()[spec.cell_layer(k)];
        let part = |o: &Option<Bound<'_, PyAny>>, what: &str, width: usize| match o {
            Some(o) if !o.is_none() => state_part(o, &format!("{tensor}/{k}/{what}"), batch, width),
            _ => Ok(vec![0.0; batch * width]),
        };
        cells.push(CellState {
            h: part(h, "h", layer.output_size())?,
            c: part(c, "c", layer.hidden_size)?,
        });
    }
    Ok(LstmState { cells })
}

/// A state as a list of `(h, c)` pairs of new arrays.
pub fn pairs_from_state<'py>(
    py: Python<'py>,
    spec: &LstmSpec,
    state: &LstmState,
    batch: usize,
) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    state
        .cells
        .iter()
        .enumerate()
        .map(|(k, cell)| {
            let layer = spec.layers()[spec.cell_layer(k)];
            let h = new_array(py, cell.h.clone(), &[batch, layer.output_size()])?;
            let c = new_array(py, cell.c.clone(), &[batch, layer.hidden_size])?;
            Ok((h.into_any(), c.into_any()))
        })
        .collect()
}

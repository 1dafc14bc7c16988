//! The weights handle: from named tensors in a caller's buffers or a `.safetensors` file,
//! in any of the four frameworks' conventions; and the export of named tensors into a
//! caller's buffer (shared with the gradients).

use std::collections::BTreeSet;
use std::ffi::c_char;

use lstm_kernels::{Convention, LoadOptions, LstmWeights, Tensors};

use crate::args::{arg, c_str, create, destroy, expect_len, slice, slice_mut, utf8, write_out};
use crate::spec::lstm_spec;
use crate::status::{guard, lstm_status, CResult, Failure};

/// A weight convention: the names, layouts and gate order of a set of tensors (one of
/// the `LSTM_CONVENTION_*` values).
pub type lstm_convention = i32;

/// TensorFlow: `layers/{k}/kernel` `[in + R, 4H]`, `layers/{k}/bias` `[4H]`,
/// `layers/{k}/w_{i,f,o}_diag` `[H]`, `layers/{k}/projection` `[H, P]`, for cell
/// `k = layer * D + direction`; gates i, j, f, o.
pub const LSTM_CONVENTION_TENSORFLOW: lstm_convention = 0;
/// PyTorch `nn.LSTM.state_dict()`: `weight_ih_l{l}` `[4H, in]`, `weight_hh_l{l}`
/// `[4H, R]`, `bias_ih_l{l}`, `bias_hh_l{l}` `[4H]`, `weight_hr_l{l}` `[P, H]`, with
/// `_reverse` for the backward direction; gates i, f, g, o.
pub const LSTM_CONVENTION_PYTORCH: lstm_convention = 1;
/// Keras `LSTM`: `layers/{k}/kernel` `[in, 4H]`, `layers/{k}/recurrent_kernel`
/// `[H, 4H]`, `layers/{k}/bias` `[4H]`; gates i, f, c, o.
pub const LSTM_CONVENTION_KERAS: lstm_convention = 2;
/// ONNX `LSTM`, per layer `l`: `layers/{l}/W` `[D, 4H, in]`, `layers/{l}/R`
/// `[D, 4H, H]`, `layers/{l}/B` `[D, 8H]`, `layers/{l}/P` `[D, 3H]`; gates i, o, f, c.
pub const LSTM_CONVENTION_ONNX: lstm_convention = 3;

/// Flag of the weight loaders: a cell whose bias tensors are all absent gets a zero bias
/// (a model built without biases). Without it, an absent bias is an error naming it.
pub const LSTM_LOAD_ALLOW_MISSING_BIAS: u32 = 1;

/// One named tensor in the caller's memory: `float32`, row-major, `shape` of `ndim`
/// dimensions whose product is `len`. Read by `lstm_weights_from_tensors`, which copies
/// it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lstm_tensor {
    /// The tensor's name in the convention, NUL-terminated UTF-8.
    pub name: *const c_char,
    /// `len` floats, 4-byte aligned (may be NULL when `len` is 0).
    pub data: *const f32,
    /// Elements in `data`.
    pub len: usize,
    /// `ndim` dimensions, outermost first (may be NULL when `ndim` is 0: a scalar).
    pub shape: *const usize,
    /// Number of dimensions.
    pub ndim: usize,
}

/// LSTM weights, validated against their spec, in the library's own layout. Immutable:
/// may be shared between threads.
#[derive(Debug)]
pub struct lstm_weights {
    pub(crate) weights: LstmWeights,
}

pub(crate) fn convention(value: lstm_convention) -> CResult<Convention> {
    Ok(match value {
        LSTM_CONVENTION_TENSORFLOW => Convention::TensorFlow,
        LSTM_CONVENTION_PYTORCH => Convention::PyTorch,
        LSTM_CONVENTION_KERAS => Convention::Keras,
        LSTM_CONVENTION_ONNX => Convention::Onnx,
        _ => {
            return Err(Failure::invalid(format!(
                "argument `convention`: expected 0 (TensorFlow), 1 (PyTorch), 2 (Keras) or \
                 3 (ONNX), got {value}"
            )))
        }
    })
}

fn load_options(flags: u32) -> CResult<LoadOptions> {
    if flags & !LSTM_LOAD_ALLOW_MISSING_BIAS != 0 {
        return Err(Failure::invalid(format!(
            "argument `flags`: unknown bits {:#x} (only LSTM_LOAD_ALLOW_MISSING_BIAS = 1)",
            flags & !LSTM_LOAD_ALLOW_MISSING_BIAS
        )));
    }
    Ok(LoadOptions {
        allow_missing_bias: flags & LSTM_LOAD_ALLOW_MISSING_BIAS != 0,
    })
}

/// The caller's tensors as a [`Tensors`] map, each checked (name, shape against length,
/// pointers) and copied.
fn read_tensors(tensors: &[lstm_tensor]) -> CResult<Tensors> {
    let mut out = Tensors::new();
    let mut seen = BTreeSet::new();
    for (i, t) in tensors.iter().enumerate() {
        // SAFETY: each entry's name is NULL or a live string (the caller's contract).
        let name = unsafe { utf8(t.name, &format!("tensors[{i}].name")) }?;
        // SAFETY: a non-NULL shape holds `ndim` entries (the contract).
        let shape = unsafe { slice(t.shape, t.ndim, &format!("tensor `{name}` shape")) }?;
        let elements = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                Failure::shape(format!(
                    "tensor `{name}`: shape {shape:?} has more elements than size_t holds"
                ))
            })?;
        if elements != t.len {
            return Err(Failure::shape(format!(
                "tensor `{name}`: shape {shape:?} needs {elements} elements, got {}",
                t.len
            )));
        }
        // SAFETY: `data` holds `len` floats (the contract).
        let data = unsafe { slice(t.data, t.len, &format!("tensor `{name}` data")) }?;
        if !seen.insert(name) {
            return Err(Failure::invalid(format!(
                "tensor `{name}` is given twice (tensors[{i}])"
            )));
        }
        out.insert_f32(name, shape, data.to_vec())?;
    }
    Ok(out)
}

/// Makes weights from named tensors in `convention` (an `LSTM_CONVENTION_*`): every
/// tensor the spec needs must be there (biases too, unless `flags` has
/// `LSTM_LOAD_ALLOW_MISSING_BIAS`), and none of another model. The data is copied.
/// `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `spec`, `tensors`
/// (with `count > 0`), `out` or a tensor's name, shape or data;
/// `LSTM_STATUS_SHAPE_MISMATCH` when a tensor's shape does not match its `len` or what
/// the spec needs (the message names it, with both shapes); `LSTM_STATUS_INVALID_ARGUMENT`
/// for an unknown convention or flag, a missing tensor, a name given twice or one of
/// another model, or a convention that cannot express the spec (PyTorch and Keras have no
/// peepholes, Keras and ONNX no projection).
///
/// # Safety
/// `spec` is NULL or live; `tensors` is NULL or holds `count` entries whose non-NULL
/// pointers hold what their lengths say; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_weights_from_tensors(
    spec: *const lstm_spec,
    convention: lstm_convention,
    tensors: *const lstm_tensor,
    count: usize,
    flags: u32,
    out: *mut *mut lstm_weights,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        let conv = self::convention(convention)?;
        let options = load_options(flags)?;
        // SAFETY: as above.
        let given = read_tensors(unsafe { slice(tensors, count, "tensors") }?)?;
        let weights = LstmWeights::from_tensors_with(spec, &given, conv, options)?;
        Ok(lstm_weights { weights })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Loads weights from a `.safetensors` file in `convention`, as
/// `lstm_weights_from_tensors` reads them. `path` is a NUL-terminated path (bytes, as
/// the OS takes them). `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_IO_ERROR` when the file cannot be read, is not a valid `.safetensors`
/// file or holds a tensor of another dtype (the message has the path and the OS's
/// reason); otherwise as `lstm_weights_from_tensors`.
///
/// # Safety
/// `spec` is NULL or live; `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_weights_load_safetensors(
    spec: *const lstm_spec,
    path: *const c_char,
    convention: lstm_convention,
    flags: u32,
    out: *mut *mut lstm_weights,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        // SAFETY: this function's contract (# Safety), passed on.
        let path = unsafe { c_str(path, "path") }?;
        let conv = self::convention(convention)?;
        let options = load_options(flags)?;
        #[cfg(unix)]
        let path = {
            use std::os::unix::ffi::OsStrExt;
            std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()))
        };
        #[cfg(not(unix))]
        let path = std::path::Path::new(
            path.to_str()
                .map_err(|e| Failure::invalid(format!("argument `path` is not UTF-8: {e}")))?,
        );
        let weights = LstmWeights::load_safetensors_with(spec, path, conv, options)?;
        Ok(lstm_weights { weights })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Weights uniform in `[-scale, scale]` from `seed` (deterministic: the Rust API's
/// `LstmWeights::random_uniform`), for tests and initialisation. `*out` is NULL on
/// failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `spec` or `out`;
/// `LSTM_STATUS_INVALID_ARGUMENT` when `scale` is not finite.
///
/// # Safety
/// `spec` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_weights_random_uniform(
    spec: *const lstm_spec,
    scale: f32,
    seed: u64,
    out: *mut *mut lstm_weights,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        if !scale.is_finite() {
            return Err(Failure::invalid(format!(
                "argument `scale` must be finite, got {scale}"
            )));
        }
        let weights = LstmWeights::random_uniform(spec, scale, seed);
        Ok(lstm_weights { weights })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Frees weights; NULL is a no-op. An `lstm` made from them keeps its own copy.
///
/// # Errors
/// `LSTM_STATUS_MISALIGNED_POINTER` for a pointer no create function returned.
///
/// # Safety
/// `weights` is NULL or from a weights constructor, not destroyed before.
#[no_mangle]
pub unsafe extern "C" fn lstm_weights_destroy(weights: *mut lstm_weights) -> lstm_status {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { destroy(weights, "weights") })
}

/// Which of `TensorFlow` and `PyTorch` (the two conventions the Rust API exports)
/// `value` is; `true` for PyTorch.
pub(crate) fn export_is_pytorch(value: lstm_convention) -> CResult<bool> {
    match convention(value)? {
        Convention::TensorFlow => Ok(false),
        Convention::PyTorch => Ok(true),
        other => Err(Failure::invalid(format!(
            "argument `convention`: {other:?} has no export; use TensorFlow (0) or PyTorch (1)"
        ))),
    }
}

fn export(weights: &LstmWeights, convention: lstm_convention) -> CResult<Tensors> {
    if export_is_pytorch(convention)? {
        Ok(weights.to_pytorch()?)
    } else {
        Ok(weights.to_tensorflow())
    }
}

/// The elements of tensor `name` of `tensors`.
pub(crate) fn tensor_len(tensors: &Tensors, name: &str) -> CResult<usize> {
    Ok(tensors.f32(name)?.1.len())
}

/// Copies tensor `name` of `tensors` into `out`, which must have exactly its length.
pub(crate) fn copy_tensor(tensors: &Tensors, name: &str, out: &mut [f32]) -> CResult {
    let data = tensors.f32(name)?.1;
    expect_len(&format!("out (tensor `{name}`)"), data.len(), out.len())?;
    out.copy_from_slice(data);
    Ok(())
}

/// The number of elements of tensor `name` in the export of `weights` under `convention`
/// (TensorFlow or PyTorch; see `LSTM_CONVENTION_*` for the names).
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `weights`, `name` or
/// `len`; `LSTM_STATUS_INVALID_ARGUMENT` for a name the export does not have, Keras or
/// ONNX, or a spec PyTorch cannot express.
///
/// # Safety
/// `weights` is NULL or live; `name` is NULL or NUL-terminated; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_weights_tensor_len(
    weights: *const lstm_weights,
    convention: lstm_convention,
    name: *const c_char,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let w = &unsafe { arg(weights, "weights") }?.weights;
        // SAFETY: this function's contract (# Safety), passed on.
        let name = unsafe { utf8(name, "name") }?;
        let n = tensor_len(&export(w, convention)?, name)?;
        // SAFETY: as above.
        unsafe { write_out(len, n, "len") }
    })
}

/// Copies tensor `name` of the export of `weights` under `convention` into `out`, which
/// holds exactly `lstm_weights_tensor_len` floats.
///
/// # Errors
/// As `lstm_weights_tensor_len`; `LSTM_STATUS_SHAPE_MISMATCH` when `len` is not the
/// tensor's length.
///
/// # Safety
/// `weights` is NULL or live; `name` is NULL or NUL-terminated; `out` is NULL or holds
/// `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn lstm_weights_tensor(
    weights: *const lstm_weights,
    convention: lstm_convention,
    name: *const c_char,
    out: *mut f32,
    len: usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let w = &unsafe { arg(weights, "weights") }?.weights;
        // SAFETY: this function's contract (# Safety), passed on.
        let name = unsafe { utf8(name, "name") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let out = unsafe { slice_mut(out, len, "out") }?;
        copy_tensor(&export(w, convention)?, name, out)
    })
}

//! Training: the reserve forward-training fills, the backward pass, and the gradients
//! handle with its getters.

use std::ffi::c_char;

use lstm_kernels::{Gradients, Tensors, TrainReserve, Upstream};

use crate::args::{
    arg, arg_mut, create, destroy, expect_len, optional_slice, slice_mut, utf8, write_out,
};
use crate::lstm::{lstm, lstm_input, lstm_workspace, Input};
use crate::spec::{lstm_spec, pack_state, packed_len, unpack_state};
use crate::status::{guard, lstm_status, CResult};
use crate::weights::{copy_tensor, export_is_pytorch, lstm_convention, tensor_len};

/// What `lstm_forward_training` keeps for `lstm_backward`. One thread at a time.
pub struct lstm_reserve {
    pub(crate) reserve: TrainReserve,
}

/// The gradients `lstm_backward` writes: of every weight, of the input and of the
/// initial state. One thread at a time.
pub struct lstm_gradients {
    pub(crate) grads: Gradients,
    /// The weight gradients exported under a convention's names (`true`: PyTorch), made
    /// by the first getter after a backward pass and kept until the next one.
    exported: Option<(bool, Tensors)>,
}

/// A reserve for `lstm_forward_training`, sized ahead for `batch` sequences of up to
/// `steps` steps so that training does not allocate. The sizes are a hint, as
/// `lstm_workspace_create`'s. `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `lstm` or `out`.
///
/// # Safety
/// `lstm` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_reserve_create(
    lstm: *const lstm,
    batch: usize,
    steps: usize,
    out: *mut *mut lstm_reserve,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let lstm = &unsafe { arg(lstm, "lstm") }?.lstm;
        let reserve = lstm.reserve(batch, steps);
        Ok(lstm_reserve { reserve })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Frees a reserve; NULL is a no-op.
///
/// # Errors
/// `LSTM_STATUS_MISALIGNED_POINTER` for a pointer no create function returned.
///
/// # Safety
/// `reserve` is NULL or from `lstm_reserve_create`, not destroyed before.
#[no_mangle]
pub unsafe extern "C" fn lstm_reserve_destroy(reserve: *mut lstm_reserve) -> lstm_status {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { destroy(reserve, "reserve") })
}

/// Runs the stack forward for training: as `lstm_forward_inference` (same output, same
/// bits), and keeps in `reserve` what `lstm_backward` needs.
///
/// # Errors
/// As `lstm_forward_inference`; `LSTM_STATUS_NULL_POINTER` /
/// `LSTM_STATUS_MISALIGNED_POINTER` for `reserve` too.
///
/// # Safety
/// As `lstm_forward_inference`; `reserve` is NULL or a live reserve no other thread uses.
#[no_mangle]
pub unsafe extern "C" fn lstm_forward_training(
    lstm: *const lstm,
    ws: *mut lstm_workspace,
    reserve: *mut lstm_reserve,
    input: *const lstm_input,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let lstm = &unsafe { arg(lstm, "lstm") }?.lstm;
        // SAFETY: this function's contract (# Safety), passed on.
        let ws = &mut unsafe { arg_mut(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        let reserve = &mut unsafe { arg_mut(reserve, "reserve") }?.reserve;
        // SAFETY: this function's contract (# Safety), passed on.
        let input = unsafe { Input::read(input, lstm) }?;
        Ok(lstm.forward_training(&input.forward(), ws, reserve)?)
    })
}

/// Gradients for `spec`, sized ahead for `batch` sequences of `steps` steps (a hint, as
/// `lstm_workspace_create`'s). `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `spec` or `out`.
///
/// # Safety
/// `spec` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_create(
    spec: *const lstm_spec,
    batch: usize,
    steps: usize,
    out: *mut *mut lstm_gradients,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        let grads = lstm_gradients {
            grads: Gradients::zeros(spec, batch, steps),
            exported: None,
        };
        Ok(grads)
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Frees gradients; NULL is a no-op.
///
/// # Errors
/// `LSTM_STATUS_MISALIGNED_POINTER` for a pointer no create function returned.
///
/// # Safety
/// `grads` is NULL or from `lstm_gradients_create`, not destroyed before.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_destroy(grads: *mut lstm_gradients) -> lstm_status {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { destroy(grads, "grads") })
}

/// Backward through time after `lstm_forward_training` of the same `lstm`, `input` and
/// `reserve`: writes into `grads` the gradients of every weight, of the input and of
/// the initial state, for the loss whose gradients with respect to the output and the
/// final state are `grad_output` (shaped like the output; entries at padded steps are
/// ignored) and `grad_final_state` (a state buffer). Either may be NULL with length 0:
/// zeros. `ws` is the scratch (any workspace of the spec; the forward's output in it is
/// not read).
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for a handle, `input`,
/// one of its buffers, or an upstream buffer with a non-zero length;
/// `LSTM_STATUS_INVALID_ARGUMENT` when `reserve` holds no forward-training pass of this
/// spec, batch, steps and lengths (a backward without its forward), or `grads` or `ws`
/// was made for another spec; `LSTM_STATUS_SHAPE_MISMATCH` when the input or an upstream
/// buffer's length is not the forward pass's; `LSTM_STATUS_OUT_OF_MEMORY` when the
/// gradients or the scratch cannot be allocated.
///
/// # Safety
/// Every handle is NULL or live and used by no other thread (`lstm` excepted);
/// `input` as for `lstm_forward_inference`; the upstream buffers are NULL or hold their
/// lengths' floats.
#[no_mangle]
pub unsafe extern "C" fn lstm_backward(
    lstm: *const lstm,
    input: *const lstm_input,
    reserve: *const lstm_reserve,
    grad_output: *const f32,
    grad_output_len: usize,
    grad_final_state: *const f32,
    grad_final_state_len: usize,
    ws: *mut lstm_workspace,
    grads: *mut lstm_gradients,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let lstm = &unsafe { arg(lstm, "lstm") }?.lstm;
        // SAFETY: this function's contract (# Safety), passed on.
        let input = unsafe { Input::read(input, lstm) }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let reserve = &unsafe { arg(reserve, "reserve") }?.reserve;
        let output =
            // SAFETY: this function's contract (# Safety), passed on.
            unsafe { optional_slice(grad_output, grad_output_len, "grad_output") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let final_state =
            unsafe { optional_slice(grad_final_state, grad_final_state_len, "grad_final_state") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let ws = &mut unsafe { arg_mut(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        let grads = unsafe { arg_mut(grads, "grads") }?;
        let forward = input.forward();
        let final_state = final_state
            .map(|s| unpack_state(lstm.weights().spec(), forward.batch, s, "grad_final_state"))
            .transpose()?;
        let upstream = Upstream {
            output,
            final_state: final_state.as_ref(),
        };
        grads.exported = None;
        Ok(lstm.backward(&forward, reserve, &upstream, ws, &mut grads.grads)?)
    })
}

/// The elements of the input's gradient: `batch * steps * input_size` of the last
/// backward pass (of the size hint before any).
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `grads` or `len`.
///
/// # Safety
/// `grads` is NULL or live; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_input_len(
    grads: *const lstm_gradients,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let g = &unsafe { arg(grads, "grads") }?.grads;
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(len, g.input.len(), "len") }
    })
}

/// Copies the gradient of the input (shaped like the input) into `out`, which holds
/// exactly `lstm_gradients_input_len` floats.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `grads` or `out`;
/// `LSTM_STATUS_SHAPE_MISMATCH` when `len` is not its length.
///
/// # Safety
/// `grads` is NULL or live; `out` is NULL or holds `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_input(
    grads: *const lstm_gradients,
    out: *mut f32,
    len: usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let g = &unsafe { arg(grads, "grads") }?.grads;
        // SAFETY: this function's contract (# Safety), passed on.
        let out = unsafe { slice_mut(out, len, "out") }?;
        expect_len("out (the input's gradient)", g.input.len(), out.len())?;
        out.copy_from_slice(&g.input);
        Ok(())
    })
}

/// The elements of the initial state's gradient: a state buffer of the last backward
/// pass's batch.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `grads` or `len`.
///
/// # Safety
/// `grads` is NULL or live; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_initial_state_len(
    grads: *const lstm_gradients,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let g = &unsafe { arg(grads, "grads") }?.grads;
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(len, packed_len(&g.initial_state), "len") }
    })
}

/// Copies the gradient of the initial state (a state buffer) into `out`, which holds
/// exactly `lstm_gradients_initial_state_len` floats.
///
/// # Errors
/// As `lstm_gradients_input`.
///
/// # Safety
/// As `lstm_gradients_input`.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_initial_state(
    grads: *const lstm_gradients,
    out: *mut f32,
    len: usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let g = &unsafe { arg(grads, "grads") }?.grads;
        // SAFETY: this function's contract (# Safety), passed on.
        let out = unsafe { slice_mut(out, len, "out") }?;
        pack_state(&g.initial_state, out, "out (the initial state's gradient)")
    })
}

/// The weight gradients exported under `convention` (kept until the next backward).
fn exported(g: &mut lstm_gradients, convention: lstm_convention) -> CResult<&Tensors> {
    let pytorch = export_is_pytorch(convention)?;
    if g.exported.as_ref().is_none_or(|(p, _)| *p != pytorch) {
        let tensors = if pytorch {
            g.grads.to_pytorch()?
        } else {
            g.grads.to_tensorflow()
        };
        g.exported = Some((pytorch, tensors));
    }
    Ok(&g.exported.as_ref().expect("exported just above").1)
}

/// The elements of the gradient of weight tensor `name` under `convention`'s names
/// (TensorFlow or PyTorch, as `lstm_weights_tensor_len`; PyTorch's `bias_ih` and
/// `bias_hh` both get the bias gradient).
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `grads`, `name` or
/// `len`; `LSTM_STATUS_INVALID_ARGUMENT` for a name the export does not have, Keras or
/// ONNX, or a spec PyTorch cannot express.
///
/// # Safety
/// `grads` is NULL or live, used by no other thread; `name` is NULL or NUL-terminated;
/// `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_tensor_len(
    grads: *mut lstm_gradients,
    convention: lstm_convention,
    name: *const c_char,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let g = unsafe { arg_mut(grads, "grads") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let name = unsafe { utf8(name, "name") }?;
        let n = tensor_len(exported(g, convention)?, name)?;
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(len, n, "len") }
    })
}

/// Copies the gradient of weight tensor `name` under `convention`'s names into `out`,
/// which holds exactly `lstm_gradients_tensor_len` floats.
///
/// # Errors
/// As `lstm_gradients_tensor_len`; `LSTM_STATUS_SHAPE_MISMATCH` when `len` is not the
/// tensor's length.
///
/// # Safety
/// As `lstm_gradients_tensor_len`; `out` is NULL or holds `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn lstm_gradients_tensor(
    grads: *mut lstm_gradients,
    convention: lstm_convention,
    name: *const c_char,
    out: *mut f32,
    len: usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let g = unsafe { arg_mut(grads, "grads") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let name = unsafe { utf8(name, "name") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let out = unsafe { slice_mut(out, len, "out") }?;
        copy_tensor(exported(g, convention)?, name, out)
    })
}

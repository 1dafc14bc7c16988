//! The packed LSTM and the workspace handles, the forward pass's input, and inference.

use lstm_kernels::{ForwardInput, InitialState, Lstm, LstmOptions, LstmState, Workspace};

use crate::args::{
    arg, arg_mut, create, destroy, expect_len, optional_slice, slice, slice_mut, write_out,
};
use crate::spec::{lstm_spec, pack_state, packed_len, unpack_state};
use crate::status::{guard, lstm_status, CResult, Failure};
use crate::weights::lstm_weights;

/// Where a forward pass's state starts (one of the `LSTM_INITIAL_*` values).
pub type lstm_initial_state = i32;

/// Zeros for every cell.
pub const LSTM_INITIAL_ZEROS: lstm_initial_state = 0;
/// The state in `lstm_input.state` (a state buffer of `batch` sequences).
pub const LSTM_INITIAL_GIVEN: lstm_initial_state = 1;
/// The final state the workspace holds from its previous pass over a batch of the same
/// size: how a stream of chunks carries its state, without a copy.
pub const LSTM_INITIAL_CARRY: lstm_initial_state = 2;

/// The input of a forward pass (and of the backward pass that follows a training one).
/// Every length is in elements.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lstm_input {
    /// `[B, T, I]`, or `[T, B, I]` when the spec is time-major.
    pub data: *const f32,
    /// Elements in `data`: `batch * steps * input_size`.
    pub data_len: usize,
    /// Sequences `B` (at least 1).
    pub batch: usize,
    /// Time steps `T` (at least 1).
    pub steps: usize,
    /// NULL for every sequence `T` steps long, or `batch` lengths in `0..=T` (TF
    /// `dynamic_rnn`: outputs past a length are zero, the final state is the state at
    /// the last real step, a length of 0 keeps the initial state).
    pub sequence_length: *const i32,
    /// Entries in `sequence_length` (0 when it is NULL).
    pub sequence_length_len: usize,
    /// `LSTM_INITIAL_ZEROS`, `LSTM_INITIAL_GIVEN` or `LSTM_INITIAL_CARRY`.
    pub initial_state: lstm_initial_state,
    /// With `LSTM_INITIAL_GIVEN`, a state buffer for `batch` sequences; else NULL.
    pub state: *const f32,
    /// Elements in `state` (`lstm_spec_state_len`; 0 when it is NULL).
    pub state_len: usize,
}

/// An LSTM ready to run: the weights packed for this CPU's kernels and a thread pool.
/// `lstm_forward_inference`, `lstm_forward_training`, `lstm_backward` and
/// `lstm_reserve_create` take it `const`: one `lstm` may serve many threads at once,
/// each with its own workspace (and reserve and gradients).
pub struct lstm {
    pub(crate) lstm: Lstm,
}

/// Every buffer of a forward pass, and its output and final state afterwards. Not
/// thread-safe: one thread at a time.
pub struct lstm_workspace {
    pub(crate) ws: Workspace,
}

/// The C input, checked and converted; `state` owns a given initial state.
pub(crate) struct Input<'a> {
    data: &'a [f32],
    batch: usize,
    steps: usize,
    lengths: Option<&'a [i32]>,
    mode: lstm_initial_state,
    state: Option<LstmState>,
}

impl Input<'_> {
    /// Reads `input` against the spec of `lstm`: pointers, the initial-state mode and
    /// the given state's length. The Rust API checks the rest (sizes, lengths' values).
    ///
    /// # Safety
    /// `input` is NULL or a live `lstm_input` whose non-NULL pointers hold what their
    /// lengths say, unchanged while the result lives.
    pub(crate) unsafe fn read<'a>(input: *const lstm_input, lstm: &Lstm) -> CResult<Input<'a>> {
        // SAFETY: the caller's contract, passed on.
        let input = unsafe { arg(input, "input") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let data = unsafe { slice(input.data, input.data_len, "input.data") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        let lengths = unsafe {
            optional_slice(
                input.sequence_length,
                input.sequence_length_len,
                "input.sequence_length",
            )
        }?;
        let spec = lstm.weights().spec();
        let state = match input.initial_state {
            LSTM_INITIAL_GIVEN => {
                // SAFETY: as above.
                let s = unsafe { slice(input.state, input.state_len, "input.state") }?;
                Some(unpack_state(spec, input.batch, s, "input.state")?)
            }
            LSTM_INITIAL_ZEROS | LSTM_INITIAL_CARRY => {
                if !input.state.is_null() || input.state_len != 0 {
                    return Err(Failure::invalid(format!(
                        "input.state is given ({} elements) but input.initial_state is {} \
                         (not LSTM_INITIAL_GIVEN)",
                        input.state_len, input.initial_state
                    )));
                }
                None
            }
            other => {
                return Err(Failure::invalid(format!(
                    "input.initial_state: expected 0 (zeros), 1 (given) or 2 (carry), got {other}"
                )))
            }
        };
        Ok(Input {
            data,
            batch: input.batch,
            steps: input.steps,
            lengths,
            mode: input.initial_state,
            state,
        })
    }

    /// The Rust API's view of it.
    pub(crate) fn forward(&self) -> ForwardInput<'_> {
        let mut f = ForwardInput::new(self.data, self.batch, self.steps);
        if let Some(l) = self.lengths {
            f = f.sequence_length(l);
        }
        f.initial_state(match (self.mode, &self.state) {
            (_, Some(s)) => InitialState::Given(s),
            (LSTM_INITIAL_CARRY, None) => InitialState::Carry,
            _ => InitialState::Zeros,
        })
    }
}

/// Packs `weights` (copied: the weights handle may be destroyed afterwards) for this
/// CPU's best kernels (`LSTM_KERNELS_ISA=scalar|avx2|avx512|neon` forces one) with
/// `threads` threads, 0 for one per core. Results are bitwise identical for any thread
/// count. `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `weights` or `out`;
/// `LSTM_STATUS_INVALID_ARGUMENT` when `LSTM_KERNELS_ISA` names an ISA this CPU lacks or
/// the thread pool cannot be made; `LSTM_STATUS_OUT_OF_MEMORY` when the packed weights
/// cannot be allocated.
///
/// # Safety
/// `weights` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_create(
    weights: *const lstm_weights,
    threads: usize,
    out: *mut *mut lstm,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let weights = &unsafe { arg(weights, "weights") }?.weights;
        let options = LstmOptions {
            threads: (threads > 0).then_some(threads),
            ..Default::default()
        };
        let lstm = Lstm::with_options(weights.clone(), options)?;
        Ok(self::lstm { lstm })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Frees an `lstm` and its threads; NULL is a no-op. No call may be using it.
///
/// # Errors
/// `LSTM_STATUS_MISALIGNED_POINTER` for a pointer no create function returned.
///
/// # Safety
/// `lstm` is NULL or from `lstm_create`, not destroyed before, and no other thread uses it.
#[no_mangle]
pub unsafe extern "C" fn lstm_destroy(lstm: *mut lstm) -> lstm_status {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { destroy(lstm, "lstm") })
}

/// A workspace for `spec`, sized ahead for `batch` sequences of `steps` steps. The sizes
/// are a hint: a pass grows it to its own batch, and a hint whose buffers cannot exist or
/// be allocated leaves it empty until then. `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `spec` or `out`.
///
/// # Safety
/// `spec` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_create(
    spec: *const lstm_spec,
    batch: usize,
    steps: usize,
    out: *mut *mut lstm_workspace,
) -> lstm_status {
    let make = || {
        // SAFETY: this function's contract (# Safety), passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        let ws = Workspace::new(spec, batch, steps);
        Ok(lstm_workspace { ws })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Frees a workspace; NULL is a no-op.
///
/// # Errors
/// `LSTM_STATUS_MISALIGNED_POINTER` for a pointer no create function returned.
///
/// # Safety
/// `ws` is NULL or from `lstm_workspace_create`, not destroyed before.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_destroy(ws: *mut lstm_workspace) -> lstm_status {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { destroy(ws, "ws") })
}

/// Runs the stack forward for inference over `input`. On success the workspace holds
/// the output (`lstm_workspace_output`) and the final state
/// (`lstm_workspace_final_state`).
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `lstm`, `ws`,
/// `input` or one of its buffers; `LSTM_STATUS_SHAPE_MISMATCH` when `data_len`,
/// `sequence_length_len` or `state_len` is not what `batch`, `steps` and the spec need,
/// `batch` or `steps` is 0, their buffers could not exist, or `LSTM_INITIAL_CARRY`
/// follows no pass of the same batch in `ws`; `LSTM_STATUS_INVALID_ARGUMENT` for a
/// length outside `0..=T`, an unknown initial-state mode, a state given with another
/// mode, or a workspace of another spec; `LSTM_STATUS_OUT_OF_MEMORY` when the pass's
/// buffers cannot be allocated (then nothing ran and `ws` has no state to carry).
///
/// # Safety
/// `lstm` is NULL or live; `ws` is NULL or a live workspace no other thread uses;
/// `input` is NULL or a live `lstm_input` whose non-NULL pointers hold what its lengths
/// say.
#[no_mangle]
pub unsafe extern "C" fn lstm_forward_inference(
    lstm: *const lstm,
    ws: *mut lstm_workspace,
    input: *const lstm_input,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let lstm = &unsafe { arg(lstm, "lstm") }?.lstm;
        // SAFETY: this function's contract (# Safety), passed on.
        let ws = &mut unsafe { arg_mut(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        let input = unsafe { Input::read(input, lstm) }?;
        Ok(lstm.forward_inference(&input.forward(), ws)?)
    })
}

/// The elements of the workspace's output: `batch * steps * lstm_spec_output_size` of
/// its last pass (of its size hint before any).
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `ws` or `len`.
///
/// # Safety
/// `ws` is NULL or live; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_output_len(
    ws: *const lstm_workspace,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let ws = &unsafe { arg(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(len, ws.output().len(), "len") }
    })
}

/// Copies the last pass's output (`[B, T, out]`, or `[T, B, out]` when time-major; zeros
/// past each sequence's length) into `out`, which holds exactly
/// `lstm_workspace_output_len` floats.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `ws` or `out`;
/// `LSTM_STATUS_SHAPE_MISMATCH` when `len` is not the output's length.
///
/// # Safety
/// `ws` is NULL or live; `out` is NULL or holds `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_output(
    ws: *const lstm_workspace,
    out: *mut f32,
    len: usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let ws = &unsafe { arg(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        let out = unsafe { slice_mut(out, len, "out") }?;
        expect_len("out (the output)", ws.output().len(), out.len())?;
        out.copy_from_slice(ws.output());
        Ok(())
    })
}

/// The last pass's output without a copy: `*data` points at `*len` floats that stay
/// valid, unchanged, until the workspace is next passed to a pass or destroyed.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `ws`, `data` or `len`.
///
/// # Safety
/// `ws` is NULL or live; `data` and `len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_output_data(
    ws: *const lstm_workspace,
    data: *mut *const f32,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let ws = &unsafe { arg(ws, "ws") }?.ws;
        let output = ws.output();
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(len, output.len(), "len") }?;
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(data, output.as_ptr(), "data") }
    })
}

/// The elements of the workspace's final state: a state buffer of its last pass's batch.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `ws` or `len`.
///
/// # Safety
/// `ws` is NULL or live; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_final_state_len(
    ws: *const lstm_workspace,
    len: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let ws = &unsafe { arg(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        unsafe { write_out(len, packed_len(ws.final_state()), "len") }
    })
}

/// Copies the last pass's final state (each sequence's state after its last real step)
/// into `out`, a state buffer of exactly `lstm_workspace_final_state_len` floats.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` / `LSTM_STATUS_MISALIGNED_POINTER` for `ws` or `out`;
/// `LSTM_STATUS_SHAPE_MISMATCH` when `len` is not the state's length.
///
/// # Safety
/// `ws` is NULL or live; `out` is NULL or holds `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn lstm_workspace_final_state(
    ws: *const lstm_workspace,
    out: *mut f32,
    len: usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let ws = &unsafe { arg(ws, "ws") }?.ws;
        // SAFETY: this function's contract (# Safety), passed on.
        let out = unsafe { slice_mut(out, len, "out") }?;
        pack_state(ws.final_state(), out, "out (the final state)")
    })
}

//! The spec handle: a stack's sizes and cell options, from a plain C descriptor; and the
//! one layout every state buffer of the C API uses.

use lstm_kernels::{CellState, LstmSpec, LstmState};

use crate::args::{arg, create, destroy, expect_len, mul, slice, write_out};
use crate::status::{guard, lstm_status, CResult};

/// The description of an LSTM stack, read by `lstm_spec_create` (which copies it: the
/// descriptor and its arrays may be freed afterwards).
///
/// A zero-initialised descriptor is TensorFlow's `BasicLSTMCell` without `forget_bias`:
/// set `input_size`, `num_layers` and `hidden_sizes`, and `forget_bias = 1.0f` for
/// TensorFlow's default.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lstm_spec_desc {
    /// Features per time step of the input `I` (at least 1).
    pub input_size: usize,
    /// Number of stacked layers (at least 1): the length of `hidden_sizes`.
    pub num_layers: usize,
    /// `num_layers` hidden sizes `H` (each at least 1), bottom layer first.
    pub hidden_sizes: *const usize,
    /// NULL for no projection anywhere, or `num_layers` projection widths `P` (TF
    /// `num_proj`, PyTorch `proj_size`), 0 for a layer without one.
    pub proj_sizes: *const usize,
    /// Added to the forget gate's pre-activation (TF `forget_bias`; 0 for PyTorch,
    /// Keras and ONNX weights). Must be finite.
    pub forget_bias: f32,
    /// Non-zero: TF's diagonal peephole connections.
    pub peepholes: i32,
    /// TF `cell_clip`: the cell state is clipped to `[-cell_clip, cell_clip]`. NaN, 0 or
    /// negative: no clipping. Infinity is refused.
    pub cell_clip: f32,
    /// TF `proj_clip`, for the layers that project; NaN, 0 or negative: none.
    pub proj_clip: f32,
    /// Non-zero: each layer also runs backwards and the directions' outputs are
    /// concatenated (PyTorch `bidirectional`).
    pub bidirectional: i32,
    /// Non-zero: inputs and outputs are `[T, B, F]` rather than `[B, T, F]`.
    pub time_major: i32,
}

/// A validated LSTM stack description. Immutable: may be shared between threads.
#[derive(Debug)]
pub struct lstm_spec {
    pub(crate) spec: LstmSpec,
}

/// `Some(clip)` for a clip value that asks for clipping (NaN, 0 and negatives do not).
fn clip(value: f32) -> Option<f32> {
    (value > 0.0).then_some(value)
}

fn build(desc: &lstm_spec_desc) -> CResult<LstmSpec> {
    // SAFETY: `hidden_sizes` holds `num_layers` entries (the descriptor's contract).
    let hidden = unsafe { slice(desc.hidden_sizes, desc.num_layers, "desc.hidden_sizes") }?;
    let mut builder = LstmSpec::builder(desc.input_size, hidden)
        .forget_bias(desc.forget_bias)
        .peepholes(desc.peepholes != 0)
        .bidirectional(desc.bidirectional != 0)
        .time_major(desc.time_major != 0);
    if !desc.proj_sizes.is_null() {
        // SAFETY: a non-NULL `proj_sizes` holds `num_layers` entries (the contract).
        let proj = unsafe { slice(desc.proj_sizes, desc.num_layers, "desc.proj_sizes") }?;
        let proj: Vec<Option<usize>> = proj.iter().map(|&p| (p > 0).then_some(p)).collect();
        builder = builder.proj_sizes(&proj);
    }
    if let Some(c) = clip(desc.cell_clip) {
        builder = builder.cell_clip(c);
    }
    if let Some(c) = clip(desc.proj_clip) {
        builder = builder.proj_clip(c);
    }
    Ok(builder.build()?)
}

/// Validates a descriptor and makes a spec; `*out` is NULL on failure.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` when `desc`, `out` or `desc->hidden_sizes` (with
/// `num_layers > 0`) is NULL; `LSTM_STATUS_MISALIGNED_POINTER` for a misaligned one;
/// `LSTM_STATUS_INVALID_ARGUMENT` when a size is 0, there is no layer, `forget_bias` is
/// not finite, a clip is infinite, or the sizes are so large that the weights or one
/// time step's buffers could not exist.
///
/// # Safety
/// `desc` is NULL or points at a descriptor whose non-NULL arrays hold `num_layers`
/// entries; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_spec_create(
    desc: *const lstm_spec_desc,
    out: *mut *mut lstm_spec,
) -> lstm_status {
    let make = || {
        // SAFETY: `desc` is NULL or a live descriptor (the contract).
        let spec = build(unsafe { arg(desc, "desc") }?)?;
        Ok(lstm_spec { spec })
    };
    // SAFETY: this function's contract (# Safety): `out` is NULL or writable.
    unsafe { create(out, make) }
}

/// Frees a spec; NULL is a no-op. Handles made from it (weights, workspaces, ...) hold
/// their own copy and stay valid.
///
/// # Errors
/// `LSTM_STATUS_MISALIGNED_POINTER` for a pointer no create function returned.
///
/// # Safety
/// `spec` is NULL or a spec from `lstm_spec_create`, not destroyed before.
#[no_mangle]
pub unsafe extern "C" fn lstm_spec_destroy(spec: *mut lstm_spec) -> lstm_status {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { destroy(spec, "spec") })
}

/// The number of cells `layers * directions`: the number of `(c, h)` pairs in a state
/// buffer.
///
/// # Errors
/// `LSTM_STATUS_NULL_POINTER` or `LSTM_STATUS_MISALIGNED_POINTER` for `spec` or `out`.
///
/// # Safety
/// `spec` is NULL or a live spec; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lstm_spec_num_cells(
    spec: *const lstm_spec,
    out: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        // SAFETY: the caller's contract, passed on.
        unsafe { write_out(out, spec.num_cells(), "out") }
    })
}

/// Features per time step of the stack's output (the top layer's `P` or `H`, times 2
/// when bidirectional): an output buffer holds `batch * steps` times this.
///
/// # Errors
/// As `lstm_spec_num_cells`.
///
/// # Safety
/// As `lstm_spec_num_cells`.
#[no_mangle]
pub unsafe extern "C" fn lstm_spec_output_size(
    spec: *const lstm_spec,
    out: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        // SAFETY: the caller's contract, passed on.
        unsafe { write_out(out, spec.output_size(), "out") }
    })
}

/// The floats of a state buffer for `batch` sequences (see "State buffers" in the
/// header's introduction): `batch * sum over cells of (H + R)`.
///
/// # Errors
/// As `lstm_spec_num_cells`; `LSTM_STATUS_SHAPE_MISMATCH` when the count overflows.
///
/// # Safety
/// As `lstm_spec_num_cells`.
#[no_mangle]
pub unsafe extern "C" fn lstm_spec_state_len(
    spec: *const lstm_spec,
    batch: usize,
    out: *mut usize,
) -> lstm_status {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let spec = &unsafe { arg(spec, "spec") }?.spec;
        let n = state_len(spec, batch)?;
        // SAFETY: the caller's contract, passed on.
        unsafe { write_out(out, n, "out") }
    })
}

/// `(c, h)` widths of cell `k`: `H` and `R` (`P` or `H`).
fn cell_widths(spec: &LstmSpec, k: usize) -> (usize, usize) {
    let layer = spec.layers()[spec.cell_layer(k)];
    (layer.hidden_size, layer.output_size())
}

/// Floats of a packed state of `batch` sequences, with checked arithmetic.
pub(crate) fn state_len(spec: &LstmSpec, batch: usize) -> CResult<usize> {
    let mut per_row = 0usize;
    for k in 0..spec.num_cells() {
        let (c, h) = cell_widths(spec, k);
        // The spec's widths fit: it was built only if its buffers can exist.
        per_row += c + h;
    }
    mul(batch, per_row, "state of `batch` sequences")
}

/// The packed state buffer `data` (named `name`) as an [`LstmState`] of `batch`
/// sequences.
pub(crate) fn unpack_state(
    spec: &LstmSpec,
    batch: usize,
    data: &[f32],
    name: &str,
) -> CResult<LstmState> {
    expect_len(name, state_len(spec, batch)?, data.len())?;
    let mut rest = data;
    let mut cells = Vec::with_capacity(spec.num_cells());
    for k in 0..spec.num_cells() {
        let (c, h) = cell_widths(spec, k);
        // Within `data`: its length is the sum of these parts (checked above).
        let (cs, tail) = rest.split_at(batch * c);
        let (hs, tail) = tail.split_at(batch * h);
        rest = tail;
        cells.push(CellState {
            c: cs.to_vec(),
            h: hs.to_vec(),
        });
    }
    Ok(LstmState { cells })
}

/// Copies `state` into the packed buffer `out` (named `name`), which must have exactly
/// its length.
pub(crate) fn pack_state(state: &LstmState, out: &mut [f32], name: &str) -> CResult {
    let want: usize = state.cells.iter().map(|c| c.c.len() + c.h.len()).sum();
    expect_len(name, want, out.len())?;
    let mut at = 0;
    for cell in &state.cells {
        for part in [&cell.c, &cell.h] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
    Ok(())
}

/// The floats [`pack_state`] writes for `state`.
pub(crate) fn packed_len(state: &LstmState) -> usize {
    state.cells.iter().map(|c| c.c.len() + c.h.len()).sum()
}

/// A descriptor that refuses nothing of its own, for the tests.
#[cfg(test)]
pub(crate) fn desc(input: usize, hidden: &[usize]) -> lstm_spec_desc {
    lstm_spec_desc {
        input_size: input,
        num_layers: hidden.len(),
        hidden_sizes: hidden.as_ptr(),
        proj_sizes: std::ptr::null(),
        forget_bias: 0.0,
        peepholes: 0,
        cell_clip: f32::NAN,
        proj_clip: 0.0,
        bidirectional: 0,
        time_major: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lstm_status::*;

    #[test]
    fn a_descriptor_becomes_the_builders_spec() {
        let (hidden, proj) = ([6usize, 5], [3usize, 0]);
        let mut d = desc(7, &hidden);
        d.proj_sizes = proj.as_ptr();
        d.bidirectional = 1;
        d.cell_clip = 2.0;
        d.proj_clip = -1.0;
        let mut out = std::ptr::null_mut();
        // SAFETY: `d` and its arrays outlive the call; `out` is writable.
        assert_eq!(unsafe { lstm_spec_create(&d, &mut out) }, LSTM_STATUS_OK);
        let want = LstmSpec::builder(7, &[6, 5])
            .forget_bias(0.0)
            .proj_sizes(&[Some(3), None])
            .bidirectional(true)
            .cell_clip(2.0)
            .build()
            .unwrap();
        // SAFETY: `out` was just made by lstm_spec_create.
        assert_eq!(unsafe { &(*out).spec }, &want);
        let mut n = 0;
        // SAFETY: a live spec and a writable out.
        let status = unsafe { lstm_spec_state_len(out, 2, &mut n) };
        assert_eq!(status, LSTM_STATUS_OK);
        assert_eq!(n, 2 * 2 * (6 + 3 + 5 + 5));
        // SAFETY: as above; the product overflows and is refused.
        let big = unsafe { lstm_spec_state_len(out, usize::MAX / 4, &mut n) };
        assert_eq!(big, LSTM_STATUS_SHAPE_MISMATCH);
        // SAFETY: made by lstm_spec_create, destroyed once.
        assert_eq!(unsafe { lstm_spec_destroy(out) }, LSTM_STATUS_OK);
    }

    #[test]
    fn a_state_packs_and_unpacks() {
        let spec = LstmSpec::builder(3, &[4, 2]).build().unwrap();
        let data: Vec<f32> = (0..2 * (4 + 4 + 2 + 2)).map(|i| i as f32).collect();
        let state = unpack_state(&spec, 2, &data, "s").unwrap();
        assert_eq!(
            state.cells[0].c,
            (0..8).map(|i| i as f32).collect::<Vec<_>>()
        );
        assert_eq!(state.cells[1].h, vec![20.0, 21.0, 22.0, 23.0]);
        let mut back = vec![0.0; data.len()];
        pack_state(&state, &mut back, "s").unwrap();
        assert_eq!(back, data);
        let short = unpack_state(&spec, 2, &data[1..], "s").unwrap_err();
        assert_eq!(short.status, LSTM_STATUS_SHAPE_MISMATCH);
        assert!(short.message.contains("expected 24 elements, got 23"));
    }
}

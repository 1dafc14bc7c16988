//! The caller-owned buffers of a pass: the output and final state it leaves, and the
//! engine's scratch, so that repeated calls do not allocate.

use crate::engine::backward::BackwardBuffers;
use crate::engine::forward::ForwardBuffers;
use crate::model::alloc::reserve_for;
use crate::model::error::Result;
use crate::model::spec::{floats, LstmSpec};
use crate::model::state::LstmState;

/// Every buffer a forward pass needs, owned by the caller so that repeated calls do not
/// allocate (a call allocates only when its batch or length is larger than any before).
///
/// After a pass it holds the output and the final state.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The spec it was made for.
    pub(crate) spec: LstmSpec,
    /// `B` of the last pass.
    pub(crate) batch: usize,
    /// `T` of the last pass.
    pub(crate) steps: usize,
    /// Batch size of the state held in `state`, if a pass has run.
    pub(crate) state_batch: Option<usize>,
    /// The output, `[B, T, out]` (or time-major).
    pub(crate) output: Vec<f32>,
    /// The final state after a pass (the initial state, while one runs).
    pub(crate) state: LstmState,
    /// `[B]` lengths of the current pass.
    pub(crate) lengths: Vec<usize>,
    /// The forward pass's scratch.
    pub(crate) fast: ForwardBuffers,
    /// The backward pass's scratch.
    pub(crate) backward: BackwardBuffers,
}

impl Workspace {
    /// A workspace sized for `batch` sequences of `steps` steps. The sizes are a hint:
    /// a pass resizes it to its own batch (and refuses one whose buffers cannot exist or
    /// cannot be allocated), and sizes whose buffers could not exist, or that the machine
    /// cannot allocate, leave it empty until then.
    pub fn new(spec: &LstmSpec, batch: usize, steps: usize) -> Self {
        let mut ws = Workspace {
            spec: spec.clone(),
            batch: 0,
            steps: 0,
            state_batch: None,
            output: Vec::new(),
            state: LstmState::zeros(spec, 0),
            lengths: Vec::new(),
            fast: ForwardBuffers::default(),
            backward: Default::default(),
        };
        if fits(spec, batch, steps) {
            // A hint the machine cannot hold is dropped: the pass will say so.
            let _ = ws.resize(batch, steps);
        }
        ws
    }

    /// Sizes the output, lengths and state for `batch` sequences of `steps` steps, which
    /// [`fits`]. Reserves every buffer before it changes any, so that on error (the
    /// memory does not exist) the workspace is as it was.
    pub(crate) fn resize(&mut self, batch: usize, steps: usize) -> Result<()> {
        let spec = &self.spec;
        let out_len = batch * steps * spec.output_size();
        reserve_for(&mut self.output, out_len, "output")?;
        reserve_for(&mut self.lengths, batch, "sequence_length")?;
        for (k, cell) in self.state.cells.iter_mut().enumerate() {
            let layer = spec.layers()[spec.cell_layer(k)];
            reserve_for(&mut cell.c, batch * layer.hidden_size, "final_state/c")?;
            reserve_for(&mut cell.h, batch * layer.output_size(), "final_state/h")?;
        }
        // Within the capacity just reserved: these allocate nothing.
        self.output.resize(out_len, 0.0);
        self.lengths.resize(batch, 0);
        for (k, cell) in self.state.cells.iter_mut().enumerate() {
            let layer = spec.layers()[spec.cell_layer(k)];
            cell.c.resize(batch * layer.hidden_size, 0.0);
            cell.h.resize(batch * layer.output_size(), 0.0);
        }
        self.batch = batch;
        self.steps = steps;
        Ok(())
    }

    /// The output of the last pass: `[B, T, out]` (or `[T, B, out]` when time-major),
    /// zeros at steps past each sequence's length.
    pub fn output(&self) -> &[f32] {
        &self.output[..self.batch * self.steps * self.spec.output_size()]
    }

    /// The final state of the last pass: for each sequence, the state after its last real
    /// step (the initial state when its length is 0). For the backward direction of a
    /// bidirectional layer, the state after step 0.
    pub fn final_state(&self) -> &LstmState {
        &self.state
    }
}

/// `batch * steps` tokens, when every buffer of a pass over them can exist: each holds at
/// most `max_token_floats` per token (the check `prepare` makes of a pass's input).
pub(crate) fn fitting_tokens(spec: &LstmSpec, batch: usize, steps: usize) -> Option<usize> {
    batch
        .checked_mul(steps)
        .filter(|&tokens| floats(tokens, spec.max_token_floats()).is_some())
}

/// Whether every buffer of a pass of `batch` sequences of `steps` steps can exist.
pub(crate) fn fits(spec: &LstmSpec, batch: usize, steps: usize) -> bool {
    fitting_tokens(spec, batch, steps).is_some()
}

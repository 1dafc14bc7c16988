//! The caller-owned buffers of a pass: the output and final state it leaves, and the
//! engine's scratch, so that repeated calls do not allocate.

use crate::engine::backward::BackwardBuffers;
use crate::engine::forward::ForwardBuffers;
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
    /// a pass resizes it to its own batch (and refuses one whose buffers cannot exist),
    /// and sizes whose buffers could not exist leave it empty until then.
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
            ws.resize(batch, steps);
        }
        ws
    }

    /// Sizes the output, lengths and state for `batch` sequences of `steps` steps, which
    /// [`fits`].
    pub(crate) fn resize(&mut self, batch: usize, steps: usize) {
        let spec = &self.spec;
        self.output.resize(batch * steps * spec.output_size(), 0.0);
        self.lengths.resize(batch, 0);
        for (k, cell) in self.state.cells.iter_mut().enumerate() {
            let layer = spec.layers()[spec.cell_layer(k)];
            cell.c.resize(batch * layer.hidden_size, 0.0);
            cell.h.resize(batch * layer.output_size(), 0.0);
        }
        self.batch = batch;
        self.steps = steps;
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

/// Whether every buffer of a pass of `batch` sequences of `steps` steps can exist (the
/// check `prepare` makes of a pass's input).
pub(crate) fn fits(spec: &LstmSpec, batch: usize, steps: usize) -> bool {
    batch
        .checked_mul(steps)
        .and_then(|tokens| floats(tokens, spec.max_token_floats()))
        .is_some()
}

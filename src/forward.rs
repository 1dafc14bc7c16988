//! Forward inference over a stack: inputs, states, the workspace, and the entry point.

use crate::aligned::AlignedVec;
use crate::error::{Error, Result};
use crate::schedule::Schedule;
use crate::spec::LstmSpec;

/// The state `(c, h)` of one cell (layer and direction) for a whole batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CellState {
    /// Cell state, `[B, H]` row-major.
    pub c: Vec<f32>,
    /// Output state, `[B, P or H]` row-major.
    pub h: Vec<f32>,
}

/// The state of every cell of a stack, index `k = layer * D + direction`.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmState {
    /// One entry per cell.
    pub cells: Vec<CellState>,
}

impl LstmState {
    /// All-zero state for `batch` sequences.
    pub fn zeros(spec: &LstmSpec, batch: usize) -> Self {
        let cells = (0..spec.num_cells())
            .map(|k| {
                let layer = spec.layers()[spec.cell_layer(k)];
                CellState {
                    c: vec![0.0; batch * layer.hidden_size],
                    h: vec![0.0; batch * layer.output_size()],
                }
            })
            .collect();
        LstmState { cells }
    }

    fn check(&self, spec: &LstmSpec, batch: usize) -> Result<()> {
        if self.cells.len() != spec.num_cells() {
            return Err(Error::Shape {
                tensor: "initial_state".into(),
                expected: format!("{} cells", spec.num_cells()),
                actual: format!("{} cells", self.cells.len()),
            });
        }
        for (k, cell) in self.cells.iter().enumerate() {
            let layer = spec.layers()[spec.cell_layer(k)];
            let want_c = [batch, layer.hidden_size];
            let want_h = [batch, layer.output_size()];
            if cell.c.len() != want_c[0] * want_c[1] {
                return Err(shape_of_len(
                    &format!("initial_state/{k}/c"),
                    &want_c,
                    cell.c.len(),
                ));
            }
            if cell.h.len() != want_h[0] * want_h[1] {
                return Err(shape_of_len(
                    &format!("initial_state/{k}/h"),
                    &want_h,
                    cell.h.len(),
                ));
            }
        }
        Ok(())
    }
}

fn shape_of_len(tensor: &str, expected: &[usize], actual_len: usize) -> Error {
    Error::Shape {
        tensor: tensor.to_string(),
        expected: format!(
            "{expected:?} ({} elements)",
            expected.iter().product::<usize>()
        ),
        actual: format!("{actual_len} elements"),
    }
}

/// Where a forward pass starts from.
#[derive(Debug, Clone, Copy, Default)]
pub enum InitialState<'a> {
    /// Zeros for every cell.
    #[default]
    Zeros,
    /// The given state (`[B, H]` and `[B, P or H]` per cell).
    Given(&'a LstmState),
    /// The final state the workspace holds from its previous pass over the same batch:
    /// the way to carry state from one call to the next (truncated backpropagation,
    /// streaming step by step) without a copy.
    Carry,
}

/// The input of a forward pass: data, sizes, optional lengths and initial state.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInput<'a> {
    /// `[B, T, I]`, or `[T, B, I]` when the spec is time-major.
    pub data: &'a [f32],
    /// Batch size `B`.
    pub batch: usize,
    /// Time steps `T`.
    pub steps: usize,
    /// `[B]` lengths in `0..=T` with TF `dynamic_rnn` semantics; `None` means all `T`.
    pub sequence_length: Option<&'a [i32]>,
    /// Where the state starts.
    pub initial_state: InitialState<'a>,
}

impl<'a> ForwardInput<'a> {
    /// Full-length sequences from a zero state.
    pub fn new(data: &'a [f32], batch: usize, steps: usize) -> Self {
        ForwardInput {
            data,
            batch,
            steps,
            sequence_length: None,
            initial_state: InitialState::Zeros,
        }
    }
    /// Sets per-sequence lengths.
    pub fn sequence_length(mut self, lengths: &'a [i32]) -> Self {
        self.sequence_length = Some(lengths);
        self
    }
    /// Sets the initial state.
    pub fn initial_state(mut self, state: InitialState<'a>) -> Self {
        self.initial_state = state;
        self
    }
}

/// Every buffer a forward pass needs, owned by the caller so that repeated calls do not
/// allocate (a call allocates only when its batch or length is larger than any before).
///
/// After a pass it holds the output and the final state.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) spec: LstmSpec,
    pub(crate) batch: usize,
    pub(crate) steps: usize,
    /// Batch size of the state held in `state`, if a pass has run.
    pub(crate) state_batch: Option<usize>,
    pub(crate) output: Vec<f32>,
    /// Output of the layer below the one running (ping-pong with `layer_b`).
    pub(crate) layer_a: Vec<f32>,
    pub(crate) layer_b: Vec<f32>,
    pub(crate) state: LstmState,
    pub(crate) lengths: Vec<usize>,
    pub(crate) gates: Vec<f32>,
    pub(crate) cell_out: Vec<f32>,
    pub(crate) fast: FastBuffers,
    pub(crate) backward: crate::bptt::BackwardBuffers,
}

/// The buffers of the packed fast path, grown on first use to what the schedule needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastBuffers {
    pub sched: Schedule,
    /// Gathered inputs of every real token, `[sum(len), in]`.
    pub xg: AlignedVec,
    /// Input projections, `[sum(len), tiles*4U]`.
    pub zx: AlignedVec,
    /// Packed outputs of alternate layers, `[sum(len), out]`.
    pub pa: AlignedVec,
    pub pb: AlignedVec,
    /// The backward direction's outputs in its own order, `[sum(len), R]`.
    pub bwd: Vec<f32>,
    /// Cell state and kernel output `m` in schedule order, `[B, tiles*U]`.
    pub c: Vec<f32>,
    pub m: Vec<f32>,
    /// Initial `h` in schedule order, `[B, R]`.
    pub h0: Vec<f32>,
}

impl Workspace {
    /// A workspace sized for `batch` sequences of `steps` steps.
    pub fn new(spec: &LstmSpec, batch: usize, steps: usize) -> Self {
        let mut ws = Workspace {
            spec: spec.clone(),
            batch: 0,
            steps: 0,
            state_batch: None,
            output: Vec::new(),
            layer_a: Vec::new(),
            layer_b: Vec::new(),
            state: LstmState::zeros(spec, 0),
            lengths: Vec::new(),
            gates: Vec::new(),
            cell_out: Vec::new(),
            fast: FastBuffers::default(),
            backward: Default::default(),
        };
        ws.resize(batch, steps);
        ws
    }

    pub(crate) fn resize(&mut self, batch: usize, steps: usize) {
        let spec = &self.spec;
        let widest_inner = (0..spec.num_layers().saturating_sub(1))
            .map(|l| spec.layer_output_size(l))
            .max()
            .unwrap_or(0);
        let widest_h = spec
            .layers()
            .iter()
            .map(|l| l.hidden_size)
            .max()
            .unwrap_or(0);
        self.output.resize(batch * steps * spec.output_size(), 0.0);
        self.layer_a.resize(batch * steps * widest_inner, 0.0);
        self.layer_b.resize(batch * steps * widest_inner, 0.0);
        self.lengths.resize(batch, 0);
        self.gates.resize(4 * widest_h, 0.0);
        self.cell_out.resize(widest_h, 0.0);
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

/// Checks `input` against the spec and prepares `ws` (sizes, lengths, initial state).
pub(crate) fn prepare(spec: &LstmSpec, input: &ForwardInput<'_>, ws: &mut Workspace) -> Result<()> {
    if ws.spec != *spec {
        return Err(Error::Config(
            "the workspace was made for a different LstmSpec".into(),
        ));
    }
    let (b, t, i) = (input.batch, input.steps, spec.input_size());
    let want: [usize; 3] = if spec.time_major() {
        [t, b, i]
    } else {
        [b, t, i]
    };
    let names = if spec.time_major() {
        "[T, B, I]"
    } else {
        "[B, T, I]"
    };
    if b == 0 || t == 0 {
        return Err(Error::Shape {
            tensor: "input".into(),
            expected: format!("{names} with B >= 1 and T >= 1"),
            actual: format!("{want:?}"),
        });
    }
    if input.data.len() != b * t * i {
        return Err(shape_of_len("input", &want, input.data.len()));
    }
    if let Some(lens) = input.sequence_length {
        if lens.len() != b {
            return Err(Error::shape("sequence_length", &[b], &[lens.len()]));
        }
        if let Some((index, &value)) = lens
            .iter()
            .enumerate()
            .find(|&(_, &l)| l < 0 || l as usize > t)
        {
            return Err(Error::Length {
                index,
                value: value.into(),
                steps: t,
            });
        }
    }
    match input.initial_state {
        InitialState::Given(s) => s.check(spec, b)?,
        InitialState::Carry => {
            if ws.state_batch != Some(b) {
                return Err(Error::Shape {
                    tensor: "initial_state".into(),
                    expected: format!("a carried state of batch {b}"),
                    actual: match ws.state_batch {
                        Some(prev) => format!("batch {prev} from the previous pass"),
                        None => "no previous pass in this workspace".into(),
                    },
                });
            }
        }
        InitialState::Zeros => {}
    }

    ws.resize(b, t);
    for (dst, bi) in ws.lengths.iter_mut().zip(0..b) {
        *dst = input.sequence_length.map_or(t, |l| l[bi] as usize);
    }
    match input.initial_state {
        InitialState::Zeros => ws.state.cells.iter_mut().for_each(|c| {
            c.c.fill(0.0);
            c.h.fill(0.0);
        }),
        InitialState::Given(s) => {
            for (dst, src) in ws.state.cells.iter_mut().zip(&s.cells) {
                dst.c.copy_from_slice(&src.c);
                dst.h.copy_from_slice(&src.h);
            }
        }
        InitialState::Carry => {}
    }
    ws.state_batch = Some(b);
    Ok(())
}

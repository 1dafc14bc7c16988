//! What a forward pass is given: the input, its lengths and where the state starts; and
//! the check of all of it against the spec before anything runs.

use crate::model::error::{Error, Result};
use crate::model::spec::LstmSpec;
use crate::model::state::LstmState;

use super::workspace::{fitting_tokens, Workspace};

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
    // Every buffer of the pass holds at most `max_token_floats` per token: bound them all
    // here, before anything is sized or indexed from `B` and `T`.
    let Some(tokens) = fitting_tokens(spec, b, t) else {
        return Err(Error::Shape {
            tensor: "input".into(),
            expected: format!(
                "{names} with B * T * {} floats (the pass's buffers per token) within memory",
                spec.max_token_floats()
            ),
            actual: format!("{want:?}"),
        });
    };
    if input.data.len() != tokens * i {
        return Err(Error::shape_of_len("input", &want, input.data.len()));
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

    ws.resize(b, t)?;
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

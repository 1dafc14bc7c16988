//! Training's types: the reserve that forward-training fills, the upstream gradients, the
//! gradients `Lstm::backward` returns, and the check of a backward pass's arguments. The
//! backward pass itself is the engine's (`engine/backward/`).

use crate::engine::tape::Tape;
use crate::model::alloc::{resize, zeros};
use crate::model::error::{Error, Result};
use crate::model::spec::LstmSpec;
use crate::model::state::LstmState;
use crate::model::tensors::Tensors;
use crate::model::weights::LstmWeights;

use super::input::ForwardInput;
use super::workspace::{fits, Workspace};

/// Upstream gradients of a backward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upstream<'a> {
    /// dL/d(output), shaped like the output (`[B, T, out]` or time-major). Entries at
    /// padded steps are ignored: those outputs are constant zeros.
    pub output: Option<&'a [f32]>,
    /// dL/d(final state), one `(c, h)` per cell, shaped like the state.
    pub final_state: Option<&'a LstmState>,
}

/// Gradients of every parameter and input, in the crate's canonical layouts (the same
/// shapes as [`LstmWeights`]: export them with [`Gradients::to_tensorflow`] or
/// [`Gradients::to_pytorch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// dL/d(weights), shaped and laid out like the weights.
    pub weights: LstmWeights,
    /// dL/d(input), shaped like the input.
    pub input: Vec<f32>,
    /// dL/d(initial state), shaped like the state.
    pub initial_state: LstmState,
}

impl Gradients {
    /// The weight gradients under TensorFlow's names and layouts.
    pub fn to_tensorflow(&self) -> Tensors {
        self.weights.to_tensorflow()
    }

    /// The weight gradients under PyTorch's names and layouts (`bias_ih` and `bias_hh`
    /// both receive the bias gradient).
    ///
    /// # Errors
    /// [`Error::Config`] when the spec has what PyTorch cannot express (peepholes, clips).
    pub fn to_pytorch(&self) -> Result<Tensors> {
        self.weights.pytorch_tensors(true)
    }
}

impl Gradients {
    /// Zero gradients for `spec` and a batch of `batch` sequences of `steps` steps: the
    /// buffers [`Lstm::backward`](crate::Lstm::backward) overwrites. The sizes are a hint,
    /// as [`Workspace::new`]'s: a backward pass resizes the input's and the initial state's
    /// gradients to its own batch, and sizes whose buffers could not exist, or that the
    /// machine cannot allocate, leave them empty until then.
    pub fn zeros(spec: &LstmSpec, batch: usize, steps: usize) -> Self {
        let sized = || -> Result<(Vec<f32>, LstmState)> {
            let input = zeros(batch * steps * spec.input_size(), "grad_input")?;
            Ok((input, LstmState::try_zeros(spec, batch)?))
        };
        let (input, initial_state) = fits(spec, batch, steps)
            .then(sized)
            .and_then(Result::ok)
            .unwrap_or_else(|| (Vec::new(), LstmState::zeros(spec, 0)));
        Gradients {
            weights: LstmWeights::zeros(spec),
            input,
            initial_state,
        }
    }
}

/// What [`Lstm::forward_training`](crate::Lstm::forward_training) keeps for [`Lstm::backward`](crate::Lstm::backward). Make one with
/// [`Lstm::reserve`](crate::Lstm::reserve) (sized for a batch and a length, so that training does not
/// allocate); it grows if a larger batch comes.
#[derive(Debug, Clone, Default)]
pub struct TrainReserve {
    /// What the engine's backward reads.
    pub(crate) tape: Tape,
    /// `B`, `T` and the lengths of the pass recorded.
    pub(crate) batch: usize,
    pub(crate) steps: usize,
    pub(crate) lengths: Vec<usize>,
    /// Whether a forward-training pass has filled it.
    pub(crate) filled: bool,
    /// The spec of the `Lstm` whose pass filled it.
    pub(crate) spec: Option<LstmSpec>,
}

impl TrainReserve {
    /// Bytes held, for planning memory.
    pub fn bytes(&self) -> usize {
        self.tape.bytes()
    }
}

/// Checks a backward pass's arguments against the forward-training pass `reserve`
/// recorded and the spec, and sizes `grads` for its batch (see
/// [`Lstm::backward`](crate::Lstm::backward) for the errors).
pub(crate) fn prepare_backward(
    spec: &LstmSpec,
    input: &ForwardInput<'_>,
    reserve: &TrainReserve,
    upstream: &Upstream<'_>,
    ws: &Workspace,
    grads: &mut Gradients,
) -> Result<()> {
    let (batch, steps) = (input.batch, input.steps);
    if reserve.spec.as_ref() != Some(spec) {
        return Err(Error::Config(
            "backward needs the reserve of a forward_training pass of this Lstm's spec".into(),
        ));
    }
    if !reserve.filled || reserve.batch != batch || reserve.steps != steps {
        return Err(Error::Config(
            "backward needs the reserve of a forward_training pass over the same input".into(),
        ));
    }
    let lengths_match = match input.sequence_length {
        None => reserve.lengths.iter().all(|&l| l == steps),
        Some(l) => {
            l.len() == batch
                && l.iter()
                    .zip(&reserve.lengths)
                    .all(|(&a, &b)| a as usize == b)
        }
    };
    if !lengths_match {
        return Err(Error::Config(
            "backward: sequence_length differs from the forward-training pass".into(),
        ));
    }
    // The forward pass checked that `batch * steps` tokens of this spec fit.
    let in_len = batch * steps * spec.input_size();
    if input.data.len() != in_len {
        return Err(Error::shape("input", &[in_len], &[input.data.len()]));
    }
    let out_len = batch * steps * spec.output_size();
    if let Some(g) = upstream.output {
        if g.len() != out_len {
            return Err(Error::Shape {
                tensor: "grad_output".into(),
                expected: format!("{out_len} elements (like the output)"),
                actual: format!("{} elements", g.len()),
            });
        }
    }
    if let Some(s) = upstream.final_state {
        s.check_as(spec, batch, "grad_final_state")?;
    }
    if grads.weights.spec() != spec || ws.spec != *spec {
        return Err(Error::Config(
            "backward: grads or workspace made for another spec".into(),
        ));
    }
    resize(&mut grads.input, in_len, 0.0, "grad_input")?;
    if grads
        .initial_state
        .cells
        .first()
        .is_some_and(|c| c.c.len() != batch * spec.layers()[0].hidden_size)
    {
        grads.initial_state = LstmState::try_zeros(spec, batch)?;
    }
    Ok(())
}

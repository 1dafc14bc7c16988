//! Helpers shared by the integration tests.
#![allow(dead_code)]

use lstm_kernels::{
    forward_inference, ForwardInput, InitialState, LstmSpec, LstmState, LstmWeights, SplitMix64,
    Workspace,
};

/// Runs the public forward pass and returns (output, final state).
pub fn run(
    weights: &LstmWeights,
    x: &[f32],
    batch: usize,
    steps: usize,
    lengths: Option<&[i32]>,
    init: Option<&LstmState>,
) -> (Vec<f32>, LstmState) {
    let mut ws = Workspace::new(weights.spec(), batch, steps);
    let mut input = ForwardInput::new(x, batch, steps);
    if let Some(l) = lengths {
        input = input.sequence_length(l);
    }
    if let Some(s) = init {
        input = input.initial_state(InitialState::Given(s));
    }
    forward_inference(weights, &input, &mut ws).expect("forward");
    (ws.output().to_vec(), ws.final_state().clone())
}

/// A random state for `spec` and `batch`.
pub fn random_state(spec: &LstmSpec, batch: usize, seed: u64) -> LstmState {
    let mut rng = SplitMix64::new(seed);
    let mut s = LstmState::zeros(spec, batch);
    for cell in &mut s.cells {
        cell.c = rng.uniform_vec(cell.c.len(), -1.0, 1.0);
        cell.h = rng.uniform_vec(cell.h.len(), -1.0, 1.0);
    }
    s
}

/// Random input of `n` values in [-1, 1].
pub fn random_input(n: usize, seed: u64) -> Vec<f32> {
    SplitMix64::new(seed).uniform_vec(n, -1.0, 1.0)
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

use lstm_kernels::golden::Engine;
use lstm_kernels::{
    ForwardInput, InitialState, Isa, Lstm, LstmOptions, LstmSpec, LstmState, LstmWeights,
    SplitMix64, Workspace,
};

/// The scalar reference and, for every ISA this CPU supports ([`isas`]: a failed
/// self-check panics), the fast path on 1 thread and
/// on 2: sharing the time loop by hidden units with one input projection up front, and
/// by sequences with each step's projection in the time loop (both forced; by default
/// each layer picks by its size): every engine the tests hold to the same contract.
pub fn engines() -> Vec<Engine> {
    let mut out = vec![Engine::Reference];
    for isa in isas() {
        for (threads, split_rows, step_projection) in [
            (1, None, None),
            (2, Some(false), Some(false)),
            // Split by units with the projection in the k loop (each thread's slices).
            (2, Some(false), Some(true)),
            (2, Some(true), Some(true)),
        ] {
            out.push(Engine::Fast(LstmOptions {
                isa: Some(isa),
                threads: Some(threads),
                call_threads: Some(threads),
                step_projection,
                split_rows,
                ..Default::default()
            }));
        }
    }
    out
}

/// The ISAs this build and CPU support (scalar always), whether or not they passed their
/// self-check.
///
/// # Panics
/// When one of them failed its self-check against the scalar path: the crate would
/// refuse it, and a test "on every ISA" must fail then, not test one ISA fewer.
pub fn isas() -> Vec<Isa> {
    let cpu = lstm_kernels_simd::cpu_isas();
    for &isa in &cpu {
        let status = lstm_kernels_simd::isa_status(isa);
        assert_eq!(
            status,
            lstm_kernels_simd::IsaStatus::Available,
            "{isa} is supported by this CPU but is not available: {status}"
        );
    }
    cpu
}

/// Writes `line` straight to the process's stderr, past the test harness's capture, so
/// that a skip or a summary shows in a passing run.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `engine` and returns (output, final state).
pub fn run_on(
    engine: Engine,
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
    match engine {
        Engine::Reference => lstm_kernels::reference::forward(weights, &input, &mut ws),
        Engine::Fast(o) => Lstm::with_options(weights.clone(), o)
            .unwrap()
            .forward_inference(&input, &mut ws),
    }
    .expect("forward");
    (ws.output().to_vec(), ws.final_state().clone())
}

/// Runs the reference forward pass and returns (output, final state).
pub fn run(
    weights: &LstmWeights,
    x: &[f32],
    batch: usize,
    steps: usize,
    lengths: Option<&[i32]>,
    init: Option<&LstmState>,
) -> (Vec<f32>, LstmState) {
    run_on(Engine::Reference, weights, x, batch, steps, lengths, init)
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

//! The contract on non-finite values (the crate docs, "Bad input"): a NaN or an infinity
//! in a sequence's input or initial state poisons only that sequence's outputs and state;
//! every other sequence gets the bits it gets without it; padded outputs stay zero; and
//! nothing panics, non-finite weights included. Checked on every engine (the reference,
//! and each ISA of this CPU on 1 and 2 threads, both splits).

mod common;

use common::{engines, random_input, random_state, run_on};
use lstm_kernels::golden::Engine;
use lstm_kernels::{
    ForwardInput, Gradients, InitialState, Lstm, LstmSpec, LstmState, LstmWeights, Upstream,
    Workspace,
};

const BATCH: usize = 4;
const STEPS: usize = 6;
const LENGTHS: [i32; BATCH] = [6, 3, 0, 5];

fn specs() -> Vec<LstmSpec> {
    vec![
        LstmSpec::builder(5, &[7, 6]).build().unwrap(),
        LstmSpec::builder(5, &[7])
            .peepholes(true)
            .cell_clip(0.8)
            .proj_sizes(&[Some(3)])
            .proj_clip(0.5)
            .bidirectional(true)
            .time_major(true)
            .build()
            .unwrap(),
    ]
}

/// Row of sequence `b` at step `t` in the caller's layout.
fn row(spec: &LstmSpec, b: usize, t: usize) -> usize {
    if spec.time_major() {
        t * BATCH + b
    } else {
        b * STEPS + t
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Asserts that sequence `b`'s outputs and final state are the clean run's, bit for bit.
fn assert_untouched(
    spec: &LstmSpec,
    (out, state): &(Vec<f32>, LstmState),
    (clean_out, clean_state): &(Vec<f32>, LstmState),
    b: usize,
    what: &str,
) {
    let w = spec.output_size();
    for t in 0..STEPS {
        let r = row(spec, b, t) * w;
        assert_eq!(
            bits(&out[r..r + w]),
            bits(&clean_out[r..r + w]),
            "{what}: sequence {b}, step {t}"
        );
    }
    for (k, (cell, clean)) in state.cells.iter().zip(&clean_state.cells).enumerate() {
        let (hc, hh) = (cell.c.len() / BATCH, cell.h.len() / BATCH);
        assert_eq!(
            bits(&cell.c[b * hc..(b + 1) * hc]),
            bits(&clean.c[b * hc..(b + 1) * hc]),
            "{what}: c of cell {k}, sequence {b}"
        );
        assert_eq!(
            bits(&cell.h[b * hh..(b + 1) * hh]),
            bits(&clean.h[b * hh..(b + 1) * hh]),
            "{what}: h of cell {k}, sequence {b}"
        );
    }
}

/// Asserts that every output past a sequence's length is +0.0.
fn assert_padding_zero(spec: &LstmSpec, out: &[f32], what: &str) {
    let w = spec.output_size();
    for (b, &len) in LENGTHS.iter().enumerate() {
        for t in len as usize..STEPS {
            let r = row(spec, b, t) * w;
            assert!(
                out[r..r + w].iter().all(|v| v.to_bits() == 0),
                "{what}: padded output of sequence {b} at step {t}"
            );
        }
    }
}

#[test]
fn a_non_finite_input_poisons_only_its_own_sequence() {
    for spec in specs() {
        let w = LstmWeights::random_uniform(&spec, 0.5, 3);
        let x = random_input(BATCH * STEPS * spec.input_size(), 4);
        for engine in engines() {
            let clean = run_on(engine, &w, &x, BATCH, STEPS, Some(&LENGTHS), None);
            for (bad_b, value) in [(1, f32::NAN), (3, f32::INFINITY), (0, f32::NEG_INFINITY)] {
                let mut dirty = x.clone();
                dirty[row(&spec, bad_b, 1) * spec.input_size() + 2] = value;
                let got = run_on(engine, &w, &dirty, BATCH, STEPS, Some(&LENGTHS), None);
                let what = format!("{engine:?}, {value} in sequence {bad_b}");
                assert_padding_zero(&spec, &got.0, &what);
                for b in (0..BATCH).filter(|&b| b != bad_b) {
                    assert_untouched(&spec, &got, &clean, b, &what);
                }
                if value.is_nan() {
                    // The NaN reaches every unit of its sequence's forward direction from
                    // its step on (the backward direction meets it only at step 1).
                    let r = row(&spec, bad_b, 2) * spec.output_size();
                    let forward = spec.layers().last().unwrap().output_size();
                    let out = &got.0[r..r + forward];
                    assert!(out.iter().all(|v| v.is_nan()), "{what}: {out:?}");
                }
            }
        }
    }
}

#[test]
fn a_non_finite_initial_state_poisons_only_its_own_sequence() {
    for spec in specs() {
        let w = LstmWeights::random_uniform(&spec, 0.5, 5);
        let x = random_input(BATCH * STEPS * spec.input_size(), 6);
        let init = random_state(&spec, BATCH, 7);
        for engine in engines() {
            let clean = run_on(engine, &w, &x, BATCH, STEPS, Some(&LENGTHS), Some(&init));
            let mut dirty = init.clone();
            let c = &mut dirty.cells[0].c;
            let h = c.len() / BATCH;
            c[3 * h] = f32::NAN;
            let got = run_on(engine, &w, &x, BATCH, STEPS, Some(&LENGTHS), Some(&dirty));
            let what = format!("{engine:?}, NaN in sequence 3's initial c");
            assert_padding_zero(&spec, &got.0, &what);
            for b in 0..3 {
                assert_untouched(&spec, &got, &clean, b, &what);
            }
        }
    }
}

#[test]
fn non_finite_weights_never_panic_and_keep_padding_zero() {
    for spec in specs() {
        let x = random_input(BATCH * STEPS * spec.input_size(), 8);
        for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // Every weight non-finite (infinities of both signs, and NaN where a weight
            // was 0): the worst a checkpoint gone bad can hold.
            let mut w = LstmWeights::random_uniform(&spec, 0.5, 9);
            w.scale(value);
            for engine in engines() {
                let (out, _) = run_on(engine, &w, &x, BATCH, STEPS, Some(&LENGTHS), None);
                assert_padding_zero(&spec, &out, &format!("{engine:?}, weights times {value}"));
            }
        }
    }
}

#[test]
fn backward_through_a_non_finite_input_keeps_the_other_sequences_gradients() {
    for spec in specs() {
        let w = LstmWeights::random_uniform(&spec, 0.5, 10);
        let x = random_input(BATCH * STEPS * spec.input_size(), 11);
        let up = random_input(BATCH * STEPS * spec.output_size(), 12);
        let mut dirty = x.clone();
        dirty[row(&spec, 1, 2) * spec.input_size()] = f32::NAN;
        for engine in engines() {
            let Engine::Fast(options) = engine else {
                continue;
            };
            let grads = |data: &[f32]| {
                let lstm = Lstm::with_options(w.clone(), options).unwrap();
                let input = ForwardInput::new(data, BATCH, STEPS)
                    .sequence_length(&LENGTHS)
                    .initial_state(InitialState::Zeros);
                let mut ws = Workspace::new(&spec, BATCH, STEPS);
                let mut reserve = lstm.reserve(BATCH, STEPS);
                lstm.forward_training(&input, &mut ws, &mut reserve)
                    .unwrap();
                let mut g = Gradients::zeros(&spec, BATCH, STEPS);
                let upstream = Upstream {
                    output: Some(&up),
                    final_state: None,
                };
                lstm.backward(&input, &reserve, &upstream, &mut ws, &mut g)
                    .unwrap();
                g.input
            };
            let (clean, got) = (grads(&x), grads(&dirty));
            let i = spec.input_size();
            for b in [0, 2, 3] {
                for t in 0..STEPS {
                    let r = row(&spec, b, t) * i;
                    assert_eq!(
                        bits(&got[r..r + i]),
                        bits(&clean[r..r + i]),
                        "{engine:?}: input gradient of sequence {b} at step {t}"
                    );
                }
            }
        }
    }
}

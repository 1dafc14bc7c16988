//! Forward-training and backward on every ISA against the f64 reference backward, and
//! their determinism.

mod common;

use common::{isas, random_input, random_state};
use lstm_kernels::reference;
use lstm_kernels::{
    ForwardInput, Gradients, InitialState, Lstm, LstmOptions, LstmSpec, LstmState, LstmWeights,
    SplitMix64, Upstream, Workspace,
};

struct Case {
    spec: LstmSpec,
    batch: usize,
    steps: usize,
    lengths: Option<Vec<i32>>,
}

fn cases() -> Vec<Case> {
    let mut rng = SplitMix64::new(77);
    let hidden = [1usize, 3, 8, 16, 17, 33];
    (0..24)
        .map(|n| {
            let layers = 1 + n % 3;
            let hs: Vec<usize> = (0..layers)
                .map(|l| hidden[(n * 5 + l * 3) % hidden.len()])
                .collect();
            let proj: Vec<Option<usize>> = (0..layers)
                .map(|l| ((n + l) % 4 == 1).then_some(1 + (n + l) % 5))
                .collect();
            let mut b = LstmSpec::builder(1 + (n * 7) % 13, &hs)
                .forget_bias([0.0, 1.0, 0.5][n % 3])
                .proj_sizes(&proj)
                .peepholes(n % 5 == 2)
                .bidirectional(n % 4 == 3)
                .time_major(n % 6 == 1);
            if n % 3 == 2 {
                b = b.cell_clip(0.5);
            }
            if n % 7 == 3 {
                b = b.proj_clip(0.3);
            }
            let batch = 1 + (n * 5) % 7;
            let steps = 1 + (n * 3) % 9;
            let lengths = (n % 2 == 0).then(|| {
                (0..batch)
                    .map(|_| (rng.next_u64() % (steps as u64 + 1)) as i32)
                    .collect()
            });
            Case {
                spec: b.build().unwrap(),
                batch,
                steps,
                lengths,
            }
        })
        .collect()
}

struct Run {
    grads: Gradients,
}

fn fast(lstm: &Lstm, input: &ForwardInput<'_>, up: &Upstream<'_>) -> Run {
    let spec = lstm.weights().spec();
    let mut ws = Workspace::new(spec, input.batch, input.steps);
    let mut reserve = lstm.reserve(input.batch, input.steps);
    lstm.forward_training(input, &mut ws, &mut reserve).unwrap();
    let mut grads = Gradients::zeros(spec, input.batch, input.steps);
    lstm.backward(input, &reserve, up, &mut ws, &mut grads)
        .unwrap();
    Run { grads }
}

fn flat(g: &Gradients) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = g
        .to_tensorflow()
        .names()
        .map(|n| (n.to_string(), g.to_tensorflow().f32(n).unwrap().1.to_vec()))
        .collect();
    v.push(("input".into(), g.input.clone()));
    for (k, c) in g.initial_state.cells.iter().enumerate() {
        v.push((format!("init c{k}"), c.c.clone()));
        v.push((format!("init h{k}"), c.h.clone()));
    }
    v
}

#[test]
fn every_isa_matches_the_reference_backward() {
    let mut worst = 0.0f32;
    for (n, case) in cases().iter().enumerate() {
        let spec = &case.spec;
        let w = LstmWeights::random_uniform(spec, 0.5, n as u64);
        let x = random_input(case.batch * case.steps * spec.input_size(), 10 + n as u64);
        let init = random_state(spec, case.batch, 20 + n as u64);
        // Garbage at padded steps included: it must have no effect.
        let gout = random_input(case.batch * case.steps * spec.output_size(), 30 + n as u64);
        let gfs = random_state(spec, case.batch, 40 + n as u64);
        let mut input =
            ForwardInput::new(&x, case.batch, case.steps).initial_state(InitialState::Given(&init));
        if let Some(l) = &case.lengths {
            input = input.sequence_length(l);
        }
        let up = Upstream {
            output: Some(&gout),
            final_state: Some(&gfs),
        };
        let want = flat(&reference::gradients(&w, &input, &up).unwrap());
        for isa in isas() {
            for threads in [1, 2] {
                let lstm = Lstm::with_options(
                    w.clone(),
                    LstmOptions {
                        isa: Some(isa),
                        threads: Some(threads),
                        call_threads: Some(threads),
                        ..Default::default()
                    },
                )
                .unwrap();
                let got = flat(&fast(&lstm, &input, &up).grads);
                let names = |v: &[(String, Vec<f32>)]| v.iter().map(|(n, _)| n.clone()).collect();
                let (got_names, want_names): (Vec<String>, Vec<String>) =
                    (names(&got), names(&want));
                assert_eq!(got_names, want_names, "case {n} {isa:?}: gradient names");
                for ((name, g), (_, r)) in got.iter().zip(&want) {
                    assert_eq!(
                        g.len(),
                        r.len(),
                        "case {n} {isa:?} x{threads} {name}: lengths"
                    );
                    for (i, (a, b)) in g.iter().zip(r).enumerate() {
                        let err = (a - b).abs();
                        worst = worst.max(err / (1.0 + b.abs()));
                        // f32 against f64: the forward's summation-order and activation
                        // differences (~1e-6, see fast_path.rs) carried back through at most
                        // 9 steps and 3 layers, and gradients summed over up to ~60 terms
                        // of size ~1. The golden default (1e-5 absolute + 1e-4 relative) is
                        // 25 times the largest difference seen (4e-7 relative).
                        assert!(
                            err <= 1e-5 + 1e-4 * b.abs(),
                            "case {n} {isa:?} x{threads} {name}[{i}]: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
    println!("largest relative difference from the f64 reference: {worst:e}");
}

#[test]
fn gradients_are_bitwise_identical_for_any_thread_count() {
    for (n, case) in cases().iter().enumerate().step_by(2) {
        let spec = &case.spec;
        let w = LstmWeights::random_uniform(spec, 0.5, n as u64);
        let x = random_input(case.batch * case.steps * spec.input_size(), 50 + n as u64);
        let gout = random_input(case.batch * case.steps * spec.output_size(), 60 + n as u64);
        let mut input = ForwardInput::new(&x, case.batch, case.steps);
        if let Some(l) = &case.lengths {
            input = input.sequence_length(l);
        }
        let up = Upstream {
            output: Some(&gout),
            final_state: None,
        };
        for isa in isas() {
            let run = |threads| {
                let lstm = Lstm::with_options(
                    w.clone(),
                    LstmOptions {
                        isa: Some(isa),
                        threads: Some(threads),
                        call_threads: Some(threads),
                        // 1 thread: one input projection up front; more: step by step,
                        // the time loop shared by hidden units (2) or by sequences (3).
                        step_projection: Some(threads > 1),
                        split_rows: Some(threads == 3),
                        ..Default::default()
                    },
                )
                .unwrap();
                fast(&lstm, &input, &up).grads
            };
            let one = run(1);
            for threads in [2, 3] {
                assert!(
                    run(threads) == one,
                    "case {n} {isa:?}: {threads} threads differ"
                );
            }
        }
    }
}

#[test]
fn a_large_layer_is_bitwise_identical_across_threads() {
    let spec = LstmSpec::builder(128, &[256])
        .forget_bias(0.0)
        .build()
        .unwrap();
    let w = LstmWeights::random_uniform(&spec, 0.1, 3);
    let (b, t) = (32, 8);
    let x = random_input(b * t * 128, 4);
    let gout = random_input(b * t * 256, 5);
    let lens: Vec<i32> = (0..b as i32).map(|i| 1 + (i * 5) % t as i32).collect();
    let input = ForwardInput::new(&x, b, t).sequence_length(&lens);
    let up = Upstream {
        output: Some(&gout),
        final_state: None,
    };
    for isa in isas() {
        let run = |threads| {
            let lstm = Lstm::with_options(
                w.clone(),
                LstmOptions {
                    isa: Some(isa),
                    threads: Some(threads),
                    call_threads: Some(threads),
                    // 1 thread: one input projection up front; more: step by step, the
                    // time loop shared by sequences.
                    step_projection: Some(threads > 1),
                    split_rows: Some(threads > 1),
                    ..Default::default()
                },
            )
            .unwrap();
            fast(&lstm, &input, &up).grads
        };
        assert!(run(2) == run(1), "{isa:?}");
    }
}

#[test]
fn backward_refuses_a_mismatched_reserve() {
    let spec = LstmSpec::builder(3, &[4]).build().unwrap();
    let lstm = Lstm::new(LstmWeights::random_uniform(&spec, 0.1, 1)).unwrap();
    let x = vec![0.1; 2 * 3 * 3];
    let input = ForwardInput::new(&x, 2, 3);
    let mut ws = Workspace::new(&spec, 2, 3);
    let mut grads = Gradients::zeros(&spec, 2, 3);
    let fresh = lstm.reserve(2, 3);
    let up = Upstream::default();
    assert!(
        lstm.backward(&input, &fresh, &up, &mut ws, &mut grads)
            .is_err(),
        "no forward-training pass yet"
    );
    let mut reserve = lstm.reserve(2, 3);
    lstm.forward_training(&input, &mut ws, &mut reserve)
        .unwrap();
    let other = input.sequence_length(&[3, 1]);
    assert!(
        lstm.backward(&other, &reserve, &up, &mut ws, &mut grads)
            .is_err(),
        "other lengths"
    );
    let short = vec![0.0; 5];
    let bad = Upstream {
        output: Some(&short),
        final_state: None,
    };
    let e = lstm
        .backward(&input, &reserve, &bad, &mut ws, &mut grads)
        .unwrap_err();
    assert!(e.to_string().contains("grad_output"), "{e}");
    let wrong_state = LstmState::zeros(&LstmSpec::builder(3, &[5]).build().unwrap(), 2);
    let bad = Upstream {
        output: None,
        final_state: Some(&wrong_state),
    };
    let e = lstm
        .backward(&input, &reserve, &bad, &mut ws, &mut grads)
        .unwrap_err();
    assert!(e.to_string().contains("grad_final_state"), "{e}");
    assert!(lstm
        .backward(&input, &reserve, &up, &mut ws, &mut grads)
        .is_ok());
}

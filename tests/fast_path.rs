//! The fast path (every ISA of this CPU, one and several threads) against the scalar
//! reference, and its determinism across thread counts.

mod common;

use common::{isas, random_input, random_state, run_on};
use lstm_kernels::golden::Engine;
use lstm_kernels::{Isa, LstmOptions, LstmSpec, LstmWeights, SplitMix64};

struct Case {
    spec: LstmSpec,
    batch: usize,
    steps: usize,
    lengths: Option<Vec<i32>>,
    init: bool,
}

/// Specs over every option, with sizes that are and are not multiples of every tile.
fn cases() -> Vec<Case> {
    let mut rng = SplitMix64::new(42);
    let mut out = Vec::new();
    let hidden = [1usize, 3, 8, 16, 17, 33, 64];
    for n in 0..40 {
        let layers = 1 + n % 3;
        let hs: Vec<usize> = (0..layers)
            .map(|l| hidden[(n * 3 + l * 5) % hidden.len()])
            .collect();
        let proj: Vec<Option<usize>> = (0..layers)
            .map(|l| ((n + l) % 4 == 1).then_some(1 + (n + l) % 7))
            .collect();
        let mut b = LstmSpec::builder(1 + (n * 7) % 20, &hs)
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
        let spec = b.build().unwrap();
        let batch = 1 + (n * 5) % 9;
        let steps = 1 + (n * 3) % 11;
        let lengths = (n % 2 == 0).then(|| {
            (0..batch)
                .map(|_| (rng.next_u64() % (steps as u64 + 1)) as i32)
                .collect()
        });
        out.push(Case {
            spec,
            batch,
            steps,
            lengths,
            init: n % 3 != 0,
        });
    }
    out
}

/// The fast engine on `isa` and `threads` threads with the split and the projection's
/// place forced (a bidirectional layer's directions as the planner says).
fn forced(isa: Isa, threads: usize, split_rows: bool, step_projection: bool) -> Engine {
    Engine::Fast(LstmOptions {
        isa: Some(isa),
        threads: Some(threads),
        call_threads: Some(threads),
        step_projection: Some(step_projection),
        split_rows: Some(split_rows),
        ..Default::default()
    })
}

/// [`forced`], with a bidirectional layer's directions at once or one after the other.
fn forced_directions(
    isa: Isa,
    threads: usize,
    split_rows: bool,
    step_projection: bool,
    at_once: bool,
) -> Engine {
    match forced(isa, threads, split_rows, step_projection) {
        Engine::Fast(o) => Engine::Fast(LstmOptions {
            split_directions: Some(at_once),
            ..o
        }),
        e => e,
    }
}

#[test]
fn every_isa_matches_the_reference() {
    let mut worst = 0.0f32;
    for (n, case) in cases().iter().enumerate() {
        let w = LstmWeights::random_uniform(&case.spec, 0.5, n as u64);
        let x = random_input(
            case.batch * case.steps * case.spec.input_size(),
            100 + n as u64,
        );
        let init = case
            .init
            .then(|| random_state(&case.spec, case.batch, 200 + n as u64));
        let lens = case.lengths.as_deref();
        let (ro, rf) = run_on(
            Engine::Reference,
            &w,
            &x,
            case.batch,
            case.steps,
            lens,
            init.as_ref(),
        );
        for isa in isas() {
            for threads in [1, 2] {
                let e = Engine::Fast(LstmOptions {
                    isa: Some(isa),
                    threads: Some(threads),
                    call_threads: Some(threads),
                    ..Default::default()
                });
                let (fo, ff) = run_on(e, &w, &x, case.batch, case.steps, lens, init.as_ref());
                let mut check = |got: &[f32], want: &[f32], what: &str| {
                    assert_eq!(got.len(), want.len(), "case {n} {isa:?} x{threads} {what}");
                    for (i, (g, r)) in got.iter().zip(want).enumerate() {
                        let err = (g - r).abs();
                        worst = worst.max(err);
                        // Other summation orders (FMA chains, sgemm blocking) over at most
                        // ~80 terms of size <= 1, plus the SIMD activations' stated 1e-6,
                        // carried through at most 11 steps and 3 layers of contracting
                        // gates: the golden default (1e-5 absolute + 1e-4 relative), ten
                        // times the largest difference seen (~1e-6).
                        assert!(
                            err <= 1e-5 + 1e-4 * r.abs(),
                            "case {n} {isa:?} x{threads} {what}[{i}]: {g} vs {r}"
                        );
                        if *r == 0.0 && what == "output" {
                            // Padding is exactly zero.
                            assert_eq!(*g, 0.0, "case {n} {isa:?} padding [{i}]");
                        }
                    }
                };
                check(&fo, &ro, "output");
                assert_eq!(ff.cells.len(), rf.cells.len(), "case {n}: cells");
                for (k, (f, r)) in ff.cells.iter().zip(&rf.cells).enumerate() {
                    check(&f.c, &r.c, &format!("final c{k}"));
                    check(&f.h, &r.h, &format!("final h{k}"));
                }
            }
        }
    }
    println!("largest difference from the reference: {worst:e}");
}

#[test]
fn results_are_bitwise_identical_for_any_thread_count() {
    for (n, case) in cases().iter().enumerate().step_by(3) {
        let w = LstmWeights::random_uniform(&case.spec, 0.5, n as u64);
        let x = random_input(
            case.batch * case.steps * case.spec.input_size(),
            300 + n as u64,
        );
        let init = case
            .init
            .then(|| random_state(&case.spec, case.batch, 400 + n as u64));
        let lens = case.lengths.as_deref();
        for isa in isas() {
            let run = |threads, split_rows, step_projection| {
                let e = forced(isa, threads, split_rows, step_projection);
                run_on(e, &w, &x, case.batch, case.steps, lens, init.as_ref())
            };
            let one = run(1, false, false);
            for threads in [2, 3, 4] {
                for (rows, proj) in [(false, false), (false, true), (true, false), (true, true)] {
                    assert!(
                        run(threads, rows, proj) == one,
                        "case {n} {isa:?}: {threads} threads (by rows {rows}, step projection \
                         {proj}) differ from 1"
                    );
                }
            }
            if case.spec.bidirectional() {
                // Directions at once on 2-4 threads (3: one and two), and one after the
                // other on an even count.
                for (threads, at_once) in [(2, true), (3, true), (4, true), (2, false), (4, false)]
                {
                    for (rows, proj) in [(false, false), (true, true)] {
                        let e = forced_directions(isa, threads, rows, proj, at_once);
                        let got = run_on(e, &w, &x, case.batch, case.steps, lens, init.as_ref());
                        assert!(
                            got == one,
                            "case {n} {isa:?}: {threads} threads, directions at once \
                             {at_once} (by rows {rows}, step projection {proj}) differ from 1"
                        );
                    }
                }
            }
        }
    }
}

/// A large layer, where the input-projection sgemm really splits its work between
/// threads, and the same layer with each step's projection in the time loop: still
/// bitwise identical.
#[test]
fn large_layer_is_bitwise_identical_across_threads() {
    let spec = LstmSpec::builder(256, &[256])
        .forget_bias(0.0)
        .build()
        .unwrap();
    let w = LstmWeights::random_uniform(&spec, 0.1, 1);
    let (b, t) = (64, 10);
    let x = random_input(b * t * 256, 2);
    let lens: Vec<i32> = (0..b as i32)
        .map(|i| 1 + (i * 37 + 11) % t as i32)
        .collect();
    for isa in isas() {
        let run = |threads, split_rows, step_projection| {
            let e = forced(isa, threads, split_rows, step_projection);
            run_on(e, &w, &x, b, t, Some(&lens), None)
        };
        let one = run(1, false, false);
        assert!(
            run(1, false, true) == one,
            "{isa:?}: 1 thread, step by step"
        );
        for (rows, proj) in [(false, false), (false, true), (true, false), (true, true)] {
            assert!(
                run(2, rows, proj) == one,
                "{isa:?}: 2 threads (by rows {rows}, step projection {proj}) differ from 1"
            );
        }
    }
}

/// A projection wider than one column panel of every ISA (`P = 150`: 3 panels of 64
/// columns on AVX-512, 5 of 32 on AVX2), at batches below, at and above the thread
/// count, so that the threads share its rows, its column panels (fewer rows than
/// threads), or own whole sequences: the same bits as on one thread, and on every ISA
/// the scalar path's bits (each element is one fma chain over `H` in order).
#[test]
fn a_wide_projection_gives_the_same_bits_on_every_split_and_isa() {
    let spec = LstmSpec::builder(24, &[70, 40])
        .proj_sizes(&[Some(150), Some(33)])
        .proj_clip(0.4)
        .build()
        .unwrap();
    let w = LstmWeights::random_uniform(&spec, 0.3, 7);
    let t = 6;
    for b in [1, 2, 5, 9] {
        let x = random_input(b * t * 24, 8 + b as u64);
        let init = random_state(&spec, b, 9 + b as u64);
        let mut scalar_bits = None;
        for isa in isas() {
            let run = |threads, split_rows, step_projection| {
                let e = forced(isa, threads, split_rows, step_projection);
                run_on(e, &w, &x, b, t, None, Some(&init))
            };
            let one = run(1, false, false);
            for threads in [2, 3, 4] {
                for (rows, proj) in [(false, false), (false, true), (true, true)] {
                    assert!(
                        run(threads, rows, proj) == one,
                        "B {b} {isa:?}: {threads} threads (by rows {rows}, step projection \
                         {proj}) differ from 1"
                    );
                }
            }
            match &scalar_bits {
                None => scalar_bits = Some(one),
                Some(first) => {
                    assert!(&one == first, "B {b}: {isa:?} differs from {:?}", isas()[0])
                }
            }
        }
    }
}

/// An SGD step repacks in place: the updated `Lstm` computes exactly what one built from
/// the updated weights computes.
#[test]
fn sgd_step_repacks_the_kernels_weights() {
    let spec = LstmSpec::builder(5, &[9, 6])
        .peepholes(true)
        .proj_sizes(&[Some(4), None])
        .build()
        .unwrap();
    let w = LstmWeights::random_uniform(&spec, 0.5, 1);
    let g = LstmWeights::random_uniform(&spec, 1.0, 2);
    let (b, t) = (3, 4);
    let x = random_input(b * t * 5, 3);
    for isa in isas() {
        let opts = LstmOptions {
            isa: Some(isa),
            threads: Some(1),
            ..Default::default()
        };
        let mut lstm = lstm_kernels::Lstm::with_options(w.clone(), opts).unwrap();
        lstm.sgd_step(&g, 0.3).unwrap();
        let mut expect = w.clone();
        expect.add_scaled(&g, -0.3).unwrap();
        assert_eq!(lstm.weights(), &expect);
        let run = |l: &lstm_kernels::Lstm| {
            let mut ws = lstm_kernels::Workspace::new(&spec, b, t);
            l.forward_inference(&lstm_kernels::ForwardInput::new(&x, b, t), &mut ws)
                .unwrap();
            ws.output().to_vec()
        };
        let fresh = lstm_kernels::Lstm::with_options(expect, opts).unwrap();
        assert!(run(&lstm) == run(&fresh), "{isa:?}");
        let other =
            LstmWeights::random_uniform(&LstmSpec::builder(5, &[9]).build().unwrap(), 1.0, 3);
        assert!(lstm.sgd_step(&other, 0.1).is_err());
    }
}

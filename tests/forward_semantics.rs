//! The forward pass's contract, checked by properties that need no framework:
//! lengths, carried state, layouts, bidirectionality, and one cell worked by hand.

mod common;

use common::{engines, random_input, random_state, run_on};
use lstm_kernels::golden::Engine;
use lstm_kernels::{
    CellParams, ForwardInput, GateOrder, InitialState, Layout, Lstm, LstmSpec, LstmWeights, Matrix,
    Workspace,
};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One unit, one input, every TF LSTMCell option, computed in f64 by the formulas of
/// TF's LSTMCell: the order of peephole, clip and projection is the point of this test.
#[test]
fn one_peephole_clipped_projected_unit_matches_the_formulas() {
    for e in engines() {
        let spec = LstmSpec::builder(1, &[1])
            .forget_bias(0.7)
            .peepholes(true)
            .cell_clip(0.45)
            .proj_sizes(&[Some(1)])
            .proj_clip(0.2)
            .build()
            .unwrap();
        // Gates i, j, f, o.
        let (wx, wh, bias) = (
            [0.9f32, 1.3, -0.4, 0.8],
            [0.5f32, -0.7, 0.3, 0.6],
            [0.1f32, 0.2, -0.3, 0.05],
        );
        let (pi, pf, po, proj) = (0.4f32, -0.6f32, 0.9f32, 1.7f32);
        let weights = LstmWeights::from_cells(
            &spec,
            &[CellParams {
                gate_order: GateOrder::Ijfo,
                input: Matrix {
                    data: &wx,
                    layout: Layout::InputMajor,
                },
                recurrent: Matrix {
                    data: &wh,
                    layout: Layout::InputMajor,
                },
                biases: vec![&bias],
                peepholes: Some([&[pi], &[pf], &[po]]),
                projection: Some(Matrix {
                    data: &[proj],
                    layout: Layout::InputMajor,
                }),
            }],
        )
        .unwrap();
        let xs = [1.0f32, -0.5, 2.0, 0.25];
        let (out, fin) = run_on(e, &weights, &xs, 1, 4, None, None);
        // The reference rounds a handful of f32 operations on values <= 1: a few ulps.
        // The SIMD activations may each be off by their stated bound; five of them per
        // step over four steps, amplified at most by the projection weight 1.7.
        let act = lstm_kernels::bounds::SIGMOID_MAX_ABS.max(lstm_kernels::bounds::TANH_MAX_ABS);
        let tol = match e {
            Engine::Reference => 1e-6,
            Engine::Fast(_) => 1e-6 + 1.7 * 20.0 * act,
        };
        let (mut c, mut h) = (0.0f64, 0.0f64);
        let mut clipped_c = false;
        let mut clipped_h = false;
        for (t, &x) in xs.iter().enumerate() {
            let z = |g: usize| {
                f64::from(wx[g]) * f64::from(x) + f64::from(wh[g]) * h + f64::from(bias[g])
            };
            let i = sigmoid(z(0) + f64::from(pi) * c);
            let f = sigmoid(z(2) + 0.7 + f64::from(pf) * c);
            let mut cn = f * c + i * z(1).tanh();
            if cn.abs() > 0.45 {
                clipped_c = true;
                cn = cn.clamp(-0.45, 0.45);
            }
            let o = sigmoid(z(3) + f64::from(po) * cn);
            let mut hn = o * cn.tanh() * f64::from(proj);
            if hn.abs() > 0.2 {
                clipped_h = true;
                hn = hn.clamp(-0.2, 0.2);
            }
            c = cn;
            h = hn;
            assert!(
                (f64::from(out[t]) - h).abs() < tol,
                "{e:?} t={t}: {} vs {h}",
                out[t]
            );
        }
        assert!(clipped_c && clipped_h, "the case must exercise both clips");
        assert!((f64::from(fin.cells[0].c[0]) - c).abs() < tol);
        assert!((f64::from(fin.cells[0].h[0]) - h).abs() < tol);
    }
}

/// Equal bit for bit, on every engine: each output element is one fma chain over `k` in
/// a fixed order whatever the batch, and the kernels compute each row independently of
/// the others (the input projection included), so a row alone and the same row in a
/// batch round identically. No tolerance.
fn same(e: Engine, got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{e:?} {what}: lengths differ");
    if let Some((i, (g, w))) = got
        .iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g.to_bits() != w.to_bits())
    {
        panic!(
            "{e:?} {what}[{i}]: {g:e} ({:#010x}) vs {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

fn spec_all(bidirectional: bool, time_major: bool) -> LstmSpec {
    LstmSpec::builder(5, &[7, 6])
        .proj_sizes(&[Some(4), None])
        .peepholes(!bidirectional)
        .cell_clip(2.0)
        .bidirectional(bidirectional)
        .time_major(time_major)
        .build()
        .unwrap()
}

/// A sequence's outputs and final state do not depend on the other sequences of the
/// batch nor on padding: each row equals a run of that row alone, cut to its length.
#[test]
fn each_row_equals_its_own_run_cut_to_its_length() {
    for e in engines() {
        for bidir in [false, true] {
            let spec = spec_all(bidir, false);
            let w = LstmWeights::random_uniform(&spec, 0.5, 7);
            let (b, t, i) = (4, 6, 5);
            let x = random_input(b * t * i, 1);
            let lens = [6, 0, 3, 1];
            let init = random_state(&spec, b, 2);
            let (out, fin) = run_on(e, &w, &x, b, t, Some(&lens), Some(&init));
            let o = spec.output_size();
            for (row, &len) in lens.iter().enumerate() {
                let len = len as usize;
                let row_init = lstm_kernels::LstmState {
                    cells: init
                        .cells
                        .iter()
                        .map(|c| lstm_kernels::CellState {
                            c: c.c.chunks(c.c.len() / b).nth(row).unwrap().to_vec(),
                            h: c.h.chunks(c.h.len() / b).nth(row).unwrap().to_vec(),
                        })
                        .collect(),
                };
                let got_out = &out[row * t * o..(row + 1) * t * o];
                assert!(
                    got_out[len * o..].iter().all(|&v| v == 0.0),
                    "padding must be zero"
                );
                let got_fin: Vec<(Vec<f32>, Vec<f32>)> = fin
                    .cells
                    .iter()
                    .map(|c| {
                        (
                            c.c.chunks(c.c.len() / b).nth(row).unwrap().to_vec(),
                            c.h.chunks(c.h.len() / b).nth(row).unwrap().to_vec(),
                        )
                    })
                    .collect();
                assert_eq!(got_fin.len(), row_init.cells.len(), "cells");
                if len == 0 {
                    for (g, s) in got_fin.iter().zip(&row_init.cells) {
                        assert_eq!(
                            (&g.0, &g.1),
                            (&s.c, &s.h),
                            "length 0 keeps the initial state"
                        );
                    }
                    continue;
                }
                let xr = &x[row * t * i..row * t * i + len * i];
                let (alone, alone_fin) = run_on(e, &w, xr, 1, len, None, Some(&row_init));
                same(
                    e,
                    &got_out[..len * o],
                    &alone,
                    &format!("bidir={bidir} row={row}"),
                );
                assert_eq!(got_fin.len(), alone_fin.cells.len(), "cells");
                for (g, s) in got_fin.iter().zip(&alone_fin.cells) {
                    same(e, &g.0, &s.c, "final c");
                    same(e, &g.1, &s.h, "final h");
                }
            }
        }
    }
}

/// Time-major is batch-major transposed, bit for bit.
#[test]
fn time_major_is_the_transpose_of_batch_major() {
    for e in engines() {
        let (b, t, i) = (3, 5, 5);
        let bm = spec_all(true, false);
        let tm = spec_all(true, true);
        let w_bm = LstmWeights::random_uniform(&bm, 0.5, 3);
        let w_tm = LstmWeights::from_tensors(
            &tm,
            &w_bm.to_tensorflow(),
            lstm_kernels::Convention::TensorFlow,
        )
        .unwrap();
        let x = random_input(b * t * i, 4);
        let mut xt = vec![0.0; x.len()];
        for bi in 0..b {
            for ti in 0..t {
                xt[(ti * b + bi) * i..(ti * b + bi + 1) * i]
                    .copy_from_slice(&x[(bi * t + ti) * i..(bi * t + ti + 1) * i]);
            }
        }
        let lens = [5, 2, 4];
        let (ob, fb) = run_on(e, &w_bm, &x, b, t, Some(&lens), None);
        let (ot, ft) = run_on(e, &w_tm, &xt, b, t, Some(&lens), None);
        let o = bm.output_size();
        for bi in 0..b {
            for ti in 0..t {
                assert_eq!(
                    &ob[(bi * t + ti) * o..(bi * t + ti + 1) * o],
                    &ot[(ti * b + bi) * o..(ti * b + bi + 1) * o]
                );
            }
        }
        assert_eq!(fb, ft);
    }
}

/// The backward direction of a bidirectional layer is a forward run over each sequence
/// reversed within its own length.
#[test]
fn backward_direction_runs_each_sequence_reversed_within_its_length() {
    for e in engines() {
        let spec = LstmSpec::builder(3, &[4])
            .forget_bias(0.0)
            .bidirectional(true)
            .build()
            .unwrap();
        let uni = LstmSpec::builder(3, &[4]).forget_bias(0.0).build().unwrap();
        let w = LstmWeights::random_uniform(&spec, 0.5, 11);
        let tf = w.to_tensorflow();
        let mut rev = lstm_kernels::Tensors::new();
        for name in ["kernel", "bias"] {
            let (shape, v) = tf.f32(&format!("layers/1/{name}")).unwrap();
            rev.insert_f32(&format!("layers/0/{name}"), shape, v.to_vec())
                .unwrap();
        }
        let w_rev =
            LstmWeights::from_tensors(&uni, &rev, lstm_kernels::Convention::TensorFlow).unwrap();
        let (b, t, i) = (2, 5, 3);
        let x = random_input(b * t * i, 5);
        let lens = [5, 3];
        let (out, fin) = run_on(e, &w, &x, b, t, Some(&lens), None);
        for (row, &len) in lens.iter().enumerate() {
            let len = len as usize;
            let mut xr = Vec::new();
            for s in (0..len).rev() {
                xr.extend_from_slice(&x[(row * t + s) * i..(row * t + s + 1) * i]);
            }
            let (o_rev, f_rev) = run_on(e, &w_rev, &xr, 1, len, None, None);
            for s in 0..len {
                let got = &out[(row * t + s) * 8 + 4..(row * t + s) * 8 + 8];
                let want = &o_rev[(len - 1 - s) * 4..(len - s) * 4];
                assert_eq!(got, want);
            }
            assert_eq!(&fin.cells[1].h[row * 4..row * 4 + 4], &f_rev.cells[0].h[..]);
        }
    }
}

/// Carrying the state across calls equals one long call, bit for bit, and the workspace
/// does not reallocate between calls of the same shape.
#[test]
fn carried_state_equals_one_long_run_without_reallocation() {
    for e in engines() {
        let spec = spec_all(false, false);
        let w = LstmWeights::random_uniform(&spec, 0.3, 9);
        let (b, i) = (3, 5);
        let x = random_input(b * 6 * i, 6);
        let (long, long_fin) = run_on(e, &w, &x, b, 6, None, None);
        let lstm = match e {
            Engine::Reference => None,
            Engine::Fast(o) => Some(Lstm::with_options(w.clone(), o).unwrap()),
        };
        let mut ws = Workspace::new(&spec, b, 1);
        let out_ptr = ws.output().as_ptr();
        let o = spec.output_size();
        for t in 0..6 {
            let xt: Vec<f32> = (0..b)
                .flat_map(|bi| x[(bi * 6 + t) * i..(bi * 6 + t + 1) * i].to_vec())
                .collect();
            let init = if t == 0 {
                InitialState::Zeros
            } else {
                InitialState::Carry
            };
            let input = ForwardInput::new(&xt, b, 1).initial_state(init);
            match e {
                Engine::Reference => lstm_kernels::reference::forward(&w, &input, &mut ws),
                Engine::Fast(_) => lstm.as_ref().unwrap().forward_inference(&input, &mut ws),
            }
            .unwrap();
            assert_eq!(
                ws.output().as_ptr(),
                out_ptr,
                "no reallocation for the same shape"
            );
            for bi in 0..b {
                assert_eq!(
                    &ws.output()[bi * o..(bi + 1) * o],
                    &long[(bi * 6 + t) * o..(bi * 6 + t + 1) * o]
                );
            }
        }
        assert_eq!(ws.final_state(), &long_fin);
    }
}

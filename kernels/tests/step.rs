//! The fused forward step on every ISA: against an f64 reference with a
//! derived error bound, bitwise against the scalar path, bitwise
//! independent of tile splits and of the number of rows, and writing only
//! its own tiles.

mod common;

use common::{all_kernels, bits_eq, scalar, sigmoid64, Rng};
use std::ptr::NonNull;

use lstm_kernels_simd::{
    bounds, pack_gate_columns, pack_gate_panels, pack_peepholes, pad_units, unpack_gate_columns,
    unpad_units, GemmRaw, InputPart, Kernels, StepParams, StepRaw,
};

const EPS: f64 = 1.0 / (1u64 << 24) as f64; // unit roundoff of f32

/// One step's inputs in the canonical layouts.
struct Case {
    rows: usize,
    k: usize,
    h: usize,
    w: Vec<f32>,      // [k, 4h]
    zx: Vec<f32>,     // [rows, 4h]
    h_prev: Vec<f32>, // [rows, k]
    c_prev: Vec<f32>, // [rows, h]
    peep: Option<[Vec<f32>; 3]>,
    params: StepParams,
}

impl Case {
    fn new(rng: &mut Rng, rows: usize, k: usize, h: usize, peep: bool, clip: bool) -> Case {
        // Weights scaled so that the gate sums are O(1) whatever k: the
        // activations are then exercised in their curved region.
        let a = 2.0 / (k as f32).sqrt();
        Case {
            rows,
            k,
            h,
            w: rng.vec(k * 4 * h, -a, a),
            zx: rng.vec(rows * 4 * h, -1.5, 1.5),
            h_prev: rng.vec(rows * k, -1.0, 1.0),
            c_prev: rng.vec(rows * h, -3.0, 3.0),
            peep: peep.then(|| [0, 1, 2].map(|_| rng.vec(h, -0.7, 0.7))),
            params: StepParams {
                forget_bias: if clip { 1.0 } else { 0.0 },
                cell_clip: clip.then_some(1.25),
            },
        }
    }
}

/// Outputs in canonical layouts: c, m `[rows, h]`, gates `[rows, 4h]`.
#[derive(Clone)]
struct Out {
    c: Vec<f32>,
    m: Vec<f32>,
    gates: Vec<f32>,
}

/// Packed buffers of a case for one ISA.
struct Packed {
    w: Vec<f32>,
    zx: Vec<f32>,
    peep: Option<Vec<f32>>,
    c: Vec<f32>,
    m: Vec<f32>,
    gates: Vec<f32>,
}

fn pack(kern: &Kernels, cs: &Case) -> Packed {
    let u = kern.unit_tile();
    let (rows, h) = (cs.rows, cs.h);
    Packed {
        w: pack_gate_panels(&cs.w, cs.k, h, u),
        zx: pack_gate_columns(&cs.zx, rows, h, u),
        peep: cs
            .peep
            .as_ref()
            .map(|[i, f, o]| pack_peepholes(i, f, o, h, u)),
        c: pad_units(&cs.c_prev, rows, h, u),
        m: vec![f32::NAN; rows * kern.padded(h)],
        gates: vec![f32::NAN; rows * kern.tiles(h) * 4 * u],
    }
}

fn run_range(kern: &Kernels, cs: &Case, p: &mut Packed, range: std::ops::Range<usize>) {
    kern.step_tiles(
        cs.rows,
        cs.k,
        cs.h,
        &cs.h_prev,
        &p.w,
        &p.zx,
        p.peep.as_deref(),
        &mut p.c,
        &mut p.m,
        range,
        &cs.params,
        Some(&mut p.gates),
    );
}

fn unpack(kern: &Kernels, cs: &Case, p: &Packed) -> Out {
    let u = kern.unit_tile();
    Out {
        c: unpad_units(&p.c, cs.rows, cs.h, u),
        m: unpad_units(&p.m, cs.rows, cs.h, u),
        gates: unpack_gate_columns(&p.gates, cs.rows, cs.h, u),
    }
}

fn run(kern: &Kernels, cs: &Case) -> Out {
    let mut p = pack(kern, cs);
    run_range(kern, cs, &mut p, 0..kern.tiles(cs.h));
    unpack(kern, cs, &p)
}

/// The step in f64 from the same f32 inputs, and for every output a bound
/// on the f32 kernel's error, derived from first-order rounding analysis:
/// - a gate sum computed as a chain of fmas starting at `zx` errs by at
///   most `EPS * sum_kk |partial sum_kk|`;
/// - each activation adds its stated absolute error, and its slope (1/4
///   for sigmoid, 1 for tanh) carries the input error through;
/// - every other operation adds one rounding, `EPS * |result|`.
///
/// Returns (reference, bound).
fn reference(cs: &Case) -> (Out, Out) {
    let (rows, k, h) = (cs.rows, cs.k, cs.h);
    let act = bounds::SIGMOID_MAX_ABS.max(bounds::TANH_MAX_ABS);
    let fb = cs.params.forget_bias as f64;
    let clip = cs.params.cell_clip.map(|c| c as f64);
    let mut r = Out {
        c: vec![0.0; rows * h],
        m: vec![0.0; rows * h],
        gates: vec![0.0; rows * 4 * h],
    };
    let mut b = r.clone();
    for row in 0..rows {
        for unit in 0..h {
            let mut z = [0.0f64; 4];
            let mut dz = [0.0f64; 4];
            for (gi, (z, dz)) in z.iter_mut().zip(&mut dz).enumerate() {
                let col = gi * h + unit;
                let mut acc = cs.zx[row * 4 * h + col] as f64;
                let mut partial = 0.0;
                for kk in 0..k {
                    acc += cs.h_prev[row * k + kk] as f64 * cs.w[kk * 4 * h + col] as f64;
                    partial += acc.abs();
                }
                *z = acc;
                *dz = EPS * partial;
            }
            let cp = cs.c_prev[row * h + unit] as f64;
            let (pi, pf, po) = match &cs.peep {
                Some([i, f, o]) => (i[unit] as f64, f[unit] as f64, o[unit] as f64),
                None => (0.0, 0.0, 0.0),
            };
            let ai = z[0] + pi * cp;
            let af = z[2] + fb + pf * cp;
            let dai = dz[0] + EPS * ai.abs();
            let daf = dz[2] + EPS * (z[2] + fb).abs() + EPS * af.abs();
            let i = sigmoid64(ai);
            let g = z[1].tanh();
            let f = sigmoid64(af);
            let di = dai / 4.0 + act;
            let dg = dz[1] + act;
            let df = daf / 4.0 + act;
            let cu = f * cp + i * g;
            let c = match clip {
                Some(cl) => cu.clamp(-cl, cl),
                None => cu,
            };
            let dc = cp.abs() * df
                + g.abs() * di
                + i.abs() * dg
                + di * dg
                + EPS * (i * g).abs()
                + EPS * cu.abs();
            let ao = z[3] + po * c;
            let dao = dz[3] + po.abs() * dc + EPS * ao.abs();
            let o = sigmoid64(ao);
            let dout = dao / 4.0 + act;
            let tc = c.tanh();
            let dtc = dc + act;
            let m = o * tc;
            let dm = tc.abs() * dout + o * dtc + dout * dtc + EPS * m.abs();
            let e = row * h + unit;
            (r.c[e], r.m[e], b.c[e], b.m[e]) = (c as f32, m as f32, dc as f32, dm as f32);
            for (gi, (v, d)) in [(i, di), (g, dg), (f, df), (o, dout)]
                .into_iter()
                .enumerate()
            {
                r.gates[row * 4 * h + gi * h + unit] = v as f32;
                b.gates[row * 4 * h + gi * h + unit] = d as f32;
            }
        }
    }
    (r, b)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], bound: &[f32], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths ({ctx})");
    assert_eq!(bound.len(), want.len(), "{what}: bound's length ({ctx})");
    for (idx, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        // The reference itself is rounded to f32 (half an ulp) and the
        // bound is first-order: allow 1.5x plus that half ulp.
        let tol = 1.5 * b as f64 + 0.5 * EPS * w.abs() as f64 + 1e-30;
        let err = (g as f64 - w as f64).abs();
        assert!(
            err <= tol,
            "{what}[{idx}] = {g} vs f64 {w}: error {err:e} > bound {tol:e} ({ctx})"
        );
    }
}

// With AVX-512 (6-row blocks), 7, 8, 9 and 13 rows end in a split block.
const ROWS: [usize; 11] = [1, 2, 3, 5, 7, 8, 9, 10, 13, 16, 64];
const KS: [usize; 6] = [1, 3, 16, 17, 100, 256];
const HS: [usize; 6] = [1, 5, 16, 17, 33, 64];

#[test]
fn every_isa_matches_f64_reference_and_scalar_bits() {
    let mut rng = Rng::new(1);
    let sc = scalar();
    let kernels = all_kernels();
    let mut checked = 0;
    for &rows in &ROWS {
        for &k in &KS {
            for &h in &HS {
                // Rotate the options over the grid rather than multiplying
                // it: every combination still meets every size.
                let opt = (rows + k + h) % 4;
                let cs = Case::new(&mut rng, rows, k, h, opt & 1 == 1, opt & 2 == 2);
                let (want, bound) = reference(&cs);
                let oracle = run(&sc, &cs);
                for kern in &kernels {
                    let ctx = format!(
                        "{:?} rows={rows} k={k} h={h} peep={} clip={:?}",
                        kern.isa(),
                        cs.peep.is_some(),
                        cs.params.cell_clip
                    );
                    let got = if kern.isa() == sc.isa() {
                        oracle.clone()
                    } else {
                        run(kern, &cs)
                    };
                    assert_close("c", &got.c, &want.c, &bound.c, &ctx);
                    assert_close("m", &got.m, &want.m, &bound.m, &ctx);
                    assert_close("gates", &got.gates, &want.gates, &bound.gates, &ctx);
                    assert!(bits_eq(&got.c, &oracle.c), "c differs from scalar: {ctx}");
                    assert!(bits_eq(&got.m, &oracle.m), "m differs from scalar: {ctx}");
                    assert!(bits_eq(&got.gates, &oracle.gates), "gates differ: {ctx}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, ROWS.len() * KS.len() * HS.len() * kernels.len());
}

#[test]
fn all_option_combinations_on_a_few_shapes() {
    let mut rng = Rng::new(2);
    for &(rows, k, h) in &[(1, 17, 33), (7, 100, 17), (13, 16, 64), (64, 3, 5)] {
        for opt in 0..4 {
            let cs = Case::new(&mut rng, rows, k, h, opt & 1 == 1, opt & 2 == 2);
            let (want, bound) = reference(&cs);
            let oracle = run(&scalar(), &cs);
            for kern in all_kernels() {
                let ctx = format!("{:?} rows={rows} k={k} h={h} opt={opt}", kern.isa());
                let got = run(&kern, &cs);
                assert_close("c", &got.c, &want.c, &bound.c, &ctx);
                assert_close("m", &got.m, &want.m, &bound.m, &ctx);
                assert!(
                    bits_eq(&got.c, &oracle.c) && bits_eq(&got.m, &oracle.m),
                    "{ctx}"
                );
            }
        }
    }
}

#[test]
fn clip_actually_clips_and_forget_bias_matters() {
    let mut rng = Rng::new(3);
    let mut cs = Case::new(&mut rng, 5, 16, 17, false, true);
    // Large cell inputs so that the clip binds on many units.
    cs.c_prev.iter_mut().for_each(|c| *c *= 10.0);
    for kern in all_kernels() {
        let out = run(&kern, &cs);
        assert!(
            out.c.iter().all(|c| c.abs() <= 1.25),
            "{:?} clip",
            kern.isa()
        );
        assert!(
            out.c.iter().filter(|c| c.abs() == 1.25).count() > 10,
            "clip never bound"
        );
        let mut nb = Case {
            ..Case::new(&mut Rng::new(3), 5, 16, 17, false, true)
        };
        nb.c_prev = cs.c_prev.clone();
        nb.params.forget_bias = 0.0;
        let out2 = run(&kern, &nb);
        assert!(
            !bits_eq(&out.gates, &out2.gates),
            "forget_bias had no effect"
        );
    }
}

/// Splits `0..n` at random points into between 1 and 4 ranges.
fn random_split(rng: &mut Rng, n: usize) -> Vec<std::ops::Range<usize>> {
    let mut cuts: Vec<usize> = (0..rng.next_u64() % 4)
        .map(|_| (rng.next_u64() % (n as u64 + 1)) as usize)
        .collect();
    cuts.push(0);
    cuts.push(n);
    cuts.sort();
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

#[test]
fn tile_splits_give_identical_bits_and_touch_only_their_tiles() {
    let mut rng = Rng::new(4);
    for kern in all_kernels() {
        let u = kern.unit_tile();
        for &(rows, k, h) in &[
            (1, 17, 64),
            (3, 100, 33),
            (8, 16, 17),
            (13, 256, 64),
            (64, 3, 5),
        ] {
            let cs = Case::new(&mut rng, rows, k, h, true, true);
            let nt = kern.tiles(h);
            let whole = run(&kern, &cs);
            for _ in 0..4 {
                let mut p = pack(&kern, &cs);
                // Run the pieces in reverse order: no piece may depend on
                // another having run.
                for r in random_split(&mut rng, nt).into_iter().rev() {
                    run_range(&kern, &cs, &mut p, r);
                }
                let split = unpack(&kern, &cs, &p);
                let ctx = format!("{:?} rows={rows} k={k} h={h}", kern.isa());
                assert!(bits_eq(&split.c, &whole.c), "c: {ctx}");
                assert!(bits_eq(&split.m, &whole.m), "m: {ctx}");
                assert!(bits_eq(&split.gates, &whole.gates), "gates: {ctx}");
            }
            // One sub-range alone: other tiles' columns keep their canaries.
            let lo = (rng.next_u64() % nt as u64) as usize;
            let hi = lo + 1 + (rng.next_u64() % (nt - lo) as u64) as usize;
            let mut p = pack(&kern, &cs);
            let c_before = p.c.clone();
            run_range(&kern, &cs, &mut p, lo..hi);
            for row in 0..rows {
                for col in 0..nt * u {
                    let inside = (lo * u..hi * u).contains(&col);
                    let e = row * nt * u + col;
                    if !inside {
                        assert_eq!(p.c[e].to_bits(), c_before[e].to_bits(), "c outside range");
                        assert!(p.m[e].is_nan(), "h_out written outside {lo}..{hi}");
                    } else {
                        assert!(!p.m[e].is_nan(), "h_out not written inside range");
                    }
                }
                for col in 0..nt * 4 * u {
                    let inside = (lo * 4 * u..hi * 4 * u).contains(&col);
                    assert_eq!(p.gates[row * nt * 4 * u + col].is_nan(), !inside, "gates");
                }
            }
        }
    }
}

#[test]
fn a_row_does_not_depend_on_how_many_rows_run_with_it() {
    let mut rng = Rng::new(5);
    for kern in all_kernels() {
        for &(rows, k, h) in &[(7, 33, 17), (13, 100, 64), (64, 16, 33)] {
            let cs = Case::new(&mut rng, rows, k, h, true, false);
            let whole = run(&kern, &cs);
            for row in (0..rows).step_by(if rows > 13 { 5 } else { 1 }) {
                let one = Case {
                    rows: 1,
                    k,
                    h,
                    w: cs.w.clone(),
                    zx: cs.zx[row * 4 * h..(row + 1) * 4 * h].to_vec(),
                    h_prev: cs.h_prev[row * k..(row + 1) * k].to_vec(),
                    c_prev: cs.c_prev[row * h..(row + 1) * h].to_vec(),
                    peep: cs.peep.clone(),
                    params: cs.params,
                };
                let single = run(&kern, &one);
                let ctx = format!("{:?} rows={rows} row={row}", kern.isa());
                assert!(
                    bits_eq(&single.c, &whole.c[row * h..(row + 1) * h]),
                    "c {ctx}"
                );
                assert!(
                    bits_eq(&single.m, &whole.m[row * h..(row + 1) * h]),
                    "m {ctx}"
                );
            }
            // And every prefix of rows (the active rows of a packed batch).
            for prefix in [1, 2, rows / 2, rows - 1] {
                let mut sub = Case::new(&mut Rng::new(0), 1, 1, 1, false, false);
                sub.rows = prefix;
                sub.k = k;
                sub.h = h;
                sub.w = cs.w.clone();
                sub.zx = cs.zx[..prefix * 4 * h].to_vec();
                sub.h_prev = cs.h_prev[..prefix * k].to_vec();
                sub.c_prev = cs.c_prev[..prefix * h].to_vec();
                sub.peep = cs.peep.clone();
                sub.params = cs.params;
                let got = run(&kern, &sub);
                assert!(bits_eq(&got.m, &whole.m[..prefix * h]), "prefix {prefix}");
            }
        }
    }
}

#[test]
fn nan_in_an_input_stays_in_its_row_and_unit() {
    let mut rng = Rng::new(6);
    for kern in all_kernels() {
        let mut cs = Case::new(&mut rng, 5, 16, 17, false, true);
        cs.c_prev[2 * 17 + 3] = f32::NAN; // row 2, unit 3
        let out = run(&kern, &cs);
        assert_eq!(out.c.len(), out.m.len());
        for (e, (&c, &m)) in out.c.iter().zip(&out.m).enumerate() {
            assert_eq!(
                c.is_nan(),
                e == 2 * 17 + 3,
                "c NaN at {e} ({:?})",
                kern.isa()
            );
            assert_eq!(m.is_nan(), e == 2 * 17 + 3, "m NaN at {e}");
        }
    }
}

#[test]
#[should_panic(expected = "zx shorter")]
fn short_zx_panics() {
    let kern = Kernels::detect();
    let (rows, k, h) = (2, 3, 5);
    let u = kern.unit_tile();
    let w = pack_gate_panels(&vec![0.0; k * 4 * h], k, h, u);
    let mut c = vec![0.0; rows * kern.padded(h)];
    let mut m = c.clone();
    let zx = vec![0.0; rows * 4 * h]; // unpadded: too short when h % u != 0
    kern.step_tiles(
        rows,
        k,
        h,
        &vec![0.0; rows * k],
        &w,
        &zx,
        None,
        &mut c,
        &mut m,
        0..kern.tiles(h),
        &StepParams::default(),
        None,
    );
}

#[test]
#[should_panic(expected = "tile_range")]
fn tile_range_past_the_layer_panics() {
    let kern = Kernels::detect();
    let (rows, k, h) = (1, 2, 3);
    let u = kern.unit_tile();
    let w = pack_gate_panels(&vec![0.0; k * 4 * h], k, h, u);
    let zx = vec![0.0; rows * kern.tiles(h) * 4 * u];
    let mut c = vec![0.0; rows * kern.padded(h)];
    let mut m = c.clone();
    kern.step_tiles(
        rows,
        k,
        h,
        &[0.0; 2],
        &w,
        &zx,
        None,
        &mut c,
        &mut m,
        0..2,
        &StepParams::default(),
        None,
    );
}

#[test]
#[should_panic(expected = "cell_clip")]
fn negative_clip_panics() {
    let kern = Kernels::detect();
    let u = kern.unit_tile();
    let w = pack_gate_panels(&[0.0; 4], 1, 1, u);
    let zx = vec![0.0; 4 * u];
    let (mut c, mut m) = (vec![0.0; u], vec![0.0; u]);
    let p = StepParams {
        forget_bias: 0.0,
        cell_clip: Some(-1.0),
    };
    kern.step_tiles(
        1,
        1,
        1,
        &[0.0],
        &w,
        &zx,
        None,
        &mut c,
        &mut m,
        0..1,
        &p,
        None,
    );
}

#[test]
fn zero_rows_or_empty_range_is_a_no_op() {
    for kern in all_kernels() {
        let u = kern.unit_tile();
        let w = pack_gate_panels(&[1.0; 8], 2, 1, u);
        let (mut c, mut m) = (vec![7.0; u], vec![7.0; u]);
        let zx = vec![0.0; 4 * u];
        let p = StepParams::default();
        kern.step_tiles(0, 2, 1, &[], &w, &zx, None, &mut c, &mut m, 0..1, &p, None);
        kern.step_tiles(
            1,
            2,
            1,
            &[1.0, 1.0],
            &w,
            &zx,
            None,
            &mut c,
            &mut m,
            1..1,
            &p,
            None,
        );
        assert!(c.iter().chain(&m).all(|&v| v == 7.0));
    }
}

/// `(x [rows, kx], kx, W_x packed, bias packed)`.
type Projection<'a> = (&'a [f32], usize, &'a [f32], &'a [f32]);

/// The raw step of `cs` over all rows and the tiles `tiles`, with its gate sums
/// made either from `zx` as given or as `bias + x W_x` in the kernel's k loop
/// (`input`); the results land in `p`.
fn run_raw(
    kern: &Kernels,
    cs: &Case,
    p: &mut Packed,
    input: Option<Projection<'_>>,
    tiles: std::ops::Range<usize>,
) {
    let u = kern.unit_tile();
    let nt = kern.tiles(cs.h);
    let (w1, w4) = (nt * u, nt * 4 * u);
    let (part, zx, ld_zx) = match input {
        Some((x, kx, wx, bias)) => (
            Some(InputPart {
                kx,
                x: x.as_ptr(),
                ld_x: kx,
                w: wx.as_ptr(),
                ld_w: 4 * u,
                w_panel: kx * 4 * u,
            }),
            bias.as_ptr(),
            0,
        ),
        None => (None, p.zx.as_ptr(), w4),
    };
    let raw = StepRaw {
        rows: cs.rows,
        k: cs.k,
        input: part,
        h_prev: cs.h_prev.as_ptr(),
        ld_h_prev: cs.k,
        w: p.w.as_ptr(),
        ld_w: 4 * u,
        w_panel: cs.k * 4 * u,
        zx,
        ld_zx,
        peep: p.peep.as_deref().map(|v| NonNull::from(v).cast()),
        c: p.c.as_mut_ptr(),
        ld_c: w1,
        h_out: p.m.as_mut_ptr(),
        ld_h_out: w1,
        gates: Some(NonNull::from(&mut p.gates[..]).cast()),
        ld_gates: w4,
        tiles,
        forget_bias: cs.params.forget_bias,
        cell_clip: cs.params.cell_clip.unwrap_or(f32::INFINITY),
    };
    // SAFETY: every buffer holds the rows x full tile width of its layout (made by
    // `pack` and above), the panels cover k (kx) rows of every tile; the outputs are
    // distinct from the inputs.
    unsafe { kern.step_tiles_raw(&raw) };
}

#[test]
fn input_part_in_the_k_loop_equals_projecting_first() {
    let mut rng = Rng::new(77);
    for kern in all_kernels() {
        let u = kern.unit_tile();
        for &(rows, kx, k, h, peep, clip) in &[
            (1, 3, 5, 7, false, false),
            (7, 40, 24, 33, true, true),
            (13, 64, 17, 16, false, true),
            (30, 9, 64, 48, true, false),
        ] {
            let mut cs = Case::new(&mut rng, rows, k, h, peep, clip);
            let x = rng.vec(rows * kx, -1.0, 1.0);
            let wx = rng.vec(kx * 4 * h, -0.3, 0.3);
            let bias = rng.vec(4 * h, -0.5, 0.5);
            let (wx_p, bias_p) = (
                pack_gate_panels(&wx, kx, h, u),
                pack_gate_columns(&bias, 1, h, u),
            );
            // Projecting first: zx = bias + x W_x, by the GEMM kernel.
            let nt = kern.tiles(h);
            let mut zx = vec![f32::NAN; rows * nt * 4 * u];
            let proj = GemmRaw {
                rows,
                k: kx,
                a: x.as_ptr(),
                lda: kx,
                w: wx_p.as_ptr(),
                ld_w: 4 * u,
                w_panel: kx * 4 * u,
                init: bias_p.as_ptr(),
                ld_init: 0,
                out: zx.as_mut_ptr(),
                ld_out: nt * 4 * u,
                tiles: 0..nt,
            };
            // SAFETY: x is rows x kx, the panels cover kx rows of every tile, the bias
            // one row of every tile, zx rows x the full tile width.
            unsafe { kern.gemm_tiles_raw(&proj) };
            cs.zx = unpack_gate_columns(&zx, rows, h, u);
            let mut first = pack(&kern, &cs);
            run_raw(&kern, &cs, &mut first, None, 0..nt);
            let first = unpack(&kern, &cs, &first);
            // In the k loop, whole and split into tile ranges.
            for split in [nt, 1, 2] {
                let mut fused = pack(&kern, &cs);
                let mut t0 = 0;
                while t0 < nt {
                    let t1 = (t0 + split).min(nt);
                    run_raw(
                        &kern,
                        &cs,
                        &mut fused,
                        Some((&x, kx, &wx_p, &bias_p)),
                        t0..t1,
                    );
                    t0 = t1;
                }
                let fused = unpack(&kern, &cs, &fused);
                let ctx = format!("{:?} {rows}x{kx}+{k}x{h} split {split}", kern.isa());
                assert!(bits_eq(&fused.c, &first.c), "c: {ctx}");
                assert!(bits_eq(&fused.m, &first.m), "m: {ctx}");
                assert!(bits_eq(&fused.gates, &first.gates), "gates: {ctx}");
            }
        }
    }
}

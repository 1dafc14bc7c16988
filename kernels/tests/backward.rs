//! The fused elementwise backward: its f64 reference is first checked
//! against finite differences of the cell, then every ISA is checked
//! against the reference (derived bound) and bitwise against scalar.

mod common;

use common::{all_kernels, bits_eq, scalar, sigmoid64, Rng};
use std::ptr::NonNull;

use lstm_kernels_simd::{
    pack_gate_columns, pack_peepholes, pad_units, unpack_gate_columns, unpack_peepholes,
    unpad_units, BackwardRaw, DzPanels, Kernels, StepParams,
};

const EPS: f64 = 1.0 / (1u64 << 24) as f64;

/// One unit of one row: the gradients of the cell, in f64.
#[derive(Clone, Copy, Debug, Default)]
struct Grads {
    dz: [f64; 4],
    dc_prev: f64,
    dpeep: [f64; 3],
}

/// Backward of one unit. `cu` is the unclipped new cell (computed by the
/// caller, so that the clip decision matches the code under test).
#[allow(clippy::too_many_arguments)]
fn unit_backward(
    [i, g, f, o]: [f64; 4],
    cp: f64,
    cu: f64,
    dm: f64,
    dc_next: f64,
    [pi, pf, po]: [f64; 3],
    clip: Option<f64>,
) -> Grads {
    let c = clip.map_or(cu, |cl| cu.clamp(-cl, cl));
    let th = c.tanh();
    let da_o = dm * th * o * (1.0 - o);
    let mut dc = dc_next + dm * o * (1.0 - th * th) + da_o * po;
    if clip.is_some_and(|cl| cu.abs() > cl) {
        dc = 0.0;
    }
    let da_i = dc * g * i * (1.0 - i);
    let dz_j = dc * i * (1.0 - g * g);
    let da_f = dc * cp * f * (1.0 - f);
    Grads {
        dz: [da_i, dz_j, da_f, da_o],
        dc_prev: dc * f + da_i * pi + da_f * pf,
        dpeep: [da_i * cp, da_f * cp, da_o * c],
    }
}

/// The same expression with every quantity replaced by its magnitude (and
/// `1 - x` by `1 + |x|`): bounds the sum of |terms| each output is made of,
/// which scales its rounding error.
#[allow(clippy::too_many_arguments)]
fn unit_magnitude(
    [i, g, f, o]: [f64; 4],
    cp: f64,
    cu: f64,
    dm: f64,
    dc_next: f64,
    [pi, pf, po]: [f64; 3],
    clip: Option<f64>,
) -> Grads {
    let (i, g, f, o, cp, dm, dc_next) = (
        i.abs(),
        g.abs(),
        f.abs(),
        o.abs(),
        cp.abs(),
        dm.abs(),
        dc_next.abs(),
    );
    let c = clip.map_or(cu, |cl| cu.clamp(-cl, cl)).abs();
    // tanh(c) errs by up to 9e-8 absolute: fold it into its magnitude.
    let th = c.tanh() + 1e-7 / EPS;
    let da_o = dm * th * o * (1.0 + o);
    let mut dc = dc_next + dm * o * (1.0 + th * th) + da_o * po.abs();
    if clip.is_some_and(|cl| cu.abs() > cl) {
        dc = 0.0;
    }
    let da_i = dc * g * i * (1.0 + i);
    let dz_j = dc * i * (1.0 + g * g);
    let da_f = dc * cp * f * (1.0 + f);
    Grads {
        dz: [da_i, dz_j, da_f, da_o],
        dc_prev: dc * f + da_i * pi.abs() + da_f * pf.abs(),
        dpeep: [da_i * cp, da_f * cp, da_o * c],
    }
}

#[test]
fn reference_backward_matches_finite_differences_of_the_cell() {
    let mut rng = Rng::new(21);
    for case in 0..400 {
        let z: [f64; 4] = std::array::from_fn(|_| rng.uniform(-2.0, 2.0) as f64);
        let cp = rng.uniform(-3.0, 3.0) as f64;
        let peep: [f64; 3] = std::array::from_fn(|_| rng.uniform(-0.7, 0.7) as f64);
        let (dm, dcn) = (rng.uniform(-1.0, 1.0) as f64, rng.uniform(-1.0, 1.0) as f64);
        let fb = 1.0;
        let clip = (case % 2 == 1).then_some(1.25);
        // Forward from pre-activations; the loss is dm . m + dcn . c.
        let forward = |z: [f64; 4], cp: f64, p: [f64; 3]| {
            let i = sigmoid64(z[0] + p[0] * cp);
            let g = z[1].tanh();
            let f = sigmoid64(z[2] + fb + p[1] * cp);
            let cu = f * cp + i * g;
            let c = clip.map_or(cu, |cl: f64| cu.clamp(-cl, cl));
            let o = sigmoid64(z[3] + p[2] * c);
            ([i, g, f, o], cu, dm * o * c.tanh() + dcn * c)
        };
        let (gates, cu, _) = forward(z, cp, peep);
        if clip.is_some_and(|cl| (cu.abs() - cl).abs() < 1e-4) {
            continue; // the clamp's kink: no derivative to compare
        }
        let got = unit_backward(gates, cp, cu, dm, dcn, peep, clip);
        let h = 1e-6;
        let fd = |bump: &dyn Fn(f64) -> f64| (bump(h) - bump(-h)) / (2.0 * h);
        for q in 0..4 {
            let d = fd(&|e| {
                let mut z2 = z;
                z2[q] += e;
                forward(z2, cp, peep).2
            });
            assert!(
                (d - got.dz[q]).abs() < 1e-7,
                "dz[{q}] {} vs fd {d} (case {case})",
                got.dz[q]
            );
        }
        let d = fd(&|e| forward(z, cp + e, peep).2);
        assert!(
            (d - got.dc_prev).abs() < 1e-7,
            "dc_prev {} vs fd {d}",
            got.dc_prev
        );
        for q in 0..3 {
            let d = fd(&|e| {
                let mut p2 = peep;
                p2[q] += e;
                forward(z, cp, p2).2
            });
            assert!(
                (d - got.dpeep[q]).abs() < 1e-7,
                "dpeep[{q}] {} vs fd {d}",
                got.dpeep[q]
            );
        }
    }
}

struct Case {
    rows: usize,
    h: usize,
    gates: Vec<f32>, // [rows, 4h]
    c_prev: Vec<f32>,
    dh: Vec<f32>,
    dc: Vec<f32>,
    peep: Option<[Vec<f32>; 3]>,
    dpeep0: [Vec<f32>; 3],
    params: StepParams,
}

impl Case {
    fn new(rng: &mut Rng, rows: usize, h: usize, peep: bool, clip: bool) -> Case {
        let mut gates = Vec::with_capacity(rows * 4 * h);
        for _ in 0..rows {
            for g in 0..4 {
                for _ in 0..h {
                    gates.push(if g == 1 {
                        rng.uniform(-1.0, 1.0)
                    } else {
                        rng.uniform(0.0, 1.0)
                    });
                }
            }
        }
        Case {
            rows,
            h,
            gates,
            c_prev: rng.vec(rows * h, -3.0, 3.0),
            dh: rng.vec(rows * h, -1.0, 1.0),
            dc: rng.vec(rows * h, -1.0, 1.0),
            peep: peep.then(|| [0, 1, 2].map(|_| rng.vec(h, -0.7, 0.7))),
            dpeep0: [0, 1, 2].map(|_| rng.vec(h, -0.1, 0.1)),
            params: StepParams {
                forget_bias: 0.0,
                cell_clip: clip.then_some(1.25),
            },
        }
    }
}

struct Out {
    dz: Vec<f32>,
    dc: Vec<f32>,
    dpeep: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
}

fn run_split(kern: &Kernels, cs: &Case, ranges: &[std::ops::Range<usize>]) -> Out {
    let u = kern.unit_tile();
    let (rows, h) = (cs.rows, cs.h);
    let gates = pack_gate_columns(&cs.gates, rows, h, u);
    let c_prev = pad_units(&cs.c_prev, rows, h, u);
    let dh = pad_units(&cs.dh, rows, h, u);
    let mut dc = pad_units(&cs.dc, rows, h, u);
    let mut dz = vec![f32::NAN; rows * kern.tiles(h) * 4 * u];
    let peep = cs
        .peep
        .as_ref()
        .map(|[i, f, o]| pack_peepholes(i, f, o, h, u));
    let [a, b, c] = &cs.dpeep0;
    let mut dpeep = peep.as_ref().map(|_| pack_peepholes(a, b, c, h, u));
    for r in ranges {
        kern.backward_tiles(
            rows,
            h,
            &gates,
            &c_prev,
            &dh,
            &mut dc,
            &mut dz,
            peep.as_deref(),
            dpeep.as_deref_mut(),
            r.clone(),
            &cs.params,
        );
    }
    Out {
        dz: unpack_gate_columns(&dz, rows, h, u),
        dc: unpad_units(&dc, rows, h, u),
        dpeep: dpeep.map(|p| unpack_peepholes(&p, h, u)),
    }
}

fn run(kern: &Kernels, cs: &Case) -> Out {
    let all = 0..kern.tiles(cs.h);
    run_split(kern, cs, std::slice::from_ref(&all))
}

fn check_against_reference(kern: &Kernels, cs: &Case, got: &Out) {
    let (rows, h) = (cs.rows, cs.h);
    let clip = cs.params.cell_clip.map(|c| c as f64);
    let mut dpeep =
        [0usize, 1, 2].map(|q| cs.dpeep0[q].iter().map(|&v| v as f64).collect::<Vec<_>>());
    let mut dpeep_mag = [0, 1, 2].map(|_| vec![0.0f64; h]);
    let ctx = format!(
        "{:?} rows={rows} h={h} peep={} clip={clip:?}",
        kern.isa(),
        cs.peep.is_some()
    );
    for r in 0..rows {
        for x in 0..h {
            let gf: [f32; 4] = std::array::from_fn(|g| cs.gates[r * 4 * h + g * h + x]);
            let cp = cs.c_prev[r * h + x];
            // The unclipped cell exactly as the forward kernel computed it.
            let cu = gf[2].mul_add(cp, gf[0] * gf[1]) as f64;
            let gates = gf.map(|v| v as f64);
            let p = match &cs.peep {
                Some([a, b, c]) => [a[x], b[x], c[x]].map(|v| v as f64),
                None => [0.0; 3],
            };
            let (dm, dcn) = (cs.dh[r * h + x] as f64, cs.dc[r * h + x] as f64);
            let want = unit_backward(gates, cp as f64, cu, dm, dcn, p, clip);
            let mag = unit_magnitude(gates, cp as f64, cu, dm, dcn, p, clip);
            // About ten roundings stand between the inputs and any output,
            // each at most EPS relative to a term bounded by `mag`: 16 EPS
            // per unit of magnitude covers them with margin.
            let tol = |m: f64| 16.0 * EPS * m + 1e-30;
            for g in 0..4 {
                let v = got.dz[r * 4 * h + g * h + x] as f64;
                assert!(
                    (v - want.dz[g]).abs() <= tol(mag.dz[g]),
                    "dz[{r}][{g}][{x}] = {v} vs {} ({ctx})",
                    want.dz[g]
                );
            }
            let v = got.dc[r * h + x] as f64;
            assert!(
                (v - want.dc_prev).abs() <= tol(mag.dc_prev),
                "dc_prev[{r}][{x}] {v} vs {} ({ctx})",
                want.dc_prev
            );
            for q in 0..3 {
                dpeep[q][x] += want.dpeep[q];
                dpeep_mag[q][x] += mag.dpeep[q] + cs.dpeep0[q][x].abs() as f64 / rows as f64;
            }
        }
    }
    if let Some((a, b, c)) = &got.dpeep {
        for (q, v) in [a, b, c].into_iter().enumerate() {
            for x in 0..h {
                // The sum over rows adds one rounding per row.
                let tol = (16.0 + rows as f64) * EPS * dpeep_mag[q][x] + 1e-30;
                assert!(
                    (v[x] as f64 - dpeep[q][x]).abs() <= tol,
                    "dpeep[{q}][{x}] ({ctx})"
                );
            }
        }
    }
}

#[test]
fn every_isa_matches_the_reference_and_scalar_bits() {
    let mut rng = Rng::new(22);
    let kernels = all_kernels();
    for rows in [1, 2, 3, 5, 8, 13, 64] {
        for h in [1, 5, 16, 17, 33, 64] {
            for opt in 0..4 {
                let cs = Case::new(&mut rng, rows, h, opt & 1 == 1, opt & 2 == 2);
                let oracle = run(&scalar(), &cs);
                for kern in &kernels {
                    let got = run(kern, &cs);
                    check_against_reference(kern, &cs, &got);
                    let ctx = format!("{:?} rows={rows} h={h} opt={opt}", kern.isa());
                    assert!(
                        bits_eq(&got.dz, &oracle.dz),
                        "dz differs from scalar: {ctx}"
                    );
                    assert!(
                        bits_eq(&got.dc, &oracle.dc),
                        "dc differs from scalar: {ctx}"
                    );
                    if let (Some(a), Some(b)) = (&got.dpeep, &oracle.dpeep) {
                        assert!(
                            bits_eq(&a.0, &b.0) && bits_eq(&a.1, &b.1) && bits_eq(&a.2, &b.2),
                            "dpeep: {ctx}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn clip_stops_the_gradient_exactly_where_the_forward_clipped() {
    let mut rng = Rng::new(23);
    let mut cs = Case::new(&mut rng, 8, 33, true, true);
    cs.c_prev.iter_mut().for_each(|c| *c *= 3.0);
    for kern in all_kernels() {
        let got = run(&kern, &cs);
        let mut stopped = 0;
        for r in 0..cs.rows {
            for x in 0..cs.h {
                let g = |q: usize| cs.gates[r * 4 * cs.h + q * cs.h + x];
                let cu = g(2).mul_add(cs.c_prev[r * cs.h + x], g(0) * g(1));
                let dz = |q: usize| got.dz[r * 4 * cs.h + q * cs.h + x];
                if cu.abs() > 1.25 {
                    // No gradient reaches c_prev or the gates feeding c;
                    // only o (through m = o tanh(c)) still gets some.
                    stopped += 1;
                    assert_eq!([dz(0), dz(1), dz(2)], [0.0; 3], "leak through the clip");
                    assert_eq!(got.dc[r * cs.h + x], 0.0, "dc_prev leak through the clip");
                    assert_ne!(dz(3), 0.0);
                } else {
                    assert_ne!(dz(0), 0.0, "gradient stopped inside the clip");
                }
            }
        }
        assert!(stopped > 20, "the clip should bind often here ({stopped})");
    }
}

#[test]
fn tile_splits_give_identical_bits() {
    let mut rng = Rng::new(24);
    for kern in all_kernels() {
        for &(rows, h) in &[(1, 64), (7, 33), (64, 17)] {
            let cs = Case::new(&mut rng, rows, h, true, true);
            let nt = kern.tiles(h);
            let whole = run(&kern, &cs);
            let mid = nt / 2;
            let split = run_split(&kern, &cs, &[mid..nt, 0..mid]);
            assert!(bits_eq(&whole.dz, &split.dz) && bits_eq(&whole.dc, &split.dc));
            let (a, b) = (whole.dpeep.unwrap(), split.dpeep.unwrap());
            assert!(bits_eq(&a.0, &b.0) && bits_eq(&a.1, &b.1) && bits_eq(&a.2, &b.2));
        }
    }
}

#[test]
#[should_panic(expected = "dpeep without peep")]
fn dpeep_without_peep_panics() {
    let kern = Kernels::detect();
    let u = kern.unit_tile();
    let v = vec![0.0; 4 * u];
    let (mut dc, mut dz, mut dp) = (vec![0.0; u], vec![0.0; 4 * u], vec![0.0; 3 * u]);
    kern.backward_tiles(
        1,
        1,
        &v,
        &v,
        &v,
        &mut dc,
        &mut dz,
        None,
        Some(&mut dp),
        0..1,
        &StepParams::default(),
    );
}

#[test]
fn dz_panels_hold_the_same_gradients_as_panels() {
    let mut rng = Rng::new(31);
    for kern in all_kernels() {
        let u = kern.unit_tile();
        for &(rows, h, peep, clip) in &[
            (1, 5, false, false),
            (7, 33, true, true),
            (12, 40, false, true),
        ] {
            let cs = Case::new(&mut rng, rows, h, peep, clip);
            let want = run(&kern, &cs);
            let nt = kern.tiles(h);
            let (w1, w4) = (nt * u, nt * 4 * u);
            let gates = pack_gate_columns(&cs.gates, rows, h, u);
            let c_prev = pad_units(&cs.c_prev, rows, h, u);
            let dh = pad_units(&cs.dh, rows, h, u);
            let mut dc = pad_units(&cs.dc, rows, h, u);
            let mut dz = vec![f32::NAN; rows * w4];
            let mut panels = vec![f32::NAN; rows * w4];
            let peep_p = cs
                .peep
                .as_ref()
                .map(|[i, f, o]| pack_peepholes(i, f, o, h, u));
            let [a, b, c] = &cs.dpeep0;
            let mut dpeep = peep_p.as_ref().map(|_| pack_peepholes(a, b, c, h, u));
            let raw = BackwardRaw {
                rows,
                gates: gates.as_ptr(),
                ld_gates: w4,
                c_prev: c_prev.as_ptr(),
                ld_c_prev: w1,
                dh: dh.as_ptr(),
                ld_dh: w1,
                dc: dc.as_mut_ptr(),
                ld_dc: w1,
                dz: dz.as_mut_ptr(),
                ld_dz: w4,
                dz_panels: Some(DzPanels {
                    at: NonNull::from(&mut panels[..]).cast(),
                    ld: 4 * u,
                    panel: rows * 4 * u,
                }),
                peep: peep_p.as_deref().map(|p| NonNull::from(p).cast()),
                dpeep: dpeep.as_deref_mut().map(|p| NonNull::from(p).cast()),
                tiles: 0..nt,
                cell_clip: cs.params.cell_clip.unwrap_or(f32::INFINITY),
            };
            // SAFETY: every buffer holds rows x the full tile width of its layout, the
            // panels rows x 4U per tile; outputs are distinct from inputs.
            unsafe { kern.backward_tiles_raw(&raw) };
            let ctx = format!("{:?} {rows}x{h}", kern.isa());
            assert!(
                bits_eq(&unpack_gate_columns(&dz, rows, h, u), &want.dz),
                "dz: {ctx}"
            );
            for t in 0..nt {
                for row in 0..rows {
                    let p = &panels[t * rows * 4 * u + row * 4 * u..][..4 * u];
                    let d = &dz[row * w4 + t * 4 * u..][..4 * u];
                    assert!(bits_eq(p, d), "panel {t} row {row}: {ctx}");
                }
            }
        }
    }
}

//! The reference backward through time, in f64: the oracle for every gradient the crate
//! computes. It recomputes the forward pass in f64 one sequence at a time, keeping every
//! intermediate, then walks back through it with the textbook derivatives in TensorFlow's
//! order of operations (peepholes, cell clip, output peephole on the clipped cell,
//! projection, projection clip). Its own correctness is checked against central finite
//! differences of the same f64 forward pass.

use crate::api::input::{prepare, ForwardInput};
use crate::api::train::{Gradients, Upstream};
use crate::api::workspace::Workspace;
use crate::model::error::{Error, Result};
use crate::model::layout::row_index;
use crate::model::spec::LstmSpec;
use crate::model::state::LstmState;
use crate::model::weights::{CellWeights, LstmWeights};

/// One cell's parameters (or their gradients) in f64, canonical layout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell64 {
    pub wx: Vec<f64>,
    pub wh: Vec<f64>,
    pub b: Vec<f64>,
    pub peep: Option<[Vec<f64>; 3]>,
    pub proj: Option<Vec<f64>>,
}

fn up(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}
fn down(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

impl Cell64 {
    pub fn from(w: &CellWeights) -> Self {
        Cell64 {
            wx: up(w.input_weights()),
            wh: up(w.recurrent_weights()),
            b: up(w.bias()),
            peep: w.peepholes().map(|[a, b, c]| [up(a), up(b), up(c)]),
            proj: w.projection().map(up),
        }
    }
    fn zeros_like(&self) -> Self {
        let z = |v: &[f64]| vec![0.0; v.len()];
        Cell64 {
            wx: z(&self.wx),
            wh: z(&self.wh),
            b: z(&self.b),
            peep: self.peep.as_ref().map(|[a, b, c]| [z(a), z(b), z(c)]),
            proj: self.proj.as_ref().map(|p| z(p)),
        }
    }
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Everything one step keeps for backward.
#[derive(Debug, Clone)]
struct Tape {
    x: Vec<f64>,
    h_prev: Vec<f64>,
    c_prev: Vec<f64>,
    /// Activated gates i, g, f, o.
    gates: [Vec<f64>; 4],
    c_raw: Vec<f64>,
    c: Vec<f64>,
    m: Vec<f64>,
    h_raw: Vec<f64>,
}

/// The problem in f64: sizes, lengths, input and initial state.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub spec: LstmSpec,
    pub batch: usize,
    pub steps: usize,
    pub lengths: Vec<usize>,
    pub input: Vec<f64>,
    /// `(c, h)` per cell.
    pub init: Vec<(Vec<f64>, Vec<f64>)>,
}

/// The forward pass and its tapes: `tapes[k][b][s]` for cell `k`, sequence `b`, the
/// `s`-th step it processed.
pub(crate) struct Forward64 {
    /// The output and final states: what the finite-difference tests differentiate.
    #[cfg_attr(not(test), allow(dead_code))]
    pub output: Vec<f64>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub finals: Vec<(Vec<f64>, Vec<f64>)>,
    tapes: Vec<Vec<Vec<Tape>>>,
}

fn step64(w: &Cell64, spec: &LstmSpec, x: &[f64], h_prev: &[f64], c_prev: &[f64]) -> Tape {
    let hid = c_prev.len();
    let n = 4 * hid;
    let mut z = w.b.clone();
    for (xv, row) in x.iter().zip(w.wx.chunks_exact(n)) {
        z.iter_mut().zip(row).for_each(|(a, &b)| *a += xv * b);
    }
    for (hv, row) in h_prev.iter().zip(w.wh.chunks_exact(n)) {
        z.iter_mut().zip(row).for_each(|(a, &b)| *a += hv * b);
    }
    let fb = f64::from(spec.forget_bias());
    let clip = spec.cell_clip().map(f64::from);
    let mut gates = [
        vec![0.0; hid],
        vec![0.0; hid],
        vec![0.0; hid],
        vec![0.0; hid],
    ];
    let (mut c_raw, mut c, mut m) = (vec![0.0; hid], vec![0.0; hid], vec![0.0; hid]);
    for u in 0..hid {
        let (mut zi, zj, mut zf, mut zo) = (z[u], z[hid + u], z[2 * hid + u] + fb, z[3 * hid + u]);
        if let Some([wi, wf, _]) = &w.peep {
            zi += wi[u] * c_prev[u];
            zf += wf[u] * c_prev[u];
        }
        let (i, g, f) = (sig(zi), zj.tanh(), sig(zf));
        c_raw[u] = f * c_prev[u] + i * g;
        c[u] = clip.map_or(c_raw[u], |k| c_raw[u].clamp(-k, k));
        if let Some([_, _, wo]) = &w.peep {
            zo += wo[u] * c[u];
        }
        let o = sig(zo);
        m[u] = o * c[u].tanh();
        gates[0][u] = i;
        gates[1][u] = g;
        gates[2][u] = f;
        gates[3][u] = o;
    }
    let h_raw = match &w.proj {
        None => m.clone(),
        Some(p) => {
            let pw = p.len() / hid;
            let mut h = vec![0.0; pw];
            for (mv, row) in m.iter().zip(p.chunks_exact(pw)) {
                h.iter_mut().zip(row).for_each(|(a, &b)| *a += mv * b);
            }
            h
        }
    };
    Tape {
        x: x.to_vec(),
        h_prev: h_prev.to_vec(),
        c_prev: c_prev.to_vec(),
        gates,
        c_raw,
        c,
        m,
        h_raw,
    }
}

fn proj_clipped(spec: &LstmSpec, has_proj: bool, h_raw: &[f64]) -> Vec<f64> {
    match (has_proj, spec.proj_clip()) {
        (true, Some(k)) => h_raw
            .iter()
            .map(|v| v.clamp(-f64::from(k), f64::from(k)))
            .collect(),
        _ => h_raw.to_vec(),
    }
}

pub(crate) fn forward64(cells: &[Cell64], p: &Problem) -> Forward64 {
    let spec = &p.spec;
    let (bsz, steps, tm) = (p.batch, p.steps, spec.time_major());
    let dirs = spec.num_directions();
    let mut layer_in = p.input.clone();
    let mut finals = Vec::new();
    let mut tapes = Vec::new();
    for l in 0..spec.num_layers() {
        let in_w = spec.layer_input_size(l);
        let out_w = spec.layer_output_size(l);
        let (hid, r) = (spec.layers()[l].hidden_size, spec.layers()[l].output_size());
        let mut out = vec![0.0; bsz * steps * out_w];
        for dir in 0..dirs {
            let k = l * dirs + dir;
            let w = &cells[k];
            let (mut fc, mut fh) = (p.init[k].0.clone(), p.init[k].1.clone());
            let mut cell_tapes = Vec::new();
            for b in 0..bsz {
                let len = p.lengths[b];
                let mut c = p.init[k].0[b * hid..(b + 1) * hid].to_vec();
                let mut h = p.init[k].1[b * r..(b + 1) * r].to_vec();
                let mut seq = Vec::new();
                for s in 0..len {
                    let t = if dir == 0 { s } else { len - 1 - s };
                    let row = row_index(tm, bsz, steps, b, t);
                    let tape = step64(w, spec, &layer_in[row * in_w..(row + 1) * in_w], &h, &c);
                    c = tape.c.clone();
                    h = proj_clipped(spec, w.proj.is_some(), &tape.h_raw);
                    out[row * out_w + dir * r..row * out_w + (dir + 1) * r].copy_from_slice(&h);
                    seq.push(tape);
                }
                fc[b * hid..(b + 1) * hid].copy_from_slice(&c);
                fh[b * r..(b + 1) * r].copy_from_slice(&h);
                cell_tapes.push(seq);
            }
            finals.push((fc, fh));
            tapes.push(cell_tapes);
        }
        layer_in = out;
    }
    Forward64 {
        output: layer_in,
        finals,
        tapes,
    }
}

/// Gradients in f64: per cell parameter grads, input grad, initial-state grads.
pub(crate) struct Grads64 {
    pub cells: Vec<Cell64>,
    pub input: Vec<f64>,
    pub init: Vec<(Vec<f64>, Vec<f64>)>,
}

pub(crate) fn backward64(
    cells: &[Cell64],
    p: &Problem,
    fwd: &Forward64,
    grad_output: &[f64],
    grad_final: &[(Vec<f64>, Vec<f64>)],
) -> Grads64 {
    let spec = &p.spec;
    let (bsz, steps, tm) = (p.batch, p.steps, spec.time_major());
    let dirs = spec.num_directions();
    let clip = spec.cell_clip().map(f64::from);
    let pclip = spec.proj_clip().map(f64::from);
    let mut grads: Vec<Cell64> = cells.iter().map(Cell64::zeros_like).collect();
    let mut init: Vec<(Vec<f64>, Vec<f64>)> = p
        .init
        .iter()
        .map(|(c, h)| (vec![0.0; c.len()], vec![0.0; h.len()]))
        .collect();
    // Gradient into the current layer's output, [B, T, out]; padded steps contribute nothing.
    let mut d_out = grad_output.to_vec();
    for l in (0..spec.num_layers()).rev() {
        let in_w = spec.layer_input_size(l);
        let out_w = spec.layer_output_size(l);
        let (hid, r) = (spec.layers()[l].hidden_size, spec.layers()[l].output_size());
        let mut d_in = vec![0.0; bsz * steps * in_w];
        for dir in 0..dirs {
            let k = l * dirs + dir;
            let (w, g) = (&cells[k], &mut grads[k]);
            let n = 4 * hid;
            for b in 0..bsz {
                let len = p.lengths[b];
                let mut dh_next = grad_final[k].1[b * r..(b + 1) * r].to_vec();
                let mut dc_next = grad_final[k].0[b * hid..(b + 1) * hid].to_vec();
                for s in (0..len).rev() {
                    let t = if dir == 0 { s } else { len - 1 - s };
                    let row = row_index(tm, bsz, steps, b, t);
                    let tape = &fwd.tapes[k][b][s];
                    let mut dh = dh_next.clone();
                    for (j, v) in dh.iter_mut().enumerate() {
                        *v += d_out[row * out_w + dir * r + j];
                    }
                    let dm = match &w.proj {
                        None => dh,
                        Some(pw) => {
                            if let Some(kc) = pclip {
                                // clip_by_value passes the gradient on the bounds, not beyond.
                                for (d, &hr) in dh.iter_mut().zip(&tape.h_raw) {
                                    if hr.abs() > kc {
                                        *d = 0.0;
                                    }
                                }
                            }
                            let gp = g.proj.as_mut().expect("projection grads");
                            let mut dm = vec![0.0; hid];
                            for j in 0..hid {
                                for q in 0..r {
                                    gp[j * r + q] += tape.m[j] * dh[q];
                                    dm[j] += pw[j * r + q] * dh[q];
                                }
                            }
                            dm
                        }
                    };
                    let [gi, gg, gf, go] = &tape.gates;
                    let mut dz = vec![0.0; n];
                    let mut dc_prev = vec![0.0; hid];
                    for u in 0..hid {
                        let tc = tape.c[u].tanh();
                        let d_o = dm[u] * tc;
                        let dzo = d_o * go[u] * (1.0 - go[u]);
                        let mut dc = dc_next[u] + dm[u] * go[u] * (1.0 - tc * tc);
                        if let (Some([_, _, wo]), Some([_, _, gwo])) = (&w.peep, g.peep.as_mut()) {
                            dc += dzo * wo[u];
                            gwo[u] += dzo * tape.c[u];
                        }
                        if let Some(kc) = clip {
                            if tape.c_raw[u].abs() > kc {
                                dc = 0.0;
                            }
                        }
                        let cp = tape.c_prev[u];
                        let dzi = dc * gg[u] * gi[u] * (1.0 - gi[u]);
                        let dzg = dc * gi[u] * (1.0 - gg[u] * gg[u]);
                        let dzf = dc * cp * gf[u] * (1.0 - gf[u]);
                        dc_prev[u] = dc * gf[u];
                        if let (Some([wi, wf, _]), Some([gwi, gwf, _])) = (&w.peep, g.peep.as_mut())
                        {
                            dc_prev[u] += dzi * wi[u] + dzf * wf[u];
                            gwi[u] += dzi * cp;
                            gwf[u] += dzf * cp;
                        }
                        dz[u] = dzi;
                        dz[hid + u] = dzg;
                        dz[2 * hid + u] = dzf;
                        dz[3 * hid + u] = dzo;
                    }
                    g.b.iter_mut().zip(&dz).for_each(|(a, d)| *a += d);
                    for (xi, &xv) in tape.x.iter().enumerate() {
                        for (q, &d) in dz.iter().enumerate() {
                            g.wx[xi * n + q] += xv * d;
                            d_in[row * in_w + xi] += w.wx[xi * n + q] * d;
                        }
                    }
                    let mut dh_prev = vec![0.0; r];
                    for (hi, &hv) in tape.h_prev.iter().enumerate() {
                        for (q, &d) in dz.iter().enumerate() {
                            g.wh[hi * n + q] += hv * d;
                            dh_prev[hi] += w.wh[hi * n + q] * d;
                        }
                    }
                    dh_next = dh_prev;
                    dc_next = dc_prev;
                }
                init[k].0[b * hid..(b + 1) * hid].copy_from_slice(&dc_next);
                init[k].1[b * r..(b + 1) * r].copy_from_slice(&dh_next);
            }
        }
        d_out = d_in;
    }
    Grads64 {
        cells: grads,
        input: d_out,
        init,
    }
}

impl Problem {
    /// Validates `input` as the forward pass does and lifts it to f64.
    pub fn new(weights: &LstmWeights, input: &ForwardInput<'_>) -> Result<Self> {
        let spec = weights.spec();
        let mut ws = Workspace::new(spec, input.batch, input.steps);
        prepare(spec, input, &mut ws)?;
        Ok(Problem {
            spec: spec.clone(),
            batch: input.batch,
            steps: input.steps,
            lengths: ws.lengths[..input.batch].to_vec(),
            input: up(input.data),
            init: ws
                .state
                .cells
                .iter()
                .map(|c| (up(&c.c), up(&c.h)))
                .collect(),
        })
    }
}

/// The reference gradients of `L = sum(output * upstream.output) + sum(final_state *
/// upstream.final_state)`, computed in f64 and rounded to f32.
///
/// # Errors
/// As [`Lstm::forward_inference`](crate::Lstm::forward_inference) for the input; plus
/// [`Error::Shape`] when an upstream gradient is not shaped like what it is the gradient of.
///
/// Memory: an oracle for tests, it keeps every step's values in f64 in many small
/// vectors and allocates them as `Vec` does, so a problem the machine cannot hold aborts
/// the process rather than returning [`Error::OutOfMemory`]; use it on test-sized problems.
pub fn gradients(
    weights: &LstmWeights,
    input: &ForwardInput<'_>,
    upstream: &Upstream<'_>,
) -> Result<Gradients> {
    let spec = weights.spec();
    let p = Problem::new(weights, input)?;
    let out_len = p.batch * p.steps * spec.output_size();
    let grad_output = match upstream.output {
        Some(g) if g.len() != out_len => {
            return Err(Error::Shape {
                tensor: "grad_output".into(),
                expected: format!("{out_len} elements (like the output)"),
                actual: format!("{} elements", g.len()),
            })
        }
        Some(g) => up(g),
        None => vec![0.0; out_len],
    };
    let grad_final: Vec<(Vec<f64>, Vec<f64>)> = match upstream.final_state {
        Some(s) => {
            s.check_as(spec, p.batch, "grad_final_state")?;
            s.cells.iter().map(|c| (up(&c.c), up(&c.h))).collect()
        }
        None => p
            .init
            .iter()
            .map(|(c, h)| (vec![0.0; c.len()], vec![0.0; h.len()]))
            .collect(),
    };
    let cells: Vec<Cell64> = (0..spec.num_cells())
        .map(|k| Cell64::from(weights.cell(k)))
        .collect();
    let fwd = forward64(&cells, &p);
    let g = backward64(&cells, &p, &fwd, &grad_output, &grad_final);
    let mut wg = LstmWeights::zeros(spec);
    for (k, c) in g.cells.iter().enumerate() {
        wg.set_cell(
            k,
            down(&c.wx),
            down(&c.wh),
            down(&c.b),
            c.peep.as_ref().map(|[a, b, c]| [down(a), down(b), down(c)]),
            c.proj.as_deref().map(down),
        );
    }
    let mut init = LstmState::zeros(spec, p.batch);
    for (dst, (c, h)) in init.cells.iter_mut().zip(&g.init) {
        dst.c = down(c);
        dst.h = down(h);
    }
    Ok(Gradients {
        weights: wg,
        input: down(&g.input),
        initial_state: init,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::SplitMix64;

    fn loss(cells: &[Cell64], p: &Problem, gout: &[f64], gfin: &[(Vec<f64>, Vec<f64>)]) -> f64 {
        let f = forward64(cells, p);
        let mut l: f64 = f.output.iter().zip(gout).map(|(a, b)| a * b).sum();
        for ((c, h), (gc, gh)) in f.finals.iter().zip(gfin) {
            l += c.iter().zip(gc).map(|(a, b)| a * b).sum::<f64>();
            l += h.iter().zip(gh).map(|(a, b)| a * b).sum::<f64>();
        }
        l
    }

    /// Every parameter slot of a cell, for perturbation.
    fn slots(c: &mut Cell64) -> Vec<&mut Vec<f64>> {
        let mut v = vec![&mut c.wx, &mut c.wh, &mut c.b];
        if let Some([a, b, d]) = c.peep.as_mut() {
            v.extend([a, b, d]);
        }
        if let Some(p) = c.proj.as_mut() {
            v.push(p);
        }
        v
    }

    fn check_spec(spec: LstmSpec, batch: usize, steps: usize, lengths: Vec<usize>, seed: u64) {
        let mut rng = SplitMix64::new(seed);
        let w = LstmWeights::random_uniform(&spec, 0.6, seed);
        let mut cells: Vec<Cell64> = (0..spec.num_cells())
            .map(|k| Cell64::from(w.cell(k)))
            .collect();
        let zero = LstmState::zeros(&spec, batch);
        let p = Problem {
            spec: spec.clone(),
            batch,
            steps,
            lengths,
            input: up(&rng.uniform_vec(batch * steps * spec.input_size(), -1.0, 1.0)),
            init: zero
                .cells
                .iter()
                .map(|c| {
                    (
                        up(&rng.uniform_vec(c.c.len(), -1.0, 1.0)),
                        up(&rng.uniform_vec(c.h.len(), -1.0, 1.0)),
                    )
                })
                .collect(),
        };
        let gout = up(&rng.uniform_vec(batch * steps * spec.output_size(), -1.0, 1.0));
        let gfin: Vec<(Vec<f64>, Vec<f64>)> = zero
            .cells
            .iter()
            .map(|c| {
                (
                    up(&rng.uniform_vec(c.c.len(), -1.0, 1.0)),
                    up(&rng.uniform_vec(c.h.len(), -1.0, 1.0)),
                )
            })
            .collect();
        let fwd = forward64(&cells, &p);
        let g = backward64(&cells, &p, &fwd, &gout, &gfin);
        // Central differences with step 1e-6 in f64: truncation ~1e-12 * f''', rounding
        // ~1e-16 / 1e-6 = 1e-10; a kink of a clip inside the step is unlikely at random
        // points but possible, so compare with 1e-6 absolute + 1e-5 relative.
        let eps = 1e-6;
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                "{what}: analytic {a} vs numeric {b}"
            );
        };
        for k in 0..cells.len() {
            let analytic: Vec<Vec<f64>> = {
                let mut gc = g.cells[k].clone();
                slots(&mut gc).into_iter().map(|v| v.clone()).collect()
            };
            for (si, want) in analytic.iter().enumerate() {
                let len = want.len();
                for idx in (0..len).step_by(1 + len / 7) {
                    let orig = slots(&mut cells[k])[si][idx];
                    slots(&mut cells[k])[si][idx] = orig + eps;
                    let lp = loss(&cells, &p, &gout, &gfin);
                    slots(&mut cells[k])[si][idx] = orig - eps;
                    let lm = loss(&cells, &p, &gout, &gfin);
                    slots(&mut cells[k])[si][idx] = orig;
                    close(
                        analytic[si][idx],
                        (lp - lm) / (2.0 * eps),
                        &format!("cell {k} slot {si}[{idx}]"),
                    );
                }
            }
        }
        let mut pp = p.clone();
        for idx in (0..p.input.len()).step_by(1 + p.input.len() / 11) {
            let orig = pp.input[idx];
            pp.input[idx] = orig + eps;
            let lp = loss(&cells, &pp, &gout, &gfin);
            pp.input[idx] = orig - eps;
            let lm = loss(&cells, &pp, &gout, &gfin);
            pp.input[idx] = orig;
            close(
                g.input[idx],
                (lp - lm) / (2.0 * eps),
                &format!("input[{idx}]"),
            );
        }
        for k in 0..p.init.len() {
            for which in 0..2 {
                let len = if which == 0 {
                    p.init[k].0.len()
                } else {
                    p.init[k].1.len()
                };
                for idx in (0..len).step_by(1 + len / 5) {
                    let orig = init_at(&pp, k, which, idx);
                    set_init(&mut pp, k, which, idx, orig + eps);
                    let lp = loss(&cells, &pp, &gout, &gfin);
                    set_init(&mut pp, k, which, idx, orig - eps);
                    let lm = loss(&cells, &pp, &gout, &gfin);
                    set_init(&mut pp, k, which, idx, orig);
                    let a = if which == 0 {
                        g.init[k].0[idx]
                    } else {
                        g.init[k].1[idx]
                    };
                    close(
                        a,
                        (lp - lm) / (2.0 * eps),
                        &format!("init {k}/{which}[{idx}]"),
                    );
                }
            }
        }
    }

    fn init_at(p: &Problem, k: usize, which: usize, idx: usize) -> f64 {
        if which == 0 {
            p.init[k].0[idx]
        } else {
            p.init[k].1[idx]
        }
    }
    fn set_init(p: &mut Problem, k: usize, which: usize, idx: usize, v: f64) {
        if which == 0 {
            p.init[k].0[idx] = v
        } else {
            p.init[k].1[idx] = v
        }
    }

    /// Random small specs over every option and both layouts, lengths including 0.
    #[test]
    fn finite_differences_random_specs() {
        let mut rng = SplitMix64::new(2024);
        for n in 0..8u64 {
            let mut pick = |k: u64| rng.next_u64() % k;
            let layers = 1 + pick(2) as usize;
            let hidden: Vec<usize> = (0..layers).map(|_| 1 + pick(4) as usize).collect();
            let proj: Vec<Option<usize>> = (0..layers)
                .map(|_| (pick(3) == 0).then(|| 1 + pick(3) as usize))
                .collect();
            let mut b = LstmSpec::builder(1 + pick(3) as usize, &hidden)
                .forget_bias(pick(3) as f32 * 0.5)
                .peepholes(pick(2) == 0)
                .proj_sizes(&proj)
                .bidirectional(pick(3) == 0)
                .time_major(pick(2) == 0);
            if pick(2) == 0 {
                b = b.cell_clip(0.3 + pick(5) as f32 * 0.2);
            }
            if pick(2) == 0 {
                b = b.proj_clip(0.2 + pick(5) as f32 * 0.2);
            }
            let (batch, steps) = (1 + pick(3) as usize, 1 + pick(4) as usize);
            let mut lengths: Vec<usize> = (0..batch)
                .map(|_| pick(steps as u64 + 1) as usize)
                .collect();
            lengths[0] = steps.min(lengths[0].max(1));
            check_spec(b.build().unwrap(), batch, steps, lengths, 100 + n);
        }
    }

    #[test]
    fn finite_differences_basic_stack_with_lengths() {
        let spec = LstmSpec::builder(3, &[4, 3]).build().unwrap();
        check_spec(spec, 3, 4, vec![4, 0, 2], 1);
    }

    #[test]
    fn finite_differences_every_tf_option() {
        let spec = LstmSpec::builder(3, &[5, 4])
            .forget_bias(0.5)
            .peepholes(true)
            .cell_clip(0.6)
            .proj_sizes(&[Some(3), Some(2)])
            .proj_clip(0.4)
            .build()
            .unwrap();
        check_spec(spec, 3, 4, vec![4, 1, 3], 2);
    }

    #[test]
    fn finite_differences_bidirectional_time_major() {
        let spec = LstmSpec::builder(2, &[3, 2])
            .forget_bias(0.0)
            .proj_sizes(&[Some(2), None])
            .bidirectional(true)
            .time_major(true)
            .build()
            .unwrap();
        check_spec(spec, 2, 3, vec![3, 2], 3);
    }
}

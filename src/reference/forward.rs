//! The scalar reference forward pass: the simplest correct code, one sequence and one
//! step at a time, in TensorFlow's order of operations. Every fast path is tested
//! against it.

use crate::api::input::{prepare, ForwardInput};
use crate::api::workspace::Workspace;
use crate::model::alloc::zeros;
use crate::model::error::Result;
use crate::model::layout::row_index;
use crate::model::spec::LstmSpec;
use crate::model::weights::{CellWeights, LstmWeights};

/// The logistic function, as TF's `sigmoid`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Options of one cell that the step needs besides its weights.
#[derive(Clone, Copy)]
pub(crate) struct CellOptions {
    pub forget_bias: f32,
    pub cell_clip: Option<f32>,
    pub proj_clip: Option<f32>,
}

impl CellOptions {
    pub(crate) fn of(spec: &LstmSpec) -> Self {
        CellOptions {
            forget_bias: spec.forget_bias(),
            cell_clip: spec.cell_clip(),
            proj_clip: spec.proj_clip(),
        }
    }
}

/// One LSTM step for one sequence: reads `x`, `h` and `c`, overwrites `c` and `h`.
/// `gates` (`4H`) and `m` (`H`) are scratch.
pub(crate) fn step(
    w: &CellWeights,
    opt: CellOptions,
    x: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    gates: &mut [f32],
    m: &mut [f32],
) {
    let hidden = c.len();
    let n = 4 * hidden;
    gates.copy_from_slice(w.bias());
    for (xv, row) in x.iter().zip(w.input_weights().chunks_exact(n)) {
        gates.iter_mut().zip(row).for_each(|(z, &wv)| *z += xv * wv);
    }
    for (hv, row) in h.iter().zip(w.recurrent_weights().chunks_exact(n)) {
        gates.iter_mut().zip(row).for_each(|(z, &wv)| *z += hv * wv);
    }
    let (zi, rest) = gates.split_at(hidden);
    let (zj, rest) = rest.split_at(hidden);
    let (zf, zo) = rest.split_at(hidden);
    for u in 0..hidden {
        let c_prev = c[u];
        let (mut pi, mut pf) = (zi[u], zf[u] + opt.forget_bias);
        if let Some([wi, wf, _]) = w.peepholes() {
            pi += wi[u] * c_prev;
            pf += wf[u] * c_prev;
        }
        let mut c_new = sigmoid(pf) * c_prev + sigmoid(pi) * zj[u].tanh();
        if let Some(clip) = opt.cell_clip {
            c_new = c_new.clamp(-clip, clip);
        }
        let mut po = zo[u];
        if let Some([_, _, wo]) = w.peepholes() {
            po += wo[u] * c_new;
        }
        c[u] = c_new;
        m[u] = sigmoid(po) * c_new.tanh();
    }
    match w.projection() {
        None => h.copy_from_slice(&m[..hidden]),
        Some(proj) => {
            let p = h.len();
            h.fill(0.0);
            for (mv, row) in m[..hidden].iter().zip(proj.chunks_exact(p)) {
                h.iter_mut().zip(row).for_each(|(hv, &wv)| *hv += mv * wv);
            }
            if let Some(clip) = opt.proj_clip {
                h.iter_mut().for_each(|v| *v = v.clamp(-clip, clip));
            }
        }
    }
}

/// The reference forward pass: the contract of
/// [`Lstm::forward_inference`](crate::Lstm::forward_inference), computed one sequence and
/// one step at a time straight from the canonical weights.
///
/// # Errors
/// As [`Lstm::forward_inference`](crate::Lstm::forward_inference).
pub fn forward(weights: &LstmWeights, input: &ForwardInput<'_>, ws: &mut Workspace) -> Result<()> {
    let spec = weights.spec();
    prepare(spec, input, ws)?;
    let (batch, steps) = (input.batch, input.steps);
    let opt = CellOptions::of(spec);
    let dirs = spec.num_directions();
    let last = spec.num_layers() - 1;
    let Workspace {
        output,
        state,
        lengths,
        ..
    } = ws;
    // The oracle's own scratch: the outputs of the layers below (ping-pong) and one
    // step's gates and kernel output.
    let widest_inner = (0..spec.num_layers() - 1)
        .map(|l| spec.layer_output_size(l))
        .max()
        .unwrap_or(0);
    let widest_h = spec
        .layers()
        .iter()
        .map(|l| l.hidden_size)
        .max()
        .unwrap_or(0);
    // `prepare` bounded `B * T` times the widest token's floats.
    let mut layer_a = zeros(batch * steps * widest_inner, "reference/layer_a")?;
    let mut layer_b = zeros(batch * steps * widest_inner, "reference/layer_b")?;
    let mut gates = vec![0.0; 4 * widest_h];
    let mut cell_out = vec![0.0; widest_h];
    for l in 0..spec.num_layers() {
        let in_w = spec.layer_input_size(l);
        let out_w = spec.layer_output_size(l);
        let layer = spec.layers()[l];
        let (hidden, r) = (layer.hidden_size, layer.output_size());
        let (src, dst): (&[f32], &mut [f32]) = match (l, l == last) {
            (0, true) => (input.data, &mut output[..]),
            (0, false) => (input.data, &mut layer_a[..]),
            (_, true) if l % 2 == 1 => (&layer_a[..], &mut output[..]),
            (_, true) => (&layer_b[..], &mut output[..]),
            (_, false) if l % 2 == 1 => (&layer_a[..], &mut layer_b[..]),
            (_, false) => (&layer_b[..], &mut layer_a[..]),
        };
        let dst = &mut dst[..batch * steps * out_w];
        dst.fill(0.0);
        for dir in 0..dirs {
            let k = l * dirs + dir;
            let w = weights.cell(k);
            let cell = &mut state.cells[k];
            for (b, &len) in lengths.iter().enumerate() {
                let c = &mut cell.c[b * hidden..(b + 1) * hidden];
                let h = &mut cell.h[b * r..(b + 1) * r];
                for s in 0..len {
                    let t = if dir == 0 { s } else { len - 1 - s };
                    let row = row_index(spec.time_major(), batch, steps, b, t);
                    let x = &src[row * in_w..(row + 1) * in_w];
                    step(
                        w,
                        opt,
                        x,
                        c,
                        h,
                        &mut gates[..4 * hidden],
                        &mut cell_out[..hidden],
                    );
                    dst[row * out_w + dir * r..row * out_w + (dir + 1) * r].copy_from_slice(h);
                }
            }
        }
    }
    Ok(())
}

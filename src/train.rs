//! Training: the reserve that forward-training fills, and the fast backward through time.
//!
//! Backward mirrors the forward path. Per layer (top first) and direction, the time loop
//! runs backwards over the schedule: the fused elementwise kernel turns the gradient into
//! `m` (and the carried cell gradient) into the gate gradients `dz`, and one small
//! product `dz W_h^T` carries `dh` to the previous step. Everything else waits for the
//! loop and runs as a few large sgemms over every real token at once: `dW_x = X^T dZ`,
//! `dW_h = H_prev^T dZ`, `dX = dZ W_x^T`, the projection's `M^T dH`.

use std::ptr::NonNull;

use lstm_kernels_simd::BackwardRaw;

use crate::error::{Error, Result};
use crate::forward::{ForwardInput, LstmState, Workspace};
use crate::gemm::{gemm_op, Operand};
use crate::lstm::{grow, Lstm};
use crate::packed::{unpack_gate_columns_into, PackedCell};
use crate::reference::row_index;
use crate::schedule::Schedule;
use crate::spec::LstmSpec;
use crate::tensors::Tensors;
use crate::weights::LstmWeights;

/// Upstream gradients of a backward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upstream<'a> {
    /// dL/d(output), shaped like the output (`[B, T, out]` or time-major). Entries at
    /// padded steps are ignored: those outputs are constant zeros.
    pub output: Option<&'a [f32]>,
    /// dL/d(final state), one `(c, h)` per cell, shaped like the state.
    pub final_state: Option<&'a LstmState>,
}

/// Gradients of every parameter and input, in the crate's canonical layouts (the same
/// shapes as [`LstmWeights`]: export them with [`Gradients::to_tensorflow`] or
/// [`Gradients::to_pytorch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// dL/d(weights), shaped and laid out like the weights.
    pub weights: LstmWeights,
    /// dL/d(input), shaped like the input.
    pub input: Vec<f32>,
    /// dL/d(initial state), shaped like the state.
    pub initial_state: LstmState,
}

impl Gradients {
    /// The weight gradients under TensorFlow's names and layouts.
    pub fn to_tensorflow(&self) -> Tensors {
        self.weights.to_tensorflow()
    }

    /// The weight gradients under PyTorch's names and layouts (`bias_ih` and `bias_hh`
    /// both receive the bias gradient).
    ///
    /// # Errors
    /// [`Error::Config`] when the spec has what PyTorch cannot express (peepholes, clips).
    pub fn to_pytorch(&self) -> Result<Tensors> {
        self.weights.pytorch_tensors(true)
    }
}

impl Gradients {
    /// Zero gradients for `spec` and a batch of `batch` sequences of `steps` steps: the
    /// buffers [`Lstm::backward`] overwrites.
    pub fn zeros(spec: &LstmSpec, batch: usize, steps: usize) -> Self {
        Gradients {
            weights: LstmWeights::zeros(spec),
            input: vec![0.0; batch * steps * spec.input_size()],
            initial_state: LstmState::zeros(spec, batch),
        }
    }
}

/// What one cell's forward-training keeps, in schedule order.
#[derive(Debug, Clone, Default)]
pub(crate) struct CellTape {
    /// Activated gates i, g, f, o of every step, `[total, tiles*4U]`.
    pub gates: Vec<f32>,
    /// Cell state after every step, `[total, tiles*U]`.
    pub c: Vec<f32>,
    /// Initial cell state `[B, tiles*U]` and output state `[B, R]`, sorted.
    pub c0: Vec<f32>,
    pub h0: Vec<f32>,
    /// Projecting layers: the kernel output `m` of every step, `[total, tiles*U]`.
    pub m: Vec<f32>,
    /// With `proj_clip`: the projection before the clip, `[total, P]`.
    pub h_raw: Vec<f32>,
    /// Backward direction: its outputs in its own order, `[total, R]`.
    pub h_seq: Vec<f32>,
}

/// What [`Lstm::forward_training`] keeps for [`Lstm::backward`]. Make one with
/// [`Lstm::reserve`] (sized for a batch and a length, so that training does not
/// allocate); it grows if a larger batch comes.
#[derive(Debug, Clone, Default)]
pub struct TrainReserve {
    pub(crate) sched: Schedule,
    pub(crate) cells: Vec<CellTape>,
    /// Every layer's output, packed, `[total, out]`.
    pub(crate) outs: Vec<Vec<f32>>,
    pub(crate) batch: usize,
    pub(crate) steps: usize,
    pub(crate) lengths: Vec<usize>,
    pub(crate) filled: bool,
}

impl TrainReserve {
    pub(crate) fn grow(
        &mut self,
        spec: &LstmSpec,
        cells: &[PackedCell],
        batch: usize,
        total: usize,
    ) {
        self.cells.resize_with(cells.len(), CellTape::default);
        self.outs.resize_with(spec.num_layers(), Vec::new);
        for (k, (tape, cell)) in self.cells.iter_mut().zip(cells).enumerate() {
            let (hp, r, gw) = (cell.padded, cell.recurrent, cell.gate_width());
            grow(&mut tape.gates, total * gw);
            grow(&mut tape.c, total * hp);
            grow(&mut tape.c0, batch * hp);
            grow(&mut tape.h0, batch * r);
            if cell.projection.is_some() {
                grow(&mut tape.m, total * hp);
                if spec.proj_clip().is_some() {
                    grow(&mut tape.h_raw, total * r);
                }
            }
            if k % spec.num_directions() == 1 {
                grow(&mut tape.h_seq, total * r);
            }
        }
        for (l, out) in self.outs.iter_mut().enumerate() {
            grow(out, total * spec.layer_output_size(l));
        }
    }

    /// Bytes held, for planning memory.
    pub fn bytes(&self) -> usize {
        let tapes: usize = self
            .cells
            .iter()
            .map(|t| {
                t.gates.len()
                    + t.c.len()
                    + t.c0.len()
                    + t.h0.len()
                    + t.m.len()
                    + t.h_raw.len()
                    + t.h_seq.len()
            })
            .sum();
        let outs: usize = self.outs.iter().map(Vec::len).sum();
        4 * (tapes + outs)
    }
}

/// Scratch of the backward pass, grown on first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackwardBuffers {
    /// Gradient into the current layer's output, packed `[total, out]`, and into its input.
    d_out: Vec<f32>,
    d_in: Vec<f32>,
    /// The backward direction's output gradient in its own order, `[total, R]`.
    dh_seq: Vec<f32>,
    /// Gate gradients of every step, `[total, tiles*4U]`.
    dz: Vec<f32>,
    /// Per-step gradient into `m`, the carried cell gradient (`[B, tiles*U]`), the
    /// carried output gradient (`[B, R]`).
    dm: Vec<f32>,
    dc: Vec<f32>,
    dh: Vec<f32>,
    /// Projecting layers: the gradient into each step's projected `h`, `[total, P]`.
    dhp: Vec<f32>,
    /// Inputs and previous outputs of every token in the direction's order.
    x: Vec<f32>,
    h_prev: Vec<f32>,
    dx: Vec<f32>,
    /// Weight gradients in tile order before unpacking.
    dwx: Vec<f32>,
    dwh: Vec<f32>,
    db: Vec<f32>,
    dpeep: Vec<f32>,
}

impl Lstm {
    /// Backward through time after [`Lstm::forward_training`] on the same `input`:
    /// writes into `grads` the gradients of every weight, of the input and of the initial
    /// state, for the loss whose gradients with respect to the output and the final state
    /// are `upstream` (either may be absent: zeros).
    ///
    /// Padded steps contribute nothing, whatever `upstream.output` holds there.
    ///
    /// # Errors
    /// [`Error::Config`] when `reserve` holds no forward-training pass of this input's
    /// batch and lengths, or `grads`/`ws` belong to another spec; [`Error::Shape`] when
    /// `input` or an upstream gradient is not shaped as the forward pass's.
    pub fn backward(
        &self,
        input: &ForwardInput<'_>,
        reserve: &TrainReserve,
        upstream: &Upstream<'_>,
        ws: &mut Workspace,
        grads: &mut Gradients,
    ) -> Result<()> {
        let spec = self.weights().spec();
        let (batch, steps) = (input.batch, input.steps);
        if !reserve.filled || reserve.batch != batch || reserve.steps != steps {
            return Err(Error::Config(
                "backward needs the reserve of a forward_training pass over the same input".into(),
            ));
        }
        let lengths_match = match input.sequence_length {
            None => reserve.lengths.iter().all(|&l| l == steps),
            Some(l) => {
                l.len() == batch
                    && l.iter()
                        .zip(&reserve.lengths)
                        .all(|(&a, &b)| a as usize == b)
            }
        };
        if !lengths_match {
            return Err(Error::Config(
                "backward: sequence_length differs from the forward-training pass".into(),
            ));
        }
        let in_len = batch * steps * spec.input_size();
        if input.data.len() != in_len {
            return Err(Error::shape("input", &[in_len], &[input.data.len()]));
        }
        let out_len = batch * steps * spec.output_size();
        if let Some(g) = upstream.output {
            if g.len() != out_len {
                return Err(Error::Shape {
                    tensor: "grad_output".into(),
                    expected: format!("{out_len} elements (like the output)"),
                    actual: format!("{} elements", g.len()),
                });
            }
        }
        if let Some(s) = upstream.final_state {
            let zero = LstmState::zeros(spec, batch);
            if s.cells.len() != zero.cells.len()
                || s.cells
                    .iter()
                    .zip(&zero.cells)
                    .any(|(a, z)| a.c.len() != z.c.len() || a.h.len() != z.h.len())
            {
                return Err(Error::Shape {
                    tensor: "grad_final_state".into(),
                    expected: format!("{} cells shaped like the final state", zero.cells.len()),
                    actual: format!("{} cells of other shapes", s.cells.len()),
                });
            }
        }
        if grads.weights.spec() != spec || ws.spec != *spec {
            return Err(Error::Config(
                "backward: grads or workspace made for another spec".into(),
            ));
        }
        grads.input.resize(in_len, 0.0);
        if grads
            .initial_state
            .cells
            .first()
            .is_some_and(|c| c.c.len() != batch * spec.layers()[0].hidden_size)
        {
            grads.initial_state = LstmState::zeros(spec, batch);
        }
        self.run_backward(input, reserve, upstream, &mut ws.backward, grads);
        Ok(())
    }

    fn gemm(
        &self,
        mnk: (usize, usize, usize),
        a: Operand<'_>,
        b: Operand<'_>,
        c: &mut [f32],
        ldc: usize,
        acc: bool,
    ) {
        let threads = self.threads();
        match self.pool() {
            Some(pool) => pool.install(|| gemm_op(threads, mnk, a, b, c, ldc, acc)),
            None => gemm_op(1, mnk, a, b, c, ldc, acc),
        }
    }

    fn run_backward(
        &self,
        input: &ForwardInput<'_>,
        rs: &TrainReserve,
        upstream: &Upstream<'_>,
        bb: &mut BackwardBuffers,
        grads: &mut Gradients,
    ) {
        let spec = self.weights().spec();
        let (batch, steps, tm) = (input.batch, input.steps, spec.time_major());
        let sched = &rs.sched;
        let total = sched.total();
        let u = self.kernels().unit_tile();
        let cells = self.cells();
        let dirs = spec.num_directions();
        let max_of = |g: &dyn Fn(&PackedCell) -> usize| cells.iter().map(g).max().unwrap_or(0);
        let widest_io = (0..spec.num_layers())
            .map(|l| spec.layer_output_size(l).max(spec.layer_input_size(l)))
            .max()
            .unwrap_or(0);
        grow(&mut bb.d_out, total * widest_io);
        grow(&mut bb.d_in, total * widest_io);
        grow(&mut bb.dh_seq, total * max_of(&|c| c.recurrent));
        grow(&mut bb.dz, total * max_of(&|c| c.gate_width()));
        grow(&mut bb.dm, batch * max_of(&|c| c.padded));
        grow(&mut bb.dc, batch * max_of(&|c| c.padded));
        grow(&mut bb.dh, batch * max_of(&|c| c.recurrent));
        grow(&mut bb.dhp, total * max_of(&|c| c.recurrent));
        grow(&mut bb.x, total * max_of(&|c| c.input));
        grow(&mut bb.h_prev, total * max_of(&|c| c.recurrent));
        grow(&mut bb.dx, total * max_of(&|c| c.input));
        grow(&mut bb.dwx, max_of(&|c| c.input * c.gate_width()));
        grow(&mut bb.dwh, max_of(&|c| c.recurrent * c.gate_width()));
        grow(&mut bb.db, max_of(&|c| c.gate_width()));
        grow(&mut bb.dpeep, max_of(&|c| 3 * c.padded));

        // The upstream gradient of the last layer's output, packed.
        let ow = spec.output_size();
        bb.d_out[..total * ow].fill(0.0);
        if let Some(g) = upstream.output {
            for s in 0..sched.steps() {
                for j in 0..sched.active[s] {
                    let from = row_index(tm, batch, steps, sched.order[j], s) * ow;
                    let to = sched.row(j, s) * ow;
                    bb.d_out[to..to + ow].copy_from_slice(&g[from..from + ow]);
                }
            }
        }

        for l in (0..spec.num_layers()).rev() {
            let (in_w, out_w) = (spec.layer_input_size(l), spec.layer_output_size(l));
            bb.d_in[..total * in_w].fill(0.0);
            for dir in 0..dirs {
                let k = l * dirs + dir;
                let (cell, tape) = (&cells[k], &rs.cells[k]);
                let (h, hp, r, gw) = (cell.hidden, cell.padded, cell.recurrent, cell.gate_width());

                // This direction's output gradient, in its processing order.
                let (dh_src, dh_ld): (&[f32], usize) = if dir == 0 {
                    (&bb.d_out[..], out_w)
                } else {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let from = sched.reversed_row(j, s) * out_w + r;
                            let to = sched.row(j, s) * r;
                            bb.dh_seq[to..to + r].copy_from_slice(&bb.d_out[from..from + r]);
                        }
                    }
                    (&bb.dh_seq[..], r)
                };
                // The direction's outputs in its order: h_prev of step s + 1.
                let (h_seq, h_ld): (&[f32], usize) = if dir == 0 {
                    (&rs.outs[l], out_w)
                } else {
                    (&tape.h_seq, r)
                };

                bb.dm[..batch * hp].fill(0.0);
                bb.dc[..batch * hp].fill(0.0);
                bb.dh[..batch * r].fill(0.0);
                bb.dpeep[..3 * hp].fill(0.0);
                let gfs = upstream.final_state.map(|s| &s.cells[k]);
                let inject = |j: usize, dh: &mut [f32], dc: &mut [f32]| {
                    if let Some(g) = gfs {
                        let b = sched.order[j];
                        dh[j * r..(j + 1) * r].copy_from_slice(&g.h[b * r..(b + 1) * r]);
                        dc[j * hp..j * hp + h].copy_from_slice(&g.c[b * h..(b + 1) * h]);
                    }
                };
                let n_steps = sched.steps();
                for s in (0..n_steps).rev() {
                    let rows = sched.active[s];
                    let next = if s + 1 < n_steps {
                        sched.active[s + 1]
                    } else {
                        0
                    };
                    // Sequences whose last step is `s` start with the final-state gradient.
                    for j in next..rows {
                        inject(j, &mut bb.dh, &mut bb.dc);
                    }
                    // dh of this step: its output's gradient plus what step s + 1 sent back.
                    let off = sched.offset[s];
                    match (&cell.projection, spec.proj_clip()) {
                        (None, _) => {
                            for j in 0..rows {
                                let src = &dh_src[(off + j) * dh_ld..(off + j) * dh_ld + r];
                                let dm = &mut bb.dm[j * hp..j * hp + h];
                                dm.iter_mut()
                                    .zip(src)
                                    .zip(&bb.dh[j * r..(j + 1) * r])
                                    .for_each(|((d, &a), &b)| *d = a + b);
                            }
                        }
                        (Some(proj), clip) => {
                            for j in 0..rows {
                                let src = &dh_src[(off + j) * dh_ld..(off + j) * dh_ld + r];
                                let dhp = &mut bb.dhp[(off + j) * r..(off + j + 1) * r];
                                dhp.iter_mut()
                                    .zip(src)
                                    .zip(&bb.dh[j * r..(j + 1) * r])
                                    .for_each(|((d, &a), &b)| *d = a + b);
                                if let Some(clip) = clip {
                                    // clip_by_value passes the gradient on the bounds only.
                                    let raw = &tape.h_raw[(off + j) * r..(off + j + 1) * r];
                                    dhp.iter_mut().zip(raw).for_each(|(d, &v)| {
                                        if v.abs() > clip {
                                            *d = 0.0
                                        }
                                    });
                                }
                            }
                            // dm = dh proj^T, [rows, P] x [P, H].
                            let proj_t = cell.proj_t.as_deref().unwrap_or(proj);
                            self.gemm(
                                (rows, h, r),
                                Operand::n(&bb.dhp[off * r..], r),
                                Operand::n(proj_t, h),
                                &mut bb.dm,
                                hp,
                                false,
                            );
                        }
                    }
                    let c_prev = if s == 0 {
                        tape.c0.as_ptr()
                    } else {
                        tape.c[sched.offset[s - 1] * hp..].as_ptr()
                    };
                    let raw = BackwardRaw {
                        rows,
                        gates: tape.gates[off * gw..].as_ptr(),
                        ld_gates: gw,
                        c_prev,
                        ld_c_prev: hp,
                        dh: bb.dm.as_ptr(),
                        ld_dh: hp,
                        dc: bb.dc.as_mut_ptr(),
                        ld_dc: hp,
                        dz: bb.dz[off * gw..].as_mut_ptr(),
                        ld_dz: gw,
                        peep: cell
                            .peepholes
                            .as_ref()
                            .and_then(|v| NonNull::new(v.as_ptr().cast_mut())),
                        dpeep: cell
                            .peepholes
                            .as_ref()
                            .and_then(|_| NonNull::new(bb.dpeep.as_mut_ptr())),
                        tiles: 0..hp / u,
                        cell_clip: spec.cell_clip().unwrap_or(f32::INFINITY),
                    };
                    // SAFETY: gates and dz hold rows `off..off + rows` of `gw` (the reserve
                    // and the scratch were grown to `total` rows), c_prev, dm and dc `rows`
                    // rows of `hp`, dpeep `3 hp`; the outputs (dz, dc, dpeep) are scratch
                    // buffers distinct from every input; one call covers every tile, on
                    // this thread only; the clip is +inf or finite and positive.
                    unsafe { self.kernels().backward_tiles_raw(&raw) };
                    // dh carried to step s - 1: dz W_h^T, [rows, gw] x [gw, R].
                    self.gemm(
                        (rows, r, gw),
                        Operand::n(&bb.dz[off * gw..], gw),
                        Operand::n(&cell.w_h_t, r),
                        &mut bb.dh,
                        r,
                        false,
                    );
                }
                // Sequences of length 0 pass the final-state gradient straight through.
                let first = sched.active.first().copied().unwrap_or(0);
                for j in first..batch {
                    inject(j, &mut bb.dh, &mut bb.dc);
                }
                let gi = &mut grads.initial_state.cells[k];
                for (j, &b) in sched.order.iter().enumerate() {
                    gi.c[b * h..(b + 1) * h].copy_from_slice(&bb.dc[j * hp..j * hp + h]);
                    gi.h[b * r..(b + 1) * r].copy_from_slice(&bb.dh[j * r..(j + 1) * r]);
                }

                // The inputs and previous outputs of every token, in this direction's order.
                let x: &[f32] = if l == 0 {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let t = if dir == 0 { s } else { sched.lens[j] - 1 - s };
                            let from = row_index(tm, batch, steps, sched.order[j], t) * in_w;
                            let to = sched.row(j, s) * in_w;
                            bb.x[to..to + in_w].copy_from_slice(&input.data[from..from + in_w]);
                        }
                    }
                    &bb.x[..total * in_w]
                } else if dir == 0 {
                    &rs.outs[l - 1][..total * in_w]
                } else {
                    let below = &rs.outs[l - 1];
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let from = sched.reversed_row(j, s) * in_w;
                            let to = sched.row(j, s) * in_w;
                            bb.x[to..to + in_w].copy_from_slice(&below[from..from + in_w]);
                        }
                    }
                    &bb.x[..total * in_w]
                };
                for s in 0..sched.steps() {
                    for j in 0..sched.active[s] {
                        let to = sched.row(j, s) * r;
                        let from: &[f32] = if s == 0 {
                            &tape.h0[j * r..(j + 1) * r]
                        } else {
                            let row = sched.row(j, s - 1) * h_ld;
                            &h_seq[row..row + r]
                        };
                        bb.h_prev[to..to + r].copy_from_slice(from);
                    }
                }
                let dz = &bb.dz[..total * gw];
                self.gemm(
                    (in_w, gw, total),
                    Operand::t(x, in_w),
                    Operand::n(dz, gw),
                    &mut bb.dwx,
                    gw,
                    false,
                );
                self.gemm(
                    (r, gw, total),
                    Operand::t(&bb.h_prev, r),
                    Operand::n(dz, gw),
                    &mut bb.dwh,
                    gw,
                    false,
                );
                bb.db[..gw].fill(0.0);
                for row in dz.chunks_exact(gw) {
                    bb.db[..gw].iter_mut().zip(row).for_each(|(a, &d)| *a += d);
                }
                // dX = dZ W_x^T, [total, gw] x [gw, in].
                self.gemm(
                    (total, in_w, gw),
                    Operand::n(dz, gw),
                    Operand::n(&cell.w_x_t, in_w),
                    &mut bb.dx,
                    in_w,
                    false,
                );
                if dir == 0 {
                    bb.d_in[..total * in_w]
                        .iter_mut()
                        .zip(&bb.dx[..total * in_w])
                        .for_each(|(a, &d)| *a += d);
                } else {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let to = sched.reversed_row(j, s) * in_w;
                            let from = sched.row(j, s) * in_w;
                            bb.d_in[to..to + in_w]
                                .iter_mut()
                                .zip(&bb.dx[from..from + in_w])
                                .for_each(|(a, &d)| *a += d);
                        }
                    }
                }

                let (gwx, gwh, gb, gpeep, gproj) = grads.weights.cell_parts_mut(k);
                unpack_gate_columns_into(&bb.dwx, in_w, h, u, gwx);
                unpack_gate_columns_into(&bb.dwh, r, h, u, gwh);
                unpack_gate_columns_into(&bb.db, 1, h, u, gb);
                if let Some([gi, gf, go]) = gpeep {
                    // Tile t holds i, f, o of units tU..tU+U.
                    for unit in 0..h {
                        let (t, x) = (unit / u, unit % u);
                        gi[unit] = bb.dpeep[t * 3 * u + x];
                        gf[unit] = bb.dpeep[t * 3 * u + u + x];
                        go[unit] = bb.dpeep[t * 3 * u + 2 * u + x];
                    }
                }
                if let Some(gp) = gproj {
                    // dproj = M^T dH, [H, total] x [total, P].
                    self.gemm(
                        (h, r, total),
                        Operand::t(&tape.m, hp),
                        Operand::n(&bb.dhp, r),
                        gp,
                        r,
                        false,
                    );
                }
            }
            std::mem::swap(&mut bb.d_out, &mut bb.d_in);
        }

        // The input gradient in the caller's layout, zeros at padded steps.
        let iw = spec.input_size();
        grads.input.fill(0.0);
        for s in 0..sched.steps() {
            for j in 0..sched.active[s] {
                let to = row_index(tm, batch, steps, sched.order[j], s) * iw;
                let from = sched.row(j, s) * iw;
                grads.input[to..to + iw].copy_from_slice(&bb.d_out[from..from + iw]);
            }
        }
    }
}

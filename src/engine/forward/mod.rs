//! The forward pass over a stack, layer by layer and direction by direction, on the
//! packed-sequence schedule.
//!
//! Per layer and direction: the real tokens are gathered in schedule order (layer 0 is
//! read in place when the sequences keep their order and each step reads its own rows),
//! one product makes every step's input projection (bias folded in, columns already in
//! the kernels' tile order), unless the plan has each step sum its own in the step
//! kernel's `k` loop; then the time loop ([`time_loop()`]) runs the fused step kernel on
//! the active prefix of rows. A one-direction stack's last layer writes its outputs to
//! the caller's layout from inside the time loop. Nothing is allocated (the buffers grow
//! only when a batch is larger than any before) and no thread is spawned inside the loop.

mod buffers;
mod time_loop;

pub(crate) use buffers::ForwardBuffers;

use crate::model::error::Result;
use crate::model::layout::SeqLayout;
use crate::model::spec::LstmSpec;
use crate::model::state::{CellState, LstmState};

use super::context::ExecContext;
use super::packed_cell::PackedCell;
use super::panel_gemm::{panel_gemm, Panels};
use super::plan::{CellPlan, Plan};
use super::schedule::Schedule;
use super::tape::{CellTape, Tape};
use buffers::DirBuffers;
use time_loop::{time_loop, time_loops_at_once, LoopArgs, LoopPtrs};

/// Runs the stack forward over `data` (`[B, T, I]` or `[T, B, I]` as `layout` says), the
/// schedule of `lengths` already built in `f.sched`: `state` holds the initial state on
/// entry and the final state on return, `output` receives the output (zeros past each
/// length). With a `tape`, it also keeps what the backward pass needs.
///
/// The caller has validated every shape: `data` is `B * T * I`, `output` `B * T * out`,
/// `lengths` are `B` values in `0..=T`, `state` has the spec's cells for `B` sequences,
/// and `plan` was made for this schedule.
///
/// # Errors
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when a scratch buffer cannot grow; then
/// nothing has been computed or written.
#[allow(clippy::too_many_arguments)] // the pass's inputs, its outputs and its buffers
pub(crate) fn forward(
    ctx: &ExecContext,
    spec: &LstmSpec,
    cells: &[PackedCell],
    plan: &Plan,
    data: &[f32],
    layout: SeqLayout,
    lengths: &[usize],
    state: &mut LstmState,
    output: &mut [f32],
    f: &mut ForwardBuffers,
    mut tape: Option<&mut Tape>,
) -> Result<()> {
    // The threads the plan found worth their cost (the calling thread alone for small
    // work).
    let ctx = &ctx.with_threads(plan.threads);
    let (batch, steps) = (layout.batch, layout.steps);
    let total = f.sched.total();
    f.grow(spec, cells, batch, total)?;
    if let Some(t) = tape.as_deref_mut() {
        t.grow(spec, cells, batch, total)?;
        t.sched.clone_from(&f.sched);
    }
    let ForwardBuffers {
        sched,
        pa,
        pb,
        bwd,
        dirs: bufs,
        parity,
    } = f;
    let sched = &*sched;
    let dirs = spec.num_directions();
    let at_once = dirs == 2 && plan.directions_at_once && ctx.threads >= 2;
    // A one-direction stack's last layer puts its outputs where the caller wants them
    // from inside the time loop, each thread its own part, instead of one thread
    // copying them all afterwards.
    let scatter_in_loop = dirs == 1;
    let identity = sched.order.iter().enumerate().all(|(j, &b)| j == b);
    for l in 0..spec.num_layers() {
        let (src, dst) = if l % 2 == 0 {
            (&pb[..], &mut pa[..])
        } else {
            (&pa[..], &mut pb[..])
        };
        let run = LayerRun {
            ctx,
            spec,
            cells,
            plan,
            sched,
            layout,
            data,
            identity,
            layer: l,
            src,
            final_out: if scatter_in_loop && l + 1 == spec.num_layers() {
                output.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            parity: *parity,
        };
        let out_w = spec.layer_output_size(l);
        let r = cells[l * dirs].recurrent;
        // The forward direction writes its outputs straight into the layer's packed
        // output; the backward one into its own buffer, in its order.
        let (dst_ptr, bwd_ptr) = (dst.as_mut_ptr(), bwd.as_mut_ptr());
        let targets = [(dst_ptr, out_w), (bwd_ptr, r)];
        // `start` keeps only raw pointers, so each direction borrows its state and tape
        // just for that call.
        let k0 = l * dirs;
        if at_once {
            let [b0, b1] = bufs;
            let p0 = run.start(
                0,
                b0,
                &state.cells[k0],
                targets[0],
                cell_tape(&mut tape, k0),
            );
            let p1 = run.start(
                1,
                b1,
                &state.cells[k0 + 1],
                targets[1],
                cell_tape(&mut tape, k0 + 1),
            );
            let (a0, a1) = (
                run.args(0, targets[0].1, plan.cell_threads(0)),
                run.args(1, targets[1].1, plan.cell_threads(1)),
            );
            time_loops_at_once(ctx, [(&a0, p0), (&a1, p1)]);
        } else {
            for dir in 0..dirs {
                let (st, t) = (&state.cells[k0 + dir], cell_tape(&mut tape, k0 + dir));
                let p = run.start(dir, &mut bufs[dir], st, targets[dir], t);
                time_loop(&run.args(dir, targets[dir].1, ctx.threads), p);
            }
        }
        for (dir, b) in bufs[..dirs].iter().enumerate() {
            let (st, t) = (&mut state.cells[k0 + dir], cell_tape(&mut tape, k0 + dir));
            run.finish(dir, b, st, bwd, dst, t);
        }
        if let Some(t) = tape.as_deref_mut() {
            t.outs[l][..total * out_w].copy_from_slice(&dst[..total * out_w]);
        }
    }
    *parity = (*parity + sched.steps()) % 2;

    // Back to the caller's order and layout (unless the time loop did it), zeros past
    // each length.
    let last = if spec.num_layers() % 2 == 1 {
        &pa[..]
    } else {
        &pb[..]
    };
    let ow = spec.output_size();
    if !scatter_in_loop {
        let from = |j, s| sched.row(j, s) * ow;
        let to = |j, s| layout.row(sched.order[j], s) * ow;
        sched.copy_tokens(ow, last, from, output, to);
    }
    for (b, &len) in lengths.iter().enumerate() {
        for t in len..steps {
            let to = layout.row(b, t) * ow;
            output[to..to + ow].fill(0.0);
        }
    }
    Ok(())
}

/// Cell `k`'s part of the tape, when the pass keeps one.
fn cell_tape<'a>(tape: &'a mut Option<&mut Tape>, k: usize) -> Option<&'a mut CellTape> {
    tape.as_deref_mut().map(|t| &mut t.cells[k])
}

/// One layer of a forward pass: what its directions' time loops share.
struct LayerRun<'a> {
    ctx: &'a ExecContext,
    spec: &'a LstmSpec,
    cells: &'a [PackedCell],
    plan: &'a Plan,
    sched: &'a Schedule,
    layout: SeqLayout,
    /// The caller's input.
    data: &'a [f32],
    /// The schedule keeps the sequences in the caller's order.
    identity: bool,
    layer: usize,
    /// The previous layer's packed output (for layers past the first).
    src: &'a [f32],
    /// The caller's output, when this layer's time loop writes it (else null).
    final_out: *mut f32,
    /// See `ForwardBuffers::parity`.
    parity: usize,
}

impl LayerRun<'_> {
    /// Cell `k`'s index and its plan.
    fn cell(&self, dir: usize) -> (usize, &PackedCell, CellPlan) {
        let k = self.layer * self.spec.num_directions() + dir;
        (k, &self.cells[k], self.plan.cells[k])
    }

    /// Direction `dir`'s time loop arguments, its outputs of row stride `out_ld`, on
    /// `threads` threads.
    fn args(&self, dir: usize, out_ld: usize, threads: usize) -> LoopArgs<'_> {
        let (_, cell, cp) = self.cell(dir);
        LoopArgs {
            ctx: self.ctx,
            threads,
            spec: self.spec,
            cell,
            sched: self.sched,
            by_rows: cp.by_rows,
            out_ld,
        }
    }

    /// Everything direction `dir`'s time loop needs before its first step: its inputs
    /// in its processing order, their projection (when it runs up front on every
    /// thread), the initial state in schedule order, and (training) the tape's pointers.
    /// The loop writes its outputs to `target` (`.0`, row stride `.1`).
    fn start(
        &self,
        dir: usize,
        b: &mut DirBuffers,
        st: &CellState,
        target: (*mut f32, usize),
        tape: Option<&mut CellTape>,
    ) -> LoopPtrs {
        let (sched, layout, l) = (self.sched, self.layout, self.layer);
        let (_, cell, CellPlan { fuse, .. }) = self.cell(dir);
        let (in_w, gw, r) = (cell.input, cell.gate_width(), cell.recurrent);
        let total = sched.total();
        let SeqLayout {
            time_major: tm,
            batch,
            steps,
        } = layout;
        // Layer 0 read where it is, when each step reads its own rows and the
        // sequences keep their order (all of the same length, say): no gather.
        let x_in_place = (l == 0 && dir == 0 && fuse && self.identity).then(|| {
            if tm {
                (batch * in_w, in_w)
            } else {
                (in_w, steps * in_w)
            }
        });
        // The inputs of every real token, in this direction's processing order.
        let x: &[f32] = if x_in_place.is_some() {
            self.data
        } else if l == 0 {
            let from = |j: usize, s: usize| {
                let t = if dir == 0 { s } else { sched.lens[j] - 1 - s };
                layout.row(sched.order[j], t) * in_w
            };
            let to = |j, s| sched.row(j, s) * in_w;
            sched.copy_tokens(in_w, self.data, from, &mut b.xg, to);
            &b.xg[..total * in_w]
        } else if dir == 0 {
            &self.src[..total * in_w]
        } else {
            let from = |j, s| sched.reversed_row(j, s) * in_w;
            let to = |j, s| sched.row(j, s) * in_w;
            sched.copy_tokens(in_w, self.src, from, &mut b.xg, to);
            &b.xg[..total * in_w]
        };

        // Every step's input projection at once, bias folded in, in tile order
        // (or step by step in the time loop). Split by units, each thread's tiles
        // of the projection are the ones its steps read: the time loop's threads
        // compute them first, in the same broadcast.
        let project_in_loop = self.cell(dir).2.project_in_loop();
        if !fuse && !project_in_loop {
            let u4 = 4 * self.ctx.kernels.unit_tile();
            let w_x = Panels::packed(&cell.w_x_panels, in_w, u4);
            panel_gemm(self.ctx, total, x, in_w, w_x, &cell.bias, &mut b.zx, gw);
        }

        // The initial state in schedule order; padding units of c are zero.
        let (h, hp) = (cell.hidden, cell.padded);
        for (j, &s) in sched.order.iter().enumerate() {
            b.c[j * hp..j * hp + h].copy_from_slice(&st.c[s * h..(s + 1) * h]);
            b.c[j * hp + h..(j + 1) * hp].fill(0.0);
            b.h0[j * r..(j + 1) * r].copy_from_slice(&st.h[s * r..(s + 1) * r]);
        }

        let mut p = LoopPtrs {
            zx: b.zx.as_ptr(),
            x: if fuse { x.as_ptr() } else { std::ptr::null() },
            ld_x: in_w,
            project: if project_in_loop {
                x.as_ptr()
            } else {
                std::ptr::null()
            },
            x_in_place,
            final_out: self.final_out,
            time_major: tm,
            batch,
            steps,
            h0: b.h0.as_ptr(),
            c: b.c.as_mut_ptr(),
            m: b.m.as_mut_ptr(),
            proj: b.proj.as_mut_ptr(),
            parity: self.parity,
            out: target.0,
            gates: std::ptr::null_mut(),
            c_hist: std::ptr::null_mut(),
            m_hist: std::ptr::null_mut(),
            h_raw: std::ptr::null_mut(),
        };
        if let Some(tape) = tape {
            tape.c0[..batch * hp].copy_from_slice(&b.c[..batch * hp]);
            tape.h0[..batch * r].copy_from_slice(&b.h0[..batch * r]);
            p.gates = tape.gates.as_mut_ptr();
            p.c_hist = tape.c.as_mut_ptr();
            if cell.projection.is_some() {
                p.m_hist = tape.m.as_mut_ptr();
                if self.spec.proj_clip().is_some() {
                    p.h_raw = tape.h_raw.as_mut_ptr();
                }
            }
        }
        p
    }

    /// After direction `dir`'s time loop: its final state back in the caller's order,
    /// and the backward direction's outputs (in `bwd`) into the layer's output `dst`
    /// (and the tape).
    fn finish(
        &self,
        dir: usize,
        b: &DirBuffers,
        st: &mut CellState,
        bwd: &[f32],
        dst: &mut [f32],
        tape: Option<&mut CellTape>,
    ) {
        let sched = self.sched;
        let (_, cell, _) = self.cell(dir);
        let (h, hp, r) = (cell.hidden, cell.padded, cell.recurrent);
        let total = sched.total();
        let out_w = self.spec.layer_output_size(self.layer);
        let (target, target_ld): (&[f32], usize) = if dir == 0 { (dst, out_w) } else { (bwd, r) };
        for (j, &s) in sched.order.iter().enumerate() {
            st.c[s * h..(s + 1) * h].copy_from_slice(&b.c[j * hp..j * hp + h]);
            if sched.lens[j] > 0 {
                let row = sched.row(j, sched.lens[j] - 1) * target_ld;
                st.h[s * r..(s + 1) * r].copy_from_slice(&target[row..row + r]);
            }
        }
        if dir == 1 {
            if let Some(t) = tape {
                t.h_seq[..total * r].copy_from_slice(&bwd[..total * r]);
            }
            let from = |j, s| sched.row(j, s) * r;
            let to = |j, s| sched.reversed_row(j, s) * out_w + r;
            sched.copy_tokens(r, bwd, from, dst, to);
        }
    }
}

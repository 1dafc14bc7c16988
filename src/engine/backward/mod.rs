//! The backward pass through time, after a forward pass that kept its [`Tape`].
//!
//! Per layer (top first) and direction, the time loop runs backwards over the schedule
//! on every thread at once, like the forward's: each thread owns the same groups of four
//! unit tiles (`4U` units, one panel of the products below) at every step. A step is
//! 1. `dm` = this step's output gradient plus the `dh` the later step sent back (with a
//!    projection, `dhp` first and then `dm = dhp P^T` on the thread's unit panels);
//! 2. the fused elementwise kernel: the gate gradients `dz` and the carried cell
//!    gradient of the thread's tiles;
//! 3. one barrier (every thread needs all of `dz`), then `dh = dz W_h^T` for the
//!    thread's panels of `dh`, which (without a projection) are its own units again, so
//!    the next step needs no second barrier.
//!
//! Where the forward shares its loop by sequences (see the planner) and the cell has
//! neither peepholes nor a projection, so do these steps: each thread takes every unit
//! of its own rows, and no barrier is needed at all.
//!
//! Everything else waits for the loop and runs as two large products over every real
//! token at once, on the same GEMM kernel: `[dW_x; dW_h; db] = [X H_prev 1]^T dZ`
//! (the ones row makes the bias gradient part of the product; the time loop's kernel
//! writes `dZ` a second time as the contiguous panels this product reads, and the
//! kernels' block transpose makes `[X H_prev 1]^T`) and `dX = dZ W_x^T`; the projection's
//! `M^T dH` goes through the crate's sgemm.

mod buffers;
mod operand_a;
mod time_loop;

pub(crate) use buffers::BackwardBuffers;

use rayon::prelude::*;

use crate::model::error::Result;
use crate::model::layout::SeqLayout;
use crate::model::spec::LstmSpec;
use crate::model::state::LstmState;
use crate::model::weights::LstmWeights;

use super::barrier::SpinBarrier;
use super::context::ExecContext;
use super::packed_cell::{unpack_gate_columns_into, PackedCell};
use super::panel_gemm::{panel_gemm, Panels};
use super::plan::{Plan, AT_ROWS};
use super::sgemm::{gemm_op, Operand};
use super::tape::Tape;
use operand_a::OperandA;
use time_loop::{bptt_thread, Dims, LoopPtrs, Part};

/// Backward through time over the pass `rs` recorded: writes the gradients of every
/// weight (`grad_weights`), of the input (`grad_input`, laid out as `data`) and of the
/// initial state (`grad_state`), for the loss whose gradients with respect to the output
/// and the final state are `upstream_output` and `upstream_final` (absent: zeros).
///
/// The caller has validated every shape against the forward pass that filled `rs`, over
/// the same `data` and `layout`, and `plan` is that pass's.
///
/// # Errors
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when a scratch buffer cannot grow; then
/// nothing has been computed or written.
#[allow(clippy::too_many_arguments)] // the pass's inputs, its gradients and its buffers
pub(crate) fn backward(
    ctx: &ExecContext,
    spec: &LstmSpec,
    cells: &[PackedCell],
    plan: &Plan,
    data: &[f32],
    layout: SeqLayout,
    rs: &Tape,
    upstream_output: Option<&[f32]>,
    upstream_final: Option<&LstmState>,
    bb: &mut BackwardBuffers,
    grad_weights: &mut LstmWeights,
    grad_input: &mut [f32],
    grad_state: &mut LstmState,
) -> Result<()> {
    let ctx = &ctx.with_threads(plan.threads);
    let batch = layout.batch;
    let sched = &rs.sched;
    let total = sched.total();
    let u = ctx.kernels.unit_tile();
    let dirs = spec.num_directions();
    let dims: Vec<Dims> = cells.iter().map(|c| Dims::of(c, u)).collect();
    bb.grow(spec, &dims, batch, total)?;

    // The upstream gradient of the last layer's output, packed.
    let ow = spec.output_size();
    bb.d_out[..total * ow].fill(0.0);
    if let Some(g) = upstream_output {
        let from = |j, s| layout.row(sched.order[j], s) * ow;
        let to = |j, s| sched.row(j, s) * ow;
        sched.copy_tokens(ow, g, from, &mut bb.d_out, to);
    }

    for l in (0..spec.num_layers()).rev() {
        let (in_w, out_w) = (spec.layer_input_size(l), spec.layer_output_size(l));
        bb.d_in[..total * in_w].fill(0.0);
        for dir in 0..dirs {
            let k = l * dirs + dir;
            let (cell, tape, d) = (&cells[k], &rs.cells[k], dims[k]);
            let (h, r, gw) = (d.h, d.r, d.gw);

            // This direction's output gradient, in its processing order.
            let (src, src_ld): (&[f32], usize) = if dir == 0 {
                (&bb.d_out[..], out_w)
            } else {
                let from = |j, s| sched.reversed_row(j, s) * out_w + r;
                let to = |j, s| sched.row(j, s) * r;
                sched.copy_tokens(r, &bb.d_out, from, &mut bb.dh_seq, to);
                (&bb.dh_seq[..], r)
            };
            bb.dm[..batch * d.hq].fill(0.0);
            bb.dc[..batch * d.hq].fill(0.0);
            bb.dh[..batch * d.rq].fill(0.0);
            bb.dpeep[..3 * d.hp].fill(0.0);
            let final_grad = upstream_final.map(|s| &s.cells[k]);
            let ptrs = LoopPtrs {
                src: src.as_ptr(),
                src_ld,
                dm: bb.dm.as_mut_ptr(),
                dc: bb.dc.as_mut_ptr(),
                dh: bb.dh.as_mut_ptr(),
                dhp: bb.dhp.as_mut_ptr(),
                dz: bb.dz.as_mut_ptr(),
                dz_panels: bb.dz_panels.as_mut_ptr(),
                dpeep: bb.dpeep.as_mut_ptr(),
                zeros: bb.zeros.as_ptr(),
            };
            // Shared by sequences like the forward, where the plan says so.
            let by_rows = plan.cells[k].backward_by_rows;
            let barrier = SpinBarrier::new(ctx.threads);
            ctx.broadcast(|tid| {
                let part = Part::new(&d, ctx.threads, tid, by_rows);
                bptt_thread(
                    ctx, spec, cell, tape, d, sched, ptrs, final_grad, &barrier, part,
                )
            });

            // Sequences of length 0 pass the final-state gradient straight through.
            let first = sched.active.first().copied().unwrap_or(0);
            if let Some(g) = final_grad {
                for j in first..batch {
                    let b = sched.order[j];
                    bb.dh[j * d.rq..j * d.rq + r].copy_from_slice(&g.h[b * r..(b + 1) * r]);
                    bb.dc[j * d.hq..j * d.hq + h].copy_from_slice(&g.c[b * h..(b + 1) * h]);
                }
            }
            let gi = &mut grad_state.cells[k];
            for (j, &b) in sched.order.iter().enumerate() {
                gi.c[b * h..(b + 1) * h].copy_from_slice(&bb.dc[j * d.hq..j * d.hq + h]);
                gi.h[b * r..(b + 1) * r].copy_from_slice(&bb.dh[j * d.rq..j * d.rq + r]);
            }

            // A = [X H_prev 1]^T over every real token in this direction's order, and
            // dZ as contiguous panels: the operands of [dW_x; dW_h; db] = A dZ. Read in
            // place, dZ's panel rows would be `gw` floats apart, a multiple of 4 KiB
            // for many widths, and would all fall into the same few cache sets.
            let (h_seq, h_ld): (&[f32], usize) = if dir == 0 {
                (&rs.outs[l], out_w)
            } else {
                (&tape.h_seq, r)
            };
            let operand = OperandA {
                kernels: &ctx.kernels,
                sched,
                data,
                layout,
                below: (l > 0).then(|| &rs.outs[l - 1][..]),
                reversed: dir == 1,
                in_w,
                h0: &tape.h0,
                h_seq,
                h_ld,
                r,
            };
            let rows = in_w + r + 1;
            let at = &mut bb.at[..rows * total];
            let dz = &bb.dz[..total * gw];
            ctx.install(|| {
                // A batch whose every length is 0 has no token: no chunk to fill.
                at.par_chunks_mut((AT_ROWS * total).max(1))
                    .enumerate()
                    .for_each(|(i, chunk)| operand.fill(i * AT_ROWS, chunk));
            });
            // dZ as panels, written by the time loop's kernel next to `dz`.
            let b = Panels::packed(&bb.dz_panels[..total * gw], total, d.u4);
            panel_gemm(ctx, rows, at, total, b, &bb.zeros, &mut bb.dw, gw);
            // dX = dZ W_x^T.
            let w_x_t = Panels::packed(&cell.w_x_t, gw, d.u4);
            panel_gemm(ctx, total, dz, gw, w_x_t, &bb.zeros, &mut bb.dx, d.inq);
            if dir == 0 {
                for (row, dx) in bb.d_in[..total * in_w]
                    .chunks_exact_mut(in_w)
                    .zip(bb.dx.chunks_exact(d.inq))
                {
                    row.iter_mut().zip(dx).for_each(|(a, &v)| *a += v);
                }
            } else {
                let from = |j, s| sched.row(j, s) * d.inq;
                let to = |j, s| sched.reversed_row(j, s) * in_w;
                sched.add_tokens(in_w, &bb.dx, from, &mut bb.d_in, to);
            }

            let (gwx, gwh, gb, gpeep, gproj) = grad_weights.cell_parts_mut(k);
            unpack_gate_columns_into(&bb.dw, in_w, h, u, gwx);
            unpack_gate_columns_into(&bb.dw[in_w * gw..], r, h, u, gwh);
            unpack_gate_columns_into(&bb.dw[(in_w + r) * gw..], 1, h, u, gb);
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
                let (m_t, dhp) = (Operand::t(&tape.m, d.hp), Operand::n(&bb.dhp, d.rq));
                let threads = ctx.threads;
                ctx.install(|| gemm_op(threads, (h, r, total), m_t, dhp, gp, r, false));
            }
        }
        std::mem::swap(&mut bb.d_out, &mut bb.d_in);
    }

    // The input gradient in the caller's layout, zeros at padded steps.
    let iw = spec.input_size();
    grad_input.fill(0.0);
    let from = |j, s| sched.row(j, s) * iw;
    let to = |j, s| layout.row(sched.order[j], s) * iw;
    sched.copy_tokens(iw, &bb.d_out, from, grad_input, to);
    Ok(())
}

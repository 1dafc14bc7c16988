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
use crate::model::state::LstmState;

use super::context::ExecContext;
use super::packed_cell::PackedCell;
use super::panel_gemm::{panel_gemm, Panels};
use super::plan::{CellPlan, Plan};
use super::tape::Tape;
use time_loop::{time_loop, LoopArgs, LoopPtrs};

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
    let SeqLayout {
        time_major: tm,
        batch,
        steps,
    } = layout;
    let total = f.sched.total();
    f.grow(spec, cells, batch, total)?;
    if let Some(t) = tape.as_deref_mut() {
        t.grow(spec, cells, batch, total)?;
        t.sched.clone_from(&f.sched);
    }
    let sched = &f.sched;
    let dirs = spec.num_directions();
    let identity = sched.order.iter().enumerate().all(|(j, &b)| j == b);
    // A one-direction stack's last layer puts its outputs where the caller wants them
    // from inside the time loop, each thread its own part, instead of one thread
    // copying them all afterwards.
    let scatter_in_loop = dirs == 1;
    for l in 0..spec.num_layers() {
        let out_w = spec.layer_output_size(l);
        let (src, dst) = if l % 2 == 0 {
            (&f.pb, &mut f.pa)
        } else {
            (&f.pa, &mut f.pb)
        };
        for dir in 0..dirs {
            let k = l * dirs + dir;
            let cell = &cells[k];
            let (in_w, gw, r) = (cell.input, cell.gate_width(), cell.recurrent);

            let CellPlan { by_rows, fuse, .. } = plan.cells[k];
            // Layer 0 read where it is, when each step reads its own rows and the
            // sequences keep their order (all of the same length, say): no gather.
            let x_in_place = (l == 0 && dir == 0 && fuse && identity).then(|| {
                if tm {
                    (batch * in_w, in_w)
                } else {
                    (in_w, steps * in_w)
                }
            });
            // The inputs of every real token, in this direction's processing order.
            let x: &[f32] = if x_in_place.is_some() {
                data
            } else if l == 0 {
                let from = |j: usize, s: usize| {
                    let t = if dir == 0 { s } else { sched.lens[j] - 1 - s };
                    layout.row(sched.order[j], t) * in_w
                };
                let to = |j, s| sched.row(j, s) * in_w;
                sched.copy_tokens(in_w, data, from, &mut f.xg, to);
                &f.xg[..total * in_w]
            } else if dir == 0 {
                &src[..total * in_w]
            } else {
                let from = |j, s| sched.reversed_row(j, s) * in_w;
                let to = |j, s| sched.row(j, s) * in_w;
                sched.copy_tokens(in_w, src, from, &mut f.xg, to);
                &f.xg[..total * in_w]
            };

            // Every step's input projection at once, bias folded in, in tile order
            // (or step by step in the time loop). Split by units, each thread's tiles
            // of the projection are the ones its steps read: the time loop's threads
            // compute them first, in the same broadcast.
            let project_in_loop = plan.cells[k].project_in_loop();
            if !fuse && !project_in_loop {
                let u4 = 4 * ctx.kernels.unit_tile();
                let w_x = Panels::packed(&cell.w_x_panels, in_w, u4);
                panel_gemm(ctx, total, x, in_w, w_x, &cell.bias, &mut f.zx, gw);
            }

            // The initial state in schedule order; padding units of c are zero.
            let (h, hp) = (cell.hidden, cell.padded);
            let st = &mut state.cells[k];
            for (j, &b) in sched.order.iter().enumerate() {
                f.c[j * hp..j * hp + h].copy_from_slice(&st.c[b * h..(b + 1) * h]);
                f.c[j * hp + h..(j + 1) * hp].fill(0.0);
                f.h0[j * r..(j + 1) * r].copy_from_slice(&st.h[b * r..(b + 1) * r]);
            }

            // The forward direction writes its outputs straight into the layer's
            // packed output; the backward one into its own buffer, in its order.
            let (target, target_ld): (&mut [f32], usize) = if dir == 0 {
                (&mut dst[..], out_w)
            } else {
                (&mut f.bwd[..], r)
            };
            let mut shared = LoopPtrs {
                zx: f.zx.as_ptr(),
                x: if fuse { x.as_ptr() } else { std::ptr::null() },
                ld_x: in_w,
                project: if project_in_loop {
                    x.as_ptr()
                } else {
                    std::ptr::null()
                },
                x_in_place,
                final_out: if scatter_in_loop && l + 1 == spec.num_layers() {
                    output.as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                },
                time_major: tm,
                batch,
                steps,
                h0: f.h0.as_ptr(),
                c: f.c.as_mut_ptr(),
                m: f.m.as_mut_ptr(),
                proj: f.proj.as_mut_ptr(),
                parity: f.parity,
                out: target.as_mut_ptr(),
                gates: std::ptr::null_mut(),
                c_hist: std::ptr::null_mut(),
                m_hist: std::ptr::null_mut(),
                h_raw: std::ptr::null_mut(),
            };
            if let Some(t) = tape.as_deref_mut() {
                let tape = &mut t.cells[k];
                tape.c0[..batch * hp].copy_from_slice(&f.c[..batch * hp]);
                tape.h0[..batch * r].copy_from_slice(&f.h0[..batch * r]);
                shared.gates = tape.gates.as_mut_ptr();
                shared.c_hist = tape.c.as_mut_ptr();
                if cell.projection.is_some() {
                    shared.m_hist = tape.m.as_mut_ptr();
                    if spec.proj_clip().is_some() {
                        shared.h_raw = tape.h_raw.as_mut_ptr();
                    }
                }
            }
            let args = LoopArgs {
                ctx,
                spec,
                cell,
                sched,
                by_rows,
                out_ld: target_ld,
            };
            time_loop(&args, shared);
            if let Some(t) = tape.as_deref_mut() {
                if dir == 1 {
                    t.cells[k].h_seq[..total * r].copy_from_slice(&target[..total * r]);
                }
            }

            for (j, &b) in sched.order.iter().enumerate() {
                st.c[b * h..(b + 1) * h].copy_from_slice(&f.c[j * hp..j * hp + h]);
                if sched.lens[j] > 0 {
                    let row = sched.row(j, sched.lens[j] - 1) * target_ld;
                    st.h[b * r..(b + 1) * r].copy_from_slice(&target[row..row + r]);
                }
            }
            if dir == 1 {
                let from = |j, s| sched.row(j, s) * r;
                let to = |j, s| sched.reversed_row(j, s) * out_w + r;
                sched.copy_tokens(r, &f.bwd, from, dst, to);
            }
        }
        if let Some(t) = tape.as_deref_mut() {
            t.outs[l][..total * out_w].copy_from_slice(&dst[..total * out_w]);
        }
    }

    f.parity = (f.parity + f.sched.steps()) % 2;

    // Back to the caller's order and layout (unless the time loop did it), zeros past
    // each length.
    let last = if spec.num_layers() % 2 == 1 {
        &f.pa
    } else {
        &f.pb
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

//! One layer direction's forward time loop: every step of the schedule on the fused step
//! kernel, its threads sharing each step by hidden units (one barrier a step) or sharing
//! the sequences (no barrier), as the plan says.

use std::ptr::NonNull;

use lstm_kernels_simd::{InputPart, Kernels, StepRaw};

use crate::model::layout::row_index;
use crate::model::spec::LstmSpec;

use crate::engine::barrier::SpinBarrier;
use crate::engine::context::ExecContext;
use crate::engine::packed_cell::PackedCell;
use crate::engine::panel_gemm::{gemm_raw, Panels};
use crate::engine::partition::{split, ThreadPart};
use crate::engine::plan::{ROWS_PER_CALL, ZIGZAG};
use crate::engine::schedule::Schedule;

/// Raw pointers shared by the threads of one time loop. Each thread writes only what the
/// schedule gives it (its tiles' columns, or its rows of the projection).
#[derive(Clone, Copy)]
pub(super) struct LoopPtrs {
    pub zx: *const f32,
    /// The layer direction's inputs `[total, ld_x]` in schedule order when each step
    /// computes its own input projection (see the planner); null when one
    /// product made every step's `zx` up front.
    pub x: *const f32,
    pub ld_x: usize,
    /// When set, `x` is the caller's input read in place (layer 0, sequences in their
    /// own order): step `s`, row `j` at `x + s * .0 + j * .1`, instead of the packed
    /// row `offset[s] + j` of stride `ld_x`.
    pub x_in_place: Option<(usize, usize)>,
    /// The caller's output `[B, T, ow]` (or `[T, B, ow]`), which the last layer's
    /// threads fill step by step (null: the caller's thread does it after the loop).
    pub final_out: *mut f32,
    /// The layer's inputs `[total, ld_x]` when the time loop's threads compute the
    /// projection up front themselves, each its own tiles for every row, before their
    /// first step (null otherwise).
    pub project: *const f32,
    /// The caller's layout: time-major, `B`, `T` (for `final_out`).
    pub time_major: bool,
    pub batch: usize,
    pub steps: usize,
    pub h0: *const f32,
    pub c: *mut f32,
    pub m: *mut f32,
    /// A projecting layer's `m P` rows, `[B, ptiles*4U]`, padding columns included.
    pub proj: *mut f32,
    /// Added to the step index for the zigzag (see `ForwardBuffers::parity`).
    pub parity: usize,
    pub out: *mut f32,
    /// Forward-training only (null otherwise): per-step gates `[total, gw]`, cell states
    /// `[total, hp]`, kernel outputs `m` `[total, hp]` (projecting layers) and unclipped
    /// projections `[total, P]` (with `proj_clip`).
    pub gates: *mut f32,
    pub c_hist: *mut f32,
    pub m_hist: *mut f32,
    pub h_raw: *mut f32,
}
impl LoopPtrs {
    /// Where step `s`'s input rows start, and their stride.
    fn x_rows(&self, sched: &Schedule, s: usize) -> (*const f32, usize) {
        match self.x_in_place {
            Some((step, row)) => (self.x.wrapping_add(s * step), row),
            None => (self.x.wrapping_add(sched.offset[s] * self.ld_x), self.ld_x),
        }
    }
}

// SAFETY: the pointers address workspace buffers that outlive the broadcast in which they
// are used, and the time loop's partition (disjoint tiles, disjoint rows, a barrier between
// phases) keeps concurrent writes disjoint and ordered before dependent reads.
unsafe impl Send for LoopPtrs {}
// SAFETY: as for `Send`.
unsafe impl Sync for LoopPtrs {}

/// What one layer direction's time loop runs on: the context, the cell and its options,
/// the schedule, and how its threads share it.
pub(super) struct LoopArgs<'a> {
    pub ctx: &'a ExecContext,
    /// The loop's threads: the context's, or its share of them when two loops run at
    /// once.
    pub threads: usize,
    pub spec: &'a LstmSpec,
    pub cell: &'a PackedCell,
    pub sched: &'a Schedule,
    /// Split by sequences rather than by hidden units (see the planner).
    pub by_rows: bool,
    /// Row stride of `LoopPtrs::out`.
    pub out_ld: usize,
}

/// The recurrence of one layer direction over the schedule. `p.out` receives `h` at row
/// `offset[s] + j` (row stride `a.out_ld`), which is also where step `s + 1` reads its
/// `h_prev`.
pub(super) fn time_loop(a: &LoopArgs<'_>, p: LoopPtrs) {
    debug_assert_eq!(a.threads, a.ctx.threads);
    let barrier = SpinBarrier::new(a.threads);
    a.ctx.broadcast(|tid| time_loop_thread(a, p, &barrier, tid));
}

/// Two independent time loops (a bidirectional layer's directions) at the same time in
/// one broadcast: the context's first `a.0.threads` threads run the first, the next
/// `a.1.threads` the second, each loop with its own barrier.
pub(super) fn time_loops_at_once(ctx: &ExecContext, a: [(&LoopArgs<'_>, LoopPtrs); 2]) {
    let n0 = a[0].0.threads;
    debug_assert_eq!(n0 + a[1].0.threads, ctx.threads);
    let barriers = [SpinBarrier::new(n0), SpinBarrier::new(a[1].0.threads)];
    ctx.broadcast(|tid| {
        let (i, local) = if tid < n0 { (0, tid) } else { (1, tid - n0) };
        time_loop_thread(a[i].0, a[i].1, &barriers[i], local)
    });
}

/// One thread's part of [`time_loop`].
fn time_loop_thread(a: &LoopArgs<'_>, p: LoopPtrs, barrier: &SpinBarrier, tid: usize) {
    let LoopArgs {
        ctx,
        threads,
        spec,
        cell,
        sched,
        by_rows,
        out_ld,
    } = *a;
    let u = ctx.kernels.unit_tile();
    let (h, hp, r, gw) = (cell.hidden, cell.padded, cell.recurrent, cell.gate_width());
    // This thread's part: its tiles of every row, or (`by_rows`) every tile of the
    // rows `j0, j0 + rs, j0 + 2 rs, ...` of each step. A sequence only ever needs its
    // own previous row, so split by rows the threads never wait for each other.
    let part = ThreadPart::new(hp / u, 1, by_rows, threads, tid);
    let (t_lo, t_hi, j0, rs) = (part.tiles.start, part.tiles.end, part.j0, part.rs);
    let (u_lo, u_hi) = ((t_lo * u).min(h), (t_hi * u).min(h));
    // Without padding or projection the kernel writes h where it belongs.
    let direct = cell.projection.is_none() && h == hp;
    if !p.project.is_null() {
        // Split by units: this thread's tiles of every step's projection, as
        // `panel_gemm` would split them, without a broadcast of its own.
        let (total, u4) = (sched.total(), 4 * u);
        let w_x = Panels::packed(&cell.w_x_panels, cell.input, u4);
        let mut r0 = 0;
        while r0 < total {
            let n = ROWS_PER_CALL.min(total - r0);
            let raw = gemm_raw(
                n,
                p.project.wrapping_add(r0 * p.ld_x),
                p.ld_x,
                &w_x,
                cell.bias.as_ptr(),
                p.zx.cast_mut().wrapping_add(r0 * gw),
                gw,
                t_lo..t_hi,
            );
            // SAFETY: `project` holds `total` rows of `ld_x >= input` floats, `zx`
            // `total` rows of `gw`, the packed `W_x` and the bias every tile; this
            // thread writes only its tiles' columns of `zx`, which only its own steps
            // read, after this.
            unsafe { ctx.kernels.gemm_tiles_raw(&raw) };
            r0 += n;
        }
    }
    for s in 0..sched.steps() {
        // Rows j0 + i * rs for i < rows (all of them when split by tiles).
        let rows = part.rows(sched.active[s]);
        let row_of = |i: usize| part.row(i);
        // Every offset below stays within the workspace buffers, which `run` grew to
        // `total` rows (zx, out, the reserve) and `batch` rows (c, m, h0); pointers
        // are formed with wrapping arithmetic and only dereferenced for real rows.
        let (h_prev, ld_h_prev) = if s == 0 {
            (p.h0, r)
        } else {
            (
                p.out
                    .wrapping_add(sched.offset[s - 1] * out_ld)
                    .cast_const(),
                out_ld,
            )
        };
        let out_rows = p.out.wrapping_add(sched.offset[s] * out_ld);
        // Training keeps every step's `m` of a projecting layer for the gradient of
        // the projection.
        let m_rows = if p.m_hist.is_null() {
            p.m
        } else {
            p.m_hist.wrapping_add(sched.offset[s] * hp)
        };
        let (h_out, ld_h_out) = if direct {
            (out_rows, out_ld)
        } else {
            (m_rows, hp)
        };
        let zx_rows = p.zx.wrapping_add(sched.offset[s] * gw);
        // With the projection in the time loop, the kernel sums `bias + x W_x + h W_h`
        // in one k loop (the same chain as projecting first).
        let (x_rows, ld_x) = p.x_rows(sched, s);
        let (input, zx, ld_zx) = if p.x.is_null() {
            (None, zx_rows.wrapping_add(j0 * gw), gw * rs)
        } else {
            let u4 = 4 * u;
            let part = InputPart {
                kx: cell.input,
                x: x_rows.wrapping_add(j0 * ld_x),
                ld_x: ld_x * rs,
                w: cell.w_x_panels.as_ptr(),
                ld_w: u4,
                w_panel: cell.input * u4,
            };
            (Some(part), cell.bias.as_ptr(), 0)
        };
        let raw = StepRaw {
            rows,
            k: r,
            input,
            h_prev: h_prev.wrapping_add(j0 * ld_h_prev),
            ld_h_prev: ld_h_prev * rs,
            w: cell.w_h.as_ptr(),
            ld_w: 4 * u,
            w_panel: r * 4 * u,
            zx,
            ld_zx,
            peep: cell
                .peepholes
                .as_ref()
                .and_then(|v| NonNull::new(v.as_ptr().cast_mut())),
            c: p.c.wrapping_add(j0 * hp),
            ld_c: hp * rs,
            h_out: h_out.wrapping_add(j0 * ld_h_out),
            ld_h_out: ld_h_out * rs,
            gates: (!p.gates.is_null())
                .then(|| NonNull::new(p.gates.wrapping_add((sched.offset[s] + j0) * gw)))
                .flatten(),
            ld_gates: gw * rs,
            tiles: t_lo..t_hi,
            forget_bias: spec.forget_bias(),
            cell_clip: spec.cell_clip().unwrap_or(f32::INFINITY),
        };
        if !by_rows && s > 0 {
            // Split by units, the other threads' cores just wrote most of each h_prev
            // row: ask for all of it now, so that its lines cross between the cores
            // while the kernel's first tile runs, not one demand miss at a time. At 2
            // threads (5 alternations): `infer-b8-h256-t100` 2.55 -> 2.46 ms,
            // `infer-b1-h512` 0.898 -> 0.855 ms, `seed-ptb` forward unchanged.
            for row in 0..rows {
                let at = h_prev.wrapping_add(row * ld_h_prev);
                for b in (0..r).step_by(16) {
                    prefetch(at.wrapping_add(b));
                }
            }
        }
        // SAFETY: h_prev (rows x r), zx (rows x gw), c and h_out (rows x hp, or the
        // output rows of this step) lie inside their buffers, and so do the input rows
        // (packed, or the caller's `[B, T, I]` read in place: row j of step s is
        // sequence j < B at time s < T); this thread's part
        // (tiles, or rows) is disjoint from every other thread's; h_prev is the
        // previous step's rows (or h0), which nobody writes during this step (split
        // by rows, only this thread wrote or reads its rows); the clip is +inf or a
        // finite positive value (validated by the spec).
        unsafe { step_zigzag(&ctx.kernels, raw, s + p.parity) };
        if !p.c_hist.is_null() {
            for row in (0..rows).map(row_of) {
                // SAFETY: this thread's part of row `row`, just written by its kernel
                // call; the history row `offset[s] + row` is inside the reserve, which
                // was grown to `total` rows.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        p.c.add(row * hp + t_lo * u),
                        p.c_hist.add((sched.offset[s] + row) * hp + t_lo * u),
                        (t_hi - t_lo) * u,
                    );
                }
            }
        }
        // This thread's part of the step's outputs, `lo..hi` of row `row`, into the
        // caller's output when the time loop fills it.
        let scatter = |row: usize, lo: usize, hi: usize| {
            if p.final_out.is_null() || lo >= hi {
                return;
            }
            let to = row_index(p.time_major, p.batch, p.steps, sched.order[row], s) * r;
            // SAFETY: `final_out` is `[B, T, r]` (one direction, so `r` is the
            // output width) and the row of sequence `order[row]` at step `s` is inside
            // it; no other thread writes these columns of that row. The source was
            // written by this thread (its kernel call or projection) in this step.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    out_rows.add(row * out_ld + lo),
                    p.final_out.add(to + lo),
                    hi - lo,
                );
            }
        };
        if !direct {
            match &cell.projection {
                None => {
                    for row in (0..rows).map(row_of) {
                        // SAFETY: this thread's units of row `row`: inside both buffers,
                        // written by this thread's kernel call above, and nobody else's.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                m_rows.add(row * hp + u_lo),
                                out_rows.add(row * out_ld + u_lo),
                                u_hi - u_lo,
                            );
                        }
                    }
                }
                Some(proj) => {
                    // Split by tiles, a row of `m` is complete only when every thread
                    // is done. Then the threads share the rows (each reads all of `P`)
                    // or, with fewer rows than threads, `P`'s column panels. Split by
                    // rows, this thread's rows are its own. Rows `first + i * stride`,
                    // `i < count`, panels `p_lo..p_hi`.
                    let (pw, u4) = (cell.proj_width(), 4 * u);
                    let panels = pw / u4;
                    let ((first, count, stride), (p_lo, p_hi)) = if by_rows {
                        ((j0, rows, rs), (0, panels))
                    } else {
                        barrier.wait();
                        if rows >= threads {
                            let (r_lo, r_hi) = split(rows, threads, tid);
                            ((r_lo, r_hi - r_lo, 1), (0, panels))
                        } else {
                            ((0, rows, 1), split(panels, threads, tid))
                        }
                    };
                    // A thread with no panel (more threads than panels) has no row.
                    let count = if p_lo < p_hi { count } else { 0 };
                    let (c_lo, c_hi) = ((p_lo * u4).min(r), (p_hi * u4).min(r));
                    let w = Panels::packed(proj, h, u4);
                    let mut i0 = 0;
                    while i0 < count {
                        let n = ROWS_PER_CALL.min(count - i0);
                        let row = first + i0 * stride;
                        let raw = gemm_raw(
                            n,
                            m_rows.wrapping_add(row * hp).cast_const(),
                            hp * stride,
                            &w,
                            cell.proj_init.as_ptr(),
                            p.proj.wrapping_add(row * pw),
                            pw * stride,
                            p_lo..p_hi,
                        );
                        // SAFETY: rows `first + i * stride` of `m` (`hp >= H` floats
                        // each, every unit written: after the barrier, or by this
                        // thread) and of the `[B, pw]` scratch are inside their
                        // buffers; the packed projection holds every panel's `H` rows
                        // and `proj_init` `pw` zeros; this thread writes only its
                        // rows, or its panels' columns, of the scratch.
                        unsafe { ctx.kernels.gemm_tiles_raw(&raw) };
                        i0 += n;
                    }
                    for row in (0..count).map(|i| first + i * stride) {
                        // SAFETY: columns `c_lo..c_hi` of row `row`: of the scratch,
                        // just written by this thread; of the output row, this
                        // thread's alone.
                        let (sums, h_row) = unsafe {
                            (
                                std::slice::from_raw_parts(
                                    p.proj.add(row * pw + c_lo).cast_const(),
                                    c_hi - c_lo,
                                ),
                                std::slice::from_raw_parts_mut(
                                    out_rows.add(row * out_ld + c_lo),
                                    c_hi - c_lo,
                                ),
                            )
                        };
                        if !p.h_raw.is_null() {
                            // SAFETY: the unclipped row `offset[s] + row` of the reserve
                            // (grown to `total` rows of `r`), these columns this
                            // thread's alone.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    sums.as_ptr(),
                                    p.h_raw.add((sched.offset[s] + row) * r + c_lo),
                                    c_hi - c_lo,
                                );
                            }
                        }
                        match spec.proj_clip() {
                            Some(clip) => h_row
                                .iter_mut()
                                .zip(sums)
                                .for_each(|(hv, &v)| *hv = v.clamp(-clip, clip)),
                            None => h_row.copy_from_slice(sums),
                        }
                        scatter(row, c_lo, c_hi);
                    }
                }
            }
        }
        if cell.projection.is_none() {
            for row in (0..rows).map(row_of) {
                let (lo, hi) = if by_rows { (0, r) } else { (u_lo, u_hi) };
                scatter(row, lo, hi);
            }
        }
        if !by_rows {
            barrier.wait();
        }
    }
}

/// A hint that the 64-byte line at `p` will be read soon (nothing on other targets).
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One step of a thread's tiles `raw.tiles`, walked forwards on even steps and
/// backwards on odd ones, [`ZIGZAG`] tiles per kernel call, so that what of the
/// thread's `W_h` fits in L2 stays there (see the constant). Each tile is computed as
/// before, so the order changes no bit.
///
/// # Safety
/// As [`Kernels::step_tiles_raw`].
unsafe fn step_zigzag(kernels: &Kernels, mut raw: StepRaw, step: usize) {
    if step.is_multiple_of(2) {
        // SAFETY: the caller's contract.
        unsafe { kernels.step_tiles_raw(&raw) };
        return;
    }
    let (lo, mut hi) = (raw.tiles.start, raw.tiles.end);
    while hi > lo {
        let from = hi.saturating_sub(ZIGZAG).max(lo);
        raw.tiles = from..hi;
        // SAFETY: a sub-range of the caller's tiles, under the caller's contract.
        unsafe { kernels.step_tiles_raw(&raw) };
        hi = from;
    }
}

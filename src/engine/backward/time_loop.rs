//! One layer direction's backward time loop: per step (last first) the output gradient,
//! the fused elementwise kernel's gate gradients and the `dh` carried to the step before,
//! each thread its part (see the module doc of `backward`).

use std::ptr::NonNull;

use lstm_kernels_simd::{BackwardRaw, DzPanels};

use crate::engine::barrier::SpinBarrier;
use crate::engine::context::ExecContext;
use crate::engine::packed_cell::PackedCell;
use crate::engine::panel_gemm::{gemm_raw, Panels};
use crate::engine::partition::{split, ThreadPart};
use crate::engine::schedule::Schedule;
use crate::engine::tape::CellTape;
use crate::model::spec::LstmSpec;
use crate::model::state::CellState;

/// One cell's widths in the backward's layouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    /// Hidden units `H`.
    pub h: usize,
    /// `H` in whole tiles.
    pub hp: usize,
    /// Recurrent width `R`.
    pub r: usize,
    /// Gate row width, `tiles * 4U`.
    pub gw: usize,
    /// Input width.
    pub input: usize,
    /// `4U`, the panel width of the products.
    pub u4: usize,
    /// Unit tiles.
    pub tiles: usize,
    /// Row stride of `dm` and `dc`: `groups * 4U`.
    pub hq: usize,
    /// Row stride of `dh` and `dhp`: `R` in whole panels.
    pub rq: usize,
    /// Row stride of `dX`: the input width in whole panels.
    pub inq: usize,
    /// Whether the cell projects (`R = P`).
    pub projects: bool,
}

/// One thread's part of a backward time loop: unit tiles `t_lo..t_hi` (whole groups
/// `g_lo..g_hi` of four, units `u_lo..u_hi`), panels `q_lo..q_hi` (columns `c_lo..c_hi`)
/// of `dh`, and rows `j0, j0 + rs, ...` of each step (`rs = 1`: every row, split by
/// units; otherwise every unit of this thread's rows).
#[derive(Clone, Copy)]
pub(super) struct Part {
    g_lo: usize,
    g_hi: usize,
    t_lo: usize,
    t_hi: usize,
    u_lo: usize,
    u_hi: usize,
    q_lo: usize,
    q_hi: usize,
    c_lo: usize,
    c_hi: usize,
    j0: usize,
    rs: usize,
}

impl Part {
    /// Thread `tid`'s part of `threads`.
    pub fn new(d: &Dims, threads: usize, tid: usize, by_rows: bool) -> Part {
        // Unit tiles in whole groups of four and, in `dh`, columns: the same units when
        // nothing projects.
        let tp = ThreadPart::new(d.tiles, 4, by_rows, threads, tid);
        let (parts, idx) = if by_rows { (1, 0) } else { (threads, tid) };
        let (q_lo, q_hi) = if d.projects {
            split(d.rq / d.u4, parts, idx)
        } else {
            (tp.groups.start, tp.groups.end)
        };
        let u = d.u4 / 4;
        Part {
            g_lo: tp.groups.start,
            g_hi: tp.groups.end,
            t_lo: tp.tiles.start,
            t_hi: tp.tiles.end,
            u_lo: tp.tiles.start * u,
            u_hi: tp.tiles.end * u,
            q_lo,
            q_hi,
            c_lo: (q_lo * d.u4).min(d.r),
            c_hi: (q_hi * d.u4).min(d.r),
            j0: tp.j0,
            rs: tp.rs,
        }
    }
}

impl Dims {
    /// The widths of `cell` for tiles of `u` units.
    pub fn of(cell: &PackedCell, u: usize) -> Self {
        let u4 = 4 * u;
        let tiles = cell.padded / u;
        let groups = tiles.div_ceil(4);
        Dims {
            h: cell.hidden,
            hp: cell.padded,
            r: cell.recurrent,
            gw: cell.gate_width(),
            input: cell.input,
            u4,
            tiles,
            hq: groups * u4,
            rq: cell.recurrent.div_ceil(u4) * u4,
            inq: cell.input.div_ceil(u4) * u4,
            projects: cell.projection.is_some(),
        }
    }
}

/// Raw pointers shared by the threads of one backward time loop; each thread writes only
/// its own columns (see [`bptt_thread`]).
#[derive(Clone, Copy)]
pub(super) struct LoopPtrs {
    /// The direction's output gradient in its processing order, `[total, src_ld]`.
    pub src: *const f32,
    pub src_ld: usize,
    pub dm: *mut f32,
    pub dc: *mut f32,
    pub dh: *mut f32,
    pub dhp: *mut f32,
    pub dz: *mut f32,
    /// `dz` again as panels `[tiles][total][4U]` (see [`DzPanels`]).
    pub dz_panels: *mut f32,
    pub dpeep: *mut f32,
    pub zeros: *const f32,
}
// SAFETY: the pointers address the backward's buffers, which outlive the broadcast that
// uses them; the threads write disjoint columns, and a barrier orders every write before
// the reads of other threads (see `bptt_thread`).
unsafe impl Send for LoopPtrs {}
// SAFETY: as for `Send`.
unsafe impl Sync for LoopPtrs {}

/// One thread's `part` of one direction's backward time loop (see the module doc).
#[allow(clippy::too_many_arguments)] // the loop's shared state and this thread's part
pub(super) fn bptt_thread(
    ctx: &ExecContext,
    spec: &LstmSpec,
    cell: &PackedCell,
    tape: &CellTape,
    d: Dims,
    sched: &Schedule,
    p: LoopPtrs,
    final_grad: Option<&CellState>,
    barrier: &SpinBarrier,
    part: Part,
) {
    let (h, hp, r, gw, u4, hq, rq) = (d.h, d.hp, d.r, d.gw, d.u4, d.hq, d.rq);
    let Part {
        g_lo,
        g_hi,
        t_lo,
        t_hi,
        u_lo,
        u_hi,
        q_lo,
        q_hi,
        c_lo,
        c_hi,
        j0,
        rs,
    } = part;
    let w_h_t = Panels::packed(&cell.w_h_t, gw, u4);
    let proj_t = cell.proj_t.as_deref().map(|v| Panels::packed(v, r, u4));
    let proj_clip = spec.proj_clip();
    let n_steps = sched.steps();
    for s in (0..n_steps).rev() {
        // This thread's rows j0 + i rs, i < rows (all of them when split by units).
        let rows = sched.active[s].saturating_sub(j0).div_ceil(rs);
        let row_of = |i: usize| j0 + i * rs;
        let next = if s + 1 < n_steps {
            sched.active[s + 1]
        } else {
            0
        };
        let off = sched.offset[s];
        // SAFETY: for every access below: rows j < active[s] <= batch of dm, dc ([B, hq])
        // and dh ([B, rq]); rows off + j < total of src, dz, dhp and the reserve's
        // tapes, all grown to `total` rows by the caller and `forward_training`. This
        // thread writes only columns u_lo..u_hi of dm and dc, c_lo..c_hi (panels
        // q_lo..q_hi) of dh and dhp, and its tiles' columns of dz and dpeep; it reads
        // other threads' columns (of dz, and of dhp) only after a barrier that
        // follows their writes, and those are not written again before the next
        // barrier (the next step's dz and dhp are other rows). Split by rows
        // (rs > 1, no peepholes, no projection), it reads and writes only its own
        // rows j0 + i rs, of every buffer, and no other thread touches them (with no
        // row of its own at a step, its pointers there are formed with wrapping
        // arithmetic and the kernels, given 0 rows, read nothing).
        unsafe {
            // Sequences whose last step is `s` start from the final-state gradient.
            if let Some(g) = final_grad {
                for j in (0..rows).map(row_of).filter(|&j| j >= next) {
                    let b = sched.order[j];
                    std::ptr::copy_nonoverlapping(
                        g.h[b * r + c_lo..b * r + c_hi].as_ptr(),
                        p.dh.add(j * rq + c_lo),
                        c_hi - c_lo,
                    );
                    let (a, z) = (u_lo.min(h), u_hi.min(h));
                    std::ptr::copy_nonoverlapping(
                        g.c[b * h + a..b * h + z].as_ptr(),
                        p.dc.add(j * hq + a),
                        z - a,
                    );
                }
            }
            match &proj_t {
                None => {
                    // dm = output gradient + carried dh (padding units: dh is 0).
                    for j in (0..rows).map(row_of) {
                        let src = p.src.add((off + j) * p.src_ld);
                        for x in u_lo..u_hi {
                            let up = if x < h { *src.add(x) } else { 0.0 };
                            *p.dm.add(j * hq + x) = *p.dh.add(j * rq + x) + up;
                        }
                    }
                }
                Some(proj_t) => {
                    for j in 0..rows {
                        let src = p.src.add((off + j) * p.src_ld);
                        let dhp = p.dhp.add((off + j) * rq);
                        for x in c_lo..c_hi {
                            let mut v = *src.add(x) + *p.dh.add(j * rq + x);
                            // clip_by_value passes the gradient on the bounds only.
                            if let Some(clip) = proj_clip {
                                if tape.h_raw[(off + j) * r + x].abs() > clip {
                                    v = 0.0;
                                }
                            }
                            *dhp.add(x) = v;
                        }
                    }
                    barrier.wait();
                    // dm = dhp P^T on this thread's unit panels.
                    let raw = gemm_raw(
                        rows,
                        p.dhp.add(off * rq),
                        rq,
                        proj_t,
                        p.zeros,
                        p.dm,
                        hq,
                        g_lo..g_hi,
                    );
                    ctx.kernels.gemm_tiles_raw(&raw);
                }
            }
            let c_prev = if s == 0 {
                tape.c0.as_ptr()
            } else {
                tape.c[sched.offset[s - 1] * hp..].as_ptr()
            };
            let raw = BackwardRaw {
                rows,
                gates: tape.gates.as_ptr().wrapping_add((off + j0) * gw),
                ld_gates: gw * rs,
                c_prev: c_prev.wrapping_add(j0 * hp),
                ld_c_prev: hp * rs,
                dh: p.dm.wrapping_add(j0 * hq),
                ld_dh: hq * rs,
                dc: p.dc.wrapping_add(j0 * hq),
                ld_dc: hq * rs,
                dz: p.dz.wrapping_add((off + j0) * gw),
                ld_dz: gw * rs,
                dz_panels: NonNull::new(p.dz_panels.wrapping_add((off + j0) * u4)).map(|at| {
                    DzPanels {
                        at,
                        ld: u4 * rs,
                        panel: sched.total() * u4,
                    }
                }),
                peep: cell
                    .peepholes
                    .as_ref()
                    .and_then(|v| NonNull::new(v.as_ptr().cast_mut())),
                dpeep: cell.peepholes.as_ref().and_then(|_| NonNull::new(p.dpeep)),
                tiles: t_lo..t_hi,
                cell_clip: spec.cell_clip().unwrap_or(f32::INFINITY),
            };
            ctx.kernels.backward_tiles_raw(&raw);
            if rs == 1 {
                barrier.wait();
            }
            // dh carried to step s - 1: dz W_h^T on this thread's panels of dh (its
            // rows' whole dz, all panels, when split by rows).
            let raw = gemm_raw(
                rows,
                p.dz.wrapping_add((off + j0) * gw),
                gw * rs,
                &w_h_t,
                p.zeros,
                p.dh.wrapping_add(j0 * rq),
                rq * rs,
                q_lo..q_hi,
            );
            ctx.kernels.gemm_tiles_raw(&raw);
        }
    }
}

//! The fast backward through time, after [`Lstm::forward_training`].
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
//! Where the forward shares its loop by sequences (see `Lstm::plan`) and the cell has
//! neither peepholes nor a projection, so do these steps: each thread takes every unit
//! of its own rows, and no barrier is needed at all.
//!
//! Everything else waits for the loop and runs as two large products over every real
//! token at once, on the same GEMM kernel: `[dW_x; dW_h; db] = [X H_prev 1]^T dZ`
//! (the ones row makes the bias gradient part of the product; the time loop's kernel
//! writes `dZ` a second time as the contiguous panels this product reads, and the
//! kernels' block transpose makes `[X H_prev 1]^T`) and `dX = dZ W_x^T`; the projection's
//! `M^T dH` goes through the crate's sgemm.

use std::ptr::NonNull;

use lstm_kernels_simd::{BackwardRaw, DzPanels, Kernels};
use rayon::prelude::*;

use crate::aligned::AlignedVec;
use crate::barrier::SpinBarrier;
use crate::forward::{CellState, ForwardInput};
use crate::gemm::{gemm_op, Operand};
use crate::lstm::{grow, split, Lstm};
use crate::packed::{unpack_gate_columns_into, PackedCell};
use crate::panel_gemm::{gemm_raw, Panels};
use crate::reference::row_index;
use crate::schedule::Schedule;
use crate::train::{CellTape, Gradients, TrainReserve, Upstream};

/// Scratch of the backward pass, grown on first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackwardBuffers {
    /// Gradient into the current layer's output, packed `[total, out]`, and into its input.
    d_out: Vec<f32>,
    d_in: Vec<f32>,
    /// The backward direction's output gradient in its own order, `[total, R]`.
    dh_seq: Vec<f32>,
    /// Gate gradients of every step, `[total, tiles*4U]`.
    dz: AlignedVec,
    /// `dz` as contiguous panels of `4U` columns, the B operand of the weight gradients.
    dz_panels: AlignedVec,
    /// Per-step gradient into `m` and the carried cell gradient (`[B, hq]`), the carried
    /// output gradient (`[B, rq]`).
    dm: Vec<f32>,
    dc: Vec<f32>,
    dh: Vec<f32>,
    /// Projecting layers: the gradient into each step's projected `h`, `[total, rq]`.
    dhp: Vec<f32>,
    /// `A = [X H_prev 1]^T`, `[in + R + 1, total]`: the weight gradients' A operand.
    at: Vec<f32>,
    /// `[dW_x; dW_h; db]` in tile order, `[in + R + 1, tiles*4U]`.
    dw: Vec<f32>,
    /// `dX`, `[total, inq]`.
    dx: Vec<f32>,
    dpeep: Vec<f32>,
    /// A row of zeros: the products' starting value.
    zeros: Vec<f32>,
}

/// One cell's widths in the backward's layouts.
#[derive(Debug, Clone, Copy)]
struct Dims {
    h: usize,
    hp: usize,
    r: usize,
    gw: usize,
    input: usize,
    /// `4U`, the panel width of the products.
    u4: usize,
    /// Unit tiles, and their groups of four (one `4U` panel each).
    tiles: usize,
    groups: usize,
    /// Row strides of `dm`/`dc` (`groups * 4U`), `dh`/`dhp` (`R` in whole panels) and
    /// `dX` (`in` in whole panels).
    hq: usize,
    rq: usize,
    inq: usize,
}

/// One thread's part of a backward time loop: unit tiles `t_lo..t_hi` (whole groups
/// `g_lo..g_hi`, units `u_lo..u_hi`), panels `q_lo..q_hi` (columns `c_lo..c_hi`) of `dh`,
/// and rows `j0, j0 + rs, ...` of each step (`rs = 1`: every row, split by units;
/// otherwise every unit of this thread's rows).
#[derive(Clone, Copy)]
struct Part {
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
    fn new(d: &Dims, threads: usize, tid: usize, by_rows: bool, cell: &PackedCell) -> Part {
        let (parts, idx) = if by_rows { (1, 0) } else { (threads, tid) };
        // Unit tiles (whole groups of four) and, in `dh`, columns: the same units when
        // nothing projects.
        let (g_lo, g_hi) = split(d.groups, parts, idx);
        let (t_lo, t_hi) = ((4 * g_lo).min(d.tiles), (4 * g_hi).min(d.tiles));
        let (q_lo, q_hi) = match cell.projection {
            Some(_) => split(d.rq / d.u4, parts, idx),
            None => (g_lo, g_hi),
        };
        let u = d.u4 / 4;
        let (j0, rs) = if by_rows { (tid, threads) } else { (0, 1) };
        Part {
            g_lo,
            g_hi,
            t_lo,
            t_hi,
            u_lo: t_lo * u,
            u_hi: t_hi * u,
            q_lo,
            q_hi,
            c_lo: (q_lo * d.u4).min(d.r),
            c_hi: (q_hi * d.u4).min(d.r),
            j0,
            rs,
        }
    }
}

impl Dims {
    fn of(cell: &PackedCell, u: usize) -> Self {
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
            groups,
            hq: groups * u4,
            rq: cell.recurrent.div_ceil(u4) * u4,
            inq: cell.input.div_ceil(u4) * u4,
        }
    }
}

/// Raw pointers shared by the threads of one backward time loop; each thread writes only
/// its own columns (see [`Lstm::bptt_thread`]).
#[derive(Clone, Copy)]
struct LoopPtrs {
    /// The direction's output gradient in its processing order, `[total, src_ld]`.
    src: *const f32,
    src_ld: usize,
    dm: *mut f32,
    dc: *mut f32,
    dh: *mut f32,
    dhp: *mut f32,
    dz: *mut f32,
    /// `dz` again as panels `[tiles][total][4U]` (see [`DzPanels`]).
    dz_panels: *mut f32,
    dpeep: *mut f32,
    zeros: *const f32,
}
// SAFETY: the pointers address the backward's buffers, which outlive the broadcast that
// uses them; the threads write disjoint columns, and a barrier orders every write before
// the reads of other threads (see `bptt_thread`).
unsafe impl Send for LoopPtrs {}
// SAFETY: as for `Send`.
unsafe impl Sync for LoopPtrs {}

/// Rows of `A` per parallel chunk.
const AT_ROWS: usize = 16;

/// Where the rows of `A = [X H_prev 1]^T` come from, for one layer direction.
struct OperandA<'a> {
    kernels: &'a Kernels,
    sched: &'a Schedule,
    input: &'a ForwardInput<'a>,
    /// The layer below's packed output (`None` for the first layer: the input).
    below: Option<&'a [f32]>,
    reversed: bool,
    time_major: bool,
    in_w: usize,
    h0: &'a [f32],
    /// The direction's own outputs in its order (row stride `h_ld`): `H_prev` of step
    /// `s` is the first `active[s]` rows of step `s - 1`.
    h_seq: &'a [f32],
    h_ld: usize,
    r: usize,
}

impl OperandA<'_> {
    /// Rows `c0..c0 + chunk.len() / total` of `A` into `chunk` (row stride `total`).
    fn fill(&self, c0: usize, chunk: &mut [f32]) {
        let sched = self.sched;
        let total = sched.total();
        let c1 = c0 + chunk.len() / total;
        let (in_w, r) = (self.in_w, self.r);
        let inp = self.input;
        for s in 0..sched.steps() {
            let (rows, off) = (sched.active[s], sched.offset[s]);
            if c0 < in_w {
                let x_row = |j: usize| -> &[f32] {
                    let row = match self.below {
                        None => {
                            let t = if self.reversed {
                                sched.lens[j] - 1 - s
                            } else {
                                s
                            };
                            let b = sched.order[j];
                            let i = row_index(self.time_major, inp.batch, inp.steps, b, t);
                            return &inp.data[i * in_w..(i + 1) * in_w];
                        }
                        Some(_) if self.reversed => sched.reversed_row(j, s),
                        Some(_) => off + j,
                    };
                    &self.below.unwrap_or_default()[row * in_w..(row + 1) * in_w]
                };
                transpose(
                    self.kernels,
                    rows,
                    x_row,
                    c0..c1.min(in_w),
                    chunk,
                    total,
                    off,
                );
            }
            if c1 > in_w && c0 < in_w + r {
                let h_row = |j: usize| -> &[f32] {
                    if s == 0 {
                        &self.h0[j * r..(j + 1) * r]
                    } else {
                        let row = sched.offset[s - 1] + j;
                        &self.h_seq[row * self.h_ld..row * self.h_ld + r]
                    }
                };
                let (lo, hi) = (c0.max(in_w), c1.min(in_w + r));
                let dst = &mut chunk[(lo - c0) * total..];
                transpose(
                    self.kernels,
                    rows,
                    h_row,
                    lo - in_w..hi - in_w,
                    dst,
                    total,
                    off,
                );
            }
        }
        if c1 > in_w + r {
            chunk[(in_w + r - c0) * total..].fill(1.0);
        }
    }
}

/// `dst[(c - cols.start) * ld_dst + col0 + i] = row(i)[c]` for `i < rows`, `c` in
/// `cols`: the kernels' register-block transpose, 16 rows at a time.
fn transpose<'a>(
    kernels: &Kernels,
    rows: usize,
    row: impl Fn(usize) -> &'a [f32],
    cols: std::ops::Range<usize>,
    dst: &mut [f32],
    ld_dst: usize,
    col0: usize,
) {
    const B: usize = 16;
    let mut i0 = 0;
    while i0 < rows {
        let n = B.min(rows - i0);
        let block: [&[f32]; B] = std::array::from_fn(|i| if i < n { row(i0 + i) } else { &[] });
        kernels.transpose(&block[..n], cols.clone(), &mut dst[col0 + i0..], ld_dst);
        i0 += n;
    }
}

impl Lstm {
    /// The gemm crate's sgemm on this LSTM's threads (the projection's gradient).
    fn sgemm_op(
        &self,
        mnk: (usize, usize, usize),
        a: Operand<'_>,
        b: Operand<'_>,
        c: &mut [f32],
        ldc: usize,
    ) {
        let threads = self.threads();
        match self.pool() {
            Some(pool) => pool.install(|| gemm_op(threads, mnk, a, b, c, ldc, false)),
            None => gemm_op(1, mnk, a, b, c, ldc, false),
        }
    }

    /// The backward pass proper; the caller has validated every shape.
    pub(crate) fn run_backward(
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
        let dims: Vec<Dims> = cells.iter().map(|c| Dims::of(c, u)).collect();
        let max_of = |g: &dyn Fn(&Dims) -> usize| dims.iter().map(g).max().unwrap_or(0);
        let widest_io = (0..spec.num_layers())
            .map(|l| spec.layer_output_size(l).max(spec.layer_input_size(l)))
            .max()
            .unwrap_or(0);
        grow(&mut bb.d_out, total * widest_io);
        grow(&mut bb.d_in, total * widest_io);
        grow(&mut bb.dh_seq, total * max_of(&|d| d.r));
        bb.dz.grow(total * max_of(&|d| d.gw));
        bb.dz_panels.grow(total * max_of(&|d| d.gw));
        grow(&mut bb.dm, batch * max_of(&|d| d.hq));
        grow(&mut bb.dc, batch * max_of(&|d| d.hq));
        grow(&mut bb.dh, batch * max_of(&|d| d.rq));
        if cells.iter().any(|c| c.projection.is_some()) {
            grow(&mut bb.dhp, total * max_of(&|d| d.rq));
        }
        grow(&mut bb.at, total * max_of(&|d| d.input + d.r + 1));
        grow(&mut bb.dw, max_of(&|d| (d.input + d.r + 1) * d.gw));
        grow(&mut bb.dx, total * max_of(&|d| d.inq));
        grow(&mut bb.dpeep, max_of(&|d| 3 * d.hp));
        grow(
            &mut bb.zeros,
            max_of(&|d| d.gw.max(d.hq).max(d.rq).max(d.inq)),
        );

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
                let (cell, tape, d) = (&cells[k], &rs.cells[k], dims[k]);
                let (h, r, gw) = (d.h, d.r, d.gw);

                // This direction's output gradient, in its processing order.
                let (src, src_ld): (&[f32], usize) = if dir == 0 {
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
                bb.dm[..batch * d.hq].fill(0.0);
                bb.dc[..batch * d.hq].fill(0.0);
                bb.dh[..batch * d.rq].fill(0.0);
                bb.dpeep[..3 * d.hp].fill(0.0);
                let final_grad = upstream.final_state.map(|s| &s.cells[k]);
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
                // Shared by sequences like the forward (see `Lstm::plan`), except where
                // the rows' peephole gradients are summed into one vector, or the
                // projection's gradient needs every unit of a row.
                let by_rows = cell.peepholes.is_none()
                    && cell.projection.is_none()
                    && self
                        .plan(cell, sched.active.first().copied().unwrap_or(0))
                        .0;
                let barrier = SpinBarrier::new(self.threads());
                let body = |tid| {
                    let part = Part::new(&d, self.threads(), tid, by_rows, cell);
                    self.bptt_thread(cell, tape, d, sched, ptrs, final_grad, &barrier, part)
                };
                match self.pool() {
                    Some(pool) => {
                        pool.broadcast(|ctx| body(ctx.index()));
                    }
                    None => body(0),
                }

                // Sequences of length 0 pass the final-state gradient straight through.
                let first = sched.active.first().copied().unwrap_or(0);
                if let Some(g) = final_grad {
                    for j in first..batch {
                        let b = sched.order[j];
                        bb.dh[j * d.rq..j * d.rq + r].copy_from_slice(&g.h[b * r..(b + 1) * r]);
                        bb.dc[j * d.hq..j * d.hq + h].copy_from_slice(&g.c[b * h..(b + 1) * h]);
                    }
                }
                let gi = &mut grads.initial_state.cells[k];
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
                    kernels: self.kernels(),
                    sched,
                    input,
                    below: (l > 0).then(|| &rs.outs[l - 1][..]),
                    reversed: dir == 1,
                    time_major: tm,
                    in_w,
                    h0: &tape.h0,
                    h_seq,
                    h_ld,
                    r,
                };
                let rows = in_w + r + 1;
                let at = &mut bb.at[..rows * total];
                let dz = &bb.dz[..total * gw];
                let mut prepare = || {
                    at.par_chunks_mut(AT_ROWS * total)
                        .enumerate()
                        .for_each(|(i, chunk)| operand.fill(i * AT_ROWS, chunk));
                };
                match self.pool() {
                    Some(pool) => pool.install(prepare),
                    None => prepare(),
                };
                // dZ as panels, written by the time loop's kernel next to `dz`.
                let b = Panels::packed(&bb.dz_panels[..total * gw], total, d.u4);
                self.panel_gemm(rows, at, total, b, &bb.zeros, &mut bb.dw, gw);
                // dX = dZ W_x^T.
                let w_x_t = Panels::packed(&cell.w_x_t, gw, d.u4);
                self.panel_gemm(total, dz, gw, w_x_t, &bb.zeros, &mut bb.dx, d.inq);
                if dir == 0 {
                    for (row, dx) in bb.d_in[..total * in_w]
                        .chunks_exact_mut(in_w)
                        .zip(bb.dx.chunks_exact(d.inq))
                    {
                        row.iter_mut().zip(dx).for_each(|(a, &v)| *a += v);
                    }
                } else {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let to = sched.reversed_row(j, s) * in_w;
                            let from = sched.row(j, s) * d.inq;
                            bb.d_in[to..to + in_w]
                                .iter_mut()
                                .zip(&bb.dx[from..from + in_w])
                                .for_each(|(a, &v)| *a += v);
                        }
                    }
                }

                let (gwx, gwh, gb, gpeep, gproj) = grads.weights.cell_parts_mut(k);
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
                    self.sgemm_op(
                        (h, r, total),
                        Operand::t(&tape.m, d.hp),
                        Operand::n(&bb.dhp, d.rq),
                        gp,
                        r,
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

    /// One thread's `part` of one direction's backward time loop (see the module doc).
    #[allow(clippy::too_many_arguments)] // the loop's shared state and this thread's part
    fn bptt_thread(
        &self,
        cell: &PackedCell,
        tape: &CellTape,
        d: Dims,
        sched: &Schedule,
        p: LoopPtrs,
        final_grad: Option<&CellState>,
        barrier: &SpinBarrier,
        part: Part,
    ) {
        let spec = self.weights().spec();
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
                        self.kernels().gemm_tiles_raw(&raw);
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
                self.kernels().backward_tiles_raw(&raw);
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
                self.kernels().gemm_tiles_raw(&raw);
            }
        }
    }
}

//! Matrix products on the step kernel's epilogue-free GEMM
//! ([`Kernels::gemm_tiles_raw`](lstm_kernels_simd::Kernels::gemm_tiles_raw)), split
//! between a context's threads.
//!
//! The forward's input projections and every product of the backward run here: the
//! kernel reaches 70-85% of the FMA peak at the small `M` of a time step, and each
//! output element is one fma chain over `k` in order, so a result does not depend on how
//! rows and column panels are split between threads (bitwise identical for any count).

use lstm_kernels_simd::GemmRaw;

use super::context::{ExecContext, SendPtr};
use super::partition::split;
use super::plan::{gemm_by_tiles, ROWS_PER_CALL};

/// The B operand: `tiles` panels of `4U` columns, panel `p` at `p * panel`, its row `kk`
/// at `p * panel + kk * ld`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Panels<'a> {
    data: &'a [f32],
    k: usize,
    ld: usize,
    panel: usize,
    tiles: usize,
}

impl<'a> Panels<'a> {
    /// Contiguous panels `[tiles][k][4U]` (`pack_gate_panels`, `pack_panels`), `u4 = 4U`.
    pub fn packed(data: &'a [f32], k: usize, u4: usize) -> Self {
        let tiles = if k == 0 { 0 } else { data.len() / (k * u4) };
        Panels {
            data,
            k,
            ld: u4,
            panel: k * u4,
            tiles,
        }
    }

    /// Panics unless every panel row lies inside `data` (an internal bug otherwise).
    fn check(&self, u4: usize) {
        if self.tiles > 0 && self.k > 0 {
            let end = (self.tiles - 1) * self.panel + (self.k - 1) * self.ld + u4;
            assert!(self.data.len() >= end, "panel operand too small");
        }
    }
}

/// Kernel arguments of a GEMM: `out[r] = init + a[r] · B` (see [`panel_gemm`]).
#[allow(clippy::too_many_arguments)] // the operands of one product
pub(crate) fn gemm_raw(
    rows: usize,
    a: *const f32,
    lda: usize,
    b: &Panels<'_>,
    init: *const f32,
    out: *mut f32,
    ldo: usize,
    tiles: std::ops::Range<usize>,
) -> GemmRaw {
    GemmRaw {
        rows,
        k: b.k,
        a,
        lda,
        w: b.data.as_ptr(),
        ld_w: b.ld,
        w_panel: b.panel,
        init,
        ld_init: 0,
        out,
        ld_out: ldo,
        tiles,
    }
}

/// `out[r, ..tiles*4U] = init + a[r, ..k] · B` for `rows` rows (row strides `lda`,
/// `ldo`); `init` is one row of `tiles*4U` (a bias, or zeros).
///
/// The threads split the column panels (each reads only its own) or the rows, as
/// [`gemm_by_tiles`] decides; rows go through the kernel in runs of
/// [`ROWS_PER_CALL`], each of which streams `a` past one panel at a time.
///
/// # Panics
/// When an operand is too small for the shapes (an internal bug).
#[allow(clippy::too_many_arguments)] // the operands of one product
pub(crate) fn panel_gemm(
    ctx: &ExecContext,
    rows: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    init: &[f32],
    out: &mut [f32],
    ldo: usize,
) {
    let u4 = 4 * ctx.kernels.unit_tile();
    let (nt, k) = (b.tiles, b.k);
    if rows == 0 || nt == 0 {
        return;
    }
    b.check(u4);
    assert!(
        lda >= k && a.len() >= (rows - 1) * lda + k,
        "gemm: a too small"
    );
    assert!(init.len() >= nt * u4, "gemm: init too small");
    assert!(
        ldo >= nt * u4 && out.len() >= (rows - 1) * ldo + nt * u4,
        "gemm: out too small"
    );
    let threads = ctx.threads;
    let by_tiles = gemm_by_tiles(rows, nt, threads);
    let (ap, op) = (SendPtr(a.as_ptr().cast_mut()), SendPtr(out.as_mut_ptr()));
    let body = |tid: usize| {
        let ((t_lo, t_hi), (r_lo, r_hi)) = if by_tiles {
            (split(nt, threads, tid), (0, rows))
        } else {
            ((0, nt), split(rows, threads, tid))
        };
        let mut r0 = r_lo;
        while r0 < r_hi {
            let n = ROWS_PER_CALL.min(r_hi - r0);
            let raw = gemm_raw(
                n,
                ap.get().wrapping_add(r0 * lda).cast_const(),
                lda,
                &b,
                init.as_ptr(),
                op.get().wrapping_add(r0 * ldo),
                ldo,
                t_lo..t_hi,
            );
            // SAFETY: rows r0..r0 + n of `a` and `out` and every panel row lie inside
            // their slices (checked above); this thread writes only its own rows or
            // its own panels' columns of `out`, which nothing reads before the
            // broadcast ends; `out` is a `&mut` distinct from every input.
            unsafe { ctx.kernels.gemm_tiles_raw(&raw) };
            r0 += n;
        }
    };
    ctx.broadcast(body);
}

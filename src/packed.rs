//! Weights repacked once, at load time, into the order the SIMD kernels read.

use lstm_kernels_simd::{
    pack_gate_columns, pack_gate_columns_into, pack_peepholes, pack_recurrent_into, Kernels,
};

use crate::spec::LstmSpec;
use crate::weights::LstmWeights;

/// One cell (layer, direction) in kernel order for one tile width `U`.
#[derive(Debug, Clone)]
pub(crate) struct PackedCell {
    /// Hidden units `H`.
    pub hidden: usize,
    /// `H` rounded up to whole tiles: the row stride of `c` and `m`.
    pub padded: usize,
    /// Recurrent width `R` (`P` or `H`).
    pub recurrent: usize,
    /// Input width.
    pub input: usize,
    /// `W_x` as panels (like `w_h`): the input projection runs on the step kernel's
    /// epilogue-free GEMM, from weights packed once.
    pub w_x_panels: Vec<f32>,
    /// `[tiles*4U]`.
    pub bias: Vec<f32>,
    /// Panels of `W_h` (see `lstm_kernels_simd::pack_recurrent`).
    pub w_h: Vec<f32>,
    /// Backward's transposed weights as panels of `4U` columns for the same GEMM kernel
    /// (see [`pack_transposed_panels`]): `W_h^T` (`k = tiles*4U` gate columns, `R`
    /// columns) for `dh = dz W_h^T`, `W_x^T` (`in` columns) for `dX = dZ W_x^T`, and the
    /// projection's transpose (`k = P`, `H` columns) for `dm = dh P^T`.
    pub w_h_t: Vec<f32>,
    pub w_x_t: Vec<f32>,
    pub proj_t: Option<Vec<f32>>,
    /// `tiles*3U` when the spec has peepholes.
    pub peepholes: Option<Vec<f32>>,
    /// `[H, P]` when the layer projects.
    pub projection: Option<Vec<f32>>,
}

impl PackedCell {
    /// Width of the gate rows of `zx`: `tiles * 4U`.
    pub fn gate_width(&self) -> usize {
        4 * self.padded
    }
}

/// Which column of a canonical gate-blocked `[.., 4h]` matrix holds column `kk` of the
/// tile order (`None` for padding units).
fn tile_column(kk: usize, h: usize, u: usize) -> Option<usize> {
    let (t, g, x) = (kk / (4 * u), (kk % (4 * u)) / u, kk % u);
    (t * u + x < h).then_some(g * h + t * u + x)
}

/// Length of [`pack_transposed_panels`]' output.
fn transposed_panels_len(n: usize, k: usize, width: usize) -> usize {
    n.div_ceil(width) * k * width
}

/// Packs the transpose of a row-major `[n, cols]` matrix `m` into panels of `width`
/// columns for the kernels' GEMM: `k` panel rows, row `kk` of panel `p` holds
/// `m[p*width + j, col_of(kk)]` (zero when `col_of` gives `None` or past `n`). Written
/// in place, so an optimiser step repacks without allocating.
fn pack_transposed_panels(
    m: &[f32],
    n: usize,
    cols: usize,
    k: usize,
    width: usize,
    col_of: impl Fn(usize) -> Option<usize>,
    out: &mut [f32],
) {
    debug_assert_eq!(m.len(), n * cols);
    debug_assert_eq!(out.len(), transposed_panels_len(n, k, width));
    for p in 0..n.div_ceil(width) {
        for kk in 0..k {
            let dst = &mut out[(p * k + kk) * width..(p * k + kk + 1) * width];
            match col_of(kk) {
                Some(col) => {
                    for (j, d) in dst.iter_mut().enumerate() {
                        let row = p * width + j;
                        *d = if row < n { m[row * cols + col] } else { 0.0 };
                    }
                }
                None => dst.fill(0.0),
            }
        }
    }
}

pub(crate) fn pack_all(
    spec: &LstmSpec,
    weights: &LstmWeights,
    kernels: &Kernels,
) -> Vec<PackedCell> {
    let u = kernels.unit_tile();
    let mut cells: Vec<PackedCell> = (0..spec.num_cells())
        .map(|k| {
            let l = spec.cell_layer(k);
            let layer = spec.layers()[l];
            let (h, r, input) = (
                layer.hidden_size,
                layer.output_size(),
                spec.layer_input_size(l),
            );
            let w = weights.cell(k);
            let padded = kernels.padded(h);
            PackedCell {
                hidden: h,
                padded,
                recurrent: r,
                input,
                w_x_panels: kernels.pack_recurrent(w.input_weights(), input, h),
                bias: pack_gate_columns(w.bias(), 1, h, u),
                w_h: kernels.pack_recurrent(w.recurrent_weights(), r, h),
                w_h_t: vec![0.0; transposed_panels_len(r, 4 * padded, 4 * u)],
                w_x_t: vec![0.0; transposed_panels_len(input, 4 * padded, 4 * u)],
                proj_t: w
                    .projection()
                    .map(|_| vec![0.0; transposed_panels_len(h, r, 4 * u)]),
                peepholes: w
                    .peepholes()
                    .map(|[wi, wf, wo]| pack_peepholes(wi, wf, wo, h, u)),
                projection: w.projection().map(<[f32]>::to_vec),
            }
        })
        .collect();
    repack_transposed(&mut cells, weights, kernels);
    cells
}

/// Repacks changed weights into the existing buffers, without allocating the big ones.
pub(crate) fn repack_into(cells: &mut [PackedCell], weights: &LstmWeights, kernels: &Kernels) {
    let u = kernels.unit_tile();
    for (k, p) in cells.iter_mut().enumerate() {
        let w = weights.cell(k);
        let (h, r, input) = (p.hidden, p.recurrent, p.input);
        pack_recurrent_into(w.input_weights(), input, h, u, &mut p.w_x_panels);
        pack_gate_columns_into(w.bias(), 1, h, u, &mut p.bias);
        pack_recurrent_into(w.recurrent_weights(), r, h, u, &mut p.w_h);
        if let (Some(dst), Some([wi, wf, wo])) = (p.peepholes.as_mut(), w.peepholes()) {
            dst.copy_from_slice(&pack_peepholes(wi, wf, wo, h, u));
        }
        if let (Some(dst), Some(src)) = (p.projection.as_mut(), w.projection()) {
            dst.copy_from_slice(src);
        }
    }
    repack_transposed(cells, weights, kernels);
}

/// The backward's transposed panels of every cell, from `weights`.
fn repack_transposed(cells: &mut [PackedCell], weights: &LstmWeights, kernels: &Kernels) {
    let u = kernels.unit_tile();
    for (k, p) in cells.iter_mut().enumerate() {
        let w = weights.cell(k);
        let (h, r, input, gw) = (p.hidden, p.recurrent, p.input, p.gate_width());
        let gate_col = |kk| tile_column(kk, h, u);
        let wh = w.recurrent_weights();
        pack_transposed_panels(wh, r, 4 * h, gw, 4 * u, gate_col, &mut p.w_h_t);
        let wx = w.input_weights();
        pack_transposed_panels(wx, input, 4 * h, gw, 4 * u, gate_col, &mut p.w_x_t);
        if let (Some(dst), Some(proj)) = (p.proj_t.as_mut(), w.projection()) {
            pack_transposed_panels(proj, h, r, r, 4 * u, Some, dst);
        }
    }
}

/// The inverse of `pack_gate_columns` into a caller's buffer: `[rows, tiles*4U]` in tile
/// order to the canonical `[rows, 4H]`, gate blocks i, j, f, o.
pub(crate) fn unpack_gate_columns_into(
    src: &[f32],
    rows: usize,
    h: usize,
    u: usize,
    out: &mut [f32],
) {
    let gw = h.div_ceil(u) * 4 * u;
    for (s, o) in src.chunks(gw).zip(out.chunks_exact_mut(4 * h)).take(rows) {
        for (t, tile) in s.chunks_exact(4 * u).enumerate() {
            let n = u.min(h - t * u);
            for g in 0..4 {
                o[g * h + t * u..g * h + t * u + n].copy_from_slice(&tile[g * u..g * u + n]);
            }
        }
    }
}

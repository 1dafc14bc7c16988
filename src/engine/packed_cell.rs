//! Weights repacked once, at load time, into the order the SIMD kernels read.

use lstm_kernels_simd::{
    pack_gate_columns, pack_gate_columns_into, pack_gate_panels_into, pack_panels_into,
    pack_peepholes, packed_gate_panels_len, packed_panels_len, Kernels,
};

use rayon::ThreadPool;

use super::aligned::AlignedVec;
use crate::model::error::Result;
use crate::model::spec::LstmSpec;
use crate::model::weights::LstmWeights;

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
    pub w_x_panels: AlignedVec,
    /// `[tiles*4U]`.
    pub bias: Vec<f32>,
    /// Panels of `W_h` (see `lstm_kernels_simd::pack_gate_panels`).
    pub w_h: AlignedVec,
    /// Backward's transposed weights as panels of `4U` columns for the same GEMM kernel
    /// (see [`pack_transposed_panels`]): `W_h^T` (`k = tiles*4U` gate columns, `R`
    /// columns) for `dh = dz W_h^T`, `W_x^T` (`in` columns) for `dX = dZ W_x^T`, and the
    /// projection's transpose (`k = P`, `H` columns) for `dm = dh P^T`.
    pub w_h_t: AlignedVec,
    pub w_x_t: AlignedVec,
    pub proj_t: Option<AlignedVec>,
    /// `tiles*3U` when the spec has peepholes.
    pub peepholes: Option<Vec<f32>>,
    /// The projection `[H, P]` as panels of `4U` columns (`[ptiles][H][4U]`, zero past
    /// `P`) when the layer projects: `h = m P` runs on the GEMM kernel, each element one
    /// fma chain over `H` in order, so its bits do not depend on the ISA or the split.
    pub projection: Option<AlignedVec>,
    /// Zeros, `[ptiles*4U]`: the row the projection's sums start from.
    pub proj_init: Vec<f32>,
}

impl PackedCell {
    /// Width of the gate rows of `zx`: `tiles * 4U`.
    pub fn gate_width(&self) -> usize {
        4 * self.padded
    }

    /// Width of a projected row before its padding is cut: `ptiles * 4U` (0 without a
    /// projection).
    pub fn proj_width(&self) -> usize {
        self.proj_init.len()
    }
}

/// Length of [`pack_transposed_panels`]' output.
fn transposed_panels_len(n: usize, k: usize, width: usize) -> usize {
    n.div_ceil(width) * k * width
}

/// Packs the transpose of a row-major `[n, cols]` matrix `m` into panels of `width`
/// columns for the kernels' GEMM: `k` panel rows; row `kk` of panel `p` holds
/// `m[p*width + j, col(kk)]`, zero past `n`. With `gates = Some((h, u))` the panel rows are
/// the tile order of `m`'s gate-blocked columns (`k = tiles*4U`; padding units zero):
/// tile `t`, gate `g`, unit `x` is `col = g*h + t*u + x`; otherwise `col(kk) = kk`.
/// Written in place, so an optimiser step repacks without allocating; the panels are
/// shared out between `pool`'s threads.
#[allow(clippy::too_many_arguments)] // the matrix, its layout, the destination
fn pack_transposed_panels(
    m: &[f32],
    n: usize,
    cols: usize,
    k: usize,
    width: usize,
    gates: Option<(usize, usize)>,
    out: &mut [f32],
    pool: Option<&ThreadPool>,
) {
    debug_assert_eq!(m.len(), n * cols);
    debug_assert_eq!(out.len(), transposed_panels_len(n, k, width));
    // One source row at a time: contiguous runs of it land in column `j` of the panel.
    let pack = |(p, panel): (usize, &mut [f32])| {
        for j in 0..width {
            let row = p * width + j;
            if row >= n {
                (0..k).for_each(|kk| panel[kk * width + j] = 0.0);
                continue;
            }
            let src = &m[row * cols..(row + 1) * cols];
            match gates {
                None => {
                    for (kk, &v) in src[..k].iter().enumerate() {
                        panel[kk * width + j] = v;
                    }
                }
                Some((h, u)) => {
                    for kk0 in (0..k).step_by(u) {
                        let (t, g) = (kk0 / (4 * u), (kk0 % (4 * u)) / u);
                        let n_real = u.min(h.saturating_sub(t * u));
                        let run = &src[g * h + t * u..g * h + t * u + n_real];
                        for x in 0..u {
                            let v = if x < n_real { run[x] } else { 0.0 };
                            panel[(kk0 + x) * width + j] = v;
                        }
                    }
                }
            }
        }
    };
    let panels = n.div_ceil(width);
    let out = &mut out[..panels * k * width];
    match pool {
        Some(pool) => {
            use rayon::prelude::*;
            pool.install(|| out.par_chunks_mut(k * width).enumerate().for_each(pack));
        }
        None => out.chunks_mut(k * width).enumerate().for_each(pack),
    }
}

/// Packs every cell (the transposed panels split between `pool`'s threads).
///
/// # Errors
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when the packed copies (about three
/// times the weights: panels for the forward, transposed panels for the backward) cannot
/// be allocated.
pub(crate) fn pack_all(
    spec: &LstmSpec,
    weights: &LstmWeights,
    kernels: &Kernels,
    pool: Option<&ThreadPool>,
) -> Result<Vec<PackedCell>> {
    let u = kernels.unit_tile();
    let mut cells = (0..spec.num_cells())
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
            // `[k, 4H]` weights as the kernels' panels, straight into an aligned buffer.
            let packed = |m: &[f32], k: usize, name: &str| -> Result<AlignedVec> {
                let mut v = AlignedVec::zeroed(packed_gate_panels_len(k, h, u), name)?;
                pack_gate_panels_into(m, k, h, u, &mut v);
                Ok(v)
            };
            Ok(PackedCell {
                hidden: h,
                padded,
                recurrent: r,
                input,
                w_x_panels: packed(w.input_weights(), input, "packed/w_x")?,
                bias: pack_gate_columns(w.bias(), 1, h, u),
                w_h: packed(w.recurrent_weights(), r, "packed/w_h")?,
                w_h_t: AlignedVec::zeroed(
                    transposed_panels_len(r, 4 * padded, 4 * u),
                    "packed/w_h_t",
                )?,
                w_x_t: AlignedVec::zeroed(
                    transposed_panels_len(input, 4 * padded, 4 * u),
                    "packed/w_x_t",
                )?,
                proj_t: w
                    .projection()
                    .map(|_| {
                        AlignedVec::zeroed(transposed_panels_len(h, r, 4 * u), "packed/proj_t")
                    })
                    .transpose()?,
                peepholes: w
                    .peepholes()
                    .map(|[wi, wf, wo]| pack_peepholes(wi, wf, wo, h, u)),
                projection: w
                    .projection()
                    .map(|proj| {
                        let mut v = AlignedVec::zeroed(
                            packed_panels_len(h, r, 4 * u),
                            "packed/projection",
                        )?;
                        pack_panels_into(proj, h, r, r, 4 * u, &mut v);
                        Ok(v)
                    })
                    .transpose()?,
                proj_init: if w.projection().is_some() {
                    vec![0.0; r.div_ceil(4 * u) * 4 * u]
                } else {
                    Vec::new()
                },
            })
        })
        .collect::<Result<Vec<PackedCell>>>()?;
    repack_transposed(&mut cells, weights, kernels, pool);
    Ok(cells)
}

/// Repacks changed weights into the existing buffers, without allocating the big ones.
pub(crate) fn repack_into(
    cells: &mut [PackedCell],
    weights: &LstmWeights,
    kernels: &Kernels,
    pool: Option<&ThreadPool>,
) {
    let u = kernels.unit_tile();
    for (k, p) in cells.iter_mut().enumerate() {
        let w = weights.cell(k);
        let (h, r, input) = (p.hidden, p.recurrent, p.input);
        pack_gate_panels_into(w.input_weights(), input, h, u, &mut p.w_x_panels);
        pack_gate_columns_into(w.bias(), 1, h, u, &mut p.bias);
        pack_gate_panels_into(w.recurrent_weights(), r, h, u, &mut p.w_h);
        if let (Some(dst), Some([wi, wf, wo])) = (p.peepholes.as_mut(), w.peepholes()) {
            dst.copy_from_slice(&pack_peepholes(wi, wf, wo, h, u));
        }
        if let (Some(dst), Some(src)) = (p.projection.as_mut(), w.projection()) {
            pack_panels_into(src, h, r, r, 4 * u, dst);
        }
    }
    repack_transposed(cells, weights, kernels, pool);
}

/// The backward's transposed panels of every cell, from `weights`.
fn repack_transposed(
    cells: &mut [PackedCell],
    weights: &LstmWeights,
    kernels: &Kernels,
    pool: Option<&ThreadPool>,
) {
    let u = kernels.unit_tile();
    for (k, p) in cells.iter_mut().enumerate() {
        let w = weights.cell(k);
        let (h, r, input, gw) = (p.hidden, p.recurrent, p.input, p.gate_width());
        let wh = w.recurrent_weights();
        let gates = Some((h, u));
        pack_transposed_panels(wh, r, 4 * h, gw, 4 * u, gates, &mut p.w_h_t, pool);
        let wx = w.input_weights();
        pack_transposed_panels(wx, input, 4 * h, gw, 4 * u, gates, &mut p.w_x_t, pool);
        if let (Some(dst), Some(proj)) = (p.proj_t.as_mut(), w.projection()) {
            pack_transposed_panels(proj, h, r, r, 4 * u, None, dst, pool);
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

//! Weights repacked once, at load time, into the order the SIMD kernels read.

use lstm_kernels_simd::{
    pack_gate_columns, pack_gate_columns_into, pack_peepholes, pack_recurrent_into, Kernels,
};

use crate::spec::LstmSpec;
use crate::weights::{transpose, LstmWeights};

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
    /// `[in, tiles*4U]`: the input projection's sgemm writes `zx` in tile order.
    pub w_x: Vec<f32>,
    /// `W_x` as panels (like `w_h`): the input projection runs on the step kernel's
    /// epilogue-free GEMM, from weights packed once.
    pub w_x_panels: Vec<f32>,
    /// `[tiles*4U]`.
    pub bias: Vec<f32>,
    /// Panels of `W_h` (see `lstm_kernels_simd::pack_recurrent`).
    pub w_h: Vec<f32>,
    /// Backward's transposed weights, stored so its products need no transposed operand
    /// (the `gemm` crate is slow with a transposed `B` and a small `M`):
    /// `W_h^T` `[tiles*4U, R]` for `dh = dz W_h^T`, `W_x^T` `[tiles*4U, in]` for
    /// `dX = dZ W_x^T`, and the projection's `[P, H]` for `dm = dh P^T`.
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

pub(crate) fn pack_all(
    spec: &LstmSpec,
    weights: &LstmWeights,
    kernels: &Kernels,
) -> Vec<PackedCell> {
    let u = kernels.unit_tile();
    (0..spec.num_cells())
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
                w_x: pack_gate_columns(w.input_weights(), input, h, u),
                w_x_panels: kernels.pack_recurrent(w.input_weights(), input, h),
                bias: pack_gate_columns(w.bias(), 1, h, u),
                w_h: kernels.pack_recurrent(w.recurrent_weights(), r, h),
                w_h_t: transpose(
                    &pack_gate_columns(w.recurrent_weights(), r, h, u),
                    r,
                    4 * padded,
                ),
                w_x_t: transpose(
                    &pack_gate_columns(w.input_weights(), input, h, u),
                    input,
                    4 * padded,
                ),
                proj_t: w.projection().map(|p| transpose(p, h, r)),
                peepholes: w
                    .peepholes()
                    .map(|[wi, wf, wo]| pack_peepholes(wi, wf, wo, h, u)),
                projection: w.projection().map(<[f32]>::to_vec),
            }
        })
        .collect()
}

/// Repacks changed weights into the existing buffers, without allocating the big ones.
pub(crate) fn repack_into(cells: &mut [PackedCell], weights: &LstmWeights, kernels: &Kernels) {
    let u = kernels.unit_tile();
    for (k, p) in cells.iter_mut().enumerate() {
        let w = weights.cell(k);
        let (h, r, input) = (p.hidden, p.recurrent, p.input);
        pack_gate_columns_into(w.input_weights(), input, h, u, &mut p.w_x);
        pack_recurrent_into(w.input_weights(), input, h, u, &mut p.w_x_panels);
        pack_gate_columns_into(w.bias(), 1, h, u, &mut p.bias);
        pack_recurrent_into(w.recurrent_weights(), r, h, u, &mut p.w_h);
        transpose_into(
            &pack_gate_columns(w.recurrent_weights(), r, h, u),
            r,
            &mut p.w_h_t,
        );
        transpose_into(&p.w_x, input, &mut p.w_x_t);
        if let (Some(dst), Some(src)) = (p.proj_t.as_mut(), w.projection()) {
            transpose_into(src, h, dst);
        }
        if let (Some(dst), Some([wi, wf, wo])) = (p.peepholes.as_mut(), w.peepholes()) {
            dst.copy_from_slice(&pack_peepholes(wi, wf, wo, h, u));
        }
        if let (Some(dst), Some(src)) = (p.projection.as_mut(), w.projection()) {
            dst.copy_from_slice(src);
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
    for r in 0..rows {
        for g in 0..4 {
            for unit in 0..h {
                let (t, x) = (unit / u, unit % u);
                out[r * 4 * h + g * h + unit] = src[r * gw + t * 4 * u + g * u + x];
            }
        }
    }
}

fn transpose_into(m: &[f32], rows: usize, out: &mut [f32]) {
    let cols = m.len() / rows;
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
}

//! Packing of weights and gate columns into the kernels' tile order.
//!
//! Canonical layouts (the crate's weights): gate-blocked columns `i, j, f,
//! o`, each block `H` wide. Tile order: hidden units in tiles of `U`; tile
//! `t` holds units `tU..tU+U` as four consecutive `U`-wide gate groups
//! `i, j, f, o`; units past `H` in the last tile are zero.

/// Number of tiles of `u` units covering `h` units.
pub fn tiles(h: usize, u: usize) -> usize {
    assert!(u > 0, "unit tile must be positive");
    h.div_ceil(u)
}

/// `h` rounded up to whole tiles of `u`: the row stride of `c` and `h_out`.
pub fn padded(h: usize, u: usize) -> usize {
    tiles(h, u) * u
}

/// Length of [`pack_gate_panels`]'s output.
pub fn packed_gate_panels_len(k: usize, h: usize, u: usize) -> usize {
    tiles(h, u) * k * 4 * u
}

/// Packs a canonical row-major `[k, 4h]` gate-blocked matrix (`W_h`, or
/// `W_x` for the input projection) into panels:
/// tile `t` is a contiguous `[k, 4u]` panel whose row `kk` holds
/// `i[tu..tu+u], j[..], f[..], o[..]` of row `kk`, zero-padded past `h`.
pub fn pack_gate_panels(w_h: &[f32], k: usize, h: usize, u: usize) -> Vec<f32> {
    let mut out = vec![0.0; packed_gate_panels_len(k, h, u)];
    pack_gate_panels_into(w_h, k, h, u, &mut out);
    out
}

/// [`pack_gate_panels`] into a caller's buffer (e.g. one aligned to 64 bytes,
/// which the wide loads of the step kernel prefer). Every element of `out`
/// is written.
pub fn pack_gate_panels_into(w_h: &[f32], k: usize, h: usize, u: usize, out: &mut [f32]) {
    assert_eq!(w_h.len(), k * 4 * h, "w_h must be [k, 4h]");
    assert_eq!(out.len(), packed_gate_panels_len(k, h, u), "packed length");
    let nt = tiles(h, u);
    for t in 0..nt {
        let panel = &mut out[t * k * 4 * u..(t + 1) * k * 4 * u];
        for kk in 0..k {
            let src = &w_h[kk * 4 * h..(kk + 1) * 4 * h];
            let dst = &mut panel[kk * 4 * u..(kk + 1) * 4 * u];
            copy_tile_row(src, dst, h, u, t);
        }
    }
}

/// Inverse of [`pack_gate_panels`] (padding dropped).
pub fn unpack_gate_panels(packed: &[f32], k: usize, h: usize, u: usize) -> Vec<f32> {
    assert_eq!(
        packed.len(),
        packed_gate_panels_len(k, h, u),
        "packed length"
    );
    let mut out = vec![0.0; k * 4 * h];
    for t in 0..tiles(h, u) {
        for kk in 0..k {
            let src = &packed[(t * k + kk) * 4 * u..(t * k + kk + 1) * 4 * u];
            let dst = &mut out[kk * 4 * h..(kk + 1) * 4 * h];
            for g in 0..4 {
                for x in 0..u {
                    let unit = t * u + x;
                    if unit < h {
                        dst[g * h + unit] = src[g * u + x];
                    }
                }
            }
        }
    }
    out
}

/// Length of [`pack_panels`]'s output.
pub fn packed_panels_len(k: usize, n: usize, width: usize) -> usize {
    n.div_ceil(width) * k * width
}

/// Packs a row-major `[k, n]` matrix (row stride `ld`) into panels of
/// `width` columns, the B operand of [`crate::Kernels::gemm_tiles_raw`]
/// with `width = 4U`: panel `p` is a contiguous `[k, width]` block holding
/// columns `p*width..`, zero past `n`.
pub fn pack_panels(src: &[f32], k: usize, n: usize, ld: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; packed_panels_len(k, n, width)];
    pack_panels_into(src, k, n, ld, width, &mut out);
    out
}

/// [`pack_panels`] into a caller's buffer; every element is written.
pub fn pack_panels_into(src: &[f32], k: usize, n: usize, ld: usize, width: usize, out: &mut [f32]) {
    assert!(
        width > 0 && ld >= n,
        "panel width must be positive, ld >= n"
    );
    assert!(
        k == 0 || src.len() >= (k - 1) * ld + n,
        "src must be [k, n] with row stride ld"
    );
    assert_eq!(out.len(), packed_panels_len(k, n, width), "packed length");
    for p in 0..n.div_ceil(width) {
        let (lo, cols) = (p * width, width.min(n - p * width));
        for kk in 0..k {
            let dst = &mut out[(p * k + kk) * width..(p * k + kk + 1) * width];
            dst[..cols].copy_from_slice(&src[kk * ld + lo..kk * ld + lo + cols]);
            dst[cols..].fill(0.0);
        }
    }
}

/// Writes one canonical row (`4h`, gate-blocked) as tile `t`'s `4u` slice.
fn copy_tile_row(src: &[f32], dst: &mut [f32], h: usize, u: usize, t: usize) {
    let lo = t * u;
    let n = u.min(h - lo);
    for g in 0..4 {
        dst[g * u..g * u + n].copy_from_slice(&src[g * h + lo..g * h + lo + n]);
        dst[g * u + n..(g + 1) * u].fill(0.0);
    }
}

/// Repacks the columns of a row-major `[rows, 4h]` gate-blocked matrix (a
/// bias when `rows == 1`, `W_x` with `rows = I`, or gate sums) into tile
/// order `[rows, tiles*4u]`, zero-padded. With `W_x` and the bias packed
/// this way, the caller's input-projection sgemm writes `zx` directly in the
/// order the step kernel reads.
pub fn pack_gate_columns(src: &[f32], rows: usize, h: usize, u: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * tiles(h, u) * 4 * u];
    pack_gate_columns_into(src, rows, h, u, &mut out);
    out
}

/// [`pack_gate_columns`] into a caller's buffer; every element is written.
pub fn pack_gate_columns_into(src: &[f32], rows: usize, h: usize, u: usize, out: &mut [f32]) {
    assert_eq!(src.len(), rows * 4 * h, "src must be [rows, 4h]");
    let w = tiles(h, u) * 4 * u;
    assert_eq!(out.len(), rows * w, "out must be [rows, tiles*4u]");
    for r in 0..rows {
        let s = &src[r * 4 * h..(r + 1) * 4 * h];
        for t in 0..tiles(h, u) {
            copy_tile_row(
                s,
                &mut out[r * w + t * 4 * u..r * w + (t + 1) * 4 * u],
                h,
                u,
                t,
            );
        }
    }
}

/// Inverse of [`pack_gate_columns`]: `[rows, tiles*4u]` to `[rows, 4h]`.
pub fn unpack_gate_columns(packed: &[f32], rows: usize, h: usize, u: usize) -> Vec<f32> {
    let w = tiles(h, u) * 4 * u;
    assert_eq!(packed.len(), rows * w, "packed must be [rows, tiles*4u]");
    let mut out = vec![0.0; rows * 4 * h];
    for r in 0..rows {
        for g in 0..4 {
            for unit in 0..h {
                let (t, x) = (unit / u, unit % u);
                out[r * 4 * h + g * h + unit] = packed[r * w + t * 4 * u + g * u + x];
            }
        }
    }
    out
}

/// Packs the peephole vectors (`w_i`, `w_f`, `w_o`, each `h`) per tile:
/// tile `t` holds `i[tu..tu+u], f[..], o[..]` (`tiles * 3u`, zero-padded).
pub fn pack_peepholes(w_i: &[f32], w_f: &[f32], w_o: &[f32], h: usize, u: usize) -> Vec<f32> {
    for (name, v) in [("w_i", w_i), ("w_f", w_f), ("w_o", w_o)] {
        assert_eq!(v.len(), h, "{name} must have h elements");
    }
    let mut out = vec![0.0; tiles(h, u) * 3 * u];
    for t in 0..tiles(h, u) {
        let lo = t * u;
        let n = u.min(h - lo);
        for (g, v) in [w_i, w_f, w_o].into_iter().enumerate() {
            let o = t * 3 * u + g * u;
            out[o..o + n].copy_from_slice(&v[lo..lo + n]);
        }
    }
    out
}

/// Inverse of [`pack_peepholes`]: returns `(w_i, w_f, w_o)`; also how the
/// peephole gradients of [`crate::Kernels::backward_tiles`] come back to
/// the canonical order.
pub fn unpack_peepholes(packed: &[f32], h: usize, u: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(packed.len(), tiles(h, u) * 3 * u, "packed must be tiles*3u");
    let get = |g: usize| -> Vec<f32> {
        (0..h)
            .map(|unit| packed[(unit / u) * 3 * u + g * u + unit % u])
            .collect()
    };
    (get(0), get(1), get(2))
}

/// Copies a `[rows, h]` matrix into the padded `[rows, tiles*u]` layout of
/// `c` and `h_out` (padding zero).
pub fn pad_units(src: &[f32], rows: usize, h: usize, u: usize) -> Vec<f32> {
    assert_eq!(src.len(), rows * h, "src must be [rows, h]");
    let p = padded(h, u);
    let mut out = vec![0.0; rows * p];
    for r in 0..rows {
        out[r * p..r * p + h].copy_from_slice(&src[r * h..(r + 1) * h]);
    }
    out
}

/// Inverse of [`pad_units`].
pub fn unpad_units(src: &[f32], rows: usize, h: usize, u: usize) -> Vec<f32> {
    let p = padded(h, u);
    assert_eq!(src.len(), rows * p, "src must be [rows, padded(h, u)]");
    let mut out = Vec::with_capacity(rows * h);
    for r in 0..rows {
        out.extend_from_slice(&src[r * p..r * p + h]);
    }
    out
}

//! The epilogue-free step kernel (`gemm_tiles_raw`) on every ISA: against an f64 product,
//! bitwise against scalar, and independent of how rows and tiles are split.

mod common;

use common::all_kernels;
use lstm_kernels_simd::{
    pack_gate_columns, pack_gate_panels, pack_panels, tiles, GemmRaw, Isa, Kernels,
};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// `out = bias + x W` through the kernel, rows and tiles split as `row_chunk`/`tile_split`.
#[allow(clippy::too_many_arguments)] // the shape and the split under test
fn run(
    kern: &Kernels,
    x: &[f32],
    k: usize,
    h: usize,
    w: &[f32],
    bias: &[f32],
    rows: usize,
    row_chunk: usize,
    tile_split: usize,
) -> Vec<f32> {
    let u = kern.unit_tile();
    let nt = tiles(h, u);
    let gw = nt * 4 * u;
    let panels = pack_gate_panels(w, k, h, u);
    let bias_t = pack_gate_columns(bias, 1, h, u);
    let mut out = vec![f32::NAN; rows * gw];
    let mut r0 = 0;
    while r0 < rows {
        let n = row_chunk.min(rows - r0);
        let mut t0 = 0;
        while t0 < nt {
            let t1 = (t0 + tile_split).min(nt);
            let a = GemmRaw {
                rows: n,
                k,
                a: x[r0 * k..].as_ptr(),
                lda: k,
                w: panels.as_ptr(),
                ld_w: 4 * u,
                w_panel: k * 4 * u,
                init: bias_t.as_ptr(),
                ld_init: 0,
                out: out[r0 * gw..].as_mut_ptr(),
                ld_out: gw,
                tiles: t0..t1,
            };
            // SAFETY: x holds rows x k, the panels and the tiled bias cover every tile,
            // out holds rows x gw and is a buffer of its own.
            unsafe { kern.gemm_tiles_raw(&a) };
            t0 = t1;
        }
        r0 += n;
    }
    out
}

#[test]
fn gemm_mode_is_a_product_in_tile_order() {
    let mut seed = 1u64;
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    for &(rows, k, h) in &[
        (1, 1, 1),
        (1, 512, 64),
        (7, 17, 33),
        (25, 100, 16),
        (8, 40, 33),
        (9, 7, 16),
        (16, 64, 40),
        (64, 64, 17),
    ] {
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed)).collect();
        let w: Vec<f32> = (0..k * 4 * h).map(|_| lcg(&mut seed) * 0.1).collect();
        let bias: Vec<f32> = (0..4 * h).map(|_| lcg(&mut seed)).collect();
        let reference = run(&scalar, &x, k, h, &w, &bias, rows, rows, usize::MAX);
        for kern in all_kernels() {
            let isa = kern.isa();
            let u = kern.unit_tile();
            let gw = tiles(h, u) * 4 * u;
            let got = run(&kern, &x, k, h, &w, &bias, rows, rows, usize::MAX);
            for r in 0..rows {
                for g in 0..4 {
                    for unit in 0..h {
                        let col = (unit / u) * 4 * u + g * u + unit % u;
                        let want: f64 = f64::from(bias[g * h + unit])
                            + (0..k)
                                .map(|p| {
                                    f64::from(x[r * k + p]) * f64::from(w[p * 4 * h + g * h + unit])
                                })
                                .sum::<f64>();
                        let v = f64::from(got[r * gw + col]);
                        // An fma chain of k terms of size <= 0.1: k half-ulps of the
                        // running sum (|sum| <= 1 + 0.1 k).
                        let tol =
                            (k as f64 + 1.0) * f64::from(f32::EPSILON) * (1.0 + 0.1 * k as f64);
                        assert!(
                            (v - want).abs() <= tol,
                            "{isa:?} {rows}x{k}x{h} [{r},{g},{unit}]: {v} vs {want}"
                        );
                    }
                }
                // Padding units of the last tile hold the (zero) padding of W and bias.
                for col in 0..gw {
                    let (t, rem) = (col / (4 * u), col % (4 * u));
                    if t * u + rem % u >= h {
                        assert_eq!(got[r * gw + col], 0.0, "{isa:?} padding");
                    }
                }
            }
            if u == scalar.unit_tile() {
                assert!(got == reference, "{isa:?}: differs from scalar");
            }
            // Any split of rows and tiles gives the same bits.
            for (chunk, split) in [(1, 1), (2, 3), (5, 2)] {
                assert!(
                    run(&kern, &x, k, h, &w, &bias, rows, chunk, split) == got,
                    "{isa:?} split {chunk}/{split}"
                );
            }
        }
    }
}

/// `out[m, tiles*4U] = a[m, k] · B` with B either packed by `pack_panels` or read in place
/// from a row-major `[k, n_pad]` matrix (`ld_w` = its stride, `w_panel = 4U`), starting
/// from zeros.
#[allow(clippy::too_many_arguments)] // the operands and their layout
fn panel_product(
    kern: &Kernels,
    a: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    ld_w: usize,
    w_panel: usize,
    nt: usize,
    rows_per_call: usize,
) -> Vec<f32> {
    let u4 = 4 * kern.unit_tile();
    let zeros = vec![0.0f32; nt * u4];
    let mut out = vec![f32::NAN; m * nt * u4];
    let mut r0 = 0;
    while r0 < m {
        let n = rows_per_call.min(m - r0);
        let raw = GemmRaw {
            rows: n,
            k,
            a: a[r0 * k..].as_ptr(),
            lda: k,
            w: w.as_ptr(),
            ld_w,
            w_panel,
            init: zeros.as_ptr(),
            ld_init: 0,
            out: out[r0 * nt * u4..].as_mut_ptr(),
            ld_out: nt * u4,
            tiles: 0..nt,
        };
        // SAFETY: a holds m x k; w holds nt panels of k rows (ld_w, w_panel describe
        // them, checked by the callers' sizes); zeros covers nt * 4U; out holds
        // m x nt*4U and is a buffer of its own.
        unsafe { kern.gemm_tiles_raw(&raw) };
        r0 += n;
    }
    out
}

#[test]
fn gemm_reads_generic_panels_and_row_major_b() {
    let mut seed = 7u64;
    let shapes: [(usize, usize, usize); 4] = [(1, 1, 1), (5, 40, 70), (64, 300, 33), (13, 7, 200)];
    for &(m, k, n) in &shapes {
        let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
        let mut first: Option<(usize, Vec<f32>)> = None;
        for kern in all_kernels() {
            let isa = kern.isa();
            let u4 = 4 * kern.unit_tile();
            let nt = n.div_ceil(u4);
            let packed = pack_panels(&b, k, n, n, u4);
            let got = panel_product(&kern, &a, m, k, &packed, u4, k * u4, nt, m);
            // The same matrix, zero-padded to whole panels and read in place.
            let mut padded = vec![0.0f32; k * nt * u4];
            for kk in 0..k {
                padded[kk * nt * u4..kk * nt * u4 + n].copy_from_slice(&b[kk * n..(kk + 1) * n]);
            }
            let in_place = panel_product(&kern, &a, m, k, &padded, nt * u4, u4, nt, 3);
            assert!(got == in_place, "{isa:?} {m}x{k}x{n}: layouts differ");
            for r in 0..m {
                for c in 0..nt * u4 {
                    let v = got[r * nt * u4 + c];
                    if c >= n {
                        assert_eq!(v, 0.0, "{isa:?} padding column {c}");
                        continue;
                    }
                    let want: f64 = (0..k)
                        .map(|p| f64::from(a[r * k + p]) * f64::from(b[p * n + c]))
                        .sum();
                    // One fma chain of k terms of magnitude <= 1: k half-ulps of a
                    // running sum bounded by k.
                    let tol = k as f64 * k as f64 * f64::from(f32::EPSILON);
                    assert!((f64::from(v) - want).abs() <= tol, "{isa:?} [{r},{c}]");
                }
            }
            // Every ISA with the same panel width returns the same bits.
            match &first {
                Some((w, bits)) if *w == u4 => assert!(*bits == got, "{isa:?} vs first"),
                None => first = Some((u4, got)),
                _ => {}
            }
        }
    }
}

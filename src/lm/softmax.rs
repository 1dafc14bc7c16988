//! The softmax layer and the seed's loss, fused and tiled.
//!
//! The layer's parameters are one matrix `W` of `[H + 1, V]`: `softmax_w` `[H, V]` with
//! `softmax_b` as its last row. The hidden rows come in as `[N, H + 1]` with a last
//! column of ones, so the bias rides in the logits product and its gradient in the
//! weight-gradient product (no separate pass over the `[N, V]` logits for either).
//!
//! For each tile of rows: `logits = H_tile · W` (one sgemm), then per row its max, the
//! exponentials, their sum, the row's cross-entropy and `dlogits = (softmax - onehot) *
//! scale` written over the logits in place, then `dH_tile = dlogits · W[..H]^T` and
//! `dW += H_tile^T · dlogits` (two sgemms). Only one tile of logits ever exists. Every
//! sum has a fixed order (rows are independent; the sgemms are deterministic), so the
//! results do not depend on the thread count.

use rayon::prelude::*;

use crate::engine::sgemm::{gemm_op, Operand};
use crate::model::error::{Error, Result};
use crate::model::spec::floats;

/// Rows per tile: `256 x V` logits (10 MB at `V = 10,000`) stay in the last-level cache,
/// and 256 rows are deep enough for the weight-gradient sgemm (its `k`).
pub const DEFAULT_TILE_ROWS: usize = 256;

/// Lanes of the row reductions: a fixed number of partial sums, so that the result is
/// the same bits whatever the vector width the compiler used.
const LANES: usize = 16;

/// The buffers of the fused layer (one tile of logits and the per-row losses).
#[derive(Debug, Clone)]
pub struct SoftmaxWorkspace {
    hidden: usize,
    vocab: usize,
    tile_rows: usize,
    tile: Vec<f32>,
    row_loss: Vec<f64>,
}

impl SoftmaxWorkspace {
    /// Buffers for hidden width `hidden` (`H`, without the ones column), `vocab` classes
    /// and tiles of `tile_rows` rows (0 means [`DEFAULT_TILE_ROWS`]).
    ///
    /// # Panics
    /// When a tile of `tile_rows x vocab` logits would not fit in memory.
    pub fn new(hidden: usize, vocab: usize, tile_rows: usize) -> Self {
        let tile_rows = if tile_rows == 0 {
            DEFAULT_TILE_ROWS
        } else {
            tile_rows
        };
        assert!(
            floats(tile_rows, vocab).is_some(),
            "SoftmaxWorkspace: a tile of {tile_rows} x {vocab} logits would not fit in memory"
        );
        SoftmaxWorkspace {
            hidden,
            vocab,
            tile_rows,
            tile: vec![0.0; tile_rows * vocab],
            row_loss: vec![0.0; tile_rows],
        }
    }

    /// The hidden width `H`.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The number of classes `V`.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
}

/// Where the gradients go.
#[derive(Debug)]
pub struct SoftmaxGrads<'a> {
    /// dL/dH, `[N, ld]` (only the first `H` columns of each row are written).
    pub d_hidden: &'a mut [f32],
    /// Row stride of `d_hidden`.
    pub ld_hidden: usize,
    /// dL/dW, `[H + 1, V]`, overwritten (its last row is dL/d(bias)).
    pub d_weights: &'a mut [f32],
}

fn check(ws: &SoftmaxWorkspace, weights: &[f32], hidden: &[f32], targets: &[i32]) -> Result<usize> {
    let (h, v) = (ws.hidden, ws.vocab);
    if weights.len() != (h + 1) * v {
        return Err(Error::shape(
            "softmax weights",
            &[h + 1, v],
            &[weights.len()],
        ));
    }
    let n = targets.len();
    if hidden.len() != n * (h + 1) {
        return Err(Error::Shape {
            tensor: "softmax input".into(),
            expected: format!("[{n}, {}] (one row per target, ones column last)", h + 1),
            actual: format!("{} elements", hidden.len()),
        });
    }
    if let Some((i, &t)) = targets
        .iter()
        .enumerate()
        .find(|&(_, &t)| t < 0 || t as usize >= v)
    {
        return Err(Error::Format(format!(
            "tensor `targets`: id {t} at position {i} is outside the vocabulary 0..{v}"
        )));
    }
    Ok(n)
}

/// The fused softmax cross-entropy: returns `scale * sum over rows of -ln softmax(row)[target]`
/// (the seed's cost with `scale = 1 / B`: the sum over time of the batch-mean
/// cross-entropy), and, when `grads` is given, writes dL/dH and dL/dW.
///
/// `weights` is `[H + 1, V]` (bias last), `hidden` `[N, H + 1]` (ones column last),
/// `targets` `[N]`. Runs on the current rayon pool with `threads` threads.
///
/// # Errors
/// [`Error::Shape`] when a buffer does not have the sizes above; [`Error::Format`] when a
/// target is outside `0..V`.
pub fn softmax_cross_entropy(
    threads: usize,
    ws: &mut SoftmaxWorkspace,
    weights: &[f32],
    hidden: &[f32],
    targets: &[i32],
    scale: f32,
    mut grads: Option<SoftmaxGrads<'_>>,
) -> Result<f64> {
    let n = check(ws, weights, hidden, targets)?;
    let (h, v) = (ws.hidden, ws.vocab);
    if let Some(g) = &grads {
        if g.d_weights.len() != (h + 1) * v {
            return Err(Error::shape(
                "softmax weight gradient",
                &[h + 1, v],
                &[g.d_weights.len()],
            ));
        }
        if g.ld_hidden < h || g.d_hidden.len() < n * g.ld_hidden {
            return Err(Error::Shape {
                tensor: "softmax input gradient".into(),
                expected: format!("[{n}, {h}] (row stride >= {h})"),
                actual: format!("{} elements, row stride {}", g.d_hidden.len(), g.ld_hidden),
            });
        }
    }
    let mut cost = 0.0f64;
    let mut start = 0;
    while start < n {
        let rows = ws.tile_rows.min(n - start);
        let tile = &mut ws.tile[..rows * v];
        let h_tile = &hidden[start * (h + 1)..(start + rows) * (h + 1)];
        gemm_op(
            threads,
            (rows, v, h + 1),
            Operand::n(h_tile, h + 1),
            Operand::n(weights, v),
            tile,
            v,
            false,
        );
        let tg = &targets[start..start + rows];
        let losses = &mut ws.row_loss[..rows];
        let backward = grads.is_some();
        let per_row = |(row, (loss, &t)): (&mut [f32], (&mut f64, &i32))| {
            *loss = row_loss(row, t as usize, scale, backward);
        };
        if threads > 1 {
            tile.par_chunks_mut(v)
                .zip(losses.par_iter_mut().zip(tg.par_iter()))
                .for_each(per_row);
        } else {
            tile.chunks_mut(v)
                .zip(losses.iter_mut().zip(tg))
                .for_each(per_row);
        }
        cost += losses.iter().sum::<f64>();
        if let Some(g) = grads.as_mut() {
            let ld = g.ld_hidden;
            gemm_op(
                threads,
                (rows, h, v),
                Operand::n(tile, v),
                Operand::t(weights, v),
                &mut g.d_hidden[start * ld..],
                ld,
                false,
            );
            gemm_op(
                threads,
                (h + 1, v, rows),
                Operand::t(h_tile, h + 1),
                Operand::n(tile, v),
                g.d_weights,
                v,
                start > 0,
            );
        }
        start += rows;
    }
    Ok(cost * f64::from(scale))
}

/// The logits `[N, V]` of every row (for checks and inspection; training never needs
/// them whole).
///
/// # Errors
/// As [`softmax_cross_entropy`] (with `N = hidden.len() / (H + 1)`).
pub fn logits(
    threads: usize,
    ws: &SoftmaxWorkspace,
    weights: &[f32],
    hidden: &[f32],
) -> Result<Vec<f32>> {
    let (h, v) = (ws.hidden, ws.vocab);
    let n = hidden.len() / (h + 1);
    check(ws, weights, hidden, &vec![0; n])?;
    let mut out = vec![0.0; n * v];
    gemm_op(
        threads,
        (n, v, h + 1),
        Operand::n(hidden, h + 1),
        Operand::n(weights, v),
        &mut out,
        v,
        false,
    );
    Ok(out)
}

/// One row: returns `-ln softmax(row)[target]` (unscaled); when `backward`, overwrites
/// the row with `(softmax(row) - onehot(target)) * scale`.
fn row_loss(row: &mut [f32], target: usize, scale: f32, backward: bool) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above), the only requirement of
            // the `target_feature` function; it touches nothing but `row`.
            return unsafe { row_loss_avx512(row, target, scale, backward) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above), the only requirement of the
            // `target_feature` function; it touches nothing but `row`.
            return unsafe { row_loss_avx2(row, target, scale, backward) };
        }
    }
    row_loss_body(row, target, scale, backward)
}

/// [`row_loss_body`] on 16-lane vectors: one zmm per `LANES` (16) accumulators, where
/// AVX2 takes two ymm. The same bits (the body's sums are in `LANES` order whatever the
/// register width).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_loss_avx512(row: &mut [f32], target: usize, scale: f32, backward: bool) -> f64 {
    row_loss_body(row, target, scale, backward)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_loss_avx2(row: &mut [f32], target: usize, scale: f32, backward: bool) -> f64 {
    row_loss_body(row, target, scale, backward)
}

// The body is written with plain multiplies and adds (Rust never contracts them into
// FMAs), so the AVX-512, AVX2 and baseline builds give the same bits; it is inlined
// into each so that its max, exp and scale passes all use the wider vectors.
#[inline(always)]
fn row_loss_body(row: &mut [f32], target: usize, scale: f32, backward: bool) -> f64 {
    let max = row_max(row);
    let at_target = row[target] - max;
    let sum = if backward {
        exp_in_place(row, max)
    } else {
        exp_sum(row, max)
    };
    if backward {
        let k = scale / sum as f32;
        row.iter_mut().for_each(|x| *x *= k);
        row[target] -= scale;
    }
    sum.ln() - f64::from(at_target)
}

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            if x > *a {
                *a = x;
            }
        }
    }
    let mut m = acc.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for &x in chunks.remainder() {
        m = m.max(x);
    }
    m
}

/// `row[j] = exp(row[j] - max)`, returning the sum (lane partial sums in f32, combined
/// in f64).
#[inline(always)]
fn exp_in_place(row: &mut [f32], max: f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x = exp_approx(*x - max);
            *a += *x;
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| f64::from(a)).sum();
    for x in chunks.into_remainder() {
        *x = exp_approx(*x - max);
        sum += f64::from(*x);
    }
    sum
}

/// The sum of `exp(row[j] - max)`, as [`exp_in_place`] adds it.
#[inline(always)]
fn exp_sum(row: &[f32], max: f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += exp_approx(x - max);
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| f64::from(a)).sum();
    for &x in chunks.remainder() {
        sum += f64::from(exp_approx(x - max));
    }
    sum
}

/// `exp(x)` for `x <= 0` within 2 ulp (Cephes `expf`: `x = n ln 2 + r`, a degree-6
/// polynomial on `|r| <= ln 2 / 2`, `2^n` from the exponent bits), branch-free so that it
/// vectorises. Below -87 it returns `exp(-87)` (1.6e-38), which adds nothing to a sum
/// that holds at least `exp(0) = 1`.
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in two adds.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    // `nm` = 1.5 * 2^23 + n exactly, so its low mantissa bits hold n (two's complement).
    let nm = x * LOG2E + ROUND;
    let n = nm - ROUND;
    let r = (x - n * C1) - n * C2;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2^n: n's bits shifted into the exponent field (those of 1.5 * 2^23 shift out),
    // plus the bias. Integer ops that vectorise, where `n as i32`, a saturating
    // conversion, compiles to one scalar convert and two branches per lane (it took
    // 2.4x as long).
    let bits = (nm.to_bits() << 23).wrapping_add(127 << 23);
    y * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let got = f64::from(exp_approx(x));
            let want = f64::from(x).exp();
            worst = worst.max((got - want).abs() / want);
            x += 0.000_731;
        }
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst}");
    }

    #[test]
    fn avx512_avx2_and_baseline_bodies_agree_bitwise() {
        let mut rng = crate::model::weights::SplitMix64::new(3);
        let row = rng.uniform_vec(1003, -30.0, 5.0);
        for backward in [false, true] {
            // `row_loss_body` inlined here runs on the baseline ISA; each
            // `target_feature` copy where the CPU has its ISA.
            let mut a = row.clone();
            let la = row_loss_body(&mut a, 17, 0.25, backward);
            type Copy = (&'static str, unsafe fn(&mut [f32], usize, f32, bool) -> f64);
            #[cfg(target_arch = "x86_64")]
            let copies: Vec<Copy> = [
                (
                    "avx2",
                    std::arch::is_x86_feature_detected!("avx2"),
                    row_loss_avx2 as _,
                ),
                (
                    "avx512",
                    std::arch::is_x86_feature_detected!("avx512f"),
                    row_loss_avx512 as _,
                ),
            ]
            .into_iter()
            .filter(|c| c.1)
            .map(|(isa, _, f)| (isa, f))
            .collect();
            #[cfg(not(target_arch = "x86_64"))]
            let copies: Vec<Copy> = Vec::new();
            for (isa, f) in copies {
                let mut b = row.clone();
                // SAFETY: the CPU has the copy's ISA (checked where it was listed).
                let lb = unsafe { f(&mut b, 17, 0.25, backward) };
                assert_eq!(la.to_bits(), lb.to_bits(), "{isa}");
                assert!(a == b, "{isa}");
            }
        }
        let max = row_max(&row);
        let mut a = row.clone();
        let sa = exp_in_place(&mut a, max);
        assert_eq!(exp_sum(&row, max).to_bits(), sa.to_bits());
    }

    /// The exponent bits taken from the rounding constant are those of the integer
    /// conversion they replaced, over the whole clamped range and past it.
    #[test]
    fn exp_scale_bits_match_an_integer_conversion() {
        let mut x = -100.0f32;
        while x <= 100.0 {
            let c = x.clamp(-87.0, 88.0);
            let nm = c * std::f32::consts::LOG2_E + 12_582_912.0;
            let n = (nm - 12_582_912.0) as i32;
            assert_eq!(
                (nm.to_bits() << 23).wrapping_add(127 << 23),
                ((n + 127) as u32) << 23
            );
            x += 0.001_37;
        }
    }
}

//! The forward step kernel, written once over [`Vector`].
//!
//! For a block of `R` rows and `T` tiles, [`sums`] keeps the `R x T x 4U`
//! gate sums in registers for the whole `kk` loop, then [`finish`] runs the
//! gate math and the cell update on them; only `c`, `m` (and optionally the
//! activated gates) are stored, never the `4U` gate sums. [`step_kernel!`]
//! writes the loops around them for each ISA. With `PLAIN`, [`finish`] stores
//! the sums as they are instead: the GEMM mode of `gemm.rs`.
//!
//! Determinism: every gate sum is one chain
//! `acc = zx; for kk in 0..K { acc = fma(h[kk], w[kk], acc) }` (preceded, with
//! an [`InputPart`](crate::InputPart), by the same chain over `x` and `W_x`),
//! whatever the block shape, the number of rows or the tile range. The block
//! shape only decides how many such chains run side by side, never their
//! order, so a result does not depend on how rows or tiles are split between
//! calls or threads, nor on the ISA (the scalar oracle runs the same chain).

use crate::activations::{activate, SIGMOID, SKIP, TANH};
use crate::args::StepRaw;
use crate::vector::Vector;

/// How many panel rows ahead the step kernel prefetches.
const PREFETCH_ROWS: usize = 16;

/// `R` rows from `r0`, `T` tiles from `t0`: the register-blocked gate sums
/// `zx + h_prev W` into `out`. `NV` = vectors per gate in a tile (`U / LANES`),
/// `W = 4 NV` = vectors per panel row, `M = R T W` = accumulators (passed
/// because stable Rust cannot compute array lengths from const parameters).
///
/// Each ISA calls this from a function of its own that is never inlined
/// ([`step_kernel!`]'s `sums`), apart from [`finish`]: compiled together, LLVM
/// split the accumulators' live ranges around the epilogue and stored five of
/// the 24 AVX-512 accumulators to the stack on every `kk` iteration, which
/// halved the step's speed (85 against 170-210 GFLOP/s for the same loop
/// without an epilogue). The handover through `out` costs `M` stores and loads
/// per block, against `M * k` fmas.
///
/// # Safety
/// The [`Vector`] contract, `a` satisfies the [`StepRaw`] contract,
/// `r0 + R <= a.rows` and `t0 + T <= a.tiles.end`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices address several arrays at once
pub(crate) unsafe fn sums<
    V: Vector,
    const NV: usize,
    const W: usize,
    const R: usize,
    const T: usize,
    const M: usize,
    const J0: usize,
    const JN: usize,
    const PLAIN: bool,
>(
    a: &StepRaw,
    r0: usize,
    t0: usize,
    out: &mut [V; M],
) {
    debug_assert!(W == 4 * NV && M == R * T * JN && J0 + JN <= W);
    let l = V::LANES;
    let u4 = W * l;
    let u = NV * l;
    // Flat index of the `j`-th vector of this pass (panel vector `J0 + j`) of tile `t`
    // of row `r` in `acc`.
    let at = |r: usize, t: usize, j: usize| (r * T + t) * JN + j;
    // SAFETY: every offset below is inside the ranges the `StepRaw`
    // contract describes: rows r0..r0+R < rows, tiles t0..t0+T within the
    // layer, kk < k, and in-tile offsets below 4U (zx, w) or U (c, h_out).
    unsafe {
        let zero = V::splat(0.0);
        let mut acc = [zero; M];
        let wp: [*const f32; T] = std::array::from_fn(|t| a.w.wrapping_add((t0 + t) * a.w_panel));
        for t in 0..T {
            for r in 0..R {
                let z = a.zx.add((r0 + r) * a.ld_zx + (t0 + t) * u4 + J0 * l);
                for j in 0..JN {
                    acc[at(r, t, j)] = V::load(z.add(j * l));
                }
            }
        }
        // Touch the rows of the next block of these tiles now: their zx, c
        // and h_out lines arrive while this block's k loop runs, instead of
        // stalling the next block's first fma (with large h, zx rows are
        // far apart and come from L3).
        for r in R..2 * R {
            if J0 == 0 && r0 + r < a.rows {
                for t in 0..T {
                    let z = a.zx.wrapping_add((r0 + r) * a.ld_zx + (t0 + t) * u4);
                    let mut b = 0;
                    while b < u4 {
                        V::prefetch(z.wrapping_add(b));
                        b += 16;
                    }
                    if !PLAIN {
                        let unit = (t0 + t) * u;
                        V::prefetch(a.c.wrapping_add((r0 + r) * a.ld_c + unit));
                        V::prefetch(a.h_out.wrapping_add((r0 + r) * a.ld_h_out + unit));
                    }
                }
            }
        }
        let hp: [*const f32; R] = std::array::from_fn(|r| a.h_prev.add((r0 + r) * a.ld_h_prev));
        // One loop body for both parts: two inlined copies of the k loop made LLVM
        // keep accumulators and row pointers on the stack.
        let mut parts = [(hp, wp, a.ld_w, a.k); 2];
        let mut first = 1;
        if let Some(p) = a.input.as_ref() {
            let xp: [*const f32; R] = std::array::from_fn(|r| p.x.add((r0 + r) * p.ld_x));
            let wxp: [*const f32; T] =
                std::array::from_fn(|t| p.w.wrapping_add((t0 + t) * p.w_panel));
            parts[0] = (xp, wxp, p.ld_w, p.kx);
            first = 0;
        }
        for &(rows, w, ld_w, k) in &parts[first..] {
            k_loop::<V, R, T, M, J0, JN>(&mut acc, &rows, &w, ld_w, k);
        }
        *out = acc;
    }
}

/// `acc[r, t, j] += sum over kk < k of a[r][kk] * w[t][kk * ld_w + (J0 + j) * LANES]`,
/// in `kk` order, for `j < JN`.
///
/// # Safety
/// The [`Vector`] contract; `a[r]` valid for `k` reads, `w[t]` for `k` panel
/// rows of `J0 + JN` vectors or more.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices address several arrays at once
unsafe fn k_loop<
    V: Vector,
    const R: usize,
    const T: usize,
    const M: usize,
    const J0: usize,
    const JN: usize,
>(
    acc: &mut [V; M],
    a: &[*const f32; R],
    w: &[*const f32; T],
    ld_w: usize,
    k: usize,
) {
    let l = V::LANES;
    let at = |r: usize, t: usize, j: usize| (r * T + t) * JN + j;
    // SAFETY: reads stay inside the caller's ranges (kk < k); prefetches may point
    // anywhere (wrapping arithmetic, never dereferenced).
    unsafe {
        for kk in 0..k {
            // Broadcasts first, then one weight vector at a time feeding
            // every row: R + 1 live registers besides the accumulators
            // (16 in all for AVX2 with R = 3), so nothing spills.
            let mut hb = [V::splat(0.0); R];
            for r in 0..R {
                hb[r] = V::splat(*a[r].add(kk));
            }
            // The panel streams from L2 when it outgrows L1 (k > 256 or
            // so); the hardware prefetcher alone lags behind.
            for t in 0..T {
                let ahead = w[t].wrapping_add((kk + PREFETCH_ROWS) * ld_w);
                let mut b = J0 * l;
                while b < (J0 + JN) * l {
                    V::prefetch(ahead.wrapping_add(b));
                    b += 16; // one 64-byte line
                }
            }
            for t in 0..T {
                for j in 0..JN {
                    let wv = V::load(w[t].add(kk * ld_w + (J0 + j) * l));
                    for r in 0..R {
                        acc[at(r, t, j)] = V::fma(hb[r], wv, acc[at(r, t, j)]);
                    }
                }
            }
        }
    }
}

/// What follows [`sums`] for the same block: with `PLAIN`, the sums stored as
/// they are (`h_out` then has the `zx` layout, `4U` per tile: the GEMM mode of
/// `gemm.rs`, for the input projections); otherwise the fused epilogue
/// ([`unit()`] for each row and tile). `PEEP`: whether `a.peep` is set.
///
/// # Safety
/// As [`sums`].
#[inline(always)]
pub(crate) unsafe fn finish<
    V: Vector,
    const NV: usize,
    const W: usize,
    const R: usize,
    const T: usize,
    const M: usize,
    const PEEP: bool,
    const PLAIN: bool,
>(
    a: &StepRaw,
    r0: usize,
    t0: usize,
    sums: &[V; M],
) {
    let l = V::LANES;
    let u4 = W * l;
    // SAFETY: rows r0..r0+R and tiles t0..t0+T are inside the `StepRaw`
    // layouts (this function's contract); in-tile offsets are below 4U.
    unsafe {
        for r in 0..R {
            for t in 0..T {
                let base = (r * T + t) * W;
                let mut z: [V; W] = std::array::from_fn(|j| sums[base + j]);
                if PLAIN {
                    let out = a.h_out.add((r0 + r) * a.ld_h_out + (t0 + t) * u4);
                    for (j, v) in z.iter().enumerate() {
                        v.store(out.add(j * l));
                    }
                } else {
                    unit::<V, NV, W, PEEP>(a, r0 + r, t0 + t, &mut z);
                }
            }
        }
    }
}

/// The fused epilogue of one row and one tile: `z` holds the tile's gate sums
/// (`NV` vectors each of i, g, f, o). Gate activations, the cell update with
/// forget bias, peepholes and clip, `h = o tanh(c)`; stores `c`, `h_out` and
/// (if asked) the activated gates.
///
/// One unit at a time, with the gate of every vector known at compile time:
/// the activations unroll into straight-line code that fits in the registers
/// (a whole 6 x 4 AVX-512 block at once did not: LLVM kept it on the stack and
/// looped over the gate kinds at run time). Consecutive units are
/// independent, so the out-of-order core overlaps their long chains.
///
/// # Safety
/// The [`Vector`] contract; `row < a.rows` and `tile` inside the layer, as
/// the [`StepRaw`] contract describes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices address several arrays at once
unsafe fn unit<V: Vector, const NV: usize, const W: usize, const PEEP: bool>(
    a: &StepRaw,
    row: usize,
    tile: usize,
    z: &mut [V; W],
) {
    let l = V::LANES;
    let u = NV * l;
    // SAFETY: c, h_out are `rows x tiles*U`, gates `rows x tiles*4U`, peep
    // `tiles*3U` (the `StepRaw` contract); every offset is of this row and
    // tile, below U (c, h_out), 4U (gates) or 3U (peep).
    unsafe {
        let zero = V::splat(0.0);
        let cp = a.c.add(row * a.ld_c + tile * u);
        let peep = |v: usize| a.peep.unwrap().as_ptr().add(tile * 3 * u + v * l);
        // Round 1: i, g, f (and o when there is no peephole, which would
        // need the new c).
        let kinds1: [u8; W] = std::array::from_fn(|e| match e / NV {
            1 => TANH,
            3 if PEEP => SKIP,
            _ => SIGMOID,
        });
        let mut c_prev = [zero; NV];
        let fb = V::splat(a.forget_bias);
        for v in 0..NV {
            c_prev[v] = V::load(cp.add(v * l));
            let (ei, ef) = (v, 2 * NV + v);
            z[ef] = z[ef].add(fb);
            if PEEP {
                let p = peep(v);
                z[ei] = V::fma(V::load(p), c_prev[v], z[ei]);
                z[ef] = V::fma(V::load(p.add(u)), c_prev[v], z[ef]);
            }
        }
        let zo = *z; // pre-activations of o, kept for the peephole case
        activate(z, &kinds1);

        // The new cell, then round 2: tanh(c) (and o with its peephole).
        // x2[v]: o's pre-activation; x2[NV + v]: c; the rest unused.
        let kinds2: [u8; W] = std::array::from_fn(|e| match e / NV {
            0 if PEEP => SIGMOID,
            1 => TANH,
            _ => SKIP,
        });
        let mut x2 = [zero; W];
        let clip = V::splat(a.cell_clip);
        let neg_clip = V::splat(-a.cell_clip);
        let do_clip = a.cell_clip != f32::INFINITY;
        for v in 0..NV {
            let (i, g, f) = (z[v], z[NV + v], z[2 * NV + v]);
            let mut c = V::fma(f, c_prev[v], i.mul(g));
            if do_clip {
                c = clip.min(neg_clip.max(c));
            }
            x2[NV + v] = c;
            if PEEP {
                let po = V::load(peep(v).add(2 * u));
                x2[v] = V::fma(po, c, zo[3 * NV + v]);
            }
        }
        let cells = x2;
        activate(&mut x2, &kinds2);
        let hp = a.h_out.add(row * a.ld_h_out + tile * u);
        for v in 0..NV {
            let o = if PEEP { x2[v] } else { z[3 * NV + v] };
            cells[NV + v].store(cp.add(v * l));
            o.mul(x2[NV + v]).store(hp.add(v * l));
            if let Some(gp) = a.gates {
                let gp = gp.as_ptr().add(row * a.ld_gates + tile * 4 * u + v * l);
                z[v].store(gp);
                z[NV + v].store(gp.add(u));
                z[2 * NV + v].store(gp.add(2 * u));
                o.store(gp.add(3 * u));
            }
        }
    }
}

/// Defines an ISA's forward step entry point: the loops around [`sums`] and
/// [`finish`]. `plain = true` makes the epilogue-free kernel that `gemm.rs`'s
/// `gemm_kernel!` wraps.
///
/// Tiles are the outer loop, so one tile's panel (`k x 4U`) is reused from
/// cache by every row block. Rows go in blocks of `MR`; the `rows % MR`
/// remainder rows are done `T` tiles at a time (`group = [R => T]`, 1 when
/// not listed), which keeps enough independent chains in flight when few
/// rows are left, e.g. the batch-1 matrix-vector case streams `T` panels
/// side by side. `blocks` lists every `(R, T)` the loops can ask for.
///
/// `split` lists row counts `MR + rem` that run as one split block when
/// `rows % MR = rem` and a full block precedes them: its rows in two passes over
/// half of each panel row (half the gates' accumulators at a time), so every
/// weight vector loaded feeds all of them. For AVX-512, 8 rows as one split
/// block instead of 6 + 2 (whose `(2, 3)` block re-reads three panels from L2 for
/// 2 rows each) read each panel once, at 8 fmas per weight vector: `step_gflops`
/// at 8 rows, k = 256, H = 128 (what each thread of `infer-b8-h256-t100` computes at
/// 2 threads split by units) went from 167 to 192 GFLOP/s.
macro_rules! step_kernel {
    (
        $(#[$attr:meta])*
        fn $name:ident, $V:ty, NV = $NV:expr, MR = $MR:expr, plain = $PLAIN:expr,
        group = [$($gr:literal => $gt:literal),*],
        blocks = [$(($br:literal, $bt:literal)),*],
        split = [$($sr:literal),*]
    ) => {
        $(#[$attr])*
        pub(crate) unsafe fn $name(a: &$crate::args::StepRaw) {
            // The k loop in a function of its own, with the ISA's target
            // features and never inlined (see `step::sums`).
            #[inline(never)]
            $(#[$attr])*
            unsafe fn sums<
                const R: usize,
                const T: usize,
                const M: usize,
                const J0: usize,
                const JN: usize,
            >(
                a: &$crate::args::StepRaw,
                r0: usize,
                t0: usize,
                out: &mut [$V; M],
            ) {
                // SAFETY: forwarded from `run`'s contract.
                unsafe {
                    $crate::step::sums::<$V, $NV, { 4 * $NV }, R, T, M, J0, JN, $PLAIN>(
                        a, r0, t0, out,
                    )
                }
            }
            /// The epilogue of a block whose gate sums are in `acc`.
            #[inline(always)]
            unsafe fn finish<const R: usize, const T: usize, const M: usize>(
                a: &$crate::args::StepRaw,
                r0: usize,
                t0: usize,
                acc: &[$V; M],
            ) {
                // SAFETY: forwarded from `run`'s contract.
                unsafe {
                    const W: usize = 4 * $NV;
                    if a.peep.is_some() {
                        $crate::step::finish::<$V, $NV, W, R, T, M, true, $PLAIN>(a, r0, t0, acc)
                    } else {
                        $crate::step::finish::<$V, $NV, W, R, T, M, false, $PLAIN>(a, r0, t0, acc)
                    }
                }
            }
            #[inline(always)]
            unsafe fn run(a: &$crate::args::StepRaw, r0: usize, r: usize, t0: usize, t: usize) {
                // SAFETY: forwarded from the entry point's contract; the
                // driver below keeps r0 + r <= rows and t0 + t <= tiles.end.
                unsafe {
                    const W: usize = 4 * $NV;
                    match (r, t) {
                        $(
                            ($br, $bt) => {
                                const M: usize = $br * $bt * W;
                                let mut acc =
                                    [<$V as $crate::vector::Vector>::splat(0.0); M];
                                // Called through an opaque pointer: rustc drops
                                // `inline(never)` on target-feature functions.
                                let f: unsafe fn(
                                    &$crate::args::StepRaw, usize, usize, &mut [$V; M]
                                ) = sums::<$br, $bt, M, 0, W>;
                                std::hint::black_box(f)(a, r0, t0, &mut acc);
                                finish::<$br, $bt, M>(a, r0, t0, &acc);
                            }
                        )*
                        _ => unreachable!("no block for {} rows x {} tiles", r, t),
                    }
                }
            }
            /// `S` rows of one tile, in two passes of half a panel row each: the
            /// accumulators of all four gates would not fit in the registers, half of
            /// them do, and each weight vector then feeds `S` rows (each pass reads its
            /// own cache lines of the panel, so the panel is read once).
            #[inline(always)]
            #[allow(dead_code)] // ISAs without split blocks
            unsafe fn run_split<const S: usize, const M: usize, const MH: usize>(
                a: &$crate::args::StepRaw,
                r0: usize,
                t0: usize,
            ) {
                // SAFETY: as `run`.
                unsafe {
                    const W: usize = 4 * $NV;
                    const H: usize = W / 2;
                    let zero = <$V as $crate::vector::Vector>::splat(0.0);
                    let mut acc = [zero; M];
                    let mut half = [zero; MH];
                    let f: unsafe fn(&$crate::args::StepRaw, usize, usize, &mut [$V; MH]) =
                        sums::<S, 1, MH, 0, H>;
                    std::hint::black_box(f)(a, r0, t0, &mut half);
                    for r in 0..S {
                        acc[r * W..r * W + H].copy_from_slice(&half[r * H..(r + 1) * H]);
                    }
                    let f: unsafe fn(&$crate::args::StepRaw, usize, usize, &mut [$V; MH]) =
                        sums::<S, 1, MH, H, H>;
                    std::hint::black_box(f)(a, r0, t0, &mut half);
                    for r in 0..S {
                        acc[r * W + H..(r + 1) * W].copy_from_slice(&half[r * H..(r + 1) * H]);
                    }
                    finish::<S, 1, M>(a, r0, t0, &acc);
                }
            }
            /// The split block of `rows` rows at `r0`, tile `t0`.
            #[inline(always)]
            #[allow(unused_variables)] // ISAs without split blocks
            unsafe fn run_split_of(a: &$crate::args::StepRaw, r0: usize, rows: usize, t0: usize) {
                match rows {
                    $(
                        // SAFETY: as `run`.
                        $sr => unsafe {
                            run_split::<$sr, { $sr * 4 * $NV }, { $sr * 2 * $NV }>(a, r0, t0)
                        },
                    )*
                    _ => unreachable!("no split block of {} rows", rows),
                }
            }
            let mut rem = a.rows % $MR;
            let mut full = a.rows - rem;
            // A split block takes the last full block and the remainder together when
            // `split` lists their row count.
            let mut split = 0;
            if full >= $MR && [$($sr),*].contains(&(rem + $MR)) {
                split = rem + $MR;
                full -= $MR;
                rem = 0;
            }
            #[allow(clippy::match_single_binding)]
            let group: usize = match rem {
                $($gr => $gt,)*
                _ => 1,
            };
            let mut t0 = a.tiles.start;
            while t0 < a.tiles.end {
                let g = if t0 + group <= a.tiles.end { group } else { 1 };
                // SAFETY: r0 + MR <= full <= rows, t0 + g <= tiles.end, and with a
                // split block full + split == rows.
                unsafe {
                    for t in t0..t0 + g {
                        let mut r0 = 0;
                        while r0 < full {
                            run(a, r0, $MR, t, 1);
                            r0 += $MR;
                        }
                        if split > 0 {
                            run_split_of(a, full, split, t);
                        }
                    }
                    if rem > 0 {
                        run(a, full, rem, t0, g);
                    }
                }
                t0 += g;
            }
        }
    };
}
pub(crate) use step_kernel;

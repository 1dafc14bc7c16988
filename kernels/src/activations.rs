//! `sigmoid` and `tanh`, written once over [`Vector`].
//!
//! Both rest on one range-reduced `expm1`: `y = n ln2 + r` with
//! `n = round(y / ln2)`, `|r| <= ln2 / 2`, and `expm1(r)` from Cephes'
//! `expf` polynomial (`r + r^2 P(r)`, P of degree 5). Keeping `expm1(r)`
//! rather than `exp(r)` is what makes both functions accurate near zero:
//!
//! - `sigmoid(x)`: with `t = exp(-|x|)` (never overflows), the result is
//!   `1 / (1 + t)` for `x >= 0` and `t / (1 + t)` for `x < 0`: no
//!   cancellation anywhere, and the tiny results for very negative `x`
//!   keep their relative accuracy (the scale `2^n` is applied in two
//!   halves so that results in the subnormal range round once, correctly).
//! - `tanh(x)`: with `e = expm1(2|x|)`, `tanh|x| = e / (e + 2)`, sign
//!   restored by a bit flip (so `tanh(-0) = -0`). `|x|` is clamped to 9.5,
//!   past which `e + 2` rounds to `e` and the result is exactly 1.
//!
//! The error bounds, measured against an f64 reference over every finite
//! f32 (`tests/activations.rs` asserts them on dense and random samples,
//! its ignored `exhaustive_*` tests walk all 2^32 inputs), are the
//! constants of [`crate::bounds`].

use crate::vector::Vector;

/// What [`activate`] does to an element.
pub(crate) const SIGMOID: u8 = 0;
/// What [`activate`] does to an element.
pub(crate) const TANH: u8 = 1;
/// What [`activate`] does to an element: nothing (a slot left unused).
pub(crate) const SKIP: u8 = 2;

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that `y - n * LN2_HI` is exact for the n used here (LN2_HI
// has 24 significant bits, n at most 150, and the difference is below 0.35).
const LN2_HI: f32 = std::f32::consts::LN_2; // 0x3f317218
const LN2_LO: f32 = -1.904_654_2e-9; // ln 2 - LN2_HI, rounded
                                     // Cephes `expf`: expm1(r) ~= r + r^2 (P0 + r (P1 + ... r P5)), |r| <= ln2/2.
                                     // (Written as the shortest decimals of Cephes' f32 coefficients.)
const P0: f32 = 0.5;
const P1: f32 = 0.166_666_66;
const P2: f32 = 0.041_665_796;
const P3: f32 = 0.008_333_452;
const P4: f32 = 0.001_398_2;
const P5: f32 = 0.000_198_756_91;
/// `1.5 * 2^23`: adding it rounds |v| < 2^22 to an integer, which lands in
/// the low mantissa bits of the sum.
const ROUND_MAGIC: f32 = 12_582_912.0;
const TWO_POW_64: f32 = 18_446_744_073_709_551_616.0;
const TWO_POW_MINUS_64: f32 = 1.0 / TWO_POW_64;
/// Below this, `exp` is under half the smallest subnormal: it rounds to 0.
const EXP_MIN_ARG: f32 = -104.0;
/// Past this, tanh is 1 in f32, and `expm1(2x)` stays finite.
const TANH_SATURATION: f32 = 9.5;

/// Applies `sigmoid` or `tanh` (or nothing) to each element of `x`, as
/// `kinds` says.
///
/// Every step of the computation runs over all `N` elements before the
/// next step, so the `N` dependency chains (each some 70 cycles long, with a
/// division at the end) are interleaved in the instruction stream instead
/// of waiting on each other. `kinds` is a constant at every call site, so
/// the per-element choices fold away after inlining.
///
/// # Safety
/// The [`Vector`] contract (the CPU supports `V`'s ISA).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `e` indexes several arrays at once
pub(crate) unsafe fn activate<V: Vector, const N: usize>(x: &mut [V; N], kinds: &[u8; N]) {
    // SAFETY: the caller upholds the `Vector` contract.
    unsafe {
        let zero = V::splat(0.0);
        // Reduced argument: sigmoid wants e^y with y = -|x| in [-104, 0];
        // tanh wants expm1(y) with y = 2 min(|x|, 9.5). Both clamps keep
        // NaN (the value is the second operand).
        let mut y = [zero; N];
        for e in 0..N {
            let a = x[e].abs();
            y[e] = match kinds[e] {
                SIGMOID => V::splat(EXP_MIN_ARG).max(zero.sub(a)),
                TANH => {
                    let a = V::splat(TANH_SATURATION).min(a);
                    a.add(a)
                }
                _ => zero,
            };
        }
        // y = n ln2 + r, |r| <= ln2 / 2; p = expm1(r). Adding 1.5 * 2^23
        // rounds y / ln2 to the integer n (half to even), which then sits in
        // the low mantissa bits of `nm`, ready to become an exponent.
        let mut nm = [zero; N];
        let mut n = [zero; N];
        let mut r = [zero; N];
        for e in 0..N {
            if kinds[e] != SKIP {
                nm[e] = V::fma(y[e], V::splat(LOG2E), V::splat(ROUND_MAGIC));
            }
        }
        for e in 0..N {
            if kinds[e] != SKIP {
                n[e] = nm[e].sub(V::splat(ROUND_MAGIC));
            }
        }
        for e in 0..N {
            if kinds[e] != SKIP {
                r[e] = V::fma(n[e], V::splat(-LN2_HI), y[e]);
            }
        }
        for e in 0..N {
            if kinds[e] != SKIP {
                r[e] = V::fma(n[e], V::splat(-LN2_LO), r[e]);
            }
        }
        let mut p = [zero; N];
        for e in 0..N {
            if kinds[e] != SKIP {
                p[e] = V::fma(V::splat(P5), r[e], V::splat(P4));
            }
        }
        for c in [P3, P2, P1, P0] {
            for e in 0..N {
                if kinds[e] != SKIP {
                    p[e] = V::fma(p[e], r[e], V::splat(c));
                }
            }
        }
        for e in 0..N {
            if kinds[e] != SKIP {
                p[e] = V::fma(p[e], r[e].mul(r[e]), r[e]);
            }
        }
        // Reconstruction.
        let one = V::splat(1.0);
        for e in 0..N {
            match kinds[e] {
                SIGMOID => {
                    // n in [-150, 0]: 2^n may be subnormal, so build the
                    // normal 2^(n+64) (exponent field n + 127 + 64) and
                    // scale by 2^-64 last: that multiply is then the only
                    // rounding when the result is subnormal.
                    let s = nm[e].shl23().add_bits(V::splat(TWO_POW_64));
                    let t = V::fma(s, p[e], s).mul(V::splat(TWO_POW_MINUS_64));
                    // t = e^-|x|; sigmoid = 1/(1+t) for x >= 0, t/(1+t) else.
                    let num = V::select(x[e].lt(zero), t, one);
                    x[e] = num.div(one.add(t));
                }
                TANH => {
                    // n in [0, 28]: 2^n is normal (exponent field n + 127,
                    // the bits of 1.0 plus n). e = expm1(2|x|),
                    // tanh|x| = e / (e + 2), sign restored by a bit flip.
                    let s = nm[e].shl23().add_bits(one);
                    let em1 = V::fma(s, p[e], s.sub(one));
                    x[e] = em1.div(em1.add(V::splat(2.0))).xor_sign(x[e]);
                }
                _ => {}
            }
        }
    }
}

/// `dst[i] = f(src[i])` for `i < n`, `f` = `OP` ([`SIGMOID`] or [`TANH`]);
/// `src == dst` is allowed. Four vectors per step keep four chains in
/// flight; the tail shorter than a vector goes through a stack buffer, so
/// the very same code computes it.
///
/// # Safety
/// The [`Vector`] contract; `src` valid for `n` reads and `dst` for `n`
/// writes.
#[inline(always)]
pub(crate) unsafe fn map<V: Vector, const OP: u8>(src: *const f32, dst: *mut f32, n: usize) {
    const MAX_LANES: usize = 16;
    const UNROLL: usize = 4;
    assert!(V::LANES <= MAX_LANES);
    let l = V::LANES;
    let kinds = [OP; UNROLL];
    let mut i = 0;
    // SAFETY: every access is at an index below `n`, within the caller's
    // ranges; the tail buffer holds MAX_LANES >= LANES floats.
    unsafe {
        while i + UNROLL * l <= n {
            let mut x = [V::splat(0.0); UNROLL];
            for (u, x) in x.iter_mut().enumerate() {
                *x = V::load(src.add(i + u * l));
            }
            activate(&mut x, &kinds);
            for (u, x) in x.iter().enumerate() {
                x.store(dst.add(i + u * l));
            }
            i += UNROLL * l;
        }
        while i < n {
            let mut buf = [0.0f32; MAX_LANES];
            let rest = (n - i).min(l);
            std::ptr::copy_nonoverlapping(src.add(i), buf.as_mut_ptr(), rest);
            let mut x = [V::load(buf.as_ptr())];
            activate(&mut x, &[OP]);
            x[0].store(buf.as_mut_ptr());
            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i), rest);
            i += rest;
        }
    }
}

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

/// Selects the function of [`map`].
pub(crate) const SIGMOID: u8 = 0;
/// Selects the function of [`map`].
pub(crate) const TANH: u8 = 1;

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
/// Below this, `exp` is under half the smallest subnormal: it rounds to 0.
const EXP_MIN_ARG: f32 = -104.0;
/// Past this, tanh is 1 in f32, and `expm1(2x)` stays finite.
const TANH_SATURATION: f32 = 9.5;

/// Splits `y` (finite, or NaN which propagates) into `n` and
/// `expm1(y - n ln2)`.
#[inline(always)]
unsafe fn expm1_reduced<V: Vector>(y: V) -> (V, V) {
    // SAFETY: the caller upholds the `Vector` contract (right CPU).
    unsafe {
        let n = y.mul(V::splat(LOG2E)).round();
        let r = V::fma(n, V::splat(-LN2_HI), y);
        let r = V::fma(n, V::splat(-LN2_LO), r);
        let mut p = V::splat(P5);
        p = V::fma(p, r, V::splat(P4));
        p = V::fma(p, r, V::splat(P3));
        p = V::fma(p, r, V::splat(P2));
        p = V::fma(p, r, V::splat(P1));
        p = V::fma(p, r, V::splat(P0));
        (n, V::fma(p, r.mul(r), r))
    }
}

/// Logistic function `1 / (1 + e^-x)`.
///
/// # Safety
/// The [`Vector`] contract (the CPU supports `V`'s ISA).
#[inline(always)]
pub(crate) unsafe fn sigmoid<V: Vector>(x: V) -> V {
    // SAFETY: the caller upholds the `Vector` contract.
    unsafe {
        let one = V::splat(1.0);
        let zero = V::splat(0.0);
        // y = -|x| in [-104, 0]; the clamp keeps NaN (second operand).
        let y = V::splat(EXP_MIN_ARG).max(zero.sub(x.abs()));
        let (n, p) = expm1_reduced(y);
        // n in [-150, 0]: 2^n itself may be subnormal, so scale in two
        // normal halves; the last multiply is the only rounding when the
        // result is subnormal.
        let n1 = n.mul(V::splat(0.5)).round();
        let s1 = n1.pow2i();
        let s2 = n.sub(n1).pow2i();
        let t = V::fma(s1, p, s1).mul(s2);
        let num = V::select(x.lt(zero), t, one);
        num.div(one.add(t))
    }
}

/// Hyperbolic tangent.
///
/// # Safety
/// The [`Vector`] contract (the CPU supports `V`'s ISA).
#[inline(always)]
pub(crate) unsafe fn tanh<V: Vector>(x: V) -> V {
    // SAFETY: the caller upholds the `Vector` contract.
    unsafe {
        let a = V::splat(TANH_SATURATION).min(x.abs());
        let (n, p) = expm1_reduced(a.add(a));
        // n in [0, 28]: 2^n is a normal number.
        let s = n.pow2i();
        let e = V::fma(s, p, s.sub(V::splat(1.0)));
        e.div(e.add(V::splat(2.0))).xor_sign(x)
    }
}

/// `dst[i] = f(src[i])` for `i < n`, `f` chosen by `OP`; `src == dst` is
/// allowed. The tail shorter than a vector goes through a stack buffer, so
/// the very same vector code computes it.
///
/// # Safety
/// The [`Vector`] contract; `src` valid for `n` reads and `dst` for `n`
/// writes.
#[inline(always)]
pub(crate) unsafe fn map<V: Vector, const OP: u8>(src: *const f32, dst: *mut f32, n: usize) {
    const MAX_LANES: usize = 16;
    assert!(V::LANES <= MAX_LANES);
    #[inline(always)]
    unsafe fn apply<V: Vector, const OP: u8>(x: V) -> V {
        // SAFETY: forwarded `Vector` contract.
        unsafe {
            if OP == SIGMOID {
                sigmoid(x)
            } else {
                tanh(x)
            }
        }
    }
    let l = V::LANES;
    let mut i = 0;
    // SAFETY: every access is at an index below `n`, within the caller's
    // ranges; the tail buffer holds MAX_LANES >= LANES floats.
    unsafe {
        while i + 2 * l <= n {
            // Two independent vectors in flight hide the division latency.
            let a = apply::<V, OP>(V::load(src.add(i)));
            let b = apply::<V, OP>(V::load(src.add(i + l)));
            a.store(dst.add(i));
            b.store(dst.add(i + l));
            i += 2 * l;
        }
        while i + l <= n {
            apply::<V, OP>(V::load(src.add(i))).store(dst.add(i));
            i += l;
        }
        if i < n {
            let mut buf = [0.0f32; MAX_LANES];
            let rest = n - i;
            std::ptr::copy_nonoverlapping(src.add(i), buf.as_mut_ptr(), rest);
            apply::<V, OP>(V::load(buf.as_ptr())).store(buf.as_mut_ptr());
            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i), rest);
        }
    }
}

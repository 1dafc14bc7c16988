//! The small vector vocabulary every kernel is written in.
//!
//! Each ISA implements [`Vector`] once (`scalar.rs`, `x86_64/*.rs`,
//! `aarch64/neon.rs`); `activations.rs`, `step.rs` (and through it `gemm.rs`),
//! `backward.rs` and `transpose.rs` are written once over it. Every operation
//! is IEEE-exact in the same way on every ISA (fused multiply-add, correctly
//! rounded division, integer bit operations), which is why every ISA produces
//! the same bits as the scalar oracle.

/// A vector of `LANES` f32.
///
/// # Safety
///
/// Every method is an `unsafe fn` with one shared contract:
/// - the CPU running it supports the implementing ISA. Only the
///   `#[target_feature]` entry points of the ISA modules call these methods,
///   and those are reachable only through a [`crate::Kernels`] that
///   `Kernels::for_isa` built after checking the CPU;
/// - a pointer argument is valid for reading (`load`) or writing (`store`)
///   `LANES` consecutive f32; no alignment is required.
///
/// Methods are `#[inline(always)]` so that they are compiled inside the
/// caller's `#[target_feature]` context: that is what turns each into one
/// instruction instead of a call.
pub(crate) trait Vector: Copy {
    /// Number of f32 lanes.
    const LANES: usize;
    /// Per-lane boolean produced by comparisons and consumed by `select`.
    type Mask: Copy;

    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);

    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    /// Correctly rounded division.
    unsafe fn div(self, o: Self) -> Self;
    /// `a * b + c` with a single rounding.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// `self > o ? self : o`. Lanes where `o` is NaN give NaN on every ISA
    /// (x86 returns the second operand, NEON propagates NaN): callers put
    /// the constant first and the possibly-NaN value second. A NaN in
    /// `self` alone is not used.
    unsafe fn max(self, o: Self) -> Self;
    /// `self < o ? self : o`, with the same NaN rule as `max`.
    unsafe fn min(self, o: Self) -> Self;

    /// Clears the sign bit.
    unsafe fn abs(self) -> Self;
    /// Flips the sign of the lanes where `sign_of` has its sign bit set.
    unsafe fn xor_sign(self, sign_of: Self) -> Self;
    /// Shifts the bit pattern of each lane left by 23 (as a `u32`): moves
    /// an integer held in the low mantissa bits into the exponent field.
    unsafe fn shl23(self) -> Self;
    /// Adds the bit patterns of the lanes as wrapping `u32`s.
    unsafe fn add_bits(self, o: Self) -> Self;

    unsafe fn lt(self, o: Self) -> Self::Mask;
    unsafe fn le(self, o: Self) -> Self::Mask;
    /// `m ? a : b` per lane.
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self;

    /// Transposes the `LANES x LANES` matrix whose rows are `block[..LANES]`
    /// (`block.len() == LANES`): lane `j` of row `i` goes to lane `i` of
    /// row `j`. Pure data movement, so every ISA gives the same bits.
    unsafe fn transpose(block: &mut [Self]);

    /// Hints that the cache line holding `p` is read soon. `p` may point
    /// anywhere (a prefetch never faults), so callers form it with
    /// `wrapping_add`.
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}

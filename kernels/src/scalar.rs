//! [`Vector`] for a plain `f32`: the portable fallback and the oracle the
//! SIMD paths are tested against.
//!
//! It runs the very same generic kernels as the SIMD ISAs, with one lane. As
//! every operation is the IEEE-exact counterpart of the SIMD one (`mul_add`
//! is fused, division correctly rounded), the scalar path and each SIMD path
//! produce identical bits, which the tests assert.

use crate::args::BackwardRaw;
use crate::table::Table;
use crate::vector::Vector;

// The trait's methods are `unsafe` only for the SIMD types; for `f32` each
// one is an ordinary safe operation.
impl Vector for f32 {
    const LANES: usize = 1;
    type Mask = bool;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    unsafe fn transpose(_block: &mut [Self]) {}
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the trait contract makes `p` valid for one read.
        unsafe { p.read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the trait contract makes `p` valid for one write.
        unsafe { p.write_unaligned(self) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // Not `f32::max`, which drops NaN: this mirrors x86 `maxps`.
        if self > o {
            self
        } else {
            o
        }
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        if self < o {
            self
        } else {
            o
        }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        f32::from_bits(self.to_bits() & 0x7fff_ffff)
    }
    #[inline(always)]
    unsafe fn xor_sign(self, sign_of: Self) -> Self {
        f32::from_bits(self.to_bits() ^ (sign_of.to_bits() & 0x8000_0000))
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        f32::from_bits(self.to_bits() << 23)
    }
    #[inline(always)]
    unsafe fn add_bits(self, o: Self) -> Self {
        f32::from_bits(self.to_bits().wrapping_add(o.to_bits()))
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> bool {
        self < o
    }
    #[inline(always)]
    unsafe fn le(self, o: Self) -> bool {
        self <= o
    }
    #[inline(always)]
    unsafe fn select(m: bool, a: Self, b: Self) -> Self {
        if m {
            a
        } else {
            b
        }
    }
}

/// Hidden units per tile. Four keeps the tile small (little padding for
/// tiny H) while giving the compiler four independent chains per gate.
pub(crate) const U: usize = NV; // one lane per vector
/// Vectors per gate in a tile.
const NV: usize = 4;
/// Rows per register block.
pub(crate) const MR: usize = 2;

crate::step::step_kernel! {
    /// # Safety
    /// `a` satisfies the contract of [`StepRaw`](crate::StepRaw).
    fn step, f32, NV = NV, MR = MR, plain = false, group = [1 => 2],
    blocks = [(2, 1), (1, 1), (1, 2)],
    split = []
}

crate::gemm::gemm_kernel! {
    /// The step kernel without its epilogue, for the input projections.
    ///
    /// # Safety
    /// `a` satisfies the contract of [`GemmRaw`](crate::GemmRaw).
    fn gemm, f32, NV = NV, MR = MR, group = [1 => 2],
    blocks = [(2, 1), (1, 1), (1, 2)],
    split = []
}

/// # Safety
/// `a` satisfies the contract of [`BackwardRaw`].
pub(crate) unsafe fn backward(a: &BackwardRaw) {
    // SAFETY: forwarded contract; `f32` needs no CPU feature.
    unsafe { crate::backward::backward::<f32, { 4 * NV }>(a) }
}

/// # Safety
/// `src` valid for `n` reads, `dst` for `n` writes (they may be equal).
pub(crate) unsafe fn sigmoid(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: forwarded contract.
    unsafe { crate::activations::map::<f32, { crate::activations::SIGMOID }>(src, dst, n) }
}

/// # Safety
/// As [`crate::transpose::block`].
pub(crate) unsafe fn transpose(rows: &[*const f32], cols: usize, dst: *mut f32, ld: usize) {
    // SAFETY: forwarded contract.
    unsafe { crate::transpose::block::<f32>(rows, cols, dst, ld) }
}

/// # Safety
/// `src` valid for `n` reads, `dst` for `n` writes (they may be equal).
pub(crate) unsafe fn tanh(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: forwarded contract.
    unsafe { crate::activations::map::<f32, { crate::activations::TANH }>(src, dst, n) }
}

/// The scalar entry points: available on every CPU, and the oracle the SIMD
/// tables are self-checked against (`selfcheck.rs`).
pub(crate) const TABLE: Table = Table {
    u: U,
    mr: MR,
    step,
    gemm,
    backward,
    sigmoid,
    tanh,
    transpose,
};

//! NEON: 4 lanes in a `float32x4_t`.

use std::arch::aarch64::*;

use crate::args::BackwardRaw;
use crate::table::Table;
use crate::vector::Vector;

// The methods hold no `unsafe` blocks of their own: each is one intrinsic
// (or a few) whose only requirement, NEON (part of every aarch64 Linux
// target) and, for load/store, pointers valid for 4 floats, is the trait's
// documented contract.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for float32x4_t {
    const LANES: usize = 4;
    type Mask = uint32x4_t;

    #[inline(always)]
    unsafe fn transpose(b: &mut [Self]) {
        let b: &mut [Self; 4] = b.try_into().expect("4 rows");
        // Rows pairwise interleaved, then pairs of pairs (as f64).
        let (l0, h0) = (vzip1q_f32(b[0], b[1]), vzip2q_f32(b[0], b[1]));
        let (l1, h1) = (vzip1q_f32(b[2], b[3]), vzip2q_f32(b[2], b[3]));
        let d = vreinterpretq_f64_f32;
        b[0] = vreinterpretq_f32_f64(vzip1q_f64(d(l0), d(l1)));
        b[1] = vreinterpretq_f32_f64(vzip2q_f64(d(l0), d(l1)));
        b[2] = vreinterpretq_f32_f64(vzip1q_f64(d(h0), d(h1)));
        b[3] = vreinterpretq_f32_f64(vzip2q_f64(d(h0), d(h1)));
    }

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        vdupq_n_f32(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        vst1q_f32(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        vaddq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        vsubq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        vmulq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        vdivq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        vfmaq_f32(c, a, b)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // FMAX propagates NaN from either operand: a superset of the
        // trait's rule.
        vmaxq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        vminq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        vabsq_f32(self)
    }
    #[inline(always)]
    unsafe fn xor_sign(self, sign_of: Self) -> Self {
        let s = vandq_u32(vreinterpretq_u32_f32(sign_of), vdupq_n_u32(0x8000_0000));
        vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(self), s))
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        vreinterpretq_f32_u32(vshlq_n_u32::<23>(vreinterpretq_u32_f32(self)))
    }
    #[inline(always)]
    unsafe fn add_bits(self, o: Self) -> Self {
        vreinterpretq_f32_u32(vaddq_u32(
            vreinterpretq_u32_f32(self),
            vreinterpretq_u32_f32(o),
        ))
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> Self::Mask {
        vcltq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn le(self, o: Self) -> Self::Mask {
        vcleq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self {
        vbslq_f32(m, a, b)
    }
}

/// Hidden units per tile: one `float32x4_t` per gate.
pub(crate) const U: usize = NV * 4;
/// Vectors per gate in a tile.
const NV: usize = 1;
/// Rows per register block: 6 rows x 4 gates = 24 accumulators, plus 6
/// broadcasts of `h_prev` and 1 weight vector: 31 of the 32 vector registers.
pub(crate) const MR: usize = 6;

crate::step::step_kernel! {
    /// # Safety
    /// `a` satisfies the [`StepRaw`](crate::StepRaw) contract.
    #[target_feature(enable = "neon")]
    fn step, float32x4_t, NV = NV, MR = MR, plain = false, group = [1 => 4, 2 => 3, 3 => 2],
    blocks = [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1), (3, 2), (2, 3), (1, 4)],
    split = []
}

crate::gemm::gemm_kernel! {
    /// The step kernel without its epilogue, for the input projections.
    ///
    /// # Safety
    /// `a` satisfies the [`GemmRaw`](crate::GemmRaw) contract.
    #[target_feature(enable = "neon")]
    fn gemm, float32x4_t, NV = NV, MR = MR, group = [1 => 4, 2 => 3, 3 => 2],
    blocks = [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1), (3, 2), (2, 3), (1, 4)],
    split = []
}

/// # Safety
/// `a` satisfies the [`BackwardRaw`] contract.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn backward(a: &BackwardRaw) {
    // SAFETY: this function's own contract.
    unsafe { crate::backward::backward::<float32x4_t, { 4 * NV }>(a) }
}

/// # Safety
/// `src` valid for `n` reads, `dst` for `n` writes (they may be equal).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn sigmoid(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<float32x4_t, { crate::activations::SIGMOID }>(src, dst, n) }
}

/// # Safety
/// The contract of [`crate::transpose::block`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn transpose(rows: &[*const f32], cols: usize, dst: *mut f32, ld: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::transpose::block::<float32x4_t>(rows, cols, dst, ld) }
}

/// # Safety
/// As [`sigmoid`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn tanh(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<float32x4_t, { crate::activations::TANH }>(src, dst, n) }
}

/// This ISA's entry points, which `dispatch.rs` hands out only after checking
/// the CPU.
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

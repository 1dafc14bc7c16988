//! AVX-512F: 16 lanes in a `__m512`.

use std::arch::x86_64::*;

use crate::cell::BackwardRaw;
use crate::vector::Vector;

// The methods hold no `unsafe` blocks of their own: each is one intrinsic
// (or a few) whose only requirement, AVX-512F on this CPU (and, for
// load/store, pointers valid for 16 floats), is the trait's documented
// contract. Only AVX-512F instructions are used: float xor/and are DQ, so
// the sign tricks go through the integer domain.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for __m512 {
    const LANES: usize = 16;
    type Mask = __mmask16;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        _mm512_add_ps(self, o)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        _mm512_sub_ps(self, o)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        _mm512_mul_ps(self, o)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        _mm512_div_ps(self, o)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // vmaxps: second operand when either is NaN, as the trait requires.
        _mm512_max_ps(self, o)
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        _mm512_min_ps(self, o)
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        _mm512_castsi512_ps(_mm512_and_si512(
            _mm512_castps_si512(self),
            _mm512_set1_epi32(0x7fff_ffff),
        ))
    }
    #[inline(always)]
    unsafe fn xor_sign(self, sign_of: Self) -> Self {
        let s = _mm512_and_si512(_mm512_castps_si512(sign_of), _mm512_set1_epi32(i32::MIN));
        _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(self), s))
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(self)))
    }
    #[inline(always)]
    unsafe fn add_bits(self, o: Self) -> Self {
        _mm512_castsi512_ps(_mm512_add_epi32(
            _mm512_castps_si512(self),
            _mm512_castps_si512(o),
        ))
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> Self::Mask {
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self, o)
    }
    #[inline(always)]
    unsafe fn le(self, o: Self) -> Self::Mask {
        _mm512_cmp_ps_mask::<_CMP_LE_OQ>(self, o)
    }
    #[inline(always)]
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self {
        // Lanes with the mask bit set take the second source.
        _mm512_mask_blend_ps(m, b, a)
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
}

/// Hidden units per tile: one `__m512` per gate.
pub(crate) const U: usize = NV * 16;
/// Vectors per gate in a tile.
const NV: usize = 1;
/// Rows per register block: 6 rows x 4 gates = 24 accumulators, plus 6
/// broadcasts of `h_prev` and 1 weight vector: 31 of the 32 zmm registers.
pub(crate) const MR: usize = 6;

crate::cell::step_kernel! {
    /// # Safety
    /// The CPU supports AVX-512F; `a` satisfies the
    /// [`StepRaw`](crate::cell::StepRaw) contract.
    #[target_feature(enable = "avx512f")]
    fn step, __m512, NV = NV, MR = MR, plain = false, group = [1 => 4, 2 => 3, 3 => 2],
    blocks = [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1), (3, 2), (2, 3), (1, 4)]
}

crate::cell::step_kernel! {
    /// The step kernel without its epilogue: a GEMM into `h_out` in the
    /// `zx` layout, for the input projections.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `a` satisfies the
    /// [`StepRaw`](crate::cell::StepRaw) contract.
    #[target_feature(enable = "avx512f")]
    fn gemm, __m512, NV = NV, MR = MR, plain = true, group = [1 => 4, 2 => 3, 3 => 2],
    blocks = [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1), (3, 2), (2, 3), (1, 4)]
}

/// # Safety
/// The CPU supports AVX-512F; `a` satisfies the [`BackwardRaw`] contract.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn backward(a: &BackwardRaw) {
    // SAFETY: this function's own contract.
    unsafe { crate::cell::backward::<__m512, { 4 * NV }>(a) }
}

/// # Safety
/// The CPU supports AVX-512F; `src` valid for `n` reads, `dst` for `n`
/// writes (they may be equal).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sigmoid(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<__m512, { crate::activations::SIGMOID }>(src, dst, n) }
}

/// # Safety
/// As [`sigmoid`].
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tanh(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<__m512, { crate::activations::TANH }>(src, dst, n) }
}

//! AVX2 + FMA: 8 lanes in a `__m256`.

use std::arch::x86_64::*;

use crate::args::BackwardRaw;
use crate::table::Table;
use crate::vector::Vector;

// The methods hold no `unsafe` blocks of their own: each is one intrinsic
// whose only requirement, AVX2 + FMA on this CPU (and, for load/store,
// pointers valid for 8 floats), is the trait's documented contract.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for __m256 {
    const LANES: usize = 8;
    type Mask = __m256;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn transpose(b: &mut [Self]) {
        let b: &mut [Self; 8] = b.try_into().expect("8 rows");
        // Rows pairwise interleaved, then pairs of pairs (as f64), then the
        // 128-bit halves: after the second stage, `u[4k + j]` holds column
        // `j` (low half) and `4 + j` (high half) of rows `4k..4k + 4`.
        let lo: [Self; 4] = std::array::from_fn(|p| _mm256_unpacklo_ps(b[2 * p], b[2 * p + 1]));
        let hi: [Self; 4] = std::array::from_fn(|p| _mm256_unpackhi_ps(b[2 * p], b[2 * p + 1]));
        let pd = _mm256_castps_pd;
        let u: [Self; 8] = std::array::from_fn(|i| {
            let (k, j) = (i / 4, i % 4);
            let (x, y) = if j < 2 {
                (lo[2 * k], lo[2 * k + 1])
            } else {
                (hi[2 * k], hi[2 * k + 1])
            };
            _mm256_castpd_ps(if j % 2 == 0 {
                _mm256_unpacklo_pd(pd(x), pd(y))
            } else {
                _mm256_unpackhi_pd(pd(x), pd(y))
            })
        });
        for j in 0..4 {
            b[j] = _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]);
            b[4 + j] = _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j]);
        }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        _mm256_add_ps(self, o)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        _mm256_sub_ps(self, o)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        _mm256_mul_ps(self, o)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        _mm256_div_ps(self, o)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        _mm256_max_ps(self, o)
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        _mm256_min_ps(self, o)
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), self)
    }
    #[inline(always)]
    unsafe fn xor_sign(self, sign_of: Self) -> Self {
        _mm256_xor_ps(self, _mm256_and_ps(sign_of, _mm256_set1_ps(-0.0)))
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(self)))
    }
    #[inline(always)]
    unsafe fn add_bits(self, o: Self) -> Self {
        _mm256_castsi256_ps(_mm256_add_epi32(
            _mm256_castps_si256(self),
            _mm256_castps_si256(o),
        ))
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> Self::Mask {
        _mm256_cmp_ps::<_CMP_LT_OQ>(self, o)
    }
    #[inline(always)]
    unsafe fn le(self, o: Self) -> Self::Mask {
        _mm256_cmp_ps::<_CMP_LE_OQ>(self, o)
    }
    #[inline(always)]
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self {
        _mm256_blendv_ps(b, a, m)
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
}

/// Hidden units per tile: one `__m256` per gate.
pub(crate) const U: usize = NV * 8;
/// Vectors per gate in a tile.
const NV: usize = 1;
/// Rows per register block: 3 rows x 4 gates = 12 accumulators, plus 3
/// broadcasts of `h_prev` and 1 weight vector: all 16 ymm registers, none
/// spilled (checked in the disassembly).
pub(crate) const MR: usize = 3;

crate::step::step_kernel! {
    /// # Safety
    /// The CPU supports AVX2 and FMA; `a` satisfies the [`StepRaw`](crate::StepRaw)
    /// contract.
    #[target_feature(enable = "avx2,fma")]
    fn step, __m256, NV = NV, MR = MR, plain = false, group = [1 => 3],
    blocks = [(3, 1), (2, 1), (1, 1), (1, 3)],
    split = []
}

crate::gemm::gemm_kernel! {
    /// The step kernel without its epilogue, for the input projections.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `a` satisfies the [`GemmRaw`](crate::GemmRaw)
    /// contract.
    #[target_feature(enable = "avx2,fma")]
    fn gemm, __m256, NV = NV, MR = MR, group = [1 => 3],
    blocks = [(3, 1), (2, 1), (1, 1), (1, 3)],
    split = []
}

/// # Safety
/// The CPU supports AVX2 and FMA; `a` satisfies the [`BackwardRaw`]
/// contract.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn backward(a: &BackwardRaw) {
    // SAFETY: this function's own contract.
    unsafe { crate::backward::backward::<__m256, { 4 * NV }>(a) }
}

/// # Safety
/// The CPU supports AVX2 and FMA; `src` valid for `n` reads, `dst` for `n`
/// writes (they may be equal).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn sigmoid(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<__m256, { crate::activations::SIGMOID }>(src, dst, n) }
}

/// # Safety
/// The CPU supports AVX2 and FMA; the contract of [`crate::transpose::block`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn transpose(rows: &[*const f32], cols: usize, dst: *mut f32, ld: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::transpose::block::<__m256>(rows, cols, dst, ld) }
}

/// # Safety
/// As [`sigmoid`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tanh(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<__m256, { crate::activations::TANH }>(src, dst, n) }
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

//! AVX-512F: 16 lanes in a `__m512`.

use std::arch::x86_64::*;

use crate::args::BackwardRaw;
use crate::table::Table;
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
    unsafe fn transpose(b: &mut [Self]) {
        let b: &mut [Self; 16] = b.try_into().expect("16 rows");
        // Stage 1 interleaves row pairs, stage 2 pairs of pairs (as f64):
        // `u[4k + j]` then holds, in its 128-bit block `q`, rows `4k..4k + 4`
        // of column `4q + j`. Stages 3 and 4 gather the four blocks `q` of the
        // row groups `k` into whole columns.
        let lo: [Self; 8] = std::array::from_fn(|p| _mm512_unpacklo_ps(b[2 * p], b[2 * p + 1]));
        let hi: [Self; 8] = std::array::from_fn(|p| _mm512_unpackhi_ps(b[2 * p], b[2 * p + 1]));
        let pd = _mm512_castps_pd;
        let u: [Self; 16] = std::array::from_fn(|i| {
            let (k, j) = (i / 4, i % 4);
            let (x, y) = if j < 2 {
                (lo[2 * k], lo[2 * k + 1])
            } else {
                (hi[2 * k], hi[2 * k + 1])
            };
            _mm512_castpd_ps(if j % 2 == 0 {
                _mm512_unpacklo_pd(pd(x), pd(y))
            } else {
                _mm512_unpackhi_pd(pd(x), pd(y))
            })
        });
        for j in 0..4 {
            // Blocks 0 and 2 (0x88) or 1 and 3 (0xdd) of each operand.
            let x0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
            let x1 = _mm512_shuffle_f32x4::<0xdd>(u[j], u[4 + j]);
            let x2 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
            let x3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + j], u[12 + j]);
            b[j] = _mm512_shuffle_f32x4::<0x88>(x0, x2);
            b[8 + j] = _mm512_shuffle_f32x4::<0xdd>(x0, x2);
            b[4 + j] = _mm512_shuffle_f32x4::<0x88>(x1, x3);
            b[12 + j] = _mm512_shuffle_f32x4::<0xdd>(x1, x3);
        }
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
// Split blocks (see `step_kernel!`) take 1-3 leftover rows, whose own blocks feed 1-3
// rows per weight vector; 4 leftover rows keep their (4, 1) block: as a 10-row split
// block, `infer-b64-h1024` at 1 thread was 3% slower (4 alternations).

crate::step::step_kernel! {
    /// # Safety
    /// The CPU supports AVX-512F; `a` satisfies the
    /// [`StepRaw`](crate::StepRaw) contract.
    #[target_feature(enable = "avx512f")]
    fn step, __m512, NV = NV, MR = MR, plain = false, group = [1 => 4, 2 => 3, 3 => 2],
    blocks = [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1), (3, 2), (2, 3), (1, 4)],
    split = [7, 8, 9]
}

crate::gemm::gemm_kernel! {
    /// The step kernel without its epilogue, for the input projections.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `a` satisfies the
    /// [`GemmRaw`](crate::GemmRaw) contract.
    #[target_feature(enable = "avx512f")]
    fn gemm, __m512, NV = NV, MR = MR, group = [1 => 4, 2 => 3, 3 => 2],
    blocks = [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1), (3, 2), (2, 3), (1, 4)],
    split = [7, 8, 9]
}

/// # Safety
/// The CPU supports AVX-512F; `a` satisfies the [`BackwardRaw`] contract.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn backward(a: &BackwardRaw) {
    // SAFETY: this function's own contract.
    unsafe { crate::backward::backward::<__m512, { 4 * NV }>(a) }
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
/// The CPU supports AVX-512F; the contract of [`crate::transpose::block`].
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose(rows: &[*const f32], cols: usize, dst: *mut f32, ld: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::transpose::block::<__m512>(rows, cols, dst, ld) }
}

/// # Safety
/// As [`sigmoid`].
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tanh(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: this function's own contract.
    unsafe { crate::activations::map::<__m512, { crate::activations::TANH }>(src, dst, n) }
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

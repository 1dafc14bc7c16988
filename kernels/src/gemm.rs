//! The epilogue-free GEMM mode: `out = init + a W` in the kernels' tile order,
//! for the input projections.
//!
//! It is the step kernel of `step.rs` with `plain = true` (its sums stored as
//! they are instead of the cell epilogue), not a second GEMM: the same
//! register blocks and the same fma chain per element as the step's gate
//! sums, which is what makes a projection made here and passed to a step as
//! `zx` give the bits of the projection fused into the step as an
//! [`InputPart`](crate::InputPart). [`GemmRaw`] is its own argument type
//! only at the API; inside, it is mapped onto the [`StepRaw`] the shared
//! machinery reads ([`as_step`]).

use crate::args::{GemmRaw, StepRaw};

/// The [`StepRaw`] the plain step kernel reads for `a`: `h_prev` = `a`,
/// `zx` = `init`, `h_out` = `out`.
///
/// The epilogue's fields get inert values: in plain mode the kernel never
/// dereferences `c`, `peep` or `gates` (nor prefetches `c`) and ignores the
/// cell options, so the null `c` is never touched.
#[inline(always)]
pub(crate) fn as_step(a: &GemmRaw) -> StepRaw {
    StepRaw {
        rows: a.rows,
        k: a.k,
        input: None,
        h_prev: a.a,
        ld_h_prev: a.lda,
        w: a.w,
        ld_w: a.ld_w,
        w_panel: a.w_panel,
        zx: a.init,
        ld_zx: a.ld_init,
        peep: None,
        c: std::ptr::null_mut(),
        ld_c: 0,
        h_out: a.out,
        ld_h_out: a.ld_out,
        gates: None,
        ld_gates: 0,
        tiles: a.tiles.clone(),
        forget_bias: 0.0,
        cell_clip: f32::INFINITY,
    }
}

/// Defines an ISA's GEMM entry point `$name(&GemmRaw)`: [`as_step`], then the
/// plain step kernel that [`step_kernel!`](crate::step::step_kernel) builds
/// from the same arguments as the ISA's step (its block shapes suit the
/// GEMM as well: the `k` loop is the same).
macro_rules! gemm_kernel {
    (
        $(#[$attr:meta])*
        fn $name:ident, $V:ty, NV = $NV:expr, MR = $MR:expr,
        group = [$($gr:literal => $gt:literal),*],
        blocks = [$(($br:literal, $bt:literal)),*],
        split = [$($sr:literal),*]
    ) => {
        $(#[$attr])*
        pub(crate) unsafe fn $name(a: &$crate::args::GemmRaw) {
            $crate::step::step_kernel! {
                $(#[$attr])*
                fn plain, $V, NV = $NV, MR = $MR, plain = true,
                group = [$($gr => $gt),*],
                blocks = [$(($br, $bt)),*],
                split = [$($sr),*]
            }
            // SAFETY: this function's contract (the CPU has the ISA, `a` meets the
            // `GemmRaw` contract) is the plain kernel's: `as_step` passes `a`'s
            // regions on unchanged as `h_prev`, `w`, `zx` and `h_out`, and the
            // fields it fills in itself are those plain mode never reads.
            unsafe { plain(&$crate::gemm::as_step(a)) }
        }
    };
}
pub(crate) use gemm_kernel;

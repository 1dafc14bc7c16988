//! The table of one ISA's kernels: each ISA module (`scalar.rs`,
//! `x86_64/{avx2,avx512}.rs`, `aarch64/neon.rs`) fills one in as its `TABLE`,
//! and [`crate::Kernels`] picks the table of the ISA it runs.
//!
//! The entry points are `unsafe fn`s whose shared contract includes "the CPU
//! supports this table's ISA": only `Kernels::for_isa`, after checking the
//! CPU, hands a table out.

use crate::args::{BackwardRaw, GemmRaw, StepRaw};

/// A forward step over `a.tiles`.
pub(crate) type StepFn = unsafe fn(&StepRaw);
/// The epilogue-free GEMM over `a.tiles`.
pub(crate) type GemmFn = unsafe fn(&GemmRaw);
/// A backward step over `a.tiles`.
pub(crate) type BackwardFn = unsafe fn(&BackwardRaw);
/// An activation of `n` floats, `src` to `dst` (which may be equal).
pub(crate) type MapFn = unsafe fn(*const f32, *mut f32, usize);
/// [`crate::transpose::block`].
pub(crate) type TransposeFn = unsafe fn(&[*const f32], usize, *mut f32, usize);

/// One ISA's tile shape and entry points.
#[derive(Clone, Copy)]
pub(crate) struct Table {
    /// `U`: hidden units per tile, the packing granule.
    pub(crate) u: usize,
    /// Rows per register block of the step kernel.
    pub(crate) mr: usize,
    pub(crate) step: StepFn,
    pub(crate) gemm: GemmFn,
    pub(crate) backward: BackwardFn,
    pub(crate) sigmoid: MapFn,
    pub(crate) tanh: MapFn,
    pub(crate) transpose: TransposeFn,
}

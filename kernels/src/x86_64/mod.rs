//! x86_64 ISAs. Each module implements [`crate::vector::Vector`] for its
//! register type and defines `#[target_feature]` entry points that
//! instantiate the generic kernels; only `dispatch.rs` calls them, after
//! checking the CPU.

pub(crate) mod avx2;
pub(crate) mod avx512;

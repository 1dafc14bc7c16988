//! x86_64 ISAs. Each module implements [`crate::vector::Vector`] for its
//! register type, defines `#[target_feature]` entry points that instantiate
//! the generic kernels, and lists them in its `TABLE`; only `dispatch.rs`
//! hands that table out, after checking the CPU.

pub(crate) mod avx2;
pub(crate) mod avx512;

//! aarch64 ISAs: NEON (always present on aarch64, so never absent at run
//! time, but kept behind the same dispatch as the x86 ISAs).

pub(crate) mod neon;

//! Per-ISA SIMD leaf kernels of `lstm-kernels`.

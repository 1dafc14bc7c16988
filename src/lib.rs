//! lstm-kernels

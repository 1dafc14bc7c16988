//! Per-ISA SIMD leaf kernels of `lstm-kernels`.
//!
//! The crate computes one LSTM recurrent step for a tile of hidden units at
//! a time, with the gate sums kept in registers: `z = zx + h_prev W_h`, the
//! gate activations and the cell update fused after the matrix product, so
//! the `4H` pre-activations never reach memory. It also has vectorised
//! `sigmoid` / `tanh` and the fused elementwise backward of a step.
//!
//! Layout: the kernels are written once over a small vector trait
//! (`vector.rs`): the activations (`activations.rs`), the forward step
//! (`step.rs`), its epilogue-free GEMM mode (`gemm.rs`), the backward
//! (`backward.rs`) and the transpose (`transpose.rs`); their argument types
//! are in `args.rs`. Each ISA (`scalar.rs`, `x86_64/{avx2,avx512}.rs`,
//! `aarch64/neon.rs`) implements the trait, instantiates the kernels under its
//! `#[target_feature]` and lists them in its table (`table.rs`). [`Kernels`]
//! (`dispatch.rs`) wraps one table in safe methods; `isa.rs` names the ISAs
//! and asks the CPU for them; `detect.rs` picks one at run time, after a
//! known-answer check against the scalar table (`selfcheck.rs`). The packing
//! helpers are in `pack.rs`.
//!
//! Exactness: every ISA runs the same sequence of IEEE operations (fused
//! multiply-add, correctly rounded division, integer bit operations), so
//! every ISA returns the same bits as the scalar path; and every gate sum
//! is one fma chain over `k` in order, so a step's result does not depend
//! on the number of rows or on how its tiles are split between threads.
//! The activations' error bounds are in [`bounds`].
//!
//! Tile shapes (`U` = hidden units per tile, the packing granule; `MR` =
//! rows per register block):
//!
//! | ISA | `U` | `MR` | rows left over (`rows % MR`) |
//! | --- | --- | --- | --- |
//! | AVX-512F | 16 | 6 | with a full block before them, 1-3 rows join it in a split block of 7-9 rows (half a tile's gates per pass); alone, 1 row x 4 tiles, 2 x 3, 3 x 2 at a time |
//! | AVX2 + FMA | 8 | 3 | 1 row x 3 tiles at a time |
//! | NEON | 4 | 6 | 1 row x 4 tiles, 2 x 3, 3 x 2 at a time |
//! | scalar | 4 | 2 | 1 row x 2 tiles at a time |
//!
//! Threads: give each thread a fixed range of tiles for the whole sequence
//! (weight-stationary) and call [`Kernels::step_tiles_raw`] with its range;
//! the kernel writes only those tiles' columns.
//!
//! ```
//! use lstm_kernels_simd::{pack_gate_columns, pack_gate_panels, Kernels, StepParams};
//!
//! let kern = Kernels::detect();
//! let (rows, k, h) = (2, 3, 5);
//! let u = kern.unit_tile();
//! let w_h = vec![0.1f32; k * 4 * h]; // canonical [k, 4h], gates i, j, f, o
//! let w = pack_gate_panels(&w_h, k, h, u);
//! let zx = pack_gate_columns(&vec![0.2f32; rows * 4 * h], rows, h, u);
//! let h_prev = vec![0.5f32; rows * k];
//! let mut c = vec![0.0f32; rows * kern.padded(h)];
//! let mut m = vec![0.0f32; rows * kern.padded(h)];
//! let all = 0..kern.tiles(h);
//! let p = StepParams { forget_bias: 1.0, cell_clip: None };
//! kern.step_tiles(rows, k, h, &h_prev, &w, &zx, None, &mut c, &mut m, all, &p, None);
//! // Every unit sees z = 0.2 + 3 * 0.05 = 0.35 on every gate.
//! let s = |x: f32| 1.0 / (1.0 + (-x).exp());
//! let c0 = s(0.35) * 0.35f32.tanh();
//! assert!((c[0] - c0).abs() < 1e-6);
//! assert!((m[0] - s(0.35) * c0.tanh()).abs() < 1e-6);
//! ```
#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

mod activations;
mod args;
mod backward;
mod detect;
mod dispatch;
mod gemm;
mod isa;
mod pack;
mod scalar;
mod selfcheck;
mod step;
mod table;
mod transpose;
mod vector;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use args::{BackwardRaw, DzPanels, GemmRaw, InputPart, StepParams, StepRaw};
pub use detect::{available_isas, cpu_isas, isa_status, resolve_isa, DetectError, IsaStatus};
pub use dispatch::Kernels;
pub use isa::{Isa, ISA_ENV};
pub use pack::{
    pack_gate_columns, pack_gate_columns_into, pack_gate_panels, pack_gate_panels_into,
    pack_panels, pack_panels_into, pack_peepholes, packed_gate_panels_len, packed_panels_len,
    pad_units, padded, tiles, unpack_gate_columns, unpack_gate_panels, unpack_peepholes,
    unpad_units,
};

/// The stated accuracy of [`Kernels::sigmoid_slice`] and
/// [`Kernels::tanh_slice`] (and of the activations inside the step kernel),
/// against the exact function evaluated in f64, over every finite f32 input.
///
/// ulps are counted in units of the spacing of f32 at the exact result
/// (`2^-149` in the subnormal range). Measured over all 2^32 inputs (the
/// ignored test `exhaustive_every_f32`): sigmoid 2.41 ulp, tanh 2.42 ulp,
/// both 8.93e-8 absolute; the constants round those up. Infinities map to the limits exactly
/// (`tanh(±inf) = ±1`, `sigmoid(-inf) = 0`, `sigmoid(inf) = 1`), NaN to
/// NaN, `tanh(-0) = -0`, and every ISA returns the same bits.
pub mod bounds {
    /// Maximum error of `sigmoid`, in ulps.
    pub const SIGMOID_MAX_ULP: f64 = 2.5;
    /// Maximum absolute error of `sigmoid`.
    pub const SIGMOID_MAX_ABS: f64 = 9.0e-8;
    /// Maximum error of `tanh`, in ulps.
    pub const TANH_MAX_ULP: f64 = 2.5;
    /// Maximum absolute error of `tanh`.
    pub const TANH_MAX_ABS: f64 = 9.0e-8;
}

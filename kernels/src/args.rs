//! The arguments of the kernels: the cell options ([`StepParams`]) and the
//! raw descriptions of memory that the `*_tiles_raw` entry points of
//! [`crate::Kernels`] take ([`StepRaw`] with its [`InputPart`], [`GemmRaw`],
//! [`BackwardRaw`] with its [`DzPanels`]).
//!
//! Raw pointers and strides rather than slices, because callers split the
//! tiles of one call between threads and each thread writes only the columns
//! of its own tiles, which safe `&mut` slices cannot say.
//!
//! Common units: `U` is [`crate::Kernels::unit_tile`] (hidden units per
//! tile), a *tile* is the `U` units `t*U..(t+1)*U` of the layer, the layer
//! has `tiles` tiles (its units padded to a whole number of tiles), and
//! every stride and offset counts `f32` elements, not bytes. A tile's gate
//! values are `4U` consecutive floats, `U` each of the gates `i, g, f, o` (in
//! that order; `g` is the candidate cell, TensorFlow's `j`); "tile order" is
//! tile after tile of those `4U`.

use std::ops::Range;
use std::ptr::NonNull;

/// Cell options of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepParams {
    /// Added to the forget gate's pre-activation (TensorFlow's
    /// `forget_bias`; 0 for PyTorch).
    pub forget_bias: f32,
    /// Clamp the new cell state to `[-clip, clip]`; `clip` must be `>= 0`.
    pub cell_clip: Option<f32>,
}

impl Default for StepParams {
    fn default() -> Self {
        StepParams {
            forget_bias: 0.0,
            cell_clip: None,
        }
    }
}

impl StepParams {
    /// The clip as the kernels use it: +inf when off.
    pub(crate) fn clip_value(&self) -> f32 {
        match self.cell_clip {
            Some(c) => {
                assert!(c >= 0.0, "cell_clip must be >= 0 (got {c})");
                c
            }
            None => f32::INFINITY,
        }
    }
}

/// Raw arguments of one forward step (see [`crate::Kernels::step_tiles`] for
/// the math), for callers that split the tiles of one step between threads
/// (each thread writes only the columns of its tiles of `c`, `h_out` and
/// `gates`, which safe `&mut` slices cannot say).
///
/// Layouts, with `U` = [`crate::Kernels::unit_tile`] and `tiles` the total
/// tile count of the layer:
/// - `h_prev`: `rows x k`, row stride `ld_h_prev >= k`;
/// - `w`: panels of `4U` columns: tile `t`'s panel starts at
///   `t * w_panel` and its row `kk` at `t * w_panel + kk * ld_w`. The
///   output of [`crate::pack_gate_panels`] has `ld_w = 4U`,
///   `w_panel = k * 4U`; a row-major `[k, tiles*4U]` matrix (gate
///   gradients in tile order, say) is read in place with `ld_w` = its row
///   stride and `w_panel = 4U`;
/// - `zx`, `gates`: `rows x tiles*4U` in tile order (strides `ld_zx`,
///   `ld_gates`); `gates` receives `i, g, f, o` activated;
/// - `peep`: the output of [`crate::pack_peepholes`] (`tiles * 3U`);
/// - `c` (in: `c_prev`, out: new `c`) and `h_out`: `rows x tiles*U`.
///
/// - `input` (optional): a first part of the same product, `x · W_x` (see
///   [`InputPart`]), summed before `h_prev · W`.
///
/// The kernel reads and writes whole tiles, padding units included. The
/// contract the pointers must meet is under [`crate::Kernels::step_tiles_raw`].
#[derive(Clone, Debug)]
pub struct StepRaw {
    /// Rows of the call (sequences of the batch): rows `0..rows` of every
    /// matrix below are computed.
    pub rows: usize,
    /// Width of `h_prev`, which is also the number of rows of each panel of
    /// `w`.
    pub k: usize,
    /// The input projection to sum in the same `k` loop, before `h_prev · W`;
    /// `None` when `zx` already holds it.
    pub input: Option<InputPart>,
    /// The previous hidden state (or any left operand), `rows x k`: row `r`
    /// starts at `h_prev + r * ld_h_prev`. Read only.
    pub h_prev: *const f32,
    /// Row stride of `h_prev`, in floats, `>= k`.
    pub ld_h_prev: usize,
    /// The recurrent weights in panels of `4U` columns, one panel per tile:
    /// tile `t`'s row `kk` (its `4U` gate columns) starts at
    /// `w + t * w_panel + kk * ld_w`. Read only.
    pub w: *const f32,
    /// Distance from one row of a panel of `w` to the next, in floats: `4U`
    /// for [`crate::pack_gate_panels`]'s output, the row stride of a row-major
    /// matrix read in place.
    pub ld_w: usize,
    /// Distance from one tile's panel of `w` to the next, in floats:
    /// `k * 4U` for [`crate::pack_gate_panels`]'s output, `4U` for a row-major
    /// matrix read in place.
    pub w_panel: usize,
    /// The starting values of the gate sums (input projection plus bias),
    /// `rows x tiles*4U` in tile order: row `r` starts at `zx + r * ld_zx`.
    /// Read only.
    pub zx: *const f32,
    /// Row stride of `zx`, in floats; 0 makes every row start from the same
    /// row (a bias, with the input projection in `input`).
    pub ld_zx: usize,
    /// The peephole weights as [`crate::pack_peepholes`] lays them out
    /// (`tiles * 3U`: per tile, `U` each of `w_i`, `w_f`, `w_o`), or `None`
    /// for a cell without peepholes. Read only.
    pub peep: Option<NonNull<f32>>,
    /// The cell state, `rows x tiles*U`: read as `c_prev`, then overwritten
    /// with the new cell, in the columns of `tiles` only.
    pub c: *mut f32,
    /// Row stride of `c`, in floats.
    pub ld_c: usize,
    /// Receives the new hidden state `m = o tanh(c)`, `rows x tiles*U`, in
    /// the columns of `tiles` only.
    pub h_out: *mut f32,
    /// Row stride of `h_out`, in floats.
    pub ld_h_out: usize,
    /// If set, receives the activated gates `i, g, f, o`, `rows x tiles*4U`
    /// in tile order (what [`crate::Kernels::backward_tiles`] reads), in the
    /// columns of `tiles` only.
    pub gates: Option<NonNull<f32>>,
    /// Row stride of `gates`, in floats; not read when `gates` is `None`.
    pub ld_gates: usize,
    /// The tiles this call computes, a sub-range of `0..tiles`.
    pub tiles: Range<usize>,
    /// Added to the forget gate's pre-activation, as
    /// [`StepParams::forget_bias`].
    pub forget_bias: f32,
    /// The new cell is clamped to `[-cell_clip, cell_clip]`; `+inf` for no
    /// clip. Must not be NaN or negative.
    pub cell_clip: f32,
}

/// The input projection of a step, run in the same `k` loop as the recurrent
/// product: the gate sums become `zx + x W_x + h_prev W` (`zx` then usually the
/// bias, `ld_zx = 0`), with the `kx` rows of `W_x` first. That is the very chain
/// that a separate projection into `zx` followed by the step computes, so the
/// bits are the same, without the round trip of the `4U`-wide sums through
/// memory and with one long `k` loop instead of two short ones.
///
/// Layouts as [`StepRaw`]'s `h_prev` and `w`: `x` is `rows x kx` (row stride
/// `ld_x`), tile `t`'s panel of `W_x` starts at `t * w_panel`, its row `kk` at
/// `t * w_panel + kk * ld_w`.
#[derive(Clone, Copy, Debug)]
pub struct InputPart {
    /// Width of `x`, which is also the number of rows of each panel of `w`.
    pub kx: usize,
    /// The step's input, `rows x kx` (the rows of the enclosing
    /// [`StepRaw`]): row `r` starts at `x + r * ld_x`. Read only.
    pub x: *const f32,
    /// Row stride of `x`, in floats, `>= kx`.
    pub ld_x: usize,
    /// The input weights `W_x` in panels of `4U` columns, one per tile: tile
    /// `t`'s row `kk` starts at `w + t * w_panel + kk * ld_w`. Read only.
    pub w: *const f32,
    /// Distance from one row of a panel of `w` to the next, in floats (`4U`
    /// for [`crate::pack_gate_panels`]'s output).
    pub ld_w: usize,
    /// Distance from one tile's panel of `w` to the next, in floats
    /// (`kx * 4U` for [`crate::pack_gate_panels`]'s output).
    pub w_panel: usize,
}

/// Raw arguments of the epilogue-free GEMM mode of the step kernel
/// ([`crate::Kernels::gemm_tiles_raw`]): `out[r] = init[r] + a[r] · W` for
/// rows `0..rows` and the tiles `tiles`, in the kernels' tile order.
///
/// Layouts, with `U` = [`crate::Kernels::unit_tile`] and `tiles` the tile
/// count of the whole product (its `n` columns padded to whole `4U` tiles):
/// - `a`: `rows x k`, row stride `lda >= k`;
/// - `w`: panels of `4U` columns as [`StepRaw`]'s `w`: tile `t`'s row `kk` at
///   `t * w_panel + kk * ld_w`. [`crate::pack_gate_panels`] (input weights in
///   tile order) and [`crate::pack_panels`] with `width = 4U` (any matrix)
///   give `ld_w = 4U`, `w_panel = k * 4U`; a row-major `[k, tiles*4U]`
///   matrix is read in place with `ld_w` = its row stride, `w_panel = 4U`;
/// - `init`, `out`: `rows x tiles*4U` (strides `ld_init`, `ld_out`); with
///   `ld_init = 0` every row starts from the same row of `init` (a bias).
///
/// Every element is one fma chain over `kk = 0..k` in order, whatever the
/// rows and tiles of the call, the same chain as the step kernel's gate
/// sums: a projection made here and passed to a step as `zx` gives the bits
/// of the same projection fused into the step as an [`InputPart`].
///
/// The contract the pointers must meet is under
/// [`crate::Kernels::gemm_tiles_raw`].
#[derive(Clone, Debug)]
pub struct GemmRaw {
    /// Rows of the call: rows `0..rows` of `a`, `init` and `out`.
    pub rows: usize,
    /// The inner dimension: width of `a`, rows of each panel of `w`.
    pub k: usize,
    /// The left operand, `rows x k`: row `r` starts at `a + r * lda`. Read
    /// only.
    pub a: *const f32,
    /// Row stride of `a`, in floats, `>= k`.
    pub lda: usize,
    /// The right operand in panels of `4U` columns, one per tile: tile `t`'s
    /// row `kk` starts at `w + t * w_panel + kk * ld_w`. Read only.
    pub w: *const f32,
    /// Distance from one row of a panel of `w` to the next, in floats: `4U`
    /// for packed panels, the row stride of a row-major matrix read in place.
    pub ld_w: usize,
    /// Distance from one tile's panel of `w` to the next, in floats:
    /// `k * 4U` for packed panels, `4U` for a row-major matrix read in place.
    pub w_panel: usize,
    /// The values the sums start from, `rows x tiles*4U` (or one such row):
    /// row `r` starts at `init + r * ld_init`. Read only.
    pub init: *const f32,
    /// Row stride of `init`, in floats; 0 makes every row start from the
    /// same row.
    pub ld_init: usize,
    /// Receives the sums, `rows x tiles*4U`: row `r` starts at
    /// `out + r * ld_out`; only the columns of `tiles` are written.
    pub out: *mut f32,
    /// Row stride of `out`, in floats.
    pub ld_out: usize,
    /// The tiles (groups of `4U` columns) this call computes.
    pub tiles: Range<usize>,
}

/// Raw arguments of one backward step (see [`crate::Kernels::backward_tiles`]
/// for the meaning); the layouts are those of [`StepRaw`]: `gates` and `dz`
/// are `rows x tiles*4U`, `c_prev`, `dh`, `dc` are `rows x tiles*U`,
/// `peep` and `dpeep` are `tiles * 3U`. `dz_panels`, when set, receives a second
/// copy of `dz` laid out as panels (see [`DzPanels`]). The contract the
/// pointers must meet is under [`crate::Kernels::backward_tiles_raw`].
#[derive(Clone, Debug)]
pub struct BackwardRaw {
    /// Rows of the call: rows `0..rows` of every matrix below.
    pub rows: usize,
    /// The activated gates `i, g, f, o` the forward step saved
    /// ([`StepRaw::gates`]), `rows x tiles*4U` in tile order. Read only.
    pub gates: *const f32,
    /// Row stride of `gates`, in floats.
    pub ld_gates: usize,
    /// The step's input cell, `rows x tiles*U`. Read only.
    pub c_prev: *const f32,
    /// Row stride of `c_prev`, in floats.
    pub ld_c_prev: usize,
    /// The gradient into the step's output `m`, `rows x tiles*U`. Read only.
    pub dh: *const f32,
    /// Row stride of `dh`, in floats.
    pub ld_dh: usize,
    /// `rows x tiles*U`: read as the gradient into this step's new cell (from
    /// the next step), overwritten with the gradient into `c_prev`, in the
    /// columns of `tiles` only.
    pub dc: *mut f32,
    /// Row stride of `dc`, in floats.
    pub ld_dc: usize,
    /// Receives the gradient of the gate pre-activations `z` (so also of
    /// `zx` and of the bias), `rows x tiles*4U` in tile order, in the
    /// columns of `tiles` only.
    pub dz: *mut f32,
    /// Row stride of `dz`, in floats.
    pub ld_dz: usize,
    /// If set, where a second copy of `dz` goes, laid out as panels.
    pub dz_panels: Option<DzPanels>,
    /// The peephole weights as [`StepRaw::peep`], or `None` for a cell
    /// without peepholes. Read only.
    pub peep: Option<NonNull<f32>>,
    /// If set, the peephole gradients summed over the rows (`tiles * 3U`,
    /// laid out as `peep`) are *added* to it, in the entries of `tiles`.
    pub dpeep: Option<NonNull<f32>>,
    /// The tiles this call computes, a sub-range of `0..tiles`.
    pub tiles: Range<usize>,
    /// The forward's clip, as [`StepRaw::cell_clip`]: `+inf` for none, not
    /// NaN or negative.
    pub cell_clip: f32,
}

/// Where the backward kernel writes its second copy of the gate gradients: row
/// `r`'s `4U` values of tile `t` at `at + r * ld + t * panel`. With `ld = 4U`
/// and `panel = rows_total * 4U` that is the panel layout the weight-gradient
/// product reads as its B operand (`[tiles][rows][4U]`), which the row-major
/// `dz`, `gw` floats per row, is not; writing both at once saves a pass that
/// reads all of `dz` again.
#[derive(Clone, Copy, Debug)]
pub struct DzPanels {
    /// Where row 0 of tile 0 goes. Written only.
    pub at: NonNull<f32>,
    /// Distance from one row of a tile's panel to the next, in floats (`4U`
    /// for the weight-gradient product's panels).
    pub ld: usize,
    /// Distance from one tile's panel to the next, in floats
    /// (`rows_total * 4U` for the weight-gradient product's panels).
    pub panel: usize,
}

// SAFETY: the structs are plain descriptions of memory; nothing is read or
// written through them except by `Kernels::step_tiles_raw` /
// `gemm_tiles_raw` / `backward_tiles_raw`, whose callers promise (in their
// `# Safety`) that concurrent calls touch disjoint tiles. Sending them to
// worker threads is how those calls are meant to be made.
unsafe impl Send for StepRaw {}
// SAFETY: as for `Send`: shared references only allow reading the fields.
unsafe impl Sync for StepRaw {}
// SAFETY: as for `StepRaw`.
unsafe impl Send for GemmRaw {}
// SAFETY: as for `StepRaw`.
unsafe impl Sync for GemmRaw {}
// SAFETY: as for `StepRaw`.
unsafe impl Send for BackwardRaw {}
// SAFETY: as for `StepRaw`.
unsafe impl Sync for BackwardRaw {}

//! [`Kernels`]: one ISA's table of entry points behind safe (and documented
//! raw) methods. Which ISA, and whether it passed its self-check, is
//! `detect.rs`'s business.

use std::fmt;
use std::ops::Range;
use std::ptr::NonNull;

use crate::args::{BackwardRaw, GemmRaw, StepParams, StepRaw};
use crate::isa::Isa;
use crate::pack::{packed_gate_panels_len, padded, tiles};
use crate::table::Table;

/// The kernels of one ISA: its tile shape and its entry points.
///
/// Cheap to copy. Obtain one with [`Kernels::detect`] (cached, honours
/// `LSTM_KERNELS_ISA`) or [`Kernels::for_isa`].
#[derive(Clone, Copy)]
pub struct Kernels {
    isa: Isa,
    /// `isa`'s table. Its entry points require the CPU to have `isa`, which
    /// `unchecked`, the only constructor, has checked.
    t: Table,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("isa", &self.isa)
            .field("unit_tile", &self.t.u)
            .field("mr", &self.t.mr)
            .finish()
    }
}

impl Kernels {
    /// These kernels with `sigmoid_slice` computing tanh: what the
    /// self-check must catch.
    #[cfg(test)]
    pub(crate) fn broken_for_test(mut self) -> Kernels {
        self.t.sigmoid = self.t.tanh;
        self
    }

    /// The kernels for `isa` if the CPU has it, without the self-check
    /// (`Kernels::for_isa` runs it).
    pub(crate) fn unchecked(isa: Isa) -> Option<Kernels> {
        if !isa.is_available() {
            return None;
        }
        let t = match isa {
            Isa::Scalar => crate::scalar::TABLE,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86_64::avx2::TABLE,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86_64::avx512::TABLE,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::TABLE,
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        Some(Kernels { isa, t })
    }

    /// The ISA these kernels run.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `U`: hidden units per tile, the packing granule of this ISA.
    pub fn unit_tile(&self) -> usize {
        self.t.u
    }

    /// Rows per register block of the step kernel (informative: any row
    /// count works, and the results do not depend on it).
    pub fn mr(&self) -> usize {
        self.t.mr
    }

    /// Number of tiles of a layer of `h` units.
    pub fn tiles(&self, h: usize) -> usize {
        tiles(h, self.t.u)
    }

    /// `h` padded to whole tiles: the row stride of `c` and `h_out`.
    pub fn padded(&self, h: usize) -> usize {
        padded(h, self.t.u)
    }

    /// [`crate::pack_gate_panels`] with this ISA's tile.
    pub fn pack_gate_panels(&self, w_h: &[f32], k: usize, h: usize) -> Vec<f32> {
        crate::pack::pack_gate_panels(w_h, k, h, self.t.u)
    }

    /// `dst[i] = sigmoid(src[i])`, any length.
    pub fn sigmoid_slice(&self, src: &[f32], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "sigmoid_slice: length mismatch");
        // SAFETY: `self` was built by `for_isa`, which checked the CPU; the
        // slices hold `len` elements each.
        unsafe { (self.t.sigmoid)(src.as_ptr(), dst.as_mut_ptr(), src.len()) }
    }

    /// `tanh` of every element of `src` into `dst`, any length.
    pub fn tanh_slice(&self, src: &[f32], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "tanh_slice: length mismatch");
        // SAFETY: as in `sigmoid_slice`.
        unsafe { (self.t.tanh)(src.as_ptr(), dst.as_mut_ptr(), src.len()) }
    }

    /// Sigmoid in place.
    pub fn sigmoid_inplace(&self, x: &mut [f32]) {
        // SAFETY: as in `sigmoid_slice`; the kernel reads each element
        // before writing it, so `src == dst` is fine.
        unsafe { (self.t.sigmoid)(x.as_ptr(), x.as_mut_ptr(), x.len()) }
    }

    /// Tanh in place.
    pub fn tanh_inplace(&self, x: &mut [f32]) {
        // SAFETY: as in `sigmoid_inplace`.
        unsafe { (self.t.tanh)(x.as_ptr(), x.as_mut_ptr(), x.len()) }
    }

    /// One recurrent step for the tiles `tile_range` of a layer of `h`
    /// units and recurrent width `k`, rows `0..rows`:
    ///
    /// `z = zx + h_prev W_h`; `i = σ(z_i + w_i c)`, `g = tanh(z_j)`,
    /// `f = σ(z_f + forget_bias + w_f c)`, `c' = f c + i g` (clipped),
    /// `o = σ(z_o + w_o c')`, `m = o tanh(c')`.
    ///
    /// - `h_prev`: `rows x k` (row stride `k`);
    /// - `w_packed`: [`crate::pack_gate_panels`] of `W_h` (`[k, 4h]`) for
    ///   this ISA's `U`;
    /// - `zx`: `rows x tiles*4U`, input projection plus bias in tile order;
    /// - `peep`: [`crate::pack_peepholes`] output, or `None`;
    /// - `c`: `rows x tiles*U`, `c_prev` in, new `c` out;
    /// - `h_out`: `rows x tiles*U`, receives `m`;
    /// - `save_gates`: `rows x tiles*4U`, receives `i, g, f, o` (for
    ///   [`Kernels::backward_tiles`]).
    ///
    /// Only the columns of the tiles in `tile_range` are read from `zx`,
    /// `c` and written in `c`, `h_out`, `save_gates`. Buffers may be longer
    /// than needed. Results are bitwise independent of `rows`, of how
    /// `tile_range` splits the layer, and of the ISA.
    ///
    /// # Panics
    /// When a slice is too short, `tile_range` exceeds the layer, or
    /// `cell_clip` is negative or NaN.
    #[allow(clippy::too_many_arguments)]
    pub fn step_tiles(
        &self,
        rows: usize,
        k: usize,
        h: usize,
        h_prev: &[f32],
        w_packed: &[f32],
        zx: &[f32],
        peep: Option<&[f32]>,
        c: &mut [f32],
        h_out: &mut [f32],
        tile_range: Range<usize>,
        params: &StepParams,
        save_gates: Option<&mut [f32]>,
    ) {
        let u = self.t.u;
        let nt = tiles(h, u);
        let cell_clip = params.clip_value();
        assert!(
            tile_range.start <= tile_range.end && tile_range.end <= nt,
            "tile_range {tile_range:?} outside 0..{nt}"
        );
        assert!(h_prev.len() >= rows * k, "h_prev shorter than rows*k");
        assert_eq!(
            w_packed.len(),
            packed_gate_panels_len(k, h, u),
            "w_packed is not pack_gate_panels(k={k}, h={h}, u={u})"
        );
        let w4 = nt * 4 * u;
        let w1 = nt * u;
        assert!(zx.len() >= rows * w4, "zx shorter than rows*tiles*4U");
        assert!(c.len() >= rows * w1, "c shorter than rows*tiles*U");
        assert!(h_out.len() >= rows * w1, "h_out shorter than rows*tiles*U");
        if let Some(p) = peep {
            assert_eq!(p.len(), nt * 3 * u, "peep is not tiles*3U");
        }
        if let Some(g) = save_gates.as_deref() {
            assert!(
                g.len() >= rows * w4,
                "save_gates shorter than rows*tiles*4U"
            );
        }
        if rows == 0 || tile_range.is_empty() {
            return;
        }
        let raw = StepRaw {
            rows,
            k,
            input: None,
            h_prev: h_prev.as_ptr(),
            ld_h_prev: k,
            w: w_packed.as_ptr(),
            ld_w: 4 * u,
            w_panel: k * 4 * u,
            zx: zx.as_ptr(),
            ld_zx: w4,
            peep: peep.map(|p| NonNull::from(p).cast()),
            c: c.as_mut_ptr(),
            ld_c: w1,
            h_out: h_out.as_mut_ptr(),
            ld_h_out: w1,
            gates: save_gates.map(|g| NonNull::from(g).cast()),
            ld_gates: w4,
            tiles: tile_range,
            forget_bias: params.forget_bias,
            cell_clip,
        };
        // SAFETY: the lengths checked above cover every offset the kernel
        // touches (rows x the layer's full tile width, tiles below nt, k
        // panel rows); the borrows make the outputs exclusive and distinct
        // from the inputs; `self` came from `for_isa`.
        unsafe { (self.t.step)(&raw) }
    }

    /// [`Kernels::step_tiles`] on raw pointers, with explicit strides: for
    /// threads that each own a slice of the tiles of the same step.
    ///
    /// # Safety
    /// - every pointer is valid for the whole region its layout in
    ///   [`StepRaw`] describes for `rows` rows, the layer's full tile width,
    ///   `k` panel rows, and the tiles `a.tiles` (with `a.input`, its `x` and
    ///   `w` likewise for `kx` columns and panel rows);
    /// - for the duration of the call, nothing else reads or writes the
    ///   columns of `a.tiles` in `c`, `h_out` and `gates`, and no output
    ///   region overlaps an input (`h_prev`, `w`, `zx`, `peep`, the input
    ///   part's `x` and `w`);
    /// - `a.cell_clip` is `>= 0` (`+inf` for none) and not NaN.
    pub unsafe fn step_tiles_raw(&self, a: &StepRaw) {
        if a.rows == 0 || a.tiles.is_empty() {
            return;
        }
        // SAFETY: the caller's contract is the kernel's; `self` came from
        // `for_isa`.
        unsafe { (self.t.step)(a) }
    }

    /// The step kernel without its epilogue, a GEMM in the kernels' tile order:
    /// `out[r] = init[r] + a[r] W` for rows `0..a.rows` and the tiles `a.tiles` (see
    /// [`GemmRaw`] for the layouts). With `W` packed by [`crate::pack_gate_panels`]
    /// (`k` = the input width) and the bias as `init` (`ld_init = 0`), that is the
    /// input projection of a layer in the order the step kernel reads `zx`, with
    /// the step's own sum order for every element whatever the rows and tiles of the
    /// call.
    ///
    /// # Safety
    /// - `a.a` is valid for reading `k` floats at each row `r * a.lda`,
    ///   `r < a.rows`;
    /// - `a.w` is valid for reading `4U` floats at `t * a.w_panel + kk * a.ld_w`
    ///   for every tile `t` of `a.tiles` and `kk < k`;
    /// - `a.init` is valid for reading, and `a.out` for writing, the `4U` floats
    ///   of every tile of `a.tiles` in each row `r < a.rows` (at
    ///   `r * a.ld_init + t * 4U` and `r * a.ld_out + t * 4U`);
    /// - for the duration of the call, nothing else reads or writes those
    ///   columns of `out`, and `out` overlaps none of `a`, `w` and `init`.
    pub unsafe fn gemm_tiles_raw(&self, a: &GemmRaw) {
        if a.rows == 0 || a.tiles.is_empty() {
            return;
        }
        // SAFETY: the caller's contract is the kernel's; `self` came from `for_isa`.
        unsafe { (self.t.gemm)(a) }
    }

    /// The fused elementwise backward of one step, tiles `tile_range`,
    /// rows `0..rows`, for a layer of `h` units.
    ///
    /// Inputs: `gates` (`rows x tiles*4U`, as saved by
    /// [`Kernels::step_tiles`]), `c_prev` (the step's input cell,
    /// `rows x tiles*U`), `dh` (gradient into `m`, `rows x tiles*U`), `dc`
    /// (in: gradient into this step's `c` from the next step). Outputs:
    /// `dz` (`rows x tiles*4U`, gradient of the four gate pre-activations
    /// `z`, tile order; also the gradient of `zx` and of the bias), `dc`
    /// (out: gradient into `c_prev`), and with peepholes, `dpeep`
    /// (`tiles*3U`, the peephole gradients summed over the rows, *added*
    /// to its contents).
    ///
    /// The clipped cell passes gradient only where the unclipped cell was
    /// within `[-clip, clip]` (bounds included).
    ///
    /// # Panics
    /// On short slices, a bad `tile_range`, `dpeep` without `peep`, or a
    /// negative or NaN `cell_clip`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_tiles(
        &self,
        rows: usize,
        h: usize,
        gates: &[f32],
        c_prev: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        dz: &mut [f32],
        peep: Option<&[f32]>,
        dpeep: Option<&mut [f32]>,
        tile_range: Range<usize>,
        params: &StepParams,
    ) {
        let u = self.t.u;
        let nt = tiles(h, u);
        let cell_clip = params.clip_value();
        assert!(
            tile_range.start <= tile_range.end && tile_range.end <= nt,
            "tile_range {tile_range:?} outside 0..{nt}"
        );
        let w4 = nt * 4 * u;
        let w1 = nt * u;
        assert!(gates.len() >= rows * w4, "gates shorter than rows*tiles*4U");
        assert!(dz.len() >= rows * w4, "dz shorter than rows*tiles*4U");
        assert!(
            c_prev.len() >= rows * w1,
            "c_prev shorter than rows*tiles*U"
        );
        assert!(dh.len() >= rows * w1, "dh shorter than rows*tiles*U");
        assert!(dc.len() >= rows * w1, "dc shorter than rows*tiles*U");
        if let Some(p) = peep {
            assert_eq!(p.len(), nt * 3 * u, "peep is not tiles*3U");
        }
        if let Some(p) = dpeep.as_deref() {
            assert!(peep.is_some(), "dpeep without peep");
            assert_eq!(p.len(), nt * 3 * u, "dpeep is not tiles*3U");
        }
        if rows == 0 || tile_range.is_empty() {
            return;
        }
        let raw = BackwardRaw {
            rows,
            gates: gates.as_ptr(),
            ld_gates: w4,
            c_prev: c_prev.as_ptr(),
            ld_c_prev: w1,
            dh: dh.as_ptr(),
            ld_dh: w1,
            dc: dc.as_mut_ptr(),
            ld_dc: w1,
            dz: dz.as_mut_ptr(),
            ld_dz: w4,
            dz_panels: None,
            peep: peep.map(|p| NonNull::from(p).cast()),
            dpeep: dpeep.map(|p| NonNull::from(p).cast()),
            tiles: tile_range,
            cell_clip,
        };
        // SAFETY: the checked lengths cover every offset; borrows make the
        // outputs exclusive; `self` came from `for_isa`.
        unsafe { (self.t.backward)(&raw) }
    }

    /// `dst[(c - cols.start) * ld_dst + i] = rows[i][c]` for every row `i` and
    /// `c` in `cols`: rows become columns of `dst` (row stride `ld_dst`), in
    /// square register blocks of the ISA's width, 16 rows at a time.
    ///
    /// # Panics
    /// When a row is shorter than `cols.end`, `ld_dst < rows.len()` with more
    /// than one column, or `dst` is too short for the last column.
    pub fn transpose(&self, rows: &[&[f32]], cols: Range<usize>, dst: &mut [f32], ld_dst: usize) {
        let (n, w) = (rows.len(), cols.len());
        if n == 0 || w == 0 {
            return;
        }
        assert!(
            rows.iter().all(|r| r.len() >= cols.end),
            "transpose: a row is shorter than cols.end = {}",
            cols.end
        );
        assert!(
            w == 1 || ld_dst >= n,
            "transpose: ld_dst {ld_dst} < {n} rows"
        );
        assert!(
            dst.len() >= (w - 1) * ld_dst + n,
            "transpose: dst holds {} floats, {} needed",
            dst.len(),
            (w - 1) * ld_dst + n
        );
        let max = crate::transpose::MAX_ROWS;
        for (b, chunk) in rows.chunks(max).enumerate() {
            let mut ptrs = [std::ptr::null::<f32>(); crate::transpose::MAX_ROWS];
            for (p, r) in ptrs.iter_mut().zip(chunk) {
                *p = r[cols.start..].as_ptr();
            }
            // SAFETY: each row holds cols.end floats (checked), so `cols.len()`
            // from cols.start; dst covers column w - 1 up to row n (checked),
            // and this chunk writes rows b * max.. of it; dst is a distinct
            // `&mut`; `self` came from `for_isa`.
            unsafe {
                (self.t.transpose)(
                    &ptrs[..chunk.len()],
                    w,
                    dst.as_mut_ptr().add(b * max),
                    ld_dst,
                )
            }
        }
    }

    /// [`Kernels::backward_tiles`] on raw pointers with explicit strides.
    ///
    /// # Safety
    /// As [`Kernels::step_tiles_raw`], for the layouts of [`BackwardRaw`]:
    /// valid regions, the columns of `a.tiles` in `dc`, `dz`, `dpeep` (and
    /// the tiles' places in `dz_panels`) written by nobody else meanwhile,
    /// outputs disjoint from inputs,
    /// `a.cell_clip >= 0` and not NaN.
    pub unsafe fn backward_tiles_raw(&self, a: &BackwardRaw) {
        if a.rows == 0 || a.tiles.is_empty() {
            return;
        }
        // SAFETY: the caller's contract is the kernel's.
        unsafe { (self.t.backward)(a) }
    }
}

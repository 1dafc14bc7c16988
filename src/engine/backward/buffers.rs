//! The backward pass's scratch, grown on first use.

use crate::engine::aligned::AlignedVec;
use crate::model::alloc::grow;
use crate::model::error::Result;
use crate::model::spec::LstmSpec;

use super::time_loop::Dims;

/// Scratch of the backward pass, grown on first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackwardBuffers {
    /// Gradient into the current layer's output, packed `[total, out]`.
    pub d_out: Vec<f32>,
    /// Gradient into the current layer's input, packed `[total, in]`.
    pub d_in: Vec<f32>,
    /// The backward direction's output gradient in its own order, `[total, R]`.
    pub dh_seq: Vec<f32>,
    /// Gate gradients of every step, `[total, tiles*4U]`.
    pub dz: AlignedVec,
    /// `dz` as contiguous panels of `4U` columns, the B operand of the weight gradients.
    pub dz_panels: AlignedVec,
    /// Per-step gradient into `m`, `[B, hq]`.
    pub dm: Vec<f32>,
    /// The carried cell gradient, `[B, hq]`.
    pub dc: Vec<f32>,
    /// The carried output gradient, `[B, rq]`.
    pub dh: Vec<f32>,
    /// Projecting layers: the gradient into each step's projected `h`, `[total, rq]`.
    pub dhp: Vec<f32>,
    /// `A = [X H_prev 1]^T`, `[in + R + 1, total]`: the weight gradients' A operand.
    pub at: Vec<f32>,
    /// `[dW_x; dW_h; db]` in tile order, `[in + R + 1, tiles*4U]`.
    pub dw: Vec<f32>,
    /// `dX`, `[total, inq]`.
    pub dx: Vec<f32>,
    /// The peephole gradients, `tiles*3U`.
    pub dpeep: Vec<f32>,
    /// A row of zeros: the products' starting value.
    pub zeros: Vec<f32>,
}

impl BackwardBuffers {
    /// Grows every buffer to what `batch` sequences of `total` real tokens of cells of
    /// widths `dims` need.
    pub fn grow(
        &mut self,
        spec: &LstmSpec,
        dims: &[Dims],
        batch: usize,
        total: usize,
    ) -> Result<()> {
        let max_of = |g: &dyn Fn(&Dims) -> usize| dims.iter().map(g).max().unwrap_or(0);
        let widest_io = (0..spec.num_layers())
            .map(|l| spec.layer_output_size(l).max(spec.layer_input_size(l)))
            .max()
            .unwrap_or(0);
        grow(&mut self.d_out, total * widest_io, "backward/d_out")?;
        grow(&mut self.d_in, total * widest_io, "backward/d_in")?;
        grow(
            &mut self.dh_seq,
            total * max_of(&|d| d.r),
            "backward/dh_seq",
        )?;
        self.dz.grow(total * max_of(&|d| d.gw), "backward/dz")?;
        self.dz_panels
            .grow(total * max_of(&|d| d.gw), "backward/dz_panels")?;
        grow(&mut self.dm, batch * max_of(&|d| d.hq), "backward/dm")?;
        grow(&mut self.dc, batch * max_of(&|d| d.hq), "backward/dc")?;
        grow(&mut self.dh, batch * max_of(&|d| d.rq), "backward/dh")?;
        if dims.iter().any(|d| d.projects) {
            grow(&mut self.dhp, total * max_of(&|d| d.rq), "backward/dhp")?;
        }
        grow(
            &mut self.at,
            total * max_of(&|d| d.input + d.r + 1),
            "backward/at",
        )?;
        grow(
            &mut self.dw,
            max_of(&|d| (d.input + d.r + 1) * d.gw),
            "backward/dw",
        )?;
        grow(&mut self.dx, total * max_of(&|d| d.inq), "backward/dx")?;
        grow(&mut self.dpeep, max_of(&|d| 3 * d.hp), "backward/dpeep")?;
        grow(
            &mut self.zeros,
            max_of(&|d| d.gw.max(d.hq).max(d.rq).max(d.inq)),
            "backward/zeros",
        )?;
        Ok(())
    }
}

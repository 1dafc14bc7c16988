//! The forward pass's scratch, grown on first use to what the schedule needs.

use crate::engine::aligned::{grow, AlignedVec};
use crate::engine::packed_cell::PackedCell;
use crate::engine::schedule::Schedule;
use crate::model::spec::LstmSpec;

/// The buffers of the packed forward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardBuffers {
    /// The schedule of the current batch.
    pub sched: Schedule,
    /// Gathered inputs of every real token, `[sum(len), in]`.
    pub xg: AlignedVec,
    /// Input projections, `[sum(len), tiles*4U]`.
    pub zx: AlignedVec,
    /// Packed outputs of even layers, `[sum(len), out]`.
    pub pa: AlignedVec,
    /// Packed outputs of odd layers, `[sum(len), out]`.
    pub pb: AlignedVec,
    /// The backward direction's outputs in its own order, `[sum(len), R]`.
    pub bwd: Vec<f32>,
    /// Cell state in schedule order, `[B, tiles*U]`.
    pub c: Vec<f32>,
    /// The kernel's output `m` in schedule order, `[B, tiles*U]`.
    pub m: Vec<f32>,
    /// Initial `h` in schedule order, `[B, R]`.
    pub h0: Vec<f32>,
}

impl ForwardBuffers {
    /// Grows every buffer to what `batch` sequences of `total` real tokens need.
    pub fn grow(&mut self, spec: &LstmSpec, cells: &[PackedCell], batch: usize, total: usize) {
        let max_of = |g: &dyn Fn(&PackedCell) -> usize| cells.iter().map(g).max().unwrap_or(0);
        self.xg.grow(total * max_of(&|c| c.input));
        self.zx.grow(total * max_of(&|c| c.gate_width()));
        let widest_out = (0..spec.num_layers())
            .map(|l| spec.layer_output_size(l))
            .max()
            .unwrap_or(0);
        self.pa.grow(total * widest_out);
        self.pb.grow(total * widest_out);
        grow(&mut self.bwd, total * max_of(&|c| c.recurrent));
        grow(&mut self.c, batch * max_of(&|c| c.padded));
        grow(&mut self.m, batch * max_of(&|c| c.padded));
        grow(&mut self.h0, batch * max_of(&|c| c.recurrent));
    }
}

//! The forward pass's scratch, grown on first use to what the schedule needs.

use crate::engine::aligned::AlignedVec;
use crate::engine::packed_cell::PackedCell;
use crate::engine::schedule::Schedule;
use crate::model::alloc::grow;
use crate::model::error::Result;
use crate::model::spec::LstmSpec;

/// The buffers of the packed forward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardBuffers {
    /// The schedule of the current batch.
    pub sched: Schedule,
    /// Packed outputs of even layers, `[sum(len), out]`.
    pub pa: AlignedVec,
    /// Packed outputs of odd layers, `[sum(len), out]`.
    pub pb: AlignedVec,
    /// The backward direction's outputs in its own order, `[sum(len), R]`.
    pub bwd: Vec<f32>,
    /// Each direction's own scratch (the second one only for a bidirectional stack), so
    /// that the two directions of a layer can run at the same time.
    pub dirs: [DirBuffers; 2],
    /// Steps run so far, mod 2: where the next call's first step takes up the time
    /// loop's zigzag over the weights (see `ZIGZAG`), so that a stream of one-step calls
    /// turns back too and finds in L2 what the call before walked last.
    pub parity: usize,
}

/// One direction's scratch.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirBuffers {
    /// Gathered inputs of every real token, `[sum(len), in]`.
    pub xg: AlignedVec,
    /// Input projections, `[sum(len), tiles*4U]`.
    pub zx: AlignedVec,
    /// Cell state in schedule order, `[B, tiles*U]`.
    pub c: Vec<f32>,
    /// The kernel's output `m` in schedule order, `[B, tiles*U]`.
    pub m: Vec<f32>,
    /// Initial `h` in schedule order, `[B, R]`.
    pub h0: Vec<f32>,
    /// A projecting layer's `h = m P` before its padding columns are cut,
    /// `[B, ptiles*4U]`.
    pub proj: Vec<f32>,
}

impl ForwardBuffers {
    /// Grows every buffer to what `batch` sequences of `total` real tokens need.
    ///
    /// The caller has checked that every product fits (`prepare` bounds `B * T` by the
    /// widest token); what remains is whether the memory exists.
    pub fn grow(
        &mut self,
        spec: &LstmSpec,
        cells: &[PackedCell],
        batch: usize,
        total: usize,
    ) -> Result<()> {
        let max_of = |g: &dyn Fn(&PackedCell) -> usize| cells.iter().map(g).max().unwrap_or(0);
        let widest_out = (0..spec.num_layers())
            .map(|l| spec.layer_output_size(l))
            .max()
            .unwrap_or(0);
        self.pa.grow(total * widest_out, "forward/pa")?;
        self.pb.grow(total * widest_out, "forward/pb")?;
        grow(
            &mut self.bwd,
            total * max_of(&|c| c.recurrent),
            "forward/bwd",
        )?;
        for d in &mut self.dirs[..spec.num_directions()] {
            d.xg.grow(total * max_of(&|c| c.input), "forward/xg")?;
            d.zx.grow(total * max_of(&|c| c.gate_width()), "forward/zx")?;
            grow(&mut d.c, batch * max_of(&|c| c.padded), "forward/c")?;
            grow(&mut d.m, batch * max_of(&|c| c.padded), "forward/m")?;
            grow(&mut d.h0, batch * max_of(&|c| c.recurrent), "forward/h0")?;
            grow(
                &mut d.proj,
                batch * max_of(&|c| c.proj_width()),
                "forward/proj",
            )?;
        }
        Ok(())
    }
}

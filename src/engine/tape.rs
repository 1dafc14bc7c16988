//! What forward-training keeps for the backward pass, in schedule order.

use crate::model::alloc::grow;
use crate::model::error::Result;
use crate::model::spec::LstmSpec;

use super::aligned::AlignedVec;
use super::packed_cell::PackedCell;
use super::schedule::Schedule;

/// What one cell's forward-training keeps, in schedule order.
#[derive(Debug, Clone, Default)]
pub(crate) struct CellTape {
    /// Activated gates i, g, f, o of every step, `[total, tiles*4U]`.
    pub gates: AlignedVec,
    /// Cell state after every step, `[total, tiles*U]`.
    pub c: Vec<f32>,
    /// Initial cell state, sorted, `[B, tiles*U]`.
    pub c0: Vec<f32>,
    /// Initial output state, sorted, `[B, R]`.
    pub h0: Vec<f32>,
    /// Projecting layers: the kernel output `m` of every step, `[total, tiles*U]`.
    pub m: Vec<f32>,
    /// With `proj_clip`: the projection before the clip, `[total, P]`.
    pub h_raw: Vec<f32>,
    /// Backward direction: its outputs in its own order, `[total, R]`.
    pub h_seq: Vec<f32>,
}

/// Every cell's tape, every layer's output and the schedule they are in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tape {
    /// The schedule of the pass.
    pub sched: Schedule,
    /// One per cell.
    pub cells: Vec<CellTape>,
    /// Every layer's output, packed, `[total, out]`.
    pub outs: Vec<Vec<f32>>,
}

impl Tape {
    /// Grows every buffer to what a pass of `batch` sequences and `total` real tokens
    /// needs (never shrinks); on error some have grown and the others are as they were.
    pub fn grow(
        &mut self,
        spec: &LstmSpec,
        cells: &[PackedCell],
        batch: usize,
        total: usize,
    ) -> Result<()> {
        self.cells.resize_with(cells.len(), CellTape::default);
        self.outs.resize_with(spec.num_layers(), Vec::new);
        for (k, (tape, cell)) in self.cells.iter_mut().zip(cells).enumerate() {
            let (hp, r, gw) = (cell.padded, cell.recurrent, cell.gate_width());
            tape.gates.grow(total * gw, "train_reserve/gates")?;
            grow(&mut tape.c, total * hp, "train_reserve/c")?;
            grow(&mut tape.c0, batch * hp, "train_reserve/c0")?;
            grow(&mut tape.h0, batch * r, "train_reserve/h0")?;
            if cell.projection.is_some() {
                grow(&mut tape.m, total * hp, "train_reserve/m")?;
                if spec.proj_clip().is_some() {
                    grow(&mut tape.h_raw, total * r, "train_reserve/h_raw")?;
                }
            }
            if k % spec.num_directions() == 1 {
                grow(&mut tape.h_seq, total * r, "train_reserve/h_seq")?;
            }
        }
        for (l, out) in self.outs.iter_mut().enumerate() {
            grow(
                out,
                total * spec.layer_output_size(l),
                "train_reserve/outputs",
            )?;
        }
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let tapes: usize = self
            .cells
            .iter()
            .map(|t| {
                t.gates.len()
                    + t.c.len()
                    + t.c0.len()
                    + t.h0.len()
                    + t.m.len()
                    + t.h_raw.len()
                    + t.h_seq.len()
            })
            .sum();
        let outs: usize = self.outs.iter().map(Vec::len).sum();
        4 * (tapes + outs)
    }
}

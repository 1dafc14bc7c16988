//! The recurrent state `(c, h)` of every cell of a stack: what a pass starts from and ends
//! with.

use crate::model::error::{Error, Result};
use crate::model::spec::LstmSpec;

/// The state `(c, h)` of one cell (layer and direction) for a whole batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CellState {
    /// Cell state, `[B, H]` row-major.
    pub c: Vec<f32>,
    /// Output state, `[B, P or H]` row-major.
    pub h: Vec<f32>,
}

/// The state of every cell of a stack, index `k = layer * D + direction`.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmState {
    /// One entry per cell.
    pub cells: Vec<CellState>,
}

impl LstmState {
    /// All-zero state for `batch` sequences.
    ///
    /// # Panics
    /// When `batch` times a layer's width overflows `usize`: such a state could not
    /// exist (as `vec![0.0; n]` panics for such an `n`).
    pub fn zeros(spec: &LstmSpec, batch: usize) -> Self {
        let len = |width: usize| {
            batch.checked_mul(width).unwrap_or_else(|| {
                panic!("LstmState::zeros: {batch} sequences of {width} overflow usize")
            })
        };
        let cells = (0..spec.num_cells())
            .map(|k| {
                let layer = spec.layers()[spec.cell_layer(k)];
                CellState {
                    c: vec![0.0; len(layer.hidden_size)],
                    h: vec![0.0; len(layer.output_size())],
                }
            })
            .collect();
        LstmState { cells }
    }

    /// Checks that the state has the spec's cells, each shaped for `batch` sequences.
    pub(crate) fn check(&self, spec: &LstmSpec, batch: usize) -> Result<()> {
        if self.cells.len() != spec.num_cells() {
            return Err(Error::Shape {
                tensor: "initial_state".into(),
                expected: format!("{} cells", spec.num_cells()),
                actual: format!("{} cells", self.cells.len()),
            });
        }
        for (k, cell) in self.cells.iter().enumerate() {
            let layer = spec.layers()[spec.cell_layer(k)];
            let want_c = [batch, layer.hidden_size];
            let want_h = [batch, layer.output_size()];
            if cell.c.len() != want_c[0] * want_c[1] {
                return Err(Error::shape_of_len(
                    &format!("initial_state/{k}/c"),
                    &want_c,
                    cell.c.len(),
                ));
            }
            if cell.h.len() != want_h[0] * want_h[1] {
                return Err(Error::shape_of_len(
                    &format!("initial_state/{k}/h"),
                    &want_h,
                    cell.h.len(),
                ));
            }
        }
        Ok(())
    }
}

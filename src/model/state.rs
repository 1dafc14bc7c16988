//! The recurrent state `(c, h)` of every cell of a stack: what a pass starts from and ends
//! with.

use crate::model::alloc::zeros;
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
    /// When the state cannot exist (`batch` times a layer's width overflows) or cannot be
    /// allocated; [`LstmState::try_zeros`] returns those as errors.
    pub fn zeros(spec: &LstmSpec, batch: usize) -> Self {
        Self::try_zeros(spec, batch).unwrap_or_else(|e| panic!("LstmState::zeros: {e}"))
    }

    /// All-zero state for `batch` sequences.
    ///
    /// # Errors
    /// [`Error::Shape`] when `batch` times a layer's width overflows `usize`;
    /// [`Error::OutOfMemory`] when the machine cannot hold the state.
    pub fn try_zeros(spec: &LstmSpec, batch: usize) -> Result<Self> {
        let buffer = |k: usize, part: &str, width: usize| -> Result<Vec<f32>> {
            let name = format!("state/{k}/{part}");
            match batch.checked_mul(width) {
                Some(n) => zeros(n, &name),
                None => Err(Error::shape_of_len(&name, &[batch, width], 0)),
            }
        };
        let cells = (0..spec.num_cells())
            .map(|k| {
                let layer = spec.layers()[spec.cell_layer(k)];
                Ok(CellState {
                    c: buffer(k, "c", layer.hidden_size)?,
                    h: buffer(k, "h", layer.output_size())?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(LstmState { cells })
    }

    /// Checks that the state has the spec's cells, each shaped for `batch` sequences.
    pub(crate) fn check(&self, spec: &LstmSpec, batch: usize) -> Result<()> {
        self.check_as(spec, batch, "initial_state")
    }

    /// [`LstmState::check`], naming the state `tensor` in errors. `batch` times every
    /// width fits (the caller has bounded the pass's buffers).
    pub(crate) fn check_as(&self, spec: &LstmSpec, batch: usize, tensor: &str) -> Result<()> {
        if self.cells.len() != spec.num_cells() {
            return Err(Error::Shape {
                tensor: tensor.into(),
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
                    &format!("{tensor}/{k}/c"),
                    &want_c,
                    cell.c.len(),
                ));
            }
            if cell.h.len() != want_h[0] * want_h[1] {
                return Err(Error::shape_of_len(
                    &format!("{tensor}/{k}/h"),
                    &want_h,
                    cell.h.len(),
                ));
            }
        }
        Ok(())
    }
}

//! `LstmSpec`: what an LSTM stack is, validated once.

use crate::model::error::{Error, Result};

/// One layer of the stack: its hidden size and optional projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Hidden units `H` (the width of the cell state `c`).
    pub hidden_size: usize,
    /// Projection width `P` (TF `num_proj`, PyTorch `proj_size`); `None` for none.
    pub proj_size: Option<usize>,
}

impl LayerSpec {
    /// Width of the layer's output and recurrent state `h`: `P` when it projects, else `H`.
    pub fn output_size(&self) -> usize {
        self.proj_size.unwrap_or(self.hidden_size)
    }
}

/// The description of an LSTM stack, like a cuDNN/oneDNN RNN descriptor.
///
/// Build one with [`LstmSpec::builder`]; [`LstmSpecBuilder::build`] validates every value
/// once, so everything downstream can rely on it.
///
/// State index `k` (for initial and final states, and weights) counts layer-major,
/// direction-minor: `k = layer * num_directions + direction`, like PyTorch's `h_n`.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmSpec {
    input_size: usize,
    layers: Vec<LayerSpec>,
    forget_bias: f32,
    use_peepholes: bool,
    cell_clip: Option<f32>,
    proj_clip: Option<f32>,
    bidirectional: bool,
    time_major: bool,
}

impl LstmSpec {
    /// Starts a spec for a stack whose layer `l` has `hidden_sizes[l]` units.
    ///
    /// Defaults: `forget_bias` 1.0 (TensorFlow's), no peepholes, no clipping, no
    /// projection, unidirectional, batch-major input `[B, T, I]`.
    pub fn builder(input_size: usize, hidden_sizes: &[usize]) -> LstmSpecBuilder {
        LstmSpecBuilder {
            input_size,
            hidden_sizes: hidden_sizes.to_vec(),
            proj_sizes: None,
            forget_bias: 1.0,
            use_peepholes: false,
            cell_clip: None,
            proj_clip: None,
            bidirectional: false,
            time_major: false,
        }
    }

    /// Features per time step of the first layer's input.
    pub fn input_size(&self) -> usize {
        self.input_size
    }
    /// The layers, bottom first.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }
    /// Number of stacked layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    /// Added to the forget gate's pre-activation (TF `forget_bias`).
    pub fn forget_bias(&self) -> f32 {
        self.forget_bias
    }
    /// Whether the cells have TF's diagonal peephole connections.
    pub fn use_peepholes(&self) -> bool {
        self.use_peepholes
    }
    /// TF `cell_clip`: the new cell state is clipped to `[-clip, clip]`.
    pub fn cell_clip(&self) -> Option<f32> {
        self.cell_clip
    }
    /// TF `proj_clip`: the projected `h` is clipped to `[-clip, clip]`.
    /// Only layers with a projection use it.
    pub fn proj_clip(&self) -> Option<f32> {
        self.proj_clip
    }
    /// Whether each layer runs a backward direction too (PyTorch `bidirectional`).
    pub fn bidirectional(&self) -> bool {
        self.bidirectional
    }
    /// Whether inputs and outputs are `[T, B, F]` rather than `[B, T, F]`.
    pub fn time_major(&self) -> bool {
        self.time_major
    }
    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// Number of (layer, direction) cells, the length of a state or weight list.
    pub fn num_cells(&self) -> usize {
        self.layers.len() * self.num_directions()
    }
    /// Features per time step entering layer `layer`.
    ///
    /// # Panics
    /// If `layer >= num_layers()`.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.layers[layer - 1].output_size() * self.num_directions()
        }
    }
    /// Features per time step leaving layer `layer` (both directions).
    ///
    /// # Panics
    /// If `layer >= num_layers()`.
    pub fn layer_output_size(&self, layer: usize) -> usize {
        self.layers[layer].output_size() * self.num_directions()
    }
    /// Features per time step of the stack's output.
    pub fn output_size(&self) -> usize {
        self.layer_output_size(self.layers.len() - 1)
    }
    /// The layer a cell index `k` belongs to.
    pub fn cell_layer(&self, k: usize) -> usize {
        k / self.num_directions()
    }

    /// An upper bound on the floats any buffer of a pass keeps per real token (gates,
    /// states, inputs, outputs, the backward's operands; widths padded to whole tiles of
    /// any ISA), so that `tokens * max_token_floats()` bounds every buffer a pass of
    /// `tokens` tokens grows. [`LstmSpecBuilder::build`] checked that it fits.
    pub(crate) fn max_token_floats(&self) -> usize {
        token_floats(self.input_size, &self.layers, self.num_directions())
            .expect("checked when the spec was built")
    }
}

/// Widths are padded to this many units before any size is computed: a multiple of every
/// ISA's tile and panel (16 units, 64 floats), so the bounds hold for every packing.
const PAD: usize = 64;

/// The largest number of floats one buffer may hold: its bytes must fit in `isize`.
pub(crate) const MAX_FLOATS: usize = isize::MAX as usize / std::mem::size_of::<f32>();

/// `n` rounded up to whole [`PAD`]s, or `None` past `usize`.
fn padded(n: usize) -> Option<usize> {
    n.checked_next_multiple_of(PAD)
}

/// `a * b` when it fits in [`MAX_FLOATS`].
pub(crate) fn floats(a: usize, b: usize) -> Option<usize> {
    a.checked_mul(b).filter(|&n| n <= MAX_FLOATS)
}

/// See [`LstmSpec::max_token_floats`]: per layer, the gates and their gradients
/// (`2 x 4H`), the cell, `m` and their gradients (`4H`), the layer's input, the
/// recurrent `h` and their gradients (`2 (I + R) + 1`) and both directions' outputs and
/// their gradients (`4 D R`); the largest layer's sum.
fn token_floats(input: usize, layers: &[LayerSpec], dirs: usize) -> Option<usize> {
    let mut widest = 0usize;
    let mut layer_input = input;
    for layer in layers {
        let (h, r, i) = (
            padded(layer.hidden_size)?,
            padded(layer.output_size())?,
            padded(layer_input)?,
        );
        let sum = h
            .checked_mul(12)?
            .checked_add(i.checked_add(r)?.checked_mul(2)?.checked_add(1)?)?
            .checked_add(r.checked_mul(4)?.checked_mul(dirs)?)?;
        widest = widest.max(sum);
        layer_input = layer.output_size().checked_mul(dirs)?;
    }
    (widest <= MAX_FLOATS).then_some(widest)
}

/// Whether one cell's parameters, in every packed form the crate keeps (the canonical
/// weights and their gradients, the panels, the transposed panels), fit: about
/// `4 x 4H (I + R + 1)` floats, padded.
fn params_fit(input: usize, layer: &LayerSpec) -> bool {
    let fits = || -> Option<usize> {
        let (h, r, i) = (
            padded(layer.hidden_size)?,
            padded(layer.output_size())?,
            padded(input)?,
        );
        let per_copy = floats(h.checked_mul(4)?, i.checked_add(r)?.checked_add(1)?)?;
        let projection = floats(h, r)?;
        floats(per_copy.checked_add(projection)?, 4)
    };
    fits().is_some()
}

/// Builder for [`LstmSpec`]; see [`LstmSpec::builder`].
#[derive(Debug, Clone)]
pub struct LstmSpecBuilder {
    input_size: usize,
    hidden_sizes: Vec<usize>,
    proj_sizes: Option<Vec<Option<usize>>>,
    forget_bias: f32,
    use_peepholes: bool,
    cell_clip: Option<f32>,
    proj_clip: Option<f32>,
    bidirectional: bool,
    time_major: bool,
}

impl LstmSpecBuilder {
    /// Sets `forget_bias` (TF default 1.0; use 0.0 for PyTorch, Keras and ONNX weights).
    pub fn forget_bias(mut self, value: f32) -> Self {
        self.forget_bias = value;
        self
    }
    /// Turns TF's diagonal peephole connections on or off.
    pub fn peepholes(mut self, on: bool) -> Self {
        self.use_peepholes = on;
        self
    }
    /// Clips the cell state to `[-clip, clip]` after each update.
    pub fn cell_clip(mut self, clip: f32) -> Self {
        self.cell_clip = Some(clip);
        self
    }
    /// Per-layer projection widths (`None` for a layer without projection).
    pub fn proj_sizes(mut self, sizes: &[Option<usize>]) -> Self {
        self.proj_sizes = Some(sizes.to_vec());
        self
    }
    /// Clips projected outputs to `[-clip, clip]`.
    pub fn proj_clip(mut self, clip: f32) -> Self {
        self.proj_clip = Some(clip);
        self
    }
    /// Runs each layer in both directions and concatenates the outputs.
    pub fn bidirectional(mut self, on: bool) -> Self {
        self.bidirectional = on;
        self
    }
    /// Inputs and outputs are `[T, B, F]` when on.
    pub fn time_major(mut self, on: bool) -> Self {
        self.time_major = on;
        self
    }

    /// Validates and builds the spec.
    ///
    /// # Errors
    /// [`Error::Config`] when a size is zero, there is no layer, `proj_sizes` does not have
    /// one entry per layer, `forget_bias` is not finite, a clip value is not finite and
    /// positive, or the sizes are so large that a layer's parameters, or one token's
    /// share of a pass's buffers, would not fit in memory (their byte counts overflow
    /// `isize`).
    pub fn build(self) -> Result<LstmSpec> {
        if self.input_size == 0 {
            return Err(Error::Config("input_size must be at least 1, got 0".into()));
        }
        if self.hidden_sizes.is_empty() {
            return Err(Error::Config(
                "hidden_sizes must list at least one layer".into(),
            ));
        }
        let proj_sizes = self
            .proj_sizes
            .unwrap_or_else(|| vec![None; self.hidden_sizes.len()]);
        if proj_sizes.len() != self.hidden_sizes.len() {
            return Err(Error::Config(format!(
                "proj_sizes has {} entries, expected one per layer ({})",
                proj_sizes.len(),
                self.hidden_sizes.len()
            )));
        }
        let mut layers = Vec::with_capacity(self.hidden_sizes.len());
        for (l, (&hidden_size, &proj_size)) in self.hidden_sizes.iter().zip(&proj_sizes).enumerate()
        {
            if hidden_size == 0 {
                return Err(Error::Config(format!(
                    "hidden_sizes[{l}] must be at least 1, got 0"
                )));
            }
            if proj_size == Some(0) {
                return Err(Error::Config(format!(
                    "proj_sizes[{l}] must be at least 1 or null, got 0"
                )));
            }
            layers.push(LayerSpec {
                hidden_size,
                proj_size,
            });
        }
        let dirs = if self.bidirectional { 2 } else { 1 };
        let mut layer_input = self.input_size;
        for (l, layer) in layers.iter().enumerate() {
            if !params_fit(layer_input, layer) {
                return Err(Error::Config(format!(
                    "layer {l}: input {layer_input}, hidden {}, projection {:?}: its \
                     parameters would not fit in memory",
                    layer.hidden_size, layer.proj_size
                )));
            }
            layer_input = layer.output_size().saturating_mul(dirs);
        }
        if token_floats(self.input_size, &layers, dirs).is_none() {
            return Err(Error::Config(format!(
                "input {} and hidden sizes {:?}: one time step's buffers would not fit in \
                 memory",
                self.input_size, self.hidden_sizes
            )));
        }
        if !self.forget_bias.is_finite() {
            return Err(Error::Config(format!(
                "forget_bias must be finite, got {}",
                self.forget_bias
            )));
        }
        for (name, clip) in [("cell_clip", self.cell_clip), ("proj_clip", self.proj_clip)] {
            if let Some(v) = clip {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::Config(format!(
                        "{name} must be finite and positive, got {v}"
                    )));
                }
            }
        }
        Ok(LstmSpec {
            input_size: self.input_size,
            layers,
            forget_bias: self.forget_bias,
            use_peepholes: self.use_peepholes,
            cell_clip: self.cell_clip,
            proj_clip: self.proj_clip,
            bidirectional: self.bidirectional,
            time_major: self.time_major,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_whose_buffers_cannot_exist_are_refused() {
        for (input, hidden) in [(usize::MAX, 4), (4, usize::MAX), (1 << 40, 1 << 20)] {
            let err = LstmSpec::builder(input, &[hidden]).build().unwrap_err();
            assert!(err.to_string().contains("would not fit"), "{err}");
        }
        let wide = LstmSpec::builder(1 << 20, &[1 << 10]).build().unwrap();
        assert!(wide.max_token_floats() > 1 << 21);
    }

    #[test]
    fn widths_of_a_bidirectional_projected_stack() {
        let spec = LstmSpec::builder(10, &[8, 6])
            .proj_sizes(&[Some(5), None])
            .bidirectional(true)
            .build()
            .unwrap();
        assert_eq!(spec.num_cells(), 4);
        assert_eq!(spec.layer_input_size(0), 10);
        assert_eq!(spec.layer_input_size(1), 10);
        assert_eq!(spec.output_size(), 12);
        assert_eq!(spec.cell_layer(3), 1);
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            LstmSpec::builder(0, &[4]).build(),
            LstmSpec::builder(3, &[]).build(),
            LstmSpec::builder(3, &[4, 0]).build(),
            LstmSpec::builder(3, &[4]).proj_sizes(&[Some(0)]).build(),
            LstmSpec::builder(3, &[4]).proj_sizes(&[None, None]).build(),
            LstmSpec::builder(3, &[4]).forget_bias(f32::NAN).build(),
            LstmSpec::builder(3, &[4]).cell_clip(f32::INFINITY).build(),
            LstmSpec::builder(3, &[4]).cell_clip(-1.0).build(),
            LstmSpec::builder(3, &[4]).proj_clip(f32::NAN).build(),
        ];
        for r in bad {
            assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
        }
    }
}

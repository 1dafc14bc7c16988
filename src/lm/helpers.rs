//! The seed's two other uses of its LSTM, as small helpers with gradients: sentence
//! batches padded with id 0 whose lengths come from the ids, run through the packed
//! scheduler so that padding costs nothing; and a dense head with a mean-squared-error
//! loss on the LSTM's outputs (the seed's regression example).

use crate::api::input::ForwardInput;
use crate::api::lstm::Lstm;
use crate::api::train::Gradients;
use crate::api::workspace::Workspace;
use crate::model::error::{Error, Result};
use crate::model::weights::LstmWeights;

use super::model::lstm_backward;

/// The lengths of padded sentences `[B, T]`: the seed's `reduce_sum(sign(ids), 1)`, the
/// number of non-zero ids of each row (id 0 is the padding; sentences are padded at the
/// end).
///
/// # Errors
/// [`Error::Shape`] when `ids` is not `[batch, steps]`; [`Error::Format`] for a negative
/// id.
pub fn padded_lengths(ids: &[i32], batch: usize, steps: usize) -> Result<Vec<i32>> {
    if batch.checked_mul(steps) != Some(ids.len()) {
        return Err(Error::shape("ids", &[batch, steps], &[ids.len()]));
    }
    if let Some((i, &id)) = ids.iter().enumerate().find(|&(_, &id)| id < 0) {
        return Err(Error::Format(format!(
            "tensor `ids`: id {id} at position {i} is negative"
        )));
    }
    Ok(ids
        .chunks_exact(steps.max(1))
        .map(|row| row.iter().map(|&id| i32::from(id > 0)).sum())
        .collect())
}

/// A batch of padded sentences and the lengths the seed derives from them.
#[derive(Debug, Clone)]
pub struct PaddedBatch<'a> {
    ids: &'a [i32],
    batch: usize,
    steps: usize,
    lengths: Vec<i32>,
}

/// The gradients of a padded batch.
#[derive(Debug, Clone)]
pub struct PaddedGradients {
    /// dL/d(LSTM weights).
    pub weights: LstmWeights,
    /// dL/d(embedding), dense `[V, E]`.
    pub embedding: Vec<f32>,
}

impl<'a> PaddedBatch<'a> {
    /// `ids` `[batch, steps]`, padded with 0.
    ///
    /// # Errors
    /// As [`padded_lengths`].
    pub fn new(ids: &'a [i32], batch: usize, steps: usize) -> Result<Self> {
        Ok(PaddedBatch {
            lengths: padded_lengths(ids, batch, steps)?,
            ids,
            batch,
            steps,
        })
    }

    /// The lengths, `[B]`.
    pub fn lengths(&self) -> &[i32] {
        &self.lengths
    }

    /// The embedded batch `[B, T, E]` (padding rows embed id 0, as TF's lookup does;
    /// the LSTM never reads them).
    ///
    /// # Errors
    /// [`Error::Shape`] when `embedding` is not `[V, e]`; [`Error::Format`] when an id is
    /// outside `0..V`.
    pub fn embed(&self, embedding: &[f32], e: usize) -> Result<Vec<f32>> {
        if e == 0 || !embedding.len().is_multiple_of(e) || embedding.is_empty() {
            return Err(Error::Shape {
                tensor: "embedding".into(),
                expected: format!("[V, {e}] with V >= 1"),
                actual: format!("{} elements", embedding.len()),
            });
        }
        let v = embedding.len() / e;
        let Some(n) = self.ids.len().checked_mul(e) else {
            return Err(Error::Shape {
                tensor: "embedding".into(),
                expected: format!("[V, {e}] with {} ids * {e} within usize", self.ids.len()),
                actual: format!("{} elements", embedding.len()),
            });
        };
        let mut x = vec![0.0; n];
        for (i, (row, &id)) in x.chunks_exact_mut(e).zip(self.ids).enumerate() {
            let id = id as usize;
            if id >= v {
                return Err(Error::Format(format!(
                    "tensor `ids`: id {id} at position {i} is outside the vocabulary 0..{v}"
                )));
            }
            row.copy_from_slice(&embedding[id * e..(id + 1) * e]);
        }
        Ok(x)
    }

    /// Runs `lstm` over the embedded batch with the derived lengths, from a zero state:
    /// work is proportional to `sum(lengths)`. `ws.output()` holds `[B, T, H]`, zeros past
    /// each length; `ws.final_state()` each sentence's state after its last word.
    ///
    /// # Errors
    /// As [`PaddedBatch::embed`] and [`Lstm::forward_inference`].
    pub fn forward(&self, lstm: &Lstm, embedding: &[f32], ws: &mut Workspace) -> Result<()> {
        let x = self.embed(embedding, lstm.weights().spec().input_size())?;
        let fi = ForwardInput::new(&x, self.batch, self.steps).sequence_length(&self.lengths);
        lstm.forward_inference(&fi, ws)
    }

    /// The gradients of `L = sum(output * d_output)` with respect to the LSTM's weights
    /// and the embedding (padded steps contribute nothing).
    ///
    /// # Errors
    /// As [`PaddedBatch::forward`]; [`Error::Shape`] when `d_output` is not shaped like the
    /// output.
    pub fn backward(
        &self,
        lstm: &Lstm,
        embedding: &[f32],
        d_output: &[f32],
    ) -> Result<PaddedGradients> {
        let spec = lstm.weights().spec();
        let e = spec.input_size();
        let x = self.embed(embedding, e)?;
        let fi = ForwardInput::new(&x, self.batch, self.steps).sequence_length(&self.lengths);
        let mut ws = Workspace::new(spec, self.batch, self.steps);
        let mut reserve = lstm.reserve(self.batch, self.steps);
        lstm.forward_training(&fi, &mut ws, &mut reserve)?;
        let mut grads = Gradients::zeros(spec, self.batch, self.steps);
        lstm_backward(lstm, &fi, &reserve, d_output, &mut ws, &mut grads)?;
        let dx = &grads.input;
        let mut g = vec![0.0f32; embedding.len()];
        for (b, &len) in self.lengths.iter().enumerate() {
            for t in 0..len as usize {
                let r = b * self.steps + t;
                let id = self.ids[r] as usize;
                g[id * e..(id + 1) * e]
                    .iter_mut()
                    .zip(&dx[r * e..(r + 1) * e])
                    .for_each(|(a, &d)| *a += d);
            }
        }
        Ok(PaddedGradients {
            weights: grads.weights,
            embedding: g,
        })
    }
}

/// A dense head `y = outputs · w + b` (`[N, H]` to `[N]`) with the mean-squared-error loss
/// `mean((y - target)^2)`, and its gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct MseHead {
    /// The loss.
    pub loss: f64,
    /// `y`, `[N]`.
    pub predictions: Vec<f32>,
    /// dL/d(outputs), `[N, H]`.
    pub d_outputs: Vec<f32>,
    /// dL/dw, `[H]`.
    pub d_w: Vec<f32>,
    /// dL/db.
    pub d_b: f32,
}

/// The seed's regression head on LSTM outputs `[B, T, H]` (`N = B*T` rows of `hidden`),
/// projected to `[B, T]` by `w` `[H]` and `b`, against `targets` `[B, T]`.
///
/// # Errors
/// [`Error::Shape`] when `w` is not `[hidden]` or `outputs` not `[N, hidden]` with
/// `N = targets.len()`.
pub fn mse_head(
    outputs: &[f32],
    hidden: usize,
    w: &[f32],
    b: f32,
    targets: &[f32],
) -> Result<MseHead> {
    let n = targets.len();
    if w.len() != hidden {
        return Err(Error::shape("w", &[hidden], &[w.len()]));
    }
    if n.checked_mul(hidden) != Some(outputs.len()) {
        return Err(Error::shape("outputs", &[n, hidden], &[outputs.len()]));
    }
    let mut predictions = vec![0.0f32; n];
    let mut d_outputs = vec![0.0f32; n * hidden];
    let mut d_w = vec![0.0f64; hidden];
    let (mut loss, mut d_b) = (0.0f64, 0.0f64);
    let scale = 2.0 / n.max(1) as f64;
    for (r, row) in outputs.chunks_exact(hidden.max(1)).enumerate().take(n) {
        let y = row
            .iter()
            .zip(w)
            .map(|(&o, &wv)| f64::from(o) * f64::from(wv))
            .sum::<f64>()
            + f64::from(b);
        predictions[r] = y as f32;
        let err = y - f64::from(targets[r]);
        loss += err * err;
        let dy = scale * err;
        d_b += dy;
        for ((d, &o), (dw, &wv)) in d_outputs[r * hidden..(r + 1) * hidden]
            .iter_mut()
            .zip(row)
            .zip(d_w.iter_mut().zip(w))
        {
            *d = (dy * f64::from(wv)) as f32;
            *dw += dy * f64::from(o);
        }
    }
    Ok(MseHead {
        loss: loss / n.max(1) as f64,
        predictions,
        d_outputs,
        d_w: d_w.into_iter().map(|x| x as f32).collect(),
        d_b: d_b as f32,
    })
}

//! The language model: embedding, one [`Lstm`] per layer (so that dropout can sit between
//! layers, as TF's `DropoutWrapper` puts it on each cell's output), the fused softmax
//! layer, and one training step (forward, loss, backward, global-norm clip, SGD).

use std::sync::Arc;

use rayon::ThreadPool;

use crate::api::input::ForwardInput;
use crate::api::input::InitialState;
use crate::api::lstm::Lstm;
use crate::api::options::LstmOptions;
use crate::api::train::{Gradients, TrainReserve, Upstream};
use crate::api::workspace::Workspace;
use crate::engine::pool::thread_pool;
use crate::model::error::{Error, Result};
use crate::model::spec::floats;
use crate::model::spec::LstmSpec;
use crate::model::state::CellState;
use crate::model::state::LstmState;
use crate::model::tensors::Tensors;
use crate::model::weights::{CellParams, GateOrder, Layout, LstmWeights, Matrix, SplitMix64};

use super::softmax::{softmax_cross_entropy, SoftmaxGrads, SoftmaxWorkspace};
use super::LmConfig;

/// The LSTM backward of one layer after [`Lstm::forward_training`] over `input` (the same
/// [`ForwardInput`], initial state included) filled `reserve`: every gradient into
/// `grads`, from dL/d(output) `d_out`. The one place the trainer calls the LSTM's
/// backward, so that what runs behind it can change alone.
///
/// # Errors
/// As [`Lstm::backward`].
pub fn lstm_backward(
    lstm: &Lstm,
    input: &ForwardInput<'_>,
    reserve: &TrainReserve,
    d_out: &[f32],
    ws: &mut Workspace,
    grads: &mut Gradients,
) -> Result<()> {
    let upstream = Upstream {
        output: Some(d_out),
        final_state: None,
    };
    lstm.backward(input, reserve, &upstream, ws, grads)
}

/// The model's parameters and the engines that run them.
pub struct LanguageModel {
    vocab: usize,
    embed: usize,
    hidden: Vec<usize>,
    forget_bias: f32,
    /// `[V, E]`.
    embedding: Vec<f32>,
    layers: Vec<Lstm>,
    /// `[H + 1, V]`: `softmax_w` with `softmax_b` as its last row.
    softmax: Vec<f32>,
    threads: usize,
    pool: Option<Arc<ThreadPool>>,
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("vocab", &self.vocab)
            .field("embed", &self.embed)
            .field("hidden", &self.hidden)
            .field("threads", &self.threads)
            .finish()
    }
}

fn layer_spec(input: usize, hidden: usize, forget_bias: f32) -> Result<LstmSpec> {
    LstmSpec::builder(input, &[hidden])
        .forget_bias(forget_bias)
        .build()
}

fn layer_from_kernel(spec: &LstmSpec, kernel: &[f32], bias: &[f32]) -> Result<LstmWeights> {
    let (i, h) = (spec.input_size(), spec.layers()[0].hidden_size);
    let split = i * 4 * h;
    LstmWeights::from_cells(
        spec,
        &[CellParams {
            gate_order: GateOrder::Ijfo,
            input: Matrix {
                data: &kernel[..split.min(kernel.len())],
                layout: Layout::InputMajor,
            },
            recurrent: Matrix {
                data: &kernel[split.min(kernel.len())..],
                layout: Layout::InputMajor,
            },
            biases: vec![bias],
            peepholes: None,
            projection: None,
        }],
    )
}

fn rename_layer(t: &Tensors, k: usize, into: &mut Tensors) -> Result<()> {
    for name in ["kernel", "bias"] {
        let (shape, v) = t.f32(&format!("layers/0/{name}"))?;
        into.insert_f32(&format!("layers/{k}/{name}"), shape, v.to_vec())?;
    }
    Ok(())
}

impl LanguageModel {
    /// A fresh model for `config`: every weight uniform in `[-init_scale, init_scale]`
    /// except the LSTM biases, which start at 0 (as TF's `BasicLSTMCell` makes them);
    /// deterministic for `seed`. `threads` of `None` uses every core.
    ///
    /// # Errors
    /// [`Error::Config`] when the config is invalid or the threads cannot start.
    pub fn new(config: &LmConfig, seed: u64, threads: Option<usize>) -> Result<Self> {
        config.validate()?;
        let s = config.init_scale;
        let mut rng = SplitMix64::new(seed);
        let (v, e) = (config.vocab_size, config.embedding_size);
        let embedding = rng.uniform_vec(v * e, -s, s);
        let mut layers = Vec::new();
        let mut input = e;
        for &h in &config.hidden_sizes {
            let spec = layer_spec(input, h, config.forget_bias)?;
            let kernel = rng.uniform_vec((input + h) * 4 * h, -s, s);
            layers.push(layer_from_kernel(&spec, &kernel, &vec![0.0; 4 * h])?);
            input = h;
        }
        let softmax = rng.uniform_vec((input + 1) * v, -s, s);
        Self::assemble(
            embedding,
            layers,
            softmax,
            config.forget_bias,
            LstmOptions {
                isa: None,
                threads,
                ..Default::default()
            },
        )
    }

    fn assemble(
        embedding: Vec<f32>,
        layers: Vec<LstmWeights>,
        softmax: Vec<f32>,
        forget_bias: f32,
        options: LstmOptions,
    ) -> Result<Self> {
        let embed = layers[0].spec().input_size();
        let vocab = embedding.len() / embed;
        let hidden: Vec<usize> = layers
            .iter()
            .map(|w| w.spec().layers()[0].hidden_size)
            .collect();
        // One pool for the whole model: the layers' time loops and the softmax layer's
        // sgemms take turns on the same workers.
        let pool = thread_pool(options.threads, options.pin_threads)?;
        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
        let layers = layers
            .into_iter()
            .map(|w| Lstm::with_pool(w, options.isa, pool.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(LanguageModel {
            vocab,
            embed,
            hidden,
            forget_bias,
            embedding,
            layers,
            softmax,
            threads,
            pool,
        })
    }

    /// A model from its parts: `embedding` `[V, E]`, the stack's weights (basic cells,
    /// batch-major: no peepholes, clip, projection or second direction), `softmax_w`
    /// `[H, V]` and `softmax_b` `[V]`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the tensor whose shape does not fit the stack;
    /// [`Error::Config`] when the stack is not a plain batch-major one, or as
    /// [`Lstm::with_options`].
    pub fn from_parts(
        embedding: &[f32],
        stack: &LstmWeights,
        softmax_w: &[f32],
        softmax_b: &[f32],
        options: LstmOptions,
    ) -> Result<Self> {
        let spec = stack.spec();
        if spec.use_peepholes()
            || spec.cell_clip().is_some()
            || spec.bidirectional()
            || spec.time_major()
            || spec.layers().iter().any(|l| l.proj_size.is_some())
        {
            return Err(Error::Config(
                "the language model takes a plain batch-major stack of basic LSTM cells \
                 (no peepholes, clip, projection or second direction)"
                    .into(),
            ));
        }
        let e = spec.input_size();
        if embedding.is_empty() || !embedding.len().is_multiple_of(e) {
            return Err(Error::Shape {
                tensor: "embedding".into(),
                expected: format!("[V, {e}] with V >= 1"),
                actual: format!("{} elements", embedding.len()),
            });
        }
        let v = embedding.len() / e;
        let h = spec.output_size();
        if softmax_w.len() != h * v {
            return Err(Error::shape("softmax_w", &[h, v], &[softmax_w.len()]));
        }
        if softmax_b.len() != v {
            return Err(Error::shape("softmax_b", &[v], &[softmax_b.len()]));
        }
        let tf = stack.to_tensorflow();
        let mut layers = Vec::new();
        for (k, layer) in spec.layers().iter().enumerate() {
            let ls = layer_spec(
                spec.layer_input_size(k),
                layer.hidden_size,
                spec.forget_bias(),
            )?;
            let kernel = tf.f32(&format!("layers/{k}/kernel"))?.1;
            let bias = tf.f32(&format!("layers/{k}/bias"))?.1;
            layers.push(layer_from_kernel(&ls, kernel, bias)?);
        }
        let mut softmax = softmax_w.to_vec();
        softmax.extend_from_slice(softmax_b);
        Self::assemble(
            embedding.to_vec(),
            layers,
            softmax,
            spec.forget_bias(),
            options,
        )
    }

    /// A model from tensors under the checkpoint (and golden) names: `embedding` `[V, E]`,
    /// `layers/{k}/kernel` `[in + H, 4H]`, `layers/{k}/bias` `[4H]` (TensorFlow's layout,
    /// gates i, j, f, o), `softmax_w` `[H, V]`, `softmax_b` `[V]`, for the sizes of `config`.
    ///
    /// # Errors
    /// [`Error::MissingTensor`], [`Error::Dtype`] or [`Error::Shape`] naming the tensor.
    pub fn from_tensors(t: &Tensors, config: &LmConfig, options: LstmOptions) -> Result<Self> {
        config.validate()?;
        let spec = LstmSpec::builder(config.embedding_size, &config.hidden_sizes)
            .forget_bias(config.forget_bias)
            .build()?;
        let stack =
            LstmWeights::from_tensors(&spec, t, crate::model::weights::Convention::TensorFlow)?;
        let v = config.vocab_size;
        let h = spec.output_size();
        let embedding = t.f32_shaped("embedding", &[v, config.embedding_size])?;
        let w = t.f32_shaped("softmax_w", &[h, v])?;
        let b = t.f32_shaped("softmax_b", &[v])?;
        Self::from_parts(embedding, &stack, w, b, options)
    }

    /// Every parameter under the checkpoint names (see [`LanguageModel::from_tensors`]).
    pub fn to_tensors(&self) -> Tensors {
        let mut t = Tensors::new();
        let put = |t: &mut Tensors, name: &str, shape: &[usize], v: Vec<f32>| {
            t.insert_f32(name, shape, v)
                .expect("sizes follow the model");
        };
        put(
            &mut t,
            "embedding",
            &[self.vocab, self.embed],
            self.embedding.clone(),
        );
        for (k, l) in self.layers.iter().enumerate() {
            rename_layer(&l.weights().to_tensorflow(), k, &mut t).expect("a layer's own tensors");
        }
        let h = self.output_size();
        put(
            &mut t,
            "softmax_w",
            &[h, self.vocab],
            self.softmax[..h * self.vocab].to_vec(),
        );
        put(
            &mut t,
            "softmax_b",
            &[self.vocab],
            self.softmax[h * self.vocab..].to_vec(),
        );
        t
    }

    /// Vocabulary size `V`.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    /// Embedding width `E`.
    pub fn embedding_size(&self) -> usize {
        self.embed
    }
    /// Hidden units of each layer.
    pub fn hidden_sizes(&self) -> &[usize] {
        &self.hidden
    }
    /// The top layer's width `H`.
    pub fn output_size(&self) -> usize {
        *self.hidden.last().expect("at least one layer")
    }
    /// `forget_bias` of every cell.
    pub fn forget_bias(&self) -> f32 {
        self.forget_bias
    }
    /// Threads used.
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// The embedding, `[V, E]`.
    pub fn embedding(&self) -> &[f32] {
        &self.embedding
    }
    /// Layer `k`'s LSTM.
    pub fn layer(&self, k: usize) -> &Lstm {
        &self.layers[k]
    }
    /// `softmax_w` `[H, V]`.
    pub fn softmax_w(&self) -> &[f32] {
        &self.softmax[..self.output_size() * self.vocab]
    }
    /// `softmax_b` `[V]`.
    pub fn softmax_b(&self) -> &[f32] {
        &self.softmax[self.output_size() * self.vocab..]
    }
    /// The softmax layer as one `[H + 1, V]` matrix, bias last.
    pub fn softmax_weights(&self) -> &[f32] {
        &self.softmax
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    fn check_ids(&self, ws: &LmWorkspace, name: &str, ids: &[i32]) -> Result<()> {
        if ws.hidden != self.hidden || ws.embed != self.embed || ws.vocab != self.vocab {
            return Err(Error::Config(
                "the workspace was made for another language model".into(),
            ));
        }
        if ids.len() != ws.batch * ws.steps {
            return Err(Error::shape(name, &[ws.batch, ws.steps], &[ids.len()]));
        }
        if let Some((i, &id)) = ids
            .iter()
            .enumerate()
            .find(|&(_, &id)| id < 0 || id as usize >= self.vocab)
        {
            return Err(Error::Format(format!(
                "tensor `{name}`: id {id} at position {i} is outside the vocabulary 0..{}",
                self.vocab
            )));
        }
        Ok(())
    }

    /// The forward pass to the softmax input (`ws.hidden_with_ones()`), carrying the state
    /// the workspace holds; dropout masks are drawn from `dropout` when given.
    fn forward(
        &self,
        ws: &mut LmWorkspace,
        inputs: &[i32],
        dropout: Option<(f32, u64)>,
        training: bool,
    ) -> Result<()> {
        let (n, e) = (ws.batch * ws.steps, self.embed);
        let mut rng = dropout.map(|(_, seed)| SplitMix64::new(seed));
        let keep = dropout.map_or(1.0, |(k, _)| k);
        let draw = |mask: &mut Vec<f32>, len: usize, rng: &mut Option<SplitMix64>| {
            mask.resize(len, 1.0);
            match rng.as_mut() {
                Some(r) => {
                    let scale = 1.0 / keep;
                    mask.iter_mut().for_each(|m| {
                        // TF: floor(keep_prob + uniform[0, 1)) keeps with probability keep_prob.
                        *m = if r.uniform(0.0, 1.0) < keep {
                            scale
                        } else {
                            0.0
                        };
                    });
                }
                None => mask.fill(1.0),
            }
        };
        ws.dropout = dropout.is_some();
        for (row, &id) in ws.x.chunks_exact_mut(e).zip(inputs) {
            let id = id as usize;
            row.copy_from_slice(&self.embedding[id * e..(id + 1) * e]);
        }
        if ws.dropout {
            draw(&mut ws.emb_mask, n * e, &mut rng);
            ws.x.iter_mut().zip(&ws.emb_mask).for_each(|(x, m)| *x *= m);
        }
        let layers = self.layers.len();
        for l in 0..layers {
            if ws.carry {
                let fs = &ws.lstm_ws[l].final_state().cells[0];
                ws.init[l].cells[0].c.copy_from_slice(&fs.c);
                ws.init[l].cells[0].h.copy_from_slice(&fs.h);
            }
            let (below, here) = ws.lstm_ws.split_at_mut(l);
            let input: &[f32] = if l == 0 {
                &ws.x
            } else if ws.dropout {
                &ws.dropped[l - 1]
            } else {
                below[l - 1].output()
            };
            let fi = ForwardInput::new(input, ws.batch, ws.steps)
                .initial_state(InitialState::Given(&ws.init[l]));
            if training {
                self.layers[l].forward_training(&fi, &mut here[0], &mut ws.reserves[l])?;
            } else {
                self.layers[l].forward_inference(&fi, &mut here[0])?;
            }
            let h = self.hidden[l];
            if ws.dropout {
                draw(&mut ws.masks[l], n * h, &mut rng);
            }
            let out = here[0].output();
            if l + 1 < layers {
                if ws.dropout {
                    let d = &mut ws.dropped[l];
                    d.resize(n * h, 0.0);
                    d.iter_mut()
                        .zip(out.iter().zip(&ws.masks[l]))
                        .for_each(|(d, (o, m))| *d = o * m);
                }
            } else {
                for (r, dst) in ws.h_aug.chunks_exact_mut(h + 1).enumerate() {
                    let src = &out[r * h..(r + 1) * h];
                    if ws.dropout {
                        dst[..h]
                            .iter_mut()
                            .zip(src.iter().zip(&ws.masks[l][r * h..(r + 1) * h]))
                            .for_each(|(d, (o, m))| *d = o * m);
                    } else {
                        dst[..h].copy_from_slice(src);
                    }
                    dst[h] = 1.0;
                }
            }
        }
        ws.carry = true;
        Ok(())
    }

    /// The seed's cost of one window without training (no dropout): the sum over time of
    /// the batch-mean cross-entropy. The state is carried from the workspace's previous
    /// window (or zero after [`LmWorkspace::reset_state`]).
    ///
    /// # Errors
    /// [`Error::Shape`] when `inputs` or `targets` is not `[B, T]` of the workspace;
    /// [`Error::Format`] when an id is outside the vocabulary; [`Error::Config`] when the
    /// workspace belongs to another model.
    pub fn eval_step(&self, ws: &mut LmWorkspace, inputs: &[i32], targets: &[i32]) -> Result<f64> {
        self.check_ids(ws, "inputs", inputs)?;
        self.check_ids(ws, "targets", targets)?;
        self.forward(ws, inputs, None, false)?;
        let scale = 1.0 / ws.batch as f32;
        let LmWorkspace { h_aug, softmax, .. } = ws;
        self.install(|| {
            softmax_cross_entropy(
                self.threads,
                softmax,
                &self.softmax,
                h_aug,
                targets,
                scale,
                None,
            )
        })
    }

    /// The logits `[B*T, V]` of one window (rows `b*T + t`) without training, and the
    /// cost; as [`LanguageModel::eval_step`] otherwise.
    ///
    /// # Errors
    /// As [`LanguageModel::eval_step`].
    pub fn logits(
        &self,
        ws: &mut LmWorkspace,
        inputs: &[i32],
        targets: &[i32],
    ) -> Result<(Vec<f32>, f64)> {
        let cost = self.eval_step(ws, inputs, targets)?;
        let logits = self.install(|| {
            super::softmax::logits(self.threads, &ws.softmax, &self.softmax, &ws.h_aug)
        })?;
        Ok((logits, cost))
    }

    /// Forward, loss and backward of one window: the cost is returned and every gradient
    /// left in `ws.gradients()`. The state is carried as in [`LanguageModel::eval_step`].
    /// With `dropout = Some((keep_prob, seed))` and `keep_prob < 1`, TF's dropout is applied
    /// to the embeddings and to each layer's output, with masks drawn from `seed`.
    ///
    /// # Errors
    /// As [`LanguageModel::eval_step`]; [`Error::Config`] when the keep probability is
    /// outside `(0, 1]`.
    pub fn gradients(
        &self,
        ws: &mut LmWorkspace,
        inputs: &[i32],
        targets: &[i32],
        dropout: Option<(f32, u64)>,
    ) -> Result<f64> {
        self.check_ids(ws, "inputs", inputs)?;
        self.check_ids(ws, "targets", targets)?;
        if let Some((k, _)) = dropout {
            if !(k > 0.0 && k <= 1.0) {
                return Err(Error::Config(format!(
                    "dropout keep probability must be in (0, 1], got {k}"
                )));
            }
        }
        let dropout = dropout.filter(|&(k, _)| k < 1.0);
        self.forward(ws, inputs, dropout, true)?;
        let (b, t) = (ws.batch, ws.steps);
        let layers = self.layers.len();
        let h_top = self.output_size();
        let scale = 1.0 / b as f32;
        let cost = {
            let LmWorkspace {
                h_aug,
                softmax,
                d_top,
                grads,
                ..
            } = ws;
            self.install(|| {
                softmax_cross_entropy(
                    self.threads,
                    softmax,
                    &self.softmax,
                    h_aug,
                    targets,
                    scale,
                    Some(SoftmaxGrads {
                        d_hidden: d_top,
                        ld_hidden: h_top,
                        d_weights: &mut grads.softmax,
                    }),
                )
            })?
        };
        for l in (0..layers).rev() {
            let LmWorkspace {
                x,
                emb_mask,
                lstm_ws,
                dropped,
                masks,
                init,
                dropout,
                d_top,
                grads,
                reserves,
                ..
            } = &mut *ws;
            let (lower, upper) = grads.layers.split_at_mut(l + 1);
            let d_out: &mut [f32] = if l + 1 == layers {
                d_top
            } else {
                &mut upper[0].input
            };
            if *dropout {
                d_out.iter_mut().zip(&masks[l]).for_each(|(d, m)| *d *= m);
            }
            let (below, here) = lstm_ws.split_at_mut(l);
            let input: &[f32] = if l == 0 {
                x
            } else if *dropout {
                &dropped[l - 1]
            } else {
                below[l - 1].output()
            };
            let fi = ForwardInput::new(input, b, t).initial_state(InitialState::Given(&init[l]));
            lstm_backward(
                &self.layers[l],
                &fi,
                &reserves[l],
                d_out,
                &mut here[0],
                &mut lower[l],
            )?;
            if l == 0 && *dropout {
                lower[0]
                    .input
                    .iter_mut()
                    .zip(emb_mask.iter())
                    .for_each(|(d, m)| *d *= m);
            }
        }
        ws.grads.ids.copy_from_slice(inputs);
        ws.grads.cost = cost;
        Ok(cost)
    }

    /// Clips the workspace's gradients to global norm `max_grad_norm` (TF's
    /// `clip_by_global_norm`) and takes an SGD step of `learning_rate`; returns the norm
    /// before clipping. The embedding is updated sparsely, row by occurrence.
    ///
    /// # Errors
    /// [`Error::Config`] when the workspace belongs to another model, the learning rate
    /// is not finite or the clip is not a positive number.
    pub fn apply_gradients(
        &mut self,
        ws: &LmWorkspace,
        learning_rate: f32,
        max_grad_norm: f32,
    ) -> Result<f64> {
        if !learning_rate.is_finite() || max_grad_norm.is_nan() || max_grad_norm <= 0.0 {
            return Err(Error::Config(format!(
                "learning rate must be finite and the clip positive, got {learning_rate} and \
                 {max_grad_norm}"
            )));
        }
        let g = &ws.grads;
        if g.softmax.len() != self.softmax.len() || g.layers.len() != self.layers.len() {
            return Err(Error::Config(
                "the workspace was made for another language model".into(),
            ));
        }
        let norm = g.global_norm();
        let clip = f64::from(max_grad_norm);
        let factor = if norm > clip { clip / norm } else { 1.0 };
        let alpha = learning_rate * factor as f32;
        for (lstm, grads) in self.layers.iter_mut().zip(&g.layers) {
            lstm.sgd_step(&grads.weights, alpha)?;
        }
        let sgd = |w: &mut [f32], d: &[f32]| w.iter_mut().zip(d).for_each(|(w, d)| *w -= alpha * d);
        // The largest tensor (1.3 M weights in the seed's model): its update is split
        // between the model's threads; every element's result is the same.
        let softmax = &mut self.softmax;
        match &self.pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                softmax
                    .par_chunks_mut(1 << 14)
                    .zip(g.softmax.par_chunks(1 << 14))
                    .for_each(|(w, d)| sgd(w, d));
            }),
            None => sgd(softmax, &g.softmax),
        }
        let e = self.embed;
        for (&id, d) in g.ids.iter().zip(g.d_embedded().chunks_exact(e)) {
            sgd(
                &mut self.embedding[id as usize * e..(id as usize + 1) * e],
                d,
            );
        }
        Ok(norm)
    }

    /// One training step of the seed: [`LanguageModel::gradients`] with the config's
    /// dropout (masks from `dropout_seed`), then [`LanguageModel::apply_gradients`] at
    /// `learning_rate` with the config's clip. Returns the cost.
    ///
    /// # Errors
    /// As [`LanguageModel::gradients`].
    pub fn train_step(
        &mut self,
        ws: &mut LmWorkspace,
        inputs: &[i32],
        targets: &[i32],
        learning_rate: f32,
        config: &LmConfig,
        dropout_seed: u64,
    ) -> Result<f64> {
        let cost = self.gradients(ws, inputs, targets, Some((config.keep_prob, dropout_seed)))?;
        self.apply_gradients(ws, learning_rate, config.max_grad_norm)?;
        Ok(cost)
    }
}

/// `sum(x^2)` in f64, in eight independent partial sums so that it vectorises (a single
/// f64 accumulator is a chain of dependent adds, ~4 cycles each, over 2 million values per
/// step of the seed).
fn sum_of_squares(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f64::from(x) * f64::from(x);
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// The gradients of one window.
#[derive(Debug, Clone)]
pub struct LmGradients {
    /// The window's cost.
    pub cost: f64,
    /// The gradients of each layer: its weights', and its input's (for layer 0, the
    /// embedded input's: the embedding's sparse gradient, one row per occurrence of
    /// `ids`).
    pub layers: Vec<Gradients>,
    /// dL/d(softmax), `[H + 1, V]`: dL/d(softmax_w) with dL/d(softmax_b) as the last row.
    pub softmax: Vec<f32>,
    /// The input ids of the window, `[B*T]`.
    pub ids: Vec<i32>,
}

impl LmGradients {
    /// The global norm as TF's `clip_by_global_norm` computes it: the embedding's sparse
    /// gradient counts each occurrence's row (the `IndexedSlices` values), not their sum.
    pub fn global_norm(&self) -> f64 {
        let lstm: f64 = self
            .layers
            .iter()
            .flat_map(|g| {
                let w = &g.weights;
                (0..w.spec().num_cells()).map(move |k| {
                    let c = w.cell(k);
                    sum_of_squares(c.input_weights())
                        + sum_of_squares(c.recurrent_weights())
                        + sum_of_squares(c.bias())
                })
            })
            .sum();
        (lstm + sum_of_squares(&self.softmax) + sum_of_squares(self.d_embedded())).sqrt()
    }

    /// dL/d(embedded input), `[B*T, E]`: the embedding's sparse gradient, one row per
    /// occurrence of `ids`.
    pub fn d_embedded(&self) -> &[f32] {
        &self.layers[0].input
    }

    /// dL/d(embedding) as a dense `[V, E]` matrix: the rows of each id added up.
    pub fn embedding_dense(&self, vocab: usize) -> Vec<f32> {
        let e = self.d_embedded().len() / self.ids.len().max(1);
        let mut g = vec![0.0f32; vocab * e];
        for (&id, d) in self
            .ids
            .iter()
            .zip(self.d_embedded().chunks_exact(e.max(1)))
        {
            let row = &mut g[id as usize * e..(id as usize + 1) * e];
            row.iter_mut().zip(d).for_each(|(a, &b)| *a += b);
        }
        g
    }

    /// dL/d(softmax_w), `[H, V]`.
    pub fn softmax_w(&self, vocab: usize) -> &[f32] {
        &self.softmax[..self.softmax.len() - vocab]
    }

    /// dL/d(softmax_b), `[V]`.
    pub fn softmax_b(&self, vocab: usize) -> &[f32] {
        &self.softmax[self.softmax.len() - vocab..]
    }
}

/// Every buffer of one batch size and window length, and the LSTM state carried from one
/// window to the next.
#[derive(Debug, Clone)]
pub struct LmWorkspace {
    batch: usize,
    steps: usize,
    vocab: usize,
    embed: usize,
    hidden: Vec<usize>,
    /// `[N, E]`, the embedded (and dropped-out) input.
    x: Vec<f32>,
    emb_mask: Vec<f32>,
    lstm_ws: Vec<Workspace>,
    /// Dropped-out outputs of the layers below the top (the next layer's input).
    dropped: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    /// The state each layer started the last window from.
    init: Vec<LstmState>,
    /// Whether the next window starts from the last one's final state.
    carry: bool,
    dropout: bool,
    /// `[N, H + 1]`, the top layer's output with a ones column.
    h_aug: Vec<f32>,
    softmax: SoftmaxWorkspace,
    /// dL/d(output) of the top layer, `[N, H]`.
    d_top: Vec<f32>,
    /// What each layer's forward-training keeps for its backward.
    reserves: Vec<TrainReserve>,
    grads: LmGradients,
}

impl LmWorkspace {
    /// Buffers for `model` on windows of `batch` x `steps`, from a zero state.
    ///
    /// # Panics
    /// When `batch * steps` times a row's width overflows `usize` (such buffers could not
    /// exist; the model's own config is checked by [`LmConfig::validate`]).
    pub fn new(model: &LanguageModel, batch: usize, steps: usize) -> Self {
        Self::with_tile_rows(model, batch, steps, 0)
    }

    /// As [`LmWorkspace::new`], with softmax tiles of `tile_rows` rows (0: the default).
    ///
    /// # Panics
    /// As [`LmWorkspace::new`].
    pub fn with_tile_rows(
        model: &LanguageModel,
        batch: usize,
        steps: usize,
        tile_rows: usize,
    ) -> Self {
        let (e, v) = (model.embed, model.vocab);
        let h = model.output_size();
        let n = batch
            .checked_mul(steps)
            .filter(|&n| floats(n, e.max(h + 1)).is_some())
            .unwrap_or_else(|| {
                panic!("LmWorkspace: windows of {batch} x {steps} tokens would not fit in memory")
            });
        LmWorkspace {
            batch,
            steps,
            vocab: v,
            embed: e,
            hidden: model.hidden.clone(),
            x: vec![0.0; n * e],
            emb_mask: Vec::new(),
            lstm_ws: model
                .layers
                .iter()
                .map(|l| Workspace::new(l.weights().spec(), batch, steps))
                .collect(),
            dropped: vec![Vec::new(); model.layers.len()],
            masks: vec![Vec::new(); model.layers.len()],
            init: model
                .layers
                .iter()
                .map(|l| LstmState::zeros(l.weights().spec(), batch))
                .collect(),
            carry: false,
            dropout: false,
            h_aug: vec![0.0; n * (h + 1)],
            softmax: SoftmaxWorkspace::new(h, v, tile_rows.min(n.max(1))),
            d_top: vec![0.0; n * h],
            reserves: model
                .layers
                .iter()
                .map(|l| l.reserve(batch, steps))
                .collect(),
            grads: LmGradients {
                cost: 0.0,
                layers: model
                    .layers
                    .iter()
                    .map(|l| Gradients::zeros(l.weights().spec(), batch, steps))
                    .collect(),
                softmax: vec![0.0; (h + 1) * v],
                ids: vec![0; n],
            },
        }
    }

    /// Batch size `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Window length `T`.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Starts the next window from a zero state (the start of an epoch).
    pub fn reset_state(&mut self) {
        for s in &mut self.init {
            for c in &mut s.cells {
                c.c.fill(0.0);
                c.h.fill(0.0);
            }
        }
        self.carry = false;
    }

    /// The state the next window starts from: `(c, h)` of each layer.
    pub fn state(&self) -> Vec<CellState> {
        (0..self.init.len())
            .map(|l| {
                if self.carry {
                    self.lstm_ws[l].final_state().cells[0].clone()
                } else {
                    self.init[l].cells[0].clone()
                }
            })
            .collect()
    }

    /// Sets the state the next window starts from (a resumed run).
    ///
    /// # Errors
    /// [`Error::Shape`] when `state` does not have one `([B, H_l], [B, H_l])` per layer.
    pub fn set_state(&mut self, state: &[CellState]) -> Result<()> {
        if state.len() != self.init.len() {
            return Err(Error::shape("state", &[self.init.len()], &[state.len()]));
        }
        for (l, s) in state.iter().enumerate() {
            let want = self.batch * self.hidden[l];
            if s.c.len() != want || s.h.len() != want {
                return Err(Error::Shape {
                    tensor: format!("state/{l}"),
                    expected: format!("c and h of [{}, {}]", self.batch, self.hidden[l]),
                    actual: format!("{} and {} elements", s.c.len(), s.h.len()),
                });
            }
        }
        for (dst, s) in self.init.iter_mut().zip(state) {
            dst.cells[0].clone_from(s);
        }
        self.carry = false;
        Ok(())
    }

    /// The final state of layer `l` after the last window.
    pub fn final_state(&self, l: usize) -> &CellState {
        &self.lstm_ws[l].final_state().cells[0]
    }

    /// The top layer's output of the last window (after dropout), `[B*T, H + 1]` with a
    /// ones column last.
    pub fn hidden_with_ones(&self) -> &[f32] {
        &self.h_aug
    }

    /// The gradients of the last [`LanguageModel::gradients`] call.
    pub fn gradients(&self) -> &LmGradients {
        &self.grads
    }
}

//! The seed's Penn Treebank language model: the PTB reader, the embedding, an LSTM stack,
//! the fused softmax layer and loss, global-norm clipping, SGD with the seed's schedule,
//! truncated backpropagation and dropout, as TensorFlow's `ptb_word_lm` tutorial does
//! them; and two small helpers for the seed's other uses of its LSTM (padded sentence
//! batches, a dense regression head).
//!
//! ```no_run
//! use lstm_kernels::lm::{LmConfig, LanguageModel, LmWorkspace, PtbData, Batches};
//!
//! let data = PtbData::load("../shared/data/ptb")?;
//! let config = LmConfig::seed();
//! let mut model = LanguageModel::new(&config, 1, Some(2))?;
//! let mut ws = LmWorkspace::new(&model, config.batch_size, config.num_steps);
//! let batches = Batches::new(&data.train, config.batch_size, config.num_steps)?;
//! let (mut inputs, mut targets) = (vec![0; 60 * 20], vec![0; 60 * 20]);
//! batches.fill(0, &mut inputs, &mut targets);
//! let cost = model.train_step(&mut ws, &inputs, &targets, config.learning_rate(1), &config, 0)?;
//! # let _ = cost;
//! # Ok::<(), lstm_kernels::Error>(())
//! ```

pub mod checkpoint;
pub mod helpers;
pub mod model;
pub mod ptb;
pub mod softmax;
pub mod train;

pub use checkpoint::{Checkpoint, Progress};
pub use helpers::{mse_head, padded_lengths, MseHead, PaddedBatch, PaddedGradients};
pub use model::{LanguageModel, LmGradients, LmWorkspace};
pub use ptb::{Batch, Batches, PtbData, Vocabulary, EOS};
pub use softmax::{softmax_cross_entropy, SoftmaxGrads, SoftmaxWorkspace};
pub use train::{run_epoch, EpochOptions, EpochReport, StepInfo};

use crate::model::error::{Error, Result};
use crate::model::spec::floats;

/// The hyper-parameters of a language model and its training, named as in TensorFlow's
/// `ptb_word_lm.py`.
#[derive(Debug, Clone, PartialEq)]
pub struct LmConfig {
    /// Name (`seed`, `small`, `medium`, `large`, or anything for a custom one).
    pub name: String,
    /// Weights start uniform in `[-init_scale, init_scale]` (LSTM biases start at 0, as
    /// `BasicLSTMCell` makes them).
    pub init_scale: f32,
    /// The learning rate before any decay.
    pub learning_rate: f32,
    /// Global-norm clip.
    pub max_grad_norm: f32,
    /// Hidden units of each LSTM layer, bottom first.
    pub hidden_sizes: Vec<usize>,
    /// Truncated-backpropagation window `T`.
    pub num_steps: usize,
    /// Batch size `B`.
    pub batch_size: usize,
    /// Embedding width `E`.
    pub embedding_size: usize,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// The last epoch at the initial learning rate: epoch `e` (1-based) trains at
    /// `learning_rate * lr_decay ^ max(e - max_epoch, 0)`.
    pub max_epoch: usize,
    /// Epochs in all.
    pub max_max_epoch: usize,
    /// Dropout keep probability on the embeddings and on each cell's output (1: none).
    pub keep_prob: f32,
    /// Learning-rate decay per epoch after `max_epoch`.
    pub lr_decay: f32,
    /// `BasicLSTMCell`'s `forget_bias` (0 in the seed and the tutorial).
    pub forget_bias: f32,
}

impl LmConfig {
    /// The seed's model: 200 -> 256 -> 128, batch 60, 20 steps, 15 epochs, no dropout.
    pub fn seed() -> Self {
        LmConfig {
            name: "seed".into(),
            init_scale: 0.1,
            learning_rate: 1.0,
            max_grad_norm: 5.0,
            hidden_sizes: vec![256, 128],
            num_steps: 20,
            batch_size: 60,
            embedding_size: 200,
            vocab_size: 10_000,
            max_epoch: 4,
            max_max_epoch: 15,
            keep_prob: 1.0,
            lr_decay: 0.5,
            forget_bias: 0.0,
        }
    }

    /// TensorFlow's `SmallConfig`.
    pub fn small() -> Self {
        LmConfig {
            name: "small".into(),
            init_scale: 0.1,
            learning_rate: 1.0,
            max_grad_norm: 5.0,
            hidden_sizes: vec![200, 200],
            num_steps: 20,
            batch_size: 20,
            embedding_size: 200,
            vocab_size: 10_000,
            max_epoch: 4,
            max_max_epoch: 13,
            keep_prob: 1.0,
            lr_decay: 0.5,
            forget_bias: 0.0,
        }
    }

    /// TensorFlow's `MediumConfig`.
    pub fn medium() -> Self {
        LmConfig {
            name: "medium".into(),
            init_scale: 0.05,
            hidden_sizes: vec![650, 650],
            num_steps: 35,
            embedding_size: 650,
            max_epoch: 6,
            max_max_epoch: 39,
            keep_prob: 0.5,
            lr_decay: 0.8,
            ..Self::small()
        }
    }

    /// TensorFlow's `LargeConfig`.
    pub fn large() -> Self {
        LmConfig {
            name: "large".into(),
            init_scale: 0.04,
            max_grad_norm: 10.0,
            hidden_sizes: vec![1500, 1500],
            num_steps: 35,
            embedding_size: 1500,
            max_epoch: 14,
            max_max_epoch: 55,
            keep_prob: 0.35,
            lr_decay: 1.0 / 1.15,
            ..Self::small()
        }
    }

    /// The config called `name` (`seed`, `small`, `medium`, `large`).
    ///
    /// # Errors
    /// [`Error::Config`] for any other name.
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "seed" => Ok(Self::seed()),
            "small" => Ok(Self::small()),
            "medium" => Ok(Self::medium()),
            "large" => Ok(Self::large()),
            other => Err(Error::Config(format!(
                "unknown config `{other}` (seed, small, medium or large)"
            ))),
        }
    }

    /// The learning rate of epoch `epoch` (1-based): `learning_rate * lr_decay ^
    /// max(epoch - max_epoch, 0)`.
    pub fn learning_rate(&self, epoch: usize) -> f32 {
        let exponent = epoch.saturating_sub(self.max_epoch);
        self.learning_rate * self.lr_decay.powi(exponent as i32)
    }

    /// Checks that every size is positive and every rate finite and in range.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: String| Err(Error::Config(format!("config `{what}` {v}")));
        for (what, v) in [
            ("num_steps", self.num_steps),
            ("batch_size", self.batch_size),
            ("embedding_size", self.embedding_size),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return bad(what, "must be at least 1, got 0".into());
            }
        }
        if self.hidden_sizes.is_empty() || self.hidden_sizes.contains(&0) {
            return bad(
                "hidden_sizes",
                format!(
                    "must be non-empty and positive, got {:?}",
                    self.hidden_sizes
                ),
            );
        }
        if !(self.keep_prob > 0.0 && self.keep_prob <= 1.0) {
            return bad(
                "keep_prob",
                format!("must be in (0, 1], got {}", self.keep_prob),
            );
        }
        for (what, v) in [
            ("init_scale", self.init_scale),
            ("learning_rate", self.learning_rate),
            ("max_grad_norm", self.max_grad_norm),
            ("lr_decay", self.lr_decay),
            ("forget_bias", self.forget_bias),
        ] {
            if !v.is_finite() {
                return bad(what, format!("must be finite, got {v}"));
            }
        }
        if self.max_grad_norm <= 0.0 {
            return bad(
                "max_grad_norm",
                format!("must be positive, got {}", self.max_grad_norm),
            );
        }
        // Every buffer the model and a window's workspace hold, bounded: the embedding
        // and the softmax layer (`V x E`, `V x (H + 1)`), the logits tile, and a window's
        // per-token rows (embedding, LSTM buffers, `H + 1` softmax inputs).
        let widest = self.hidden_sizes.iter().copied().max().unwrap_or(0);
        let per_token = self
            .embedding_size
            .max(widest.saturating_add(1))
            .saturating_mul(4);
        let fits = [
            (self.vocab_size, self.embedding_size),
            (self.vocab_size, widest.saturating_add(1)),
            (self.batch_size, self.num_steps),
        ]
        .iter()
        .all(|&(a, b)| floats(a, b).is_some())
            && floats(self.batch_size * self.num_steps, per_token).is_some();
        if !fits {
            return bad(
                "sizes",
                format!(
                    "vocab_size {}, embedding_size {}, hidden_sizes {:?}, batch_size {} and \
                     num_steps {} give buffers that would not fit in memory",
                    self.vocab_size,
                    self.embedding_size,
                    self.hidden_sizes,
                    self.batch_size,
                    self.num_steps
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_the_seeds() {
        let c = LmConfig::seed();
        let lrs: Vec<f32> = (1..=7).map(|e| c.learning_rate(e)).collect();
        assert_eq!(lrs, [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]);
        assert!(LmConfig::by_name("huge").is_err());
        for name in ["seed", "small", "medium", "large"] {
            LmConfig::by_name(name).unwrap().validate().unwrap();
        }
    }
}

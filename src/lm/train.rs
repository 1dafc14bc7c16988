//! One epoch over a split, as TF's `run_epoch`: the state starts at zero and is carried
//! from window to window; perplexity is `exp(sum of costs / (windows * num_steps))`.

use std::time::Instant;

use crate::model::error::Result;

use super::model::{LanguageModel, LmWorkspace};
use super::ptb::Batches;
use super::LmConfig;

/// How to run an epoch.
#[derive(Debug, Clone, Copy)]
pub struct EpochOptions<'a> {
    /// The config (batch size, window, clip, dropout).
    pub config: &'a LmConfig,
    /// `Some(learning rate)` to train, `None` to evaluate.
    pub learning_rate: Option<f32>,
    /// The run's seed (dropout masks derive from it, the epoch and the step).
    pub seed: u64,
    /// The epoch number (1-based), for the dropout masks.
    pub epoch: usize,
    /// Stop after this many windows (a quick run); `None` for the whole epoch.
    pub max_steps: Option<usize>,
}

/// Progress after a window.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Windows done.
    pub step: usize,
    /// Windows in this epoch (after `max_steps`).
    pub steps: usize,
    /// Perplexity so far.
    pub perplexity: f64,
    /// Words (inputs) per second so far.
    pub words_per_s: f64,
}

/// The result of an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// `exp(cost / iters)`.
    pub perplexity: f64,
    /// Sum of the windows' costs.
    pub cost: f64,
    /// Windows times `num_steps`.
    pub iters: usize,
    /// Words processed.
    pub words: usize,
    /// Wall time.
    pub seconds: f64,
}

/// The dropout seed of one window: every (run seed, epoch, step) its own stream.
pub fn dropout_seed(seed: u64, epoch: usize, step: usize) -> u64 {
    let mut r = crate::model::weights::SplitMix64::new(seed ^ ((epoch as u64) << 40) ^ step as u64);
    r.next_u64()
}

/// Runs one epoch over `data` with `ws`'s batch size and window (training when
/// `options.learning_rate` is set); calls `on_step` after every window.
///
/// # Errors
/// As [`Batches::new`] (data too short) and [`LanguageModel::train_step`].
pub fn run_epoch(
    model: &mut LanguageModel,
    ws: &mut LmWorkspace,
    data: &[i32],
    options: &EpochOptions<'_>,
    mut on_step: impl FnMut(&StepInfo),
) -> Result<EpochReport> {
    let (b, t) = (ws.batch(), ws.steps());
    let batches = Batches::new(data, b, t)?;
    let steps = options
        .max_steps
        .map_or(batches.epoch_size(), |m| m.min(batches.epoch_size()));
    let (mut inputs, mut targets) = (vec![0; b * t], vec![0; b * t]);
    ws.reset_state();
    let start = Instant::now();
    let (mut cost, mut iters) = (0.0f64, 0usize);
    for step in 0..steps {
        batches.fill(step, &mut inputs, &mut targets);
        cost += match options.learning_rate {
            Some(lr) => model.train_step(
                ws,
                &inputs,
                &targets,
                lr,
                options.config,
                dropout_seed(options.seed, options.epoch, step),
            )?,
            None => model.eval_step(ws, &inputs, &targets)?,
        };
        iters += t;
        let secs = start.elapsed().as_secs_f64();
        on_step(&StepInfo {
            step: step + 1,
            steps,
            perplexity: (cost / iters as f64).exp(),
            words_per_s: (iters * b) as f64 / secs.max(1e-9),
        });
    }
    Ok(EpochReport {
        perplexity: (cost / iters.max(1) as f64).exp(),
        cost,
        iters,
        words: iters * b,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One training step of the seed's model on fixed random ids: the `seed-ptb-lm` shape of
/// the benchmark suite (forward, loss, backward, clip, SGD; the state carried from step to
/// step), shared by the bench runner and the criterion bench.
#[derive(Debug)]
pub struct SeedStep {
    /// The model.
    pub model: LanguageModel,
    /// Its workspace.
    pub ws: LmWorkspace,
    /// The config (the seed's).
    pub config: LmConfig,
    inputs: Vec<i32>,
    targets: Vec<i32>,
}

impl SeedStep {
    /// The seed's model on `threads` threads, ids uniform over the vocabulary.
    ///
    /// # Errors
    /// As [`LanguageModel::new`].
    pub fn new(threads: usize) -> Result<Self> {
        let config = LmConfig::seed();
        let model = LanguageModel::new(&config, 1, Some(threads))?;
        let ws = LmWorkspace::new(&model, config.batch_size, config.num_steps);
        let mut rng = crate::model::weights::SplitMix64::new(2);
        let n = config.batch_size * config.num_steps;
        let v = config.vocab_size as u64;
        let mut ids = || -> Vec<i32> { (0..n).map(|_| (rng.next_u64() % v) as i32).collect() };
        let inputs = ids();
        let targets = ids();
        Ok(SeedStep {
            model,
            ws,
            config,
            inputs,
            targets,
        })
    }

    /// Words (inputs) per step: `B * T`.
    pub fn words(&self) -> usize {
        self.inputs.len()
    }

    /// One step; returns the cost.
    ///
    /// # Errors
    /// Never for the seed's shapes; as [`LanguageModel::train_step`].
    pub fn run(&mut self) -> Result<f64> {
        let lr = self.config.learning_rate(1);
        self.model.train_step(
            &mut self.ws,
            &self.inputs,
            &self.targets,
            lr,
            &self.config,
            0,
        )
    }
}

/// Evaluates `data` as one stream (batch 1), as TF's test run does with batch 1 and
/// window 1: every id but the last predicts the next, the state carried throughout.
/// Windows of `chunk` steps (the last one shorter) give the same sums as windows of 1,
/// with the softmax layer run over many rows at once instead of one.
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) when `data` has fewer than 2 ids or `chunk` is
/// 0; as [`LanguageModel::eval_step`].
pub fn evaluate_stream(
    model: &LanguageModel,
    data: &[i32],
    chunk: usize,
    mut on_step: impl FnMut(&StepInfo),
) -> Result<EpochReport> {
    if data.len() < 2 || chunk == 0 {
        return Err(crate::Error::Config(format!(
            "evaluate_stream needs at least 2 ids and a chunk of at least 1, got {} and {chunk}",
            data.len()
        )));
    }
    let total = data.len() - 1;
    let start = Instant::now();
    let mut ws = LmWorkspace::new(model, 1, chunk.min(total));
    let (mut cost, mut done) = (0.0f64, 0usize);
    let windows = total.div_ceil(chunk);
    for w in 0..windows {
        let len = chunk.min(total - done);
        if len != ws.steps() {
            let state = ws.state();
            ws = LmWorkspace::new(model, 1, len);
            ws.set_state(&state)?;
        }
        cost += model.eval_step(
            &mut ws,
            &data[done..done + len],
            &data[done + 1..done + len + 1],
        )?;
        done += len;
        let secs = start.elapsed().as_secs_f64();
        on_step(&StepInfo {
            step: w + 1,
            steps: windows,
            perplexity: (cost / done as f64).exp(),
            words_per_s: done as f64 / secs.max(1e-9),
        });
    }
    Ok(EpochReport {
        perplexity: (cost / total as f64).exp(),
        cost,
        iters: total,
        words: total,
        seconds: start.elapsed().as_secs_f64(),
    })
}

//! Checkpoints as `.safetensors`: the parameters under the golden format's names
//! (`embedding`, `layers/{k}/kernel`, `layers/{k}/bias`, `softmax_w`, `softmax_b`) and, in
//! the metadata, the config and where training stands. Checkpoints are written between
//! epochs, where the state is zero, so a resumed run continues exactly as the
//! uninterrupted one would have.

use std::path::Path;

use serde_json::{json, Value};

use crate::api::options::LstmOptions;
use crate::model::error::{Error, Result};
use crate::model::tensors::Tensors;

use super::model::LanguageModel;
use super::LmConfig;

/// The metadata `format` of a checkpoint.
pub const FORMAT: &str = "lstm-kernels-lm/1";

/// Where training stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Epochs completed.
    pub epochs_done: usize,
    /// The run's seed (initialisation and dropout).
    pub seed: u64,
    /// `(train, valid)` perplexity of each completed epoch.
    pub history: Vec<(f64, f64)>,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model.
    pub model: LanguageModel,
    /// Its config.
    pub config: LmConfig,
    /// Where training stands.
    pub progress: Progress,
}

fn config_json(c: &LmConfig) -> Value {
    json!({
        "name": c.name,
        "init_scale": c.init_scale,
        "learning_rate": c.learning_rate,
        "max_grad_norm": c.max_grad_norm,
        "hidden_sizes": c.hidden_sizes,
        "num_steps": c.num_steps,
        "batch_size": c.batch_size,
        "embedding_size": c.embedding_size,
        "vocab_size": c.vocab_size,
        "max_epoch": c.max_epoch,
        "max_max_epoch": c.max_max_epoch,
        "keep_prob": c.keep_prob,
        "lr_decay": c.lr_decay,
        "forget_bias": c.forget_bias,
    })
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Format(format!("{}: checkpoint {what}", path.display()))
}

fn config_from(path: &Path, v: &Value) -> Result<LmConfig> {
    let f = |k: &str| -> Result<f32> {
        v.get(k)
            .and_then(Value::as_f64)
            .map(|x| x as f32)
            .ok_or_else(|| bad(path, format!("config `{k}` is missing or not a number")))
    };
    let u = |k: &str| -> Result<usize> {
        v.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| bad(path, format!("config `{k}` is missing or not an integer")))
    };
    let hidden_sizes = v
        .get("hidden_sizes")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_u64().map(|x| x as usize))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| bad(path, "config `hidden_sizes` is missing or not a list"))?;
    let c = LmConfig {
        name: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("custom")
            .to_string(),
        init_scale: f("init_scale")?,
        learning_rate: f("learning_rate")?,
        max_grad_norm: f("max_grad_norm")?,
        hidden_sizes,
        num_steps: u("num_steps")?,
        batch_size: u("batch_size")?,
        embedding_size: u("embedding_size")?,
        vocab_size: u("vocab_size")?,
        max_epoch: u("max_epoch")?,
        max_max_epoch: u("max_max_epoch")?,
        keep_prob: f("keep_prob")?,
        lr_decay: f("lr_decay")?,
        forget_bias: f("forget_bias")?,
    };
    c.validate()?;
    Ok(c)
}

/// Writes `model`, `config` and `progress` to `path`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn save(
    path: impl AsRef<Path>,
    model: &LanguageModel,
    config: &LmConfig,
    progress: &Progress,
) -> Result<()> {
    let mut t = model.to_tensors();
    t.set_metadata("format", FORMAT);
    t.set_metadata("config", &config_json(config).to_string());
    t.set_metadata("epochs_done", &progress.epochs_done.to_string());
    t.set_metadata("seed", &progress.seed.to_string());
    let history: Vec<[f64; 2]> = progress.history.iter().map(|&(a, b)| [a, b]).collect();
    // Read back exactly: serde_json parses floats correctly rounded only with its
    // `float_roundtrip` feature, which the crate enables for this.
    t.set_metadata("history", &json!(history).to_string());
    // Write then rename, so that an interrupted save leaves the previous checkpoint whole.
    let path = path.as_ref();
    let tmp = path.with_extension("safetensors.tmp");
    t.save(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Reads a checkpoint written by [`save`].
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] when it is not a
/// checkpoint (metadata missing or malformed); [`Error::MissingTensor`] or
/// [`Error::Shape`] naming a tensor that does not fit the config.
pub fn load(path: impl AsRef<Path>, options: LstmOptions) -> Result<Checkpoint> {
    let path = path.as_ref();
    let t = Tensors::load(path)?;
    let meta = t.metadata();
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| bad(path, format!("metadata has no `{k}`")))
    };
    if get("format")? != FORMAT {
        return Err(bad(
            path,
            format!("format is `{}`, expected `{FORMAT}`", get("format")?),
        ));
    }
    let config: Value =
        serde_json::from_str(get("config")?).map_err(|e| bad(path, format!("config: {e}")))?;
    let config = config_from(path, &config)?;
    let epochs_done = get("epochs_done")?
        .parse()
        .map_err(|e| bad(path, format!("epochs_done: {e}")))?;
    let seed = get("seed")?
        .parse()
        .map_err(|e| bad(path, format!("seed: {e}")))?;
    let history: Vec<[f64; 2]> =
        serde_json::from_str(get("history")?).map_err(|e| bad(path, format!("history: {e}")))?;
    let model = LanguageModel::from_tensors(&t, &config, options)?;
    Ok(Checkpoint {
        model,
        config,
        progress: Progress {
            epochs_done,
            seed,
            history: history.into_iter().map(|[a, b]| (a, b)).collect(),
        },
    })
}

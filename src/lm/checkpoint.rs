//! Checkpoints as `.safetensors`: the parameters under the golden format's names
//! (`embedding`, `layers/{k}/kernel`, `layers/{k}/bias`, `softmax_w`, `softmax_b`) and, in
//! the metadata, the config and where training stands. Checkpoints are written between
//! epochs, where the state is zero, so a resumed run continues exactly as the
//! uninterrupted one would have.
//!
//! The metadata: `format` ([`FORMAT`]); `config`, the [`LmConfig`] as a JSON object of
//! its fields; `epochs_done` and `seed` as decimal integers; `history`, a JSON list of
//! `[train, valid]` perplexity pairs, one per completed epoch, each a JSON number or,
//! for a diverged epoch, one of the strings `"inf"`, `"-inf"` and `"nan"` (JSON has no
//! such numbers).
//!
//! A save is atomic and durable: the bytes go to a temporary file beside the checkpoint,
//! which is flushed to disk before it is renamed over the checkpoint, and the folder is
//! flushed after; a crash or power loss at any point leaves the previous checkpoint or
//! the new one, whole.

use std::fs::File;
use std::io::Write;
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
    if !v.is_object() {
        return Err(bad(path, format!("config is not a JSON object: {v}")));
    }
    let f = |k: &str| -> Result<f32> {
        v.get(k)
            .and_then(Value::as_f64)
            .map(|x| x as f32)
            .ok_or_else(|| bad(path, format!("config `{k}` is missing or not a number")))
    };
    let size = |x: &Value| x.as_u64().and_then(|x| usize::try_from(x).ok());
    let u = |k: &str| -> Result<usize> {
        v.get(k).and_then(size).ok_or_else(|| {
            bad(
                path,
                format!("config `{k}` is missing or not a non-negative integer"),
            )
        })
    };
    let hidden_sizes = v
        .get("hidden_sizes")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(size).collect::<Option<Vec<_>>>())
        .ok_or_else(|| {
            bad(
                path,
                "config `hidden_sizes` is missing or not a list of non-negative integers",
            )
        })?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(path, "config `name` is missing or not a string"))?;
    let c = LmConfig {
        name: name.to_string(),
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
    c.validate().map_err(|e| match e {
        Error::Config(msg) => bad(path, format!("has an invalid config: {msg}")),
        other => other,
    })?;
    Ok(c)
}

/// One perplexity of `history` as JSON: the number, or a string for a non-finite one.
fn perplexity_json(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!("nan")
    } else if x > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

/// The inverse of [`perplexity_json`].
fn perplexity_from(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

fn history_from(path: &Path, text: &str) -> Result<Vec<(f64, f64)>> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(path, format!("history: {e}")))?;
    let entries = v.as_array().ok_or_else(|| {
        bad(
            path,
            format!("history is not a list of [train, valid] pairs: {v}"),
        )
    })?;
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| match e.as_array().map(Vec::as_slice) {
            Some([a, b]) => match (perplexity_from(a), perplexity_from(b)) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(bad(
                    path,
                    format!(
                        "history entry {i} is {e}: expected two numbers (or \"inf\", \
                         \"-inf\", \"nan\")"
                    ),
                )),
            },
            _ => Err(bad(
                path,
                format!("history entry {i} is {e}, not a [train, valid] pair"),
            )),
        })
        .collect()
}

/// Every tensor name of a checkpoint of `config`.
fn tensor_names(config: &LmConfig) -> Vec<String> {
    let mut names: Vec<String> = ["embedding", "softmax_w", "softmax_b"]
        .map(String::from)
        .into();
    for k in 0..config.hidden_sizes.len() {
        names.push(format!("layers/{k}/kernel"));
        names.push(format!("layers/{k}/bias"));
    }
    names
}

/// Checks that `progress` has one history entry per completed epoch.
fn check_progress(progress: &Progress) -> Result<()> {
    if progress.history.len() != progress.epochs_done {
        return Err(Error::Config(format!(
            "progress: history has {} entries but epochs_done is {} (one entry per \
             completed epoch)",
            progress.history.len(),
            progress.epochs_done
        )));
    }
    Ok(())
}

/// Writes `model`, `config` and `progress` to `path`, atomically and durably (see the
/// module's documentation): the bytes go to `path` with `.tmp` appended, which is
/// synced to disk, renamed over `path`, and the folder synced (on Unix; a file system
/// that cannot sync a folder is let be). A failed save removes its temporary file.
///
/// # Errors
/// [`Error::Config`] when `progress.history` does not have `progress.epochs_done`
/// entries (nothing is written then); [`Error::Io`] naming the path when the file
/// cannot be written, synced or renamed into place.
pub fn save(
    path: impl AsRef<Path>,
    model: &LanguageModel,
    config: &LmConfig,
    progress: &Progress,
) -> Result<()> {
    check_progress(progress)?;
    let mut t = model.to_tensors();
    t.set_metadata("format", FORMAT);
    t.set_metadata("config", &config_json(config).to_string());
    t.set_metadata("epochs_done", &progress.epochs_done.to_string());
    t.set_metadata("seed", &progress.seed.to_string());
    // Read back exactly: serde_json parses floats correctly rounded only with its
    // `float_roundtrip` feature, which the crate enables for this.
    let history: Vec<Value> = progress
        .history
        .iter()
        .map(|&(a, b)| json!([perplexity_json(a), perplexity_json(b)]))
        .collect();
    t.set_metadata("history", &Value::Array(history).to_string());
    write_atomically(path.as_ref(), &t.to_bytes()?)
}

/// Writes `bytes` to `path` through a synced temporary file renamed into place, then
/// syncs the folder; removes the temporary file if any step fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", p.display()));
    let Some(name) = path.file_name() else {
        return Err(Error::Io(format!("{}: not a file name", path.display())));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        // The data must be on disk before the rename makes it the checkpoint: otherwise
        // a power loss can leave the new name on an empty or partial file.
        f.sync_all().map_err(|e| io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_folder(path)
}

/// Syncs the folder holding `path`, so that the rename that put `path` there survives
/// a power loss.
#[cfg(unix)]
fn sync_folder(path: &Path) -> Result<()> {
    use std::io::ErrorKind;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // A file system that cannot sync (or let us open) a folder: nothing more to do.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::PermissionDenied
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::Io(format!("{}: {e}", dir.display()))),
    }
}

/// Folders cannot be synced through `std` here; the rename is as durable as the OS makes
/// it.
#[cfg(not(unix))]
fn sync_folder(_path: &Path) -> Result<()> {
    Ok(())
}

/// Reads a checkpoint written by [`save`].
///
/// # Errors
/// [`Error::Io`] naming the path when the file cannot be read; [`Error::Format`] naming
/// the path when it is not a checkpoint or is inconsistent: not safetensors (see
/// [`Tensors::from_bytes`]), metadata missing or malformed (`format` not [`FORMAT`], a
/// `config` that does not parse or validate, `epochs_done` or `seed` not a non-negative
/// decimal integer that fits, `history` not a list of pairs or not one per completed
/// epoch), or a tensor that no model of the config has; [`Error::MissingTensor`],
/// [`Error::Dtype`] or [`Error::Shape`] naming a tensor of the config's model that is
/// absent or does not fit; [`Error::Config`] when the config's sizes overflow `usize`.
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
    let epochs_done: usize = get("epochs_done")?
        .parse()
        .map_err(|e| bad(path, format!("epochs_done: {e}")))?;
    let seed = get("seed")?
        .parse()
        .map_err(|e| bad(path, format!("seed: {e}")))?;
    let history = history_from(path, get("history")?)?;
    if history.len() != epochs_done {
        return Err(bad(
            path,
            format!(
                "history has {} entries but epochs_done is {epochs_done} (one entry per \
                 completed epoch)",
                history.len()
            ),
        ));
    }
    let expected = tensor_names(&config);
    if let Some(extra) = t.names().find(|n| !expected.iter().any(|e| e == n)) {
        return Err(bad(
            path,
            format!(
                "has tensor `{extra}`, which no model of its config ({} layers) has",
                config.hidden_sizes.len()
            ),
        ));
    }
    let model = LanguageModel::from_tensors(&t, &config, options)?;
    Ok(Checkpoint {
        model,
        config,
        progress: Progress {
            epochs_done,
            seed,
            history,
        },
    })
}

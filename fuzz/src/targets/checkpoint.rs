//! `checkpoint`: the language model's checkpoint loader (`lm::checkpoint::load`) on a
//! file holding the input's bytes. A checkpoint that loads must save and load back the
//! same (parameters, config, progress), and, when its window is small, run one
//! evaluation step.

use std::sync::OnceLock;

use lstm_kernels::lm::{checkpoint, LanguageModel, LmConfig, LmWorkspace, Progress};
use lstm_kernels::{LstmOptions, Tensors};

use super::same_tensors;
use crate::rng::Rng;
use crate::st::{StFile, StTensor};
use crate::values::SIZES;
use crate::{mutate, scratch_path, Corpus};

/// The largest `batch_size * num_steps` a loaded checkpoint is evaluated at.
pub const MAX_ROWS: usize = 256;

fn options() -> LstmOptions {
    LstmOptions {
        threads: Some(1),
        pin_threads: Some(false),
        ..Default::default()
    }
}

/// Runs one input (see the module's doc).
pub fn run(data: &[u8]) {
    let path = scratch_path("checkpoint.safetensors");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(ckpt) = checkpoint::load(&path, options()) else {
        return;
    };
    let again = scratch_path("checkpoint-again.safetensors");
    checkpoint::save(&again, &ckpt.model, &ckpt.config, &ckpt.progress)
        .unwrap_or_else(|e| panic!("a loaded checkpoint does not save: {e}"));
    let back = checkpoint::load(&again, options())
        .unwrap_or_else(|e| panic!("a re-saved checkpoint does not load: {e}"));
    assert_eq!(
        back.config, ckpt.config,
        "config changed through save and load"
    );
    assert_eq!(
        back.progress, ckpt.progress,
        "progress changed through save and load"
    );
    if let Err(e) = same_tensors(&back.model.to_tensors(), &ckpt.model.to_tensors()) {
        panic!("parameters changed through save and load: {e}");
    }

    let c = &ckpt.config;
    let Some(rows) = c.batch_size.checked_mul(c.num_steps) else {
        return;
    };
    if rows > MAX_ROWS {
        return;
    }
    let vocab = ckpt.model.vocab();
    let mut ws = LmWorkspace::new(&ckpt.model, c.batch_size, c.num_steps);
    // The last byte picks an id outside the vocabulary now and then: an error, not a panic.
    let bad = data.last().is_some_and(|&b| b % 8 == 0);
    let ids: Vec<i32> = (0..rows)
        .map(|i| {
            if bad && i == 0 {
                vocab as i32
            } else {
                (i % vocab.max(1)) as i32
            }
        })
        .collect();
    let _ = ckpt.model.eval_step(&mut ws, &ids, &ids);
}

/// Small configs' checkpoints as written by `checkpoint::save`, made once per process.
fn seeds() -> &'static [StFile] {
    static SEEDS: OnceLock<Vec<StFile>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut rng = Rng::new(0x5eed);
        (0..6)
            .filter_map(|i| {
                let config = LmConfig {
                    name: format!("fuzz{i}"),
                    hidden_sizes: (0..rng.range(1, 2)).map(|_| rng.range(1, 6)).collect(),
                    num_steps: rng.range(1, 4),
                    batch_size: rng.range(1, 3),
                    embedding_size: rng.range(1, 6),
                    vocab_size: rng.range(1, 9),
                    ..LmConfig::seed()
                };
                let model = LanguageModel::new(&config, i, Some(1)).ok()?;
                let progress = Progress {
                    epochs_done: i as usize,
                    seed: i,
                    history: (0..i)
                        .map(|e| (e as f64 * 1.5, 100.0 / (e as f64 + 1.0)))
                        .collect(),
                };
                let path = scratch_path(&format!("seed{i}.safetensors"));
                checkpoint::save(&path, &model, &config, &progress).ok()?;
                let bytes = std::fs::read(&path).ok()?;
                let _ = std::fs::remove_file(&path);
                // Through `Tensors` and `StFile`, whose order is fixed: the library's
                // writer orders the metadata as a hash map does, differently in every
                // process, and a worker and its supervisor must make the same inputs.
                Some(StFile::from_tensors(&Tensors::from_bytes(&bytes).ok()?))
            })
            .collect()
    })
}

const META: &[(&str, &str)] = &[
    ("format", "lstm-kernels-lm/1"),
    ("format", "lstm-kernels-lm/2"),
    ("epochs_done", "-1"),
    ("epochs_done", "18446744073709551616"),
    ("seed", "x"),
    ("history", "[[1,2]]"),
    ("history", "[[1]]"),
    ("history", "{}"),
    ("history", "[[1e999, 0]]"),
    ("config", "{}"),
    ("config", "null"),
    ("config", "{\"hidden_sizes\": []}"),
];

/// A checkpoint whose config sizes may be huge and whose tensors are shaped as the
/// loader computes their expected shapes, in wrapping arithmetic.
fn wrapping_checkpoint(rng: &mut Rng) -> StFile {
    let pick = |rng: &mut Rng| -> usize {
        if rng.chance(1, 2) {
            rng.range(1, 4)
        } else {
            *rng.pick(SIZES) as usize
        }
    };
    let (e, v, b, t) = (pick(rng), pick(rng), pick(rng), pick(rng));
    let hidden: Vec<usize> = (0..rng.range(1, 2)).map(|_| pick(rng)).collect();
    let mut f = StFile::default();
    let put = |f: &mut StFile, name: String, shape: &[usize]| {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let n = n.filter(|&n| n <= 4096).unwrap_or(0);
        f.put(StTensor {
            name,
            dtype: "F32".into(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: vec![0; n * 4],
        });
    };
    put(&mut f, "embedding".into(), &[v, e]);
    let mut input = e;
    for (k, &h) in hidden.iter().enumerate() {
        put(
            &mut f,
            format!("layers/{k}/kernel"),
            &[input.wrapping_add(h), h.wrapping_mul(4)],
        );
        put(&mut f, format!("layers/{k}/bias"), &[h.wrapping_mul(4)]);
        input = h;
    }
    put(&mut f, "softmax_w".into(), &[input, v]);
    put(&mut f, "softmax_b".into(), &[v]);
    let hs: Vec<String> = hidden.iter().map(usize::to_string).collect();
    f.set_meta("format", checkpoint::FORMAT);
    f.set_meta(
        "config",
        &format!(
            "{{\"name\": \"w\", \"init_scale\": 0.1, \"learning_rate\": 1.0, \"max_grad_norm\": 5.0, \
             \"hidden_sizes\": [{}], \"num_steps\": {t}, \"batch_size\": {b}, \"embedding_size\": {e}, \
             \"vocab_size\": {v}, \"max_epoch\": 4, \"max_max_epoch\": 15, \"keep_prob\": 1.0, \
             \"lr_decay\": 0.5, \"forget_bias\": 0.0}}",
            hs.join(", ")
        ),
    );
    f.set_meta("epochs_done", "0");
    f.set_meta("seed", "1");
    f.set_meta("history", "[]");
    f
}

/// Makes one input: a saved checkpoint, damaged structurally (metadata numbers, tensor
/// shapes, dtypes, names) and at the byte level, or one of wrapping sizes.
pub fn generate(rng: &mut Rng, corpus: &Corpus, max_len: usize) -> Vec<u8> {
    let seeds = seeds();
    let mut f = match rng.below(10) {
        0..=6 if !seeds.is_empty() => rng.pick(seeds).clone(),
        7 if !corpus.safetensors.is_empty() => {
            let (_, bytes) = rng.pick(&corpus.safetensors);
            let mut b = bytes.clone();
            mutate::bytes(&mut b, rng, max_len);
            return b;
        }
        _ => wrapping_checkpoint(rng),
    };
    let names: Vec<String> = [
        "embedding",
        "softmax_w",
        "softmax_b",
        "layers/0/kernel",
        "layers/0/bias",
        "layers/1/kernel",
        "layers/1/bias",
        "layers/2/kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..rng.below(4) {
        f.mutate(rng, &names, META);
    }
    let mut out = f.to_bytes();
    mutate::sometimes(&mut out, rng, max_len, 6);
    out.truncate(max_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_loadable_checkpoints() {
        assert!(seeds().len() >= 5);
        for f in seeds() {
            let path = scratch_path("test-seed.safetensors");
            std::fs::write(&path, f.to_bytes()).unwrap();
            let c = checkpoint::load(&path, options()).unwrap();
            assert!(c.config.name.starts_with("fuzz"));
            // And the target's own checks pass on them.
            run(&f.to_bytes());
        }
    }
}

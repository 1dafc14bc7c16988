//! Training epochs, checkpoints and resuming, on a small synthetic corpus.

use lstm_kernels::lm::checkpoint::{self, Progress};
use lstm_kernels::lm::train::{evaluate_stream, run_epoch, EpochOptions};
use lstm_kernels::lm::{LanguageModel, LmConfig, LmWorkspace};
use lstm_kernels::{LstmOptions, SplitMix64};

fn config() -> LmConfig {
    LmConfig {
        name: "tiny".into(),
        init_scale: 0.3,
        hidden_sizes: vec![8, 6],
        num_steps: 5,
        batch_size: 4,
        embedding_size: 7,
        vocab_size: 13,
        max_epoch: 2,
        max_max_epoch: 3,
        keep_prob: 0.8,
        ..LmConfig::seed()
    }
}

/// A corpus with structure to learn: id `i` is mostly followed by `i + 1`.
fn corpus(n: usize) -> Vec<i32> {
    let mut rng = SplitMix64::new(1);
    let mut v = vec![0i32];
    while v.len() < n {
        let last = *v.last().unwrap();
        let next = if rng.next_u64().is_multiple_of(5) {
            (rng.next_u64() % 13) as i32
        } else {
            (last + 1) % 13
        };
        v.push(next);
    }
    v
}

fn train_epochs(
    model: &mut LanguageModel,
    config: &LmConfig,
    data: &[i32],
    epochs: std::ops::RangeInclusive<usize>,
) -> Vec<f64> {
    let mut ws = LmWorkspace::new(model, config.batch_size, config.num_steps);
    let mut ppl = Vec::new();
    for epoch in epochs {
        let opts = EpochOptions {
            config,
            learning_rate: Some(config.learning_rate(epoch)),
            seed: 7,
            epoch,
            max_steps: None,
        };
        ppl.push(
            run_epoch(model, &mut ws, data, &opts, |_| {})
                .unwrap()
                .perplexity,
        );
    }
    ppl
}

#[test]
fn training_lowers_perplexity_and_resume_is_identical() {
    let config = config();
    let data = corpus(4000);
    let opts = LstmOptions {
        isa: None,
        threads: Some(1),
        ..Default::default()
    };

    let mut straight = LanguageModel::new(&config, 3, Some(1)).unwrap();
    let ppl = train_epochs(&mut straight, &config, &data, 1..=3);
    // Uniform guessing is perplexity 13; the corpus is 80% predictable.
    assert!(ppl[2] < ppl[0] && ppl[2] < 6.0, "{ppl:?}");
    println!("perplexity by epoch: {ppl:?}");

    let path = std::env::temp_dir().join(format!(
        "lstm-kernels-lm-{}.safetensors",
        std::process::id()
    ));
    let mut first = LanguageModel::new(&config, 3, Some(1)).unwrap();
    let p1 = train_epochs(&mut first, &config, &data, 1..=1);
    checkpoint::save(
        &path,
        &first,
        &config,
        &Progress {
            epochs_done: 1,
            seed: 3,
            history: vec![(p1[0], 0.0)],
        },
    )
    .unwrap();
    let mut c = checkpoint::load(&path, opts).unwrap();
    assert_eq!(c.config, config);
    assert_eq!(c.progress.epochs_done, 1);
    assert_eq!(c.progress.history, vec![(p1[0], 0.0)]);
    let rest = train_epochs(&mut c.model, &c.config, &data, 2..=3);
    assert_eq!([p1[0], rest[0], rest[1]], ppl[..]);
    let (a, b) = (straight.to_tensors(), c.model.to_tensors());
    for name in a.names() {
        assert!(
            a.f32(name).unwrap().1 == b.f32(name).unwrap().1,
            "{name} differs after resuming"
        );
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn bad_checkpoints_are_errors() {
    let dir = std::env::temp_dir();
    let missing = dir.join("lstm-kernels-no-such-checkpoint.safetensors");
    let e = checkpoint::load(&missing, LstmOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no-such-checkpoint"), "{e}");

    // A file of tensors that is not a checkpoint (no metadata).
    let config = config();
    let model = LanguageModel::new(&config, 1, Some(1)).unwrap();
    let path = dir.join(format!(
        "lstm-kernels-notckpt-{}.safetensors",
        std::process::id()
    ));
    model.to_tensors().save(&path).unwrap();
    let e = checkpoint::load(&path, LstmOptions::default()).unwrap_err();
    assert!(e.to_string().contains("format"), "{e}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn data_too_short_for_a_window_is_an_error() {
    let config = config();
    let mut model = LanguageModel::new(&config, 1, Some(1)).unwrap();
    let mut ws = LmWorkspace::new(&model, 4, 5);
    let opts = EpochOptions {
        config: &config,
        learning_rate: None,
        seed: 1,
        epoch: 1,
        max_steps: None,
    };
    let e = run_epoch(&mut model, &mut ws, &[1; 20], &opts, |_| {}).unwrap_err();
    assert!(e.to_string().contains("decrease batch_size"), "{e}");
    // An id outside the vocabulary is an error naming the tensor, not a panic.
    let e = model.eval_step(&mut ws, &[13; 20], &[0; 20]).unwrap_err();
    assert!(e.to_string().contains("inputs"), "{e}");
    let e = model.eval_step(&mut ws, &[0; 19], &[0; 20]).unwrap_err();
    assert!(e.to_string().contains("inputs"), "{e}");
}

/// The test-set evaluation as one stream in windows of any length sums what batch 1,
/// window 1 (TF's test run) sums: the windows differ only in rounding.
#[test]
fn stream_evaluation_matches_window_one() {
    let config = config();
    let mut model = LanguageModel::new(&config, 2, Some(1)).unwrap();
    let data = corpus(300);
    let mut ws = LmWorkspace::new(&model, 1, 1);
    let opts = EpochOptions {
        config: &config,
        learning_rate: None,
        seed: 1,
        epoch: 1,
        max_steps: None,
    };
    let one = run_epoch(&mut model, &mut ws, &data, &opts, |_| {}).unwrap();
    assert_eq!(one.iters, 299);
    for chunk in [1, 7, 64, 1000] {
        let s = evaluate_stream(&model, &data, chunk, |_| {}).unwrap();
        assert_eq!(s.iters, 299);
        // f32 costs summed in another grouping: 1e-6 relative.
        assert!(
            (s.cost - one.cost).abs() < 1e-6 * one.cost,
            "chunk {chunk}: {} vs {}",
            s.cost,
            one.cost
        );
    }
    assert!(evaluate_stream(&model, &data[..1], 5, |_| {}).is_err());
}

/// Perplexities survive the checkpoint bit for bit, including values whose shortest
/// decimal form a fast float parser rounds wrongly (this one did, before serde_json's
/// `float_roundtrip` was on).
#[test]
fn checkpoint_history_round_trips_exactly() {
    let config = config();
    let model = LanguageModel::new(&config, 3, Some(1)).unwrap();
    let history = vec![
        (11.373541539761641, 0.0),
        (11.377193953864623, 6.503274139481548),
    ];
    let path = std::env::temp_dir().join(format!(
        "lstm-kernels-hist-{}.safetensors",
        std::process::id()
    ));
    checkpoint::save(
        &path,
        &model,
        &config,
        &Progress {
            epochs_done: 2,
            seed: 3,
            history: history.clone(),
        },
    )
    .unwrap();
    let c = checkpoint::load(
        &path,
        LstmOptions {
            isa: None,
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(c.progress.history, history);
}

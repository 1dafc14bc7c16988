//! Trains the seed's Penn Treebank language model (or TensorFlow's tutorial configs):
//!
//! ```sh
//! cargo run --release --example ptb -- --data-dir ../shared/data/ptb \
//!     [--config seed|small|medium|large] [--max-epoch N] [--threads N] \
//!     [--save FILE] [--resume FILE] [--seed N] [--quick]
//! ```
//!
//! Prints, like the seed, `Epoch N : Learning rate: X`, `Epoch N : Train Perplexity: X`
//! and `Epoch N : Valid Perplexity: Y` after each epoch and `Test Perplexity: Z` at the end.
//! Validation runs with the training batch and window, the test with batch 1 and window 1
//! (TF's `eval_config`). `--save` writes a `.safetensors` checkpoint after every epoch;
//! `--resume` continues from one exactly as the uninterrupted run would have.
//! `--quick` trains 200 windows of one epoch and evaluates on parts of valid and test.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use lstm_kernels::lm::checkpoint::{self, Progress};
use lstm_kernels::lm::train::{evaluate_stream, run_epoch, EpochOptions};
use lstm_kernels::lm::{LanguageModel, LmConfig, LmWorkspace, PtbData};
use lstm_kernels::LstmOptions;

struct Args {
    data_dir: PathBuf,
    config: String,
    max_epoch: Option<usize>,
    threads: Option<usize>,
    save: Option<PathBuf>,
    resume: Option<PathBuf>,
    seed: u64,
    quick: bool,
}

const USAGE: &str = "usage: ptb --data-dir DIR [--config seed|small|medium|large] \
[--max-epoch N] [--threads N] [--save FILE] [--resume FILE] [--seed N] [--quick]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        data_dir: PathBuf::from("../shared/data/ptb"),
        config: "seed".into(),
        max_epoch: None,
        threads: None,
        save: None,
        resume: None,
        seed: 1,
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|e| format!("{flag}: `{v}`: {e}"))
        };
        match flag.as_str() {
            "--data-dir" => a.data_dir = value()?.into(),
            "--config" => a.config = value()?,
            "--max-epoch" => a.max_epoch = Some(number(value()?)?),
            "--threads" => a.threads = Some(number(value()?)?),
            "--save" => a.save = Some(value()?.into()),
            "--resume" => a.resume = Some(value()?.into()),
            "--seed" => a.seed = number(value()?)? as u64,
            "--quick" => a.quick = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    Ok(a)
}

fn bar(len: usize, label: String) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label);
    pb
}

fn run(args: Args) -> Result<(), String> {
    let err = |e: lstm_kernels::Error| e.to_string();
    if args.resume.is_none() {
        // A bad config name fails before the data is read.
        LmConfig::by_name(&args.config).map_err(err)?;
    }
    let data = PtbData::load(&args.data_dir).map_err(err)?;
    let options = LstmOptions {
        isa: None,
        threads: args.threads,
        ..Default::default()
    };
    let (mut model, mut config, mut progress) = match &args.resume {
        Some(path) => {
            let c = checkpoint::load(path, options).map_err(err)?;
            eprintln!(
                "resumed {} after epoch {} (config {})",
                path.display(),
                c.progress.epochs_done,
                c.config.name
            );
            (c.model, c.config, c.progress)
        }
        None => {
            let config = LmConfig::by_name(&args.config).map_err(err)?;
            let model = LanguageModel::new(&config, args.seed, args.threads).map_err(err)?;
            let progress = Progress {
                epochs_done: 0,
                seed: args.seed,
                history: Vec::new(),
            };
            (model, config, progress)
        }
    };
    if data.vocab.len() > config.vocab_size {
        return Err(format!(
            "{}: the training text has {} distinct words, more than the model's vocabulary of {}",
            args.data_dir.display(),
            data.vocab.len(),
            config.vocab_size
        ));
    }
    if let Some(m) = args.max_epoch {
        config.max_max_epoch = m;
    }
    if args.quick {
        config.max_max_epoch = progress.epochs_done + 1;
    }
    let (train_steps, valid_steps, test_words) = if args.quick {
        (Some(200), Some(40), 20_000)
    } else {
        (None, None, data.test.len())
    };
    eprintln!(
        "config {}: embedding {}, layers {:?}, batch {}, steps {}, keep_prob {}, {} epochs; \
         {} threads",
        config.name,
        config.embedding_size,
        config.hidden_sizes,
        config.batch_size,
        config.num_steps,
        config.keep_prob,
        config.max_max_epoch,
        model.threads()
    );
    let mut train_ws = LmWorkspace::new(&model, config.batch_size, config.num_steps);
    for epoch in progress.epochs_done + 1..=config.max_max_epoch {
        let lr = config.learning_rate(epoch);
        println!("Epoch {epoch} : Learning rate: {lr:.3}");
        let mut report = |split: &str, data: &[i32], lr: Option<f32>, max_steps| {
            let opts = EpochOptions {
                config: &config,
                learning_rate: lr,
                seed: progress.seed,
                epoch,
                max_steps,
            };
            let pb = bar(0, format!("epoch {epoch} {split}"));
            let r = run_epoch(&mut model, &mut train_ws, data, &opts, |s| {
                if s.step == 1 {
                    pb.set_length(s.steps as u64);
                }
                pb.set_position(s.step as u64);
                pb.set_message(format!(
                    "ppl {:.2} {:.0} words/s",
                    s.perplexity, s.words_per_s
                ));
            });
            pb.finish_and_clear();
            r
        };
        let train = report("train", &data.train, Some(lr), train_steps).map_err(err)?;
        println!(
            "Epoch {epoch} : Train Perplexity: {:.3}   ({:.0} words/s, {:.1} s)",
            train.perplexity,
            train.words as f64 / train.seconds,
            train.seconds
        );
        let valid = report("valid", &data.valid, None, valid_steps).map_err(err)?;
        println!("Epoch {epoch} : Valid Perplexity: {:.3}", valid.perplexity);
        progress.epochs_done = epoch;
        progress.history.push((train.perplexity, valid.perplexity));
        if let Some(path) = &args.save {
            checkpoint::save(path, &model, &config, &progress).map_err(err)?;
            eprintln!("saved {}", path.display());
        }
    }
    let pb = bar(0, "test".into());
    let test_data = &data.test[..test_words.min(data.test.len())];
    // Batch 1, window 1 as TF's test run, computed 1,000 steps at a time (the same sums).
    let test = evaluate_stream(&model, test_data, 1000, |s| {
        if s.step == 1 {
            pb.set_length(s.steps as u64);
        }
        pb.set_position(s.step as u64);
        pb.set_message(format!("ppl {:.2}", s.perplexity));
    })
    .map_err(err)?;
    pb.finish_and_clear();
    println!("Test Perplexity: {:.3}", test.perplexity);
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ptb: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ptb: {e}");
            ExitCode::FAILURE
        }
    }
}

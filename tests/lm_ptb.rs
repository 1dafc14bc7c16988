//! The PTB reader against the known counts, the untrained seed model's first cost, and
//! the errors of a missing or malformed data folder.

use std::path::{Path, PathBuf};

use lstm_kernels::lm::{Batches, LanguageModel, LmConfig, LmWorkspace, PtbData};
use lstm_kernels::Error;

fn ptb_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ptb");
    if dir.join("ptb.train.txt").is_file() {
        Some(dir)
    } else {
        println!(
            "SKIP: no PTB data at {} (the shared data folder is absent)",
            dir.display()
        );
        None
    }
}

#[test]
fn ptb_counts_match_the_known_ones() {
    let Some(dir) = ptb_dir() else { return };
    let d = PtbData::load(&dir).unwrap();
    assert_eq!(d.train.len(), 929_589);
    assert_eq!(d.valid.len(), 73_760);
    assert_eq!(d.test.len(), 82_430);
    assert_eq!(d.vocab.len(), 10_000);
    // The most frequent words, by count: the 50,770, <unk> 45,020, <eos> 42,068.
    assert_eq!(d.vocab.word(0), Some("the"));
    assert_eq!(d.vocab.word(1), Some("<unk>"));
    assert_eq!(d.vocab.word(2), Some("<eos>"));
    assert_eq!(d.train.iter().filter(|&&i| i == 0).count(), 50_770);
    assert_eq!(d.train.iter().filter(|&&i| i == 2).count(), 42_068);
    // The seed's windows: ((929589 / 60) - 1) / 20 = 774.
    assert_eq!(Batches::new(&d.train, 60, 20).unwrap().epoch_size(), 774);
    assert_eq!(Batches::new(&d.valid, 60, 20).unwrap().epoch_size(), 61);
    assert_eq!(Batches::new(&d.test, 1, 1).unwrap().epoch_size(), 82_429);
}

/// An untrained model predicts close to uniformly: its cost over 20 steps is near
/// `20 ln(10000) = 184.2`, within 1% (weights of +-0.1 move the logits by a few tenths).
#[test]
fn untrained_seed_cost_is_twenty_ln_vocab() {
    let Some(dir) = ptb_dir() else { return };
    let d = PtbData::load(&dir).unwrap();
    let config = LmConfig::seed();
    let model = LanguageModel::new(&config, 1, Some(2)).unwrap();
    let mut ws = LmWorkspace::new(&model, 60, 20);
    let b = Batches::new(&d.train, 60, 20).unwrap();
    let (mut x, mut y) = (vec![0; 1200], vec![0; 1200]);
    b.fill(0, &mut x, &mut y);
    let cost = model.eval_step(&mut ws, &x, &y).unwrap();
    let want = 20.0 * 10_000f64.ln();
    assert!(
        (cost - want).abs() / want < 0.01,
        "cost {cost} vs 20 ln(10000) = {want}"
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lstm-kernels-lm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn missing_or_malformed_data_is_a_clear_error() {
    let missing = std::env::temp_dir().join("lstm-kernels-no-such-ptb-folder");
    match PtbData::load(&missing) {
        Err(Error::Io(msg)) => assert!(msg.contains("no such folder"), "{msg}"),
        other => panic!("expected an Io error, got {other:?}"),
    }

    let dir = temp_dir("partial");
    std::fs::write(dir.join("ptb.train.txt"), " a b c \n").unwrap();
    std::fs::write(dir.join("ptb.valid.txt"), " a \n").unwrap();
    match PtbData::load(&dir) {
        Err(Error::Io(msg)) => assert!(msg.contains("ptb.test.txt"), "{msg}"),
        other => panic!("expected an Io error naming ptb.test.txt, got {other:?}"),
    }

    std::fs::write(dir.join("ptb.test.txt"), [0xff, 0xfe, b'a']).unwrap();
    match PtbData::load(&dir) {
        Err(Error::Format(msg)) => {
            assert!(
                msg.contains("ptb.test.txt") && msg.contains("UTF-8"),
                "{msg}"
            )
        }
        other => panic!("expected a Format error, got {other:?}"),
    }

    std::fs::write(dir.join("ptb.test.txt"), "  \n \n").unwrap();
    match PtbData::load(&dir) {
        Err(Error::Format(msg)) => assert!(msg.contains("no words"), "{msg}"),
        other => panic!("expected a Format error, got {other:?}"),
    }

    std::fs::write(dir.join("ptb.test.txt"), " c a q \n").unwrap();
    let d = PtbData::load(&dir).unwrap();
    // Out-of-vocabulary words are dropped, as TF's reader drops them.
    assert_eq!(d.test.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

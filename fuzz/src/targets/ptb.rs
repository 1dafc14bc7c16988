//! `ptb`: the Penn Treebank reader. The text is split in words, a vocabulary built and
//! the words encoded in memory, and also written as the three files of a PTB folder for
//! `PtbData::load`; the ids then go through the batch producer (`Batches`).
//!
//! Input: 8 header bytes (two little-endian `u16` split points of the text into train,
//! valid and test; a mode byte: bits 0-2 leave a file out, bit 3 names a missing folder,
//! bit 4 and 5 take the batch size and step count from the interesting sizes; the
//! batch size; the step count; one spare byte), then the text.

use lstm_kernels::lm::{ptb, Batches, PtbData, Vocabulary};

use crate::rng::Rng;
use crate::values::{self, INTS};
use crate::{mutate, scratch_path, Corpus};

/// Header bytes before the text.
pub const HEADER: usize = 8;

/// Runs one input (see the module's doc).
pub fn run(data: &[u8]) {
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let text = data.get(HEADER..).unwrap_or(&[]);
    let s1 = (u16::from_le_bytes([b(0), b(1)]) as usize).min(text.len());
    let s2 = (u16::from_le_bytes([b(2), b(3)]) as usize).clamp(s1, text.len());
    let mode = b(4);
    let batch_size = if mode & 16 != 0 {
        values::size(b(5))
    } else {
        b(5) as usize % 9
    };
    let num_steps = if mode & 32 != 0 {
        values::size(b(6))
    } else {
        b(6) as usize % 9
    };

    // In memory: words, vocabulary, ids.
    let s = String::from_utf8_lossy(text);
    let words = ptb::words(&s);
    // More distinct words than an i32 id holds is an error now, not a wrap.
    let Ok(vocab) = Vocabulary::build(words.iter().copied()) else {
        return;
    };
    let ids = vocab.encode(words.iter().copied());
    assert_eq!(
        ids.len(),
        words.len(),
        "a word of the vocabulary's own text has no id"
    );
    for (&id, &w) in ids.iter().zip(&words) {
        assert_eq!(
            vocab.word(id),
            Some(w),
            "id {id} does not map back to its word"
        );
    }
    for &x in INTS {
        let _ = vocab.word(x as i32);
    }
    batches(&ids, batch_size, num_steps);

    // On disk: the three files of a PTB folder.
    let dir = scratch_path("ptb");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let parts = [&text[..s1], &text[s1..s2], &text[s2..]];
    for (i, (name, part)) in ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]
        .iter()
        .zip(parts)
        .enumerate()
    {
        let path = dir.join(name);
        let _ = if mode & (1 << i) != 0 {
            std::fs::remove_file(&path)
        } else {
            std::fs::write(&path, part)
        };
    }
    let folder = if mode & 8 != 0 {
        dir.join("missing")
    } else {
        dir
    };
    if let Ok(d) = PtbData::load(&folder) {
        assert!(
            !d.vocab.is_empty(),
            "a loaded PTB folder has an empty vocabulary"
        );
        assert!(d.train.iter().all(|&id| vocab_has(&d.vocab, id)));
        batches(&d.train, batch_size, num_steps);
        batches(&d.valid, batch_size.max(1), 1);
    }
}

fn vocab_has(v: &Vocabulary, id: i32) -> bool {
    v.word(id).is_some()
}

/// The producer on `ids`: the first windows, the last one by `fill`, and the shift by
/// one between inputs and targets.
fn batches(ids: &[i32], batch_size: usize, num_steps: usize) {
    let Ok(b) = Batches::new(ids, batch_size, num_steps) else {
        return;
    };
    let epochs = b.epoch_size();
    assert!(epochs >= 1);
    assert_eq!(b.len(), epochs);
    // `Batches::new` accepted these sizes, so `batch_size * num_steps <= ids.len()`.
    let n = batch_size * num_steps;
    assert!(n <= ids.len(), "a window of {n} ids from {} ids", ids.len());
    let (mut inputs, mut targets) = (vec![0; n], vec![0; n]);
    b.fill(epochs - 1, &mut inputs, &mut targets);
    for row in 0..batch_size {
        for k in 0..num_steps - 1 {
            assert_eq!(
                targets[row * num_steps + k],
                inputs[row * num_steps + k + 1],
                "targets are not the inputs shifted by one"
            );
        }
    }
    for w in b.take(2) {
        assert_eq!(w.inputs.len(), n);
    }
}

const WORDS: &[&str] = &[
    "the", "a", "<unk>", "N", "$", "<eos>", "of", "to", "in", "ü", "日本", "\u{feff}", "x", "'s",
];
const SEPARATORS: &[&str] = &[
    " ", " ", " ", "\n", " \n", "\t", "\r\n", "\u{a0}", "\u{85}", "\u{2028}", "\u{3000}", "\x0b",
    "\x0c", "\r", "  ",
];

/// Makes one input: a header and a text of PTB-like words and odd separators (now and
/// then invalid UTF-8, or random bytes), then damaged.
pub fn generate(rng: &mut Rng, corpus: &Corpus, max_len: usize) -> Vec<u8> {
    let mut text = Vec::new();
    match rng.below(10) {
        0 => text = rng.some_bytes(512),
        1 if !corpus.raw.is_empty() => text = rng.pick(&corpus.raw).clone(),
        _ => {
            for _ in 0..rng.len_up_to(400) {
                text.extend_from_slice(rng.pick(WORDS).as_bytes());
                text.extend_from_slice(rng.pick(SEPARATORS).as_bytes());
            }
            if rng.chance(1, 8) {
                let at = rng.below(text.len() + 1);
                let options: [&[u8]; 4] = [&[0xff], &[0xc3], &[0xed, 0xa0, 0x80], &[0]];
                let bad = *rng.pick(&options);
                text.splice(at..at, bad.iter().copied());
            }
        }
    }
    if rng.chance(1, 4) {
        mutate::bytes(&mut text, rng, max_len);
    }
    let len = text.len() as u16;
    let s1 = if len == 0 {
        0
    } else {
        rng.below(len as usize + 1) as u16
    };
    let s2 = s1 + rng.below((len - s1.min(len)) as usize + 1) as u16;
    let mut mode = 0u8;
    if rng.chance(1, 10) {
        mode |= 1 << rng.below(4);
    }
    if rng.chance(1, 6) {
        mode |= 16 << rng.below(2);
    }
    let mut out = Vec::with_capacity(HEADER + text.len());
    out.extend_from_slice(&s1.to_le_bytes());
    out.extend_from_slice(&s2.to_le_bytes());
    out.extend_from_slice(&[mode, rng.u64() as u8, rng.u64() as u8, 0]);
    out.extend_from_slice(&text);
    out.truncate(max_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_texts_mostly_load() {
        // The header splits are inside the text and files are seldom left out, so most
        // generated folders load: the reader's success path is explored.
        let corpus = Corpus::default();
        let mut rng = Rng::new(12);
        let mut loaded = 0;
        for _ in 0..50 {
            let d = generate(&mut rng, &corpus, 1 << 16);
            let text = &d[HEADER..];
            let s = String::from_utf8_lossy(text);
            loaded += usize::from(!ptb::words(&s).is_empty());
            run(&d);
        }
        assert!(loaded > 25, "{loaded}");
    }
}

//! The Penn Treebank reader, exactly as TensorFlow's tutorial `reader.py` does it: words
//! split on whitespace with `<eos>` at every newline, a vocabulary from the training file
//! sorted by descending count then word, and the iterator that cuts the id stream into
//! `batch_size` rows and walks them `num_steps` at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model::error::{Error, Result};

/// The end-of-sentence token, one per line.
pub const EOS: &str = "<eos>";

/// The words of `text`: whitespace-separated, with [`EOS`] for every `'\n'` (TF's
/// `f.read().replace("\n", "<eos>").split()`; the PTB lines end with a space, so the
/// two readings agree).
pub fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / 5);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        out.extend(line.split_whitespace());
        if lines.peek().is_some() {
            out.push(EOS);
        }
    }
    out
}

/// A vocabulary: word `i` has id `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    words: Vec<String>,
    ids: HashMap<String, i32>,
}

impl Vocabulary {
    /// Every distinct word of `words`, sorted by descending count, then by word (byte
    /// order, which is Python's code-point order for UTF-8).
    ///
    /// # Errors
    /// [`Error::Config`] when there are more distinct words than `i32` ids (2^31).
    pub fn build<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for w in words {
            *counts.entry(w).or_default() += 1;
        }
        let mut pairs: Vec<(&str, u64)> = counts.into_iter().collect();
        if i32::try_from(pairs.len()).is_err() {
            return Err(Error::Config(format!(
                "{} distinct words are more than i32 ids can number",
                pairs.len()
            )));
        }
        pairs.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let words: Vec<String> = pairs.into_iter().map(|(w, _)| w.to_string()).collect();
        let ids = (0..)
            .zip(&words)
            .map(|(i, w): (i32, _)| (w.clone(), i))
            .collect();
        Ok(Vocabulary { words, ids })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether it has no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`.
    pub fn id(&self, word: &str) -> Option<i32> {
        self.ids.get(word).copied()
    }

    /// The word of `id`.
    pub fn word(&self, id: i32) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.words.get(i))
            .map(String::as_str)
    }

    /// The ids of `words`; words outside the vocabulary are dropped, as TF's reader does.
    pub fn encode<'a>(&self, words: impl IntoIterator<Item = &'a str>) -> Vec<i32> {
        words.into_iter().filter_map(|w| self.id(w)).collect()
    }
}

/// The three PTB splits as ids, and the vocabulary (built from `train`).
#[derive(Debug, Clone)]
pub struct PtbData {
    /// Training ids.
    pub train: Vec<i32>,
    /// Validation ids.
    pub valid: Vec<i32>,
    /// Test ids.
    pub test: Vec<i32>,
    /// The vocabulary.
    pub vocab: Vocabulary,
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::Format(format!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    if text.split_whitespace().next().is_none() {
        return Err(Error::Format(format!("{}: has no words", path.display())));
    }
    Ok(text)
}

/// The ids of the words of `text` (the file `path`); words outside `vocab` are dropped,
/// as TF's reader drops them.
///
/// # Errors
/// [`Error::Format`] naming the file when none of its words but [`EOS`] is in the
/// vocabulary: what is left, one `<eos>` per line, is no text.
fn encode_split(vocab: &Vocabulary, path: &Path, text: &str) -> Result<Vec<i32>> {
    let words = words(text);
    let real = words.iter().filter(|&&w| w != EOS).count();
    let known = words
        .iter()
        .filter(|&&w| w != EOS && vocab.id(w).is_some())
        .count();
    if known == 0 {
        return Err(Error::Format(format!(
            "{}: none of its {real} word{} is in the vocabulary of the training text",
            path.display(),
            if real == 1 { "" } else { "s" }
        )));
    }
    Ok(vocab.encode(words))
}

impl PtbData {
    /// Reads `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt` from `dir` (TF's
    /// `ptb_raw_data`). Words of the validation and test texts that the training text
    /// does not have are dropped, as TF's reader drops them (the PTB files have none:
    /// rare words are `<unk>` in all three).
    ///
    /// # Errors
    /// [`Error::Io`] naming the folder or file when it is missing or unreadable;
    /// [`Error::Format`] naming the file when it is not UTF-8 text, has no words, or
    /// (validation and test) has no word of the training vocabulary but `<eos>`;
    /// [`Error::Config`] when the training text has more than 2^31 distinct words.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::Io(format!(
                "{}: no such folder (expected the PTB folder with ptb.train.txt, \
                 ptb.valid.txt and ptb.test.txt)",
                dir.display()
            )));
        }
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let train = read_text(&file("ptb.train.txt"))?;
        let valid = read_text(&file("ptb.valid.txt"))?;
        let test = read_text(&file("ptb.test.txt"))?;
        let train_words = words(&train);
        let vocab = Vocabulary::build(train_words.iter().copied())?;
        Ok(PtbData {
            train: vocab.encode(train_words),
            valid: encode_split(&vocab, &file("ptb.valid.txt"), &valid)?,
            test: encode_split(&vocab, &file("ptb.test.txt"), &test)?,
            vocab,
        })
    }

    /// Checks that every id fits a model of `vocab_size` words: that the vocabulary
    /// built from the training text is no larger (the ids are `0..vocab.len()`).
    ///
    /// # Errors
    /// [`Error::Config`] when the vocabulary has more than `vocab_size` words.
    pub fn check_vocab_size(&self, vocab_size: usize) -> Result<()> {
        if self.vocab.len() > vocab_size {
            return Err(Error::Config(format!(
                "the training text has {} distinct words (with `{EOS}`), more than the \
                 model's vocab_size of {vocab_size}",
                self.vocab.len()
            )));
        }
        Ok(())
    }
}

/// TF's `ptb_producer` as an iterator: the ids cut into `batch_size` rows of
/// `len / batch_size` consecutive ids, then windows of `num_steps` columns, the targets
/// shifted by one.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a [i32],
    batch_size: usize,
    num_steps: usize,
    batch_len: usize,
    epoch_size: usize,
    next: usize,
}

/// One window: `inputs` and `targets`, both `[batch_size, num_steps]` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input ids.
    pub inputs: Vec<i32>,
    /// Target ids: the next id of each input.
    pub targets: Vec<i32>,
}

impl<'a> Batches<'a> {
    /// The windows of `data`.
    ///
    /// # Errors
    /// [`Error::Config`] when `batch_size` or `num_steps` is 0 or the data is too short for
    /// one window (`epoch_size = ((len / batch_size) - 1) / num_steps` is 0), as TF's
    /// "epoch_size == 0, decrease batch_size or num_steps".
    pub fn new(data: &'a [i32], batch_size: usize, num_steps: usize) -> Result<Self> {
        if batch_size == 0 || num_steps == 0 {
            return Err(Error::Config(format!(
                "batch_size and num_steps must be at least 1, got {batch_size} and {num_steps}"
            )));
        }
        let batch_len = data.len() / batch_size;
        let epoch_size = batch_len.saturating_sub(1) / num_steps;
        if epoch_size == 0 {
            return Err(Error::Config(format!(
                "{} ids are too few for one window of batch_size {batch_size} x num_steps \
                 {num_steps}: decrease batch_size or num_steps",
                data.len()
            )));
        }
        Ok(Batches {
            data,
            batch_size,
            num_steps,
            batch_len,
            epoch_size,
            next: 0,
        })
    }

    /// Windows per epoch.
    pub fn epoch_size(&self) -> usize {
        self.epoch_size
    }

    /// Writes window `i` into `inputs` and `targets` (`[batch_size, num_steps]` each),
    /// without allocating.
    ///
    /// # Panics
    /// When `i >= epoch_size` or a buffer is not `batch_size * num_steps` long.
    pub fn fill(&self, i: usize, inputs: &mut [i32], targets: &mut [i32]) {
        assert!(i < self.epoch_size, "window {i} of {}", self.epoch_size);
        // No overflow: every index below is at most data.len() (see `new`).
        let (b, t) = (self.batch_size, self.num_steps);
        assert_eq!(inputs.len(), b * t);
        assert_eq!(targets.len(), b * t);
        for row in 0..b {
            let start = row * self.batch_len + i * t;
            inputs[row * t..(row + 1) * t].copy_from_slice(&self.data[start..start + t]);
            targets[row * t..(row + 1) * t].copy_from_slice(&self.data[start + 1..start + t + 1]);
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.epoch_size {
            return None;
        }
        // No overflow: `new` made batch_size * num_steps <= data.len().
        let n = self.batch_size * self.num_steps;
        let mut batch = Batch {
            inputs: vec![0; n],
            targets: vec![0; n],
        };
        self.fill(self.next, &mut batch.inputs, &mut batch.targets);
        self.next += 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.epoch_size - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_put_eos_at_each_newline() {
        assert_eq!(
            words(" a b \n c\n\nd"),
            vec!["a", "b", EOS, "c", EOS, EOS, "d"]
        );
        assert_eq!(words("x \n"), vec!["x", EOS]);
    }

    #[test]
    fn vocabulary_sorts_by_count_then_word() {
        let v = Vocabulary::build(["b", "a", "c", "b", "a", "z"]).unwrap();
        assert_eq!(
            (0..4).map(|i| v.word(i).unwrap()).collect::<Vec<_>>(),
            ["a", "b", "c", "z"]
        );
        assert_eq!(v.encode(["z", "q", "a"]), vec![3, 0]);
    }

    #[test]
    fn producer_matches_tf() {
        // TF's reader_test: data 0..10, batch 2, steps 2 -> epoch_size ((10/2)-1)/2 = 2.
        let data: Vec<i32> = (0..10).collect();
        let b: Vec<Batch> = Batches::new(&data, 2, 2).unwrap().collect();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].inputs, [0, 1, 5, 6]);
        assert_eq!(b[0].targets, [1, 2, 6, 7]);
        assert_eq!(b[1].inputs, [2, 3, 7, 8]);
        assert_eq!(b[1].targets, [3, 4, 8, 9]);
        assert!(Batches::new(&data, 5, 2).is_err());
        assert!(Batches::new(&data, 0, 2).is_err());
    }
}

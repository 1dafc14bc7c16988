//! Where a sequence's time step sits in the caller's buffers: batch-major `[B, T, F]` or
//! time-major `[T, B, F]`.

/// The layout of a batch of sequences in a caller's buffer: which of `B` and `T` is the
/// outer dimension, and their sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqLayout {
    /// `[T, B, F]` when set, `[B, T, F]` otherwise.
    pub time_major: bool,
    /// `B`.
    pub batch: usize,
    /// `T`.
    pub steps: usize,
}

impl SeqLayout {
    /// The row (of `F` features) of sequence `b` at time step `t`.
    #[inline]
    pub fn row(&self, b: usize, t: usize) -> usize {
        row_index(self.time_major, self.batch, self.steps, b, t)
    }
}

/// Index of time step `t` of sequence `b` in a `[B, T, F]` or `[T, B, F]` buffer, in rows.
#[inline]
pub(crate) fn row_index(time_major: bool, batch: usize, steps: usize, b: usize, t: usize) -> usize {
    if time_major {
        t * batch + b
    } else {
        b * steps + t
    }
}

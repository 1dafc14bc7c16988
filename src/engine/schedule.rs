//! The packed-sequence scheduler: sequences sorted by length (stable, longest first), so
//! that at step `s` the sequences still running are the prefix `0..active[s]`; work is
//! proportional to `sum(len)`, never to `B x T`.
//!
//! Tokens are stored packed, step-major, like PyTorch's `PackedSequence`: step `s`
//! occupies rows `offset[s] .. offset[s] + active[s]`, row `offset[s] + j` holding sorted
//! sequence `j`. A backward direction visits sequence `j`'s steps `len_j - 1 .. 0`; its
//! processing step `s` touches time `len_j - 1 - s`, and since `len_j > s` exactly when
//! `len_j > len_j - 1 - s`, the same prefix runs: the backward order is the same packed
//! layout with each sequence reversed within its length.

/// The schedule of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// `order[j]`: the caller's batch index of sorted sequence `j`.
    pub order: Vec<usize>,
    /// `lens[j]`: length of sorted sequence `j` (non-increasing).
    pub lens: Vec<usize>,
    /// `active[s]`: sequences still running at step `s`, for `s` in `0..max_len`.
    pub active: Vec<usize>,
    /// `offset[s]`: first packed row of step `s`; `offset[max_len]` = `sum(len)`.
    pub offset: Vec<usize>,
}

impl Schedule {
    /// Rebuilds the schedule for `lengths` (in the caller's order), reusing the buffers.
    pub fn rebuild(&mut self, lengths: &[usize]) {
        self.order.clear();
        self.order.extend(0..lengths.len());
        // Stable: equal lengths keep the caller's order, so results do not depend on
        // anything but the lengths.
        self.order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
        self.lens.clear();
        self.lens.extend(self.order.iter().map(|&i| lengths[i]));
        let max_len = self.lens.first().copied().unwrap_or(0);
        self.active.clear();
        self.offset.clear();
        self.offset.push(0);
        let mut running = self.lens.len();
        for s in 0..max_len {
            while running > 0 && self.lens[running - 1] <= s {
                running -= 1;
            }
            self.active.push(running);
            self.offset.push(self.offset[s] + running);
        }
    }

    /// Number of steps with any sequence running (the longest length).
    pub fn steps(&self) -> usize {
        self.active.len()
    }

    /// Total real tokens, `sum(len)`.
    pub fn total(&self) -> usize {
        *self.offset.last().unwrap_or(&0)
    }

    /// Packed row of sorted sequence `j` at time `t` (requires `t < lens[j]`).
    #[inline]
    pub fn row(&self, j: usize, t: usize) -> usize {
        self.offset[t] + j
    }

    /// Packed row read by the backward direction at its processing step `s` for sorted
    /// sequence `j`: the row of time `len_j - 1 - s`.
    #[inline]
    pub fn reversed_row(&self, j: usize, s: usize) -> usize {
        self.offset[self.lens[j] - 1 - s] + j
    }

    /// Copies `width` floats for every real token (row `j < active[s]` of step `s`) from
    /// `src[src_at(j, s)..]` to `dst[dst_at(j, s)..]`: how rows move between the caller's
    /// layout, the schedule's packed order and a backward direction's reversed order.
    pub fn copy_tokens(
        &self,
        width: usize,
        src: &[f32],
        src_at: impl Fn(usize, usize) -> usize,
        dst: &mut [f32],
        dst_at: impl Fn(usize, usize) -> usize,
    ) {
        self.each_token(|j, s| {
            let (from, to) = (src_at(j, s), dst_at(j, s));
            dst[to..to + width].copy_from_slice(&src[from..from + width]);
        });
    }

    /// As [`Schedule::copy_tokens`], adding into `dst` instead of overwriting it.
    pub fn add_tokens(
        &self,
        width: usize,
        src: &[f32],
        src_at: impl Fn(usize, usize) -> usize,
        dst: &mut [f32],
        dst_at: impl Fn(usize, usize) -> usize,
    ) {
        self.each_token(|j, s| {
            let (from, to) = (src_at(j, s), dst_at(j, s));
            dst[to..to + width]
                .iter_mut()
                .zip(&src[from..from + width])
                .for_each(|(a, &v)| *a += v);
        });
    }

    /// `f(j, s)` for every real token, step by step.
    fn each_token(&self, mut f: impl FnMut(usize, usize)) {
        for (s, &active) in self.active.iter().enumerate() {
            for j in 0..active {
                f(j, s);
            }
        }
    }
}

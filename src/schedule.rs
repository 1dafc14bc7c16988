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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_offsets_and_reversal() {
        let mut s = Schedule::default();
        s.rebuild(&[3, 0, 5, 3, 1]);
        assert_eq!(s.order, vec![2, 0, 3, 4, 1]);
        assert_eq!(s.lens, vec![5, 3, 3, 1, 0]);
        assert_eq!(s.active, vec![4, 3, 3, 1, 1]);
        assert_eq!(s.offset, vec![0, 4, 7, 10, 11, 12]);
        assert_eq!(s.total(), 12);
        // Every real token has exactly one packed row, and reversal is a permutation.
        let mut seen = vec![false; s.total()];
        for j in 0..5 {
            for step in 0..s.lens[j] {
                let r = s.reversed_row(j, step);
                assert!(!seen[r]);
                seen[r] = true;
                assert_eq!(s.reversed_row(j, s.lens[j] - 1 - step), s.row(j, step));
            }
        }
        assert!(seen.iter().all(|&x| x));
    }

    #[test]
    fn varlen_bench_lengths_do_half_the_work() {
        let lens: Vec<usize> = (0..64).map(|i| 1 + (i * 37 + 11) % 100).collect();
        let mut s = Schedule::default();
        s.rebuild(&lens);
        assert_eq!(s.total(), 3260);
        assert_eq!(s.steps(), 100);
    }
}

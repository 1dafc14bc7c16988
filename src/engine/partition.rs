//! How a loop's work is cut between threads: contiguous, balanced ranges, and each
//! thread's part of a time loop.

use std::ops::Range;

/// `lo..hi` of `n` items for part `i` of `parts`, balanced and contiguous.
pub(crate) fn split(n: usize, parts: usize, i: usize) -> (usize, usize) {
    (i * n / parts, (i + 1) * n / parts)
}

/// One thread's part of a time loop over a layer of `tiles` unit tiles: the tiles it
/// computes, and the rows `j0, j0 + rs, j0 + 2 rs, ...` of each step.
///
/// Split by units, every thread takes every row (`j0 = 0`, `rs = 1`) and its own range of
/// tiles, cut in whole groups of `granule` tiles (the backward's products work on panels
/// of four tiles); split by rows, every tile of its own rows, dealt out round-robin so
/// that each thread keeps the same sequences at every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadPart {
    /// Unit tiles computed.
    pub tiles: Range<usize>,
    /// Groups of `granule` tiles (`tiles` is their tiles, cut at the layer's end).
    pub groups: Range<usize>,
    /// First row.
    pub j0: usize,
    /// Row stride: the thread count split by rows, 1 otherwise.
    pub rs: usize,
}

impl ThreadPart {
    /// Thread `tid`'s part of `threads`.
    pub fn new(tiles: usize, granule: usize, by_rows: bool, threads: usize, tid: usize) -> Self {
        let groups = tiles.div_ceil(granule);
        let (parts, idx) = if by_rows { (1, 0) } else { (threads, tid) };
        let (g_lo, g_hi) = split(groups, parts, idx);
        let (j0, rs) = if by_rows { (tid, threads) } else { (0, 1) };
        ThreadPart {
            tiles: (granule * g_lo).min(tiles)..(granule * g_hi).min(tiles),
            groups: g_lo..g_hi,
            j0,
            rs,
        }
    }

    /// How many of a step's `active` rows are this thread's.
    pub fn rows(&self, active: usize) -> usize {
        active.saturating_sub(self.j0).div_ceil(self.rs)
    }

    /// The index of this thread's `i`-th row of a step.
    pub fn row(&self, i: usize) -> usize {
        self.j0 + i * self.rs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_tile_and_row_once() {
        for tiles in [1, 3, 4, 7, 16, 33] {
            for granule in [1, 4] {
                for threads in 1..=5 {
                    let parts: Vec<_> = (0..threads)
                        .map(|t| ThreadPart::new(tiles, granule, false, threads, t))
                        .collect();
                    let covered: Vec<usize> = parts.iter().flat_map(|p| p.tiles.clone()).collect();
                    assert_eq!(covered, (0..tiles).collect::<Vec<_>>());
                    let by_rows: Vec<_> = (0..threads)
                        .map(|t| ThreadPart::new(tiles, granule, true, threads, t))
                        .collect();
                    let active = 11;
                    let mut rows: Vec<usize> = by_rows
                        .iter()
                        .flat_map(|p| (0..p.rows(active)).map(|i| p.row(i)))
                        .collect();
                    rows.sort_unstable();
                    assert_eq!(rows, (0..active).collect::<Vec<_>>());
                    assert!(by_rows.iter().all(|p| p.tiles == (0..tiles)));
                }
            }
        }
    }
}

//! The A operand of the weight gradients, `A = [X H_prev 1]^T` over every real token of
//! one layer direction, made by the kernels' register-block transpose.

use lstm_kernels_simd::Kernels;

use crate::engine::schedule::Schedule;
use crate::model::layout::SeqLayout;

/// Where the rows of `A = [X H_prev 1]^T` come from, for one layer direction.
pub(super) struct OperandA<'a> {
    pub kernels: &'a Kernels,
    pub sched: &'a Schedule,
    /// The stack's input, laid out as `layout` says.
    pub data: &'a [f32],
    pub layout: SeqLayout,
    /// The layer below's packed output (`None` for the first layer: the input).
    pub below: Option<&'a [f32]>,
    pub reversed: bool,
    pub in_w: usize,
    pub h0: &'a [f32],
    /// The direction's own outputs in its order (row stride `h_ld`): `H_prev` of step
    /// `s` is the first `active[s]` rows of step `s - 1`.
    pub h_seq: &'a [f32],
    pub h_ld: usize,
    pub r: usize,
}

impl OperandA<'_> {
    /// Rows `c0..c0 + chunk.len() / total` of `A` into `chunk` (row stride `total`).
    pub fn fill(&self, c0: usize, chunk: &mut [f32]) {
        let sched = self.sched;
        let total = sched.total();
        let c1 = c0 + chunk.len() / total;
        let (in_w, r) = (self.in_w, self.r);
        for s in 0..sched.steps() {
            let (rows, off) = (sched.active[s], sched.offset[s]);
            if c0 < in_w {
                let x_row = |j: usize| -> &[f32] {
                    let row = match self.below {
                        None => {
                            let t = if self.reversed {
                                sched.lens[j] - 1 - s
                            } else {
                                s
                            };
                            let b = sched.order[j];
                            let i = self.layout.row(b, t);
                            return &self.data[i * in_w..(i + 1) * in_w];
                        }
                        Some(_) if self.reversed => sched.reversed_row(j, s),
                        Some(_) => off + j,
                    };
                    &self.below.unwrap_or_default()[row * in_w..(row + 1) * in_w]
                };
                transpose(
                    self.kernels,
                    rows,
                    x_row,
                    c0..c1.min(in_w),
                    chunk,
                    total,
                    off,
                );
            }
            if c1 > in_w && c0 < in_w + r {
                let h_row = |j: usize| -> &[f32] {
                    if s == 0 {
                        &self.h0[j * r..(j + 1) * r]
                    } else {
                        let row = sched.offset[s - 1] + j;
                        &self.h_seq[row * self.h_ld..row * self.h_ld + r]
                    }
                };
                let (lo, hi) = (c0.max(in_w), c1.min(in_w + r));
                let dst = &mut chunk[(lo - c0) * total..];
                transpose(
                    self.kernels,
                    rows,
                    h_row,
                    lo - in_w..hi - in_w,
                    dst,
                    total,
                    off,
                );
            }
        }
        if c1 > in_w + r {
            chunk[(in_w + r - c0) * total..].fill(1.0);
        }
    }
}

/// `dst[(c - cols.start) * ld_dst + col0 + i] = row(i)[c]` for `i < rows`, `c` in
/// `cols`: the kernels' register-block transpose, 16 rows at a time.
fn transpose<'a>(
    kernels: &Kernels,
    rows: usize,
    row: impl Fn(usize) -> &'a [f32],
    cols: std::ops::Range<usize>,
    dst: &mut [f32],
    ld_dst: usize,
    col0: usize,
) {
    const B: usize = 16;
    let mut i0 = 0;
    while i0 < rows {
        let n = B.min(rows - i0);
        let block: [&[f32]; B] = std::array::from_fn(|i| if i < n { row(i0 + i) } else { &[] });
        kernels.transpose(&block[..n], cols.clone(), &mut dst[col0 + i0..], ld_dst);
        i0 += n;
    }
}

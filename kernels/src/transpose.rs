//! Transposing rows into columns, written once over [`Vector`]: square blocks
//! of `LANES x LANES` go through registers ([`Vector::transpose`]), the edge
//! blocks too (padded on the way in, cut on the way out).

use crate::vector::Vector;

/// Most rows one call takes: the blocks' row pointers live on the stack.
pub(crate) const MAX_ROWS: usize = 16;

/// `dst[c * ld + i] = rows[i][c]` for `i < rows.len()` and `c < cols`.
///
/// Every block goes through registers, the edge ones too: a block with fewer
/// than `LANES` rows repeats its last row, one with fewer than `LANES` columns
/// reads its rows through a zero-padded copy, and only the real rows and
/// columns are written.
///
/// # Safety
/// The [`Vector`] contract; `rows.len() <= MAX_ROWS`; every `rows[i]` valid
/// for `cols` reads; `dst` valid for writes at every `c * ld + i` above and
/// not overlapping any row.
#[inline(always)]
pub(crate) unsafe fn block<V: Vector>(rows: &[*const f32], cols: usize, dst: *mut f32, ld: usize) {
    let l = V::LANES;
    let n = rows.len();
    debug_assert!(n <= MAX_ROWS && l <= MAX_ROWS);
    // SAFETY: reads are rows[i][c] with i < n, c < cols (full vectors only
    // when c + LANES <= cols), writes dst[c * ld + i] for the same i and c:
    // the caller's ranges; `buf` holds MAX_ROWS >= LANES floats.
    unsafe {
        let mut buf = [0.0f32; MAX_ROWS];
        let mut i0 = 0;
        while i0 < n {
            let m = l.min(n - i0);
            let mut c = 0;
            while c < cols {
                let w = l.min(cols - c);
                let mut regs = [V::splat(0.0); MAX_ROWS];
                for (i, r) in regs[..l].iter_mut().enumerate() {
                    let src = rows[i0 + i.min(m - 1)].add(c);
                    *r = if w == l {
                        V::load(src)
                    } else {
                        buf[..l].fill(0.0);
                        std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), w);
                        V::load(buf.as_ptr())
                    };
                }
                V::transpose(&mut regs[..l]);
                for (j, v) in regs[..w].iter().enumerate() {
                    let d = dst.add((c + j) * ld + i0);
                    if m == l {
                        v.store(d);
                    } else {
                        v.store(buf.as_mut_ptr());
                        std::ptr::copy_nonoverlapping(buf.as_ptr(), d, m);
                    }
                }
                c += w;
            }
            i0 += m;
        }
    }
}

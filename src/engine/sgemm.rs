//! sgemm behind one function: the pure-Rust `gemm` crate by default (its AVX-512/AVX2/NEON
//! kernels, chosen at run time), the system OpenBLAS with the `openblas` feature.
//!
//! Everything is row-major with the weights as `[K, N]`: with a small `M` and a
//! transposed `B` the `gemm` crate falls off its fast path, so the crate never asks it
//! for one.

#[cfg(not(feature = "openblas"))]
use super::plan::sgemm_row_block;
#[cfg(feature = "openblas")]
use super::plan::OPENBLAS_ROWS;

/// A borrowed row-major matrix operand: `op(X)` is `X` or, when `trans`, its transpose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    /// Row stride of the stored matrix.
    pub ld: usize,
    pub trans: bool,
}

impl<'a> Operand<'a> {
    /// The stored matrix as is.
    pub fn n(data: &'a [f32], ld: usize) -> Self {
        Operand {
            data,
            ld,
            trans: false,
        }
    }
    /// The transpose of the stored matrix.
    pub fn t(data: &'a [f32], ld: usize) -> Self {
        Operand {
            data,
            ld,
            trans: true,
        }
    }
    /// Checks that `op(self)` can be `rows x cols`.
    fn check(&self, rows: usize, cols: usize, what: &str) {
        let (sr, sc) = if self.trans {
            (cols, rows)
        } else {
            (rows, cols)
        };
        assert!(
            self.ld >= sc && self.data.len() >= (sr - 1) * self.ld + sc,
            "sgemm: {what} too small"
        );
    }
    /// (row stride, column stride) of `op(self)` (the `gemm` crate backend's view).
    #[cfg_attr(feature = "openblas", allow(dead_code))]
    fn strides(&self) -> (isize, isize) {
        if self.trans {
            (1, self.ld as isize)
        } else {
            (self.ld as isize, 1)
        }
    }
    /// The operand from row `i` of `op(self)` on (the backends' row blocks).
    fn rows_from(&self, i: usize) -> Operand<'a> {
        let off = if self.trans { i } else { i * self.ld };
        Operand {
            data: &self.data[off..],
            ..*self
        }
    }
}

/// `c[m, n] = a[m, k] · b[k, n]`, or `c += a · b` when `accumulate`; row-major with leading
/// dimensions `lda`, `ldb`, `ldc`. `threads` caps the threads used (1 = this thread only).
///
/// # Panics
/// When a slice is too short for its shape or a leading dimension is below its row width:
/// callers validate user input before it gets here, so this is an internal bug.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    threads: usize,
    mnk: (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    gemm_op(
        threads,
        mnk,
        Operand::n(a, lda),
        Operand::n(b, ldb),
        c,
        ldc,
        accumulate,
    );
}

/// `c[m, n] (+)= op(a)[m, k] · op(b)[k, n]`, row-major, `c` with row stride `ldc`.
///
/// # Panics
/// As [`sgemm`].
pub(crate) fn gemm_op(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "sgemm: c too small"
    );
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    a.check(m, k, "a");
    b.check(k, n, "b");
    backend(threads, (m, n, k), a, b, c, ldc, accumulate);
}

/// A narrow product is cut into row blocks, each one single-threaded call, shared
/// between the threads, as [`sgemm_row_block`] says (and why).
#[cfg(not(feature = "openblas"))]
fn backend(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if let Some(rows) = sgemm_row_block(m, n) {
        use rayon::prelude::*;
        let block = |(i, c): (usize, &mut [f32])| {
            let r = rows.min(m - i * rows);
            gemm_crate(1, (r, n, k), a.rows_from(i * rows), b, c, ldc, accumulate);
        };
        let c = &mut c[..(m - 1) * ldc + n];
        if threads > 1 {
            c.par_chunks_mut(rows * ldc).enumerate().for_each(block);
        } else {
            c.chunks_mut(rows * ldc).enumerate().for_each(block);
        }
        return;
    }
    gemm_crate(threads, (m, n, k), a, b, c, ldc, accumulate);
}

/// One call of the `gemm` crate (its own threads when `threads > 1`).
#[cfg(not(feature = "openblas"))]
fn gemm_crate(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides(), b.strides());
    // SAFETY: `gemm_op` checked that op(a) is m x k, op(b) k x n and c m rows of n (stride
    // ldc) within their slices; the strides below address exactly those elements, and `c`
    // is borrowed mutably so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// OpenBLAS one thread per call, over row blocks of [`OPENBLAS_ROWS`] (see there why).
#[cfg(feature = "openblas")]
fn backend(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    use rayon::prelude::*;
    extern "C" {
        fn openblas_set_num_threads(n: std::ffi::c_int);
    }
    static SINGLE_THREADED: std::sync::Once = std::sync::Once::new();
    // SAFETY: `openblas_set_num_threads` only stores the count; the library is linked by
    // the `openblas` feature (see build.rs).
    SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });
    let dim = |x: usize| i32::try_from(x).expect("sgemm: dimension above i32::MAX");
    let op = |t: bool| {
        if t {
            cblas::Transpose::Ordinary
        } else {
            cblas::Transpose::None
        }
    };
    let block = |(i, c): (usize, &mut [f32])| {
        let rows = OPENBLAS_ROWS.min(m - i * OPENBLAS_ROWS);
        let a = a.rows_from(i * OPENBLAS_ROWS);
        // SAFETY: `gemm_op` checked the operands' extents; this call reads rows
        // i*OPENBLAS_ROWS.. of op(a) and writes the same rows of `c`, its own chunk.
        unsafe {
            cblas::sgemm(
                cblas::Layout::RowMajor,
                op(a.trans),
                op(b.trans),
                dim(rows),
                dim(n),
                dim(k),
                1.0,
                a.data,
                dim(a.ld),
                b.data,
                dim(b.ld),
                if accumulate { 1.0 } else { 0.0 },
                c,
                dim(ldc),
            );
        }
    };
    let c = &mut c[..(m - 1) * ldc + n];
    if threads > 1 {
        c.par_chunks_mut(OPENBLAS_ROWS * ldc)
            .enumerate()
            .for_each(block);
    } else {
        c.chunks_mut(OPENBLAS_ROWS * ldc)
            .enumerate()
            .for_each(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::SplitMix64;

    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
    ) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| f64::from(a[i * lda + p]) * f64::from(b[p * ldb + j]))
                    .sum();
            }
        }
        c
    }

    #[test]
    fn transposed_operands() {
        let mut rng = SplitMix64::new(7);
        for &(m, n, k) in &[(5, 7, 3), (300, 40, 65), (1, 9, 200)] {
            let a = rng.uniform_vec(m * k, -1.0, 1.0); // [m, k]
            let b = rng.uniform_vec(k * n, -1.0, 1.0); // [k, n]
            let want = naive(m, n, k, &a, k, &b, n);
            let at: Vec<f32> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect(); // [k, m]
            let bt: Vec<f32> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect(); // [n, k]
            for (ao, bo) in [
                (Operand::t(&at, m), Operand::n(&b, n)),
                (Operand::n(&a, k), Operand::t(&bt, k)),
                (Operand::t(&at, m), Operand::t(&bt, k)),
            ] {
                for threads in [1, 2] {
                    let mut c = vec![0.0; m * n];
                    gemm_op(threads, (m, n, k), ao, bo, &mut c, n, false);
                    for (g, w) in c.iter().zip(&want) {
                        let tol = 4.0 * k as f64 * f64::from(f32::EPSILON) + 1e-6;
                        assert!((f64::from(*g) - w).abs() <= tol, "{m}x{n}x{k}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn matches_a_naive_product_with_strides_and_accumulation() {
        let mut rng = SplitMix64::new(5);
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 2048, 512),
            (7, 33, 17),
            (64, 96, 300),
            (100, 8, 3),
            // Narrow, split into row blocks (3 of 86, 86 and 85 rows) when not on OpenBLAS.
            (257, 128, 40),
        ] {
            for threads in [1, 2] {
                let (lda, ldb, ldc) = (k + 3, n + 1, n + 5);
                let a = rng.uniform_vec(m * lda, -1.0, 1.0);
                let b = rng.uniform_vec(k * ldb, -1.0, 1.0);
                let init = rng.uniform_vec(m * ldc, -1.0, 1.0);
                let want = naive(m, n, k, &a, lda, &b, ldb);
                for accumulate in [false, true] {
                    let mut c = init.clone();
                    sgemm(
                        threads,
                        (m, n, k),
                        &a,
                        lda,
                        &b,
                        ldb,
                        &mut c,
                        ldc,
                        accumulate,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let base = if accumulate {
                                f64::from(init[i * ldc + j])
                            } else {
                                0.0
                            };
                            let w = base + want[i * n + j];
                            let got = f64::from(c[i * ldc + j]);
                            // f32 sums of k products of magnitude <= 1: k ulps of k is generous.
                            let tol = 4.0 * k as f64 * f64::from(f32::EPSILON) + 1e-6;
                            assert!((got - w).abs() <= tol, "{m}x{n}x{k} [{i},{j}] {got} vs {w}");
                        }
                        // Padding columns of c are untouched.
                        for j in n..ldc.min(c.len() - i * ldc) {
                            assert_eq!(c[i * ldc + j], init[i * ldc + j]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod determinism {
    use super::*;
    use crate::model::weights::SplitMix64;

    /// The crate promises the same bits for any thread count, so its sgemm must give them.
    #[test]
    fn threads_do_not_change_the_bits() {
        let mut rng = SplitMix64::new(9);
        // Under emulation (LSTM_KERNELS_SKIP_SLOW) the two largest shapes are left out,
        // and say so.
        let skip = usize::from(std::env::var_os("LSTM_KERNELS_SKIP_SLOW").is_some()) * 2;
        if skip > 0 {
            eprintln!("SKIP threads_do_not_change_the_bits: {skip} largest shapes (LSTM_KERNELS_SKIP_SLOW)");
        }
        for &(m, n, k) in &[
            (1600, 4096, 1024),
            (3260, 2048, 512),
            (1200, 1024, 456),
            (25, 2048, 512),
            (1, 64, 3000),
            // Narrow (the softmax layer's dH), split into 2 and 3 row blocks.
            (256, 128, 10000),
            (333, 129, 700),
        ][skip..]
        {
            let a = rng.uniform_vec(m * k, -1.0, 1.0);
            let b = rng.uniform_vec(k * n, -0.1, 0.1);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let mut one = vec![0.5; m * n];
            sgemm(1, (m, n, k), &a, k, &b, n, &mut one, n, true);
            for threads in [2, 3] {
                let mut many = vec![0.5; m * n];
                pool.install(|| sgemm(threads, (m, n, k), &a, k, &b, n, &mut many, n, true));
                assert!(many == one, "{m}x{n}x{k}: {threads} threads differ from 1");
            }
        }
    }
}

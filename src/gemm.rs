//! sgemm behind one function: the pure-Rust `gemm` crate by default (its AVX-512/AVX2/NEON
//! kernels, chosen at run time), the system OpenBLAS with the `openblas` feature.
//!
//! Everything is row-major with the weights as `[K, N]`: with a small `M` and a
//! transposed `B` the `gemm` crate falls off its fast path, so the crate never asks it
//! for one.

/// `c[m, n] = a[m, k] · b[k, n]`, or `c += a · b` when `accumulate`; row-major with leading
/// dimensions `lda`, `ldb`, `ldc`. `threads` caps the threads used (1 = this thread only).
///
/// # Panics
/// When a slice is too short for its shape or a leading dimension is below its row width:
/// callers validate user input before it gets here, so this is an internal bug.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
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
    assert!(
        lda >= k && a.len() >= (m - 1) * lda + k,
        "sgemm: a too small"
    );
    assert!(
        ldb >= n && b.len() >= (k - 1) * ldb + n,
        "sgemm: b too small"
    );
    backend(threads, (m, n, k), a, lda, b, ldb, c, ldc, accumulate);
}

#[cfg(not(feature = "openblas"))]
#[allow(clippy::too_many_arguments)]
fn backend(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `sgemm` checked that `a` holds m rows of k (stride lda), `b` k rows of n
    // (stride ldb) and `c` m rows of n (stride ldc); the strides below address exactly
    // those elements, and `c` is borrowed mutably so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            ldb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Rows per OpenBLAS call. Threaded OpenBLAS sums in an order that depends on its thread
/// count; the crate promises the same bits for any thread count, so it runs OpenBLAS on
/// one thread per call, over row blocks whose size does not depend on the threads.
#[cfg(feature = "openblas")]
const OPENBLAS_ROWS: usize = 256;

#[cfg(feature = "openblas")]
#[allow(clippy::too_many_arguments)]
fn backend(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
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
    let block = |(i, c): (usize, &mut [f32])| {
        let rows = OPENBLAS_ROWS.min(m - i * OPENBLAS_ROWS);
        // SAFETY: `sgemm` checked that `a` holds m rows of k (stride lda), `b` k rows of n
        // (stride ldb), `c` m rows of n (stride ldc); this call reads rows
        // i*OPENBLAS_ROWS.. of `a` and writes the same rows of `c`, its own chunk.
        unsafe {
            cblas::sgemm(
                cblas::Layout::RowMajor,
                cblas::Transpose::None,
                cblas::Transpose::None,
                dim(rows),
                dim(n),
                dim(k),
                1.0,
                &a[i * OPENBLAS_ROWS * lda..],
                dim(lda),
                b,
                dim(ldb),
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
    use crate::weights::SplitMix64;

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
    fn matches_a_naive_product_with_strides_and_accumulation() {
        let mut rng = SplitMix64::new(5);
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 2048, 512),
            (7, 33, 17),
            (64, 96, 300),
            (100, 8, 3),
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
    use crate::weights::SplitMix64;

    /// The crate promises the same bits for any thread count, so its sgemm must give them.
    #[test]
    fn threads_do_not_change_the_bits() {
        let mut rng = SplitMix64::new(9);
        for &(m, n, k) in &[
            (1600, 4096, 1024),
            (1200, 1024, 456),
            (25, 2048, 512),
            (3260, 2048, 512),
            (1, 64, 3000),
        ] {
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

//! The machine's f32 FMA peak, the ceiling the suite's GFLOP/s are read against: a loop
//! of independent fused multiply-adds on register accumulators (16 zmm chains with
//! AVX-512, 12 ymm chains with AVX2+FMA, 16 q-register chains with NEON), enough chains to
//! hide the FMA latency on every core the crate has met. Prints GFLOP/s on one thread and
//! on every thread at once (each on its own chains), best of several runs; an FMA is 2 FLOPs.
//!
//! `cargo run --release -p lstm-kernels-simd --example fma_peak [-- --threads N]`

use std::time::Instant;

/// FMAs per chain per call of a kernel.
const ITERS: u64 = 1 << 22;

/// Runs `ITERS` rounds of FMAs over the ISA's accumulator chains; returns the FLOPs done
/// and a value that depends on every chain (so no chain is optimised away).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ITERS;

    /// 16 chains of 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512() -> (f64, f32) {
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); 16];
        for _ in 0..ITERS {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for x in acc {
            sum = _mm512_add_ps(sum, x);
        }
        (ITERS as f64 * 16.0 * 16.0 * 2.0, _mm512_reduce_add_ps(sum))
    }

    /// 12 chains of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2() -> (f64, f32) {
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..ITERS {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let mut sum = _mm256_setzero_ps();
        for x in acc {
            sum = _mm256_add_ps(sum, x);
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        (ITERS as f64 * 12.0 * 8.0 * 2.0, lanes.iter().sum())
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::ITERS;

    /// 16 chains of 4 lanes.
    #[target_feature(enable = "neon")]
    pub unsafe fn neon() -> (f64, f32) {
        let a = vdupq_n_f32(0.999_999);
        let b = vdupq_n_f32(1e-7);
        let mut acc = [vdupq_n_f32(1.0); 16];
        for _ in 0..ITERS {
            for x in acc.iter_mut() {
                *x = vfmaq_f32(b, *x, a);
            }
        }
        let mut sum = vdupq_n_f32(0.0);
        for x in acc {
            sum = vaddq_f32(sum, x);
        }
        (ITERS as f64 * 16.0 * 4.0 * 2.0, vaddvq_f32(sum))
    }
}

/// The widest FMA kernel this CPU has, and its name.
fn kernel() -> (&'static str, fn() -> (f64, f32)) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return ("avx512 (16 zmm chains)", || unsafe { x86::avx512() });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return ("avx2+fma (12 ymm chains)", || unsafe { x86::avx2() });
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            // SAFETY: the CPU has NEON (checked just above).
            return ("neon (16 q chains)", || unsafe { arm::neon() });
        }
    }
    ("scalar (not measured: no SIMD FMA)", || (0.0, 0.0))
}

/// Best GFLOP/s of `runs` runs on `threads` threads at once (all threads' FLOPs over the
/// slowest thread's time).
fn measure(threads: usize, runs: usize, f: fn() -> (f64, f32)) -> f64 {
    (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            let flops: f64 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads).map(|_| s.spawn(f)).collect();
                hs.into_iter()
                    .map(|h| {
                        let (flops, v) = h.join().expect("a kernel thread");
                        assert!(v.is_finite(), "the chains stay finite");
                        flops
                    })
                    .sum()
            });
            flops / t0.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--threads", Some(n)) => threads = n.parse().expect("--threads N"),
            _ => panic!("usage: fma_peak [--threads N]"),
        }
    }
    let (name, f) = kernel();
    let one = measure(1, 7, f);
    let all = measure(threads, 7, f);
    println!(
        "{{\"isa\":\"{name}\",\"peak_gflops_1_thread\":{one:.1},\"threads\":{threads},\"peak_gflops_all\":{all:.1}}}"
    );
}

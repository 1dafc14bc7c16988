//! Helpers shared by the integration tests.
#![allow(dead_code)]

use lstm_kernels_simd::{cpu_isas, isa_status, Isa, Kernels};

/// SplitMix64: a tiny deterministic generator, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Every ISA this build and CPU support, with its kernels.
///
/// # Panics
/// When one of them failed its self-check against the scalar path: an ISA the CPU has
/// but the crate refuses is a failure of every test that runs "on every ISA", never one
/// ISA fewer to test.
pub fn all_kernels() -> Vec<Kernels> {
    cpu_isas()
        .into_iter()
        .map(|i| {
            Kernels::for_isa(i).unwrap_or_else(|| {
                panic!(
                    "{i} is supported by this CPU but is not available: {}",
                    isa_status(i)
                )
            })
        })
        .collect()
}

pub fn scalar() -> Kernels {
    Kernels::for_isa(Isa::Scalar).unwrap()
}

/// Exact logistic function in f64 (relative error ~1e-16, far below f32's).
pub fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Error of `got` against `exact`, in units of the f32 spacing at `exact`
/// (2^-149 in the subnormal range).
pub fn ulp_err(got: f32, exact: f64) -> f64 {
    let a = exact.abs();
    let e = if a == 0.0 {
        -126
    } else {
        (a.log2().floor() as i32).max(-126)
    };
    let ulp = 2f64.powi(e - 23);
    (got as f64 - exact).abs() / ulp
}

pub fn bits_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

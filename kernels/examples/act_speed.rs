//! Hand-run throughput of the slice activations (cycles are not measured:
//! prints nanoseconds per element, best of several runs).
use std::time::Instant;

use lstm_kernels_simd::{available_isas, Kernels};

fn main() {
    let xs: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) / 200.0).collect();
    let mut out = vec![0.0f32; xs.len()];
    for isa in available_isas() {
        let k = Kernels::for_isa(isa).unwrap();
        for (name, f) in [
            (
                "sigmoid",
                Kernels::sigmoid_slice as fn(&Kernels, &[f32], &mut [f32]),
            ),
            ("tanh", Kernels::tanh_slice),
        ] {
            let mut best = f64::INFINITY;
            for _ in 0..20 {
                let t = Instant::now();
                for _ in 0..100 {
                    f(&k, &xs, &mut out);
                }
                best = best.min(t.elapsed().as_secs_f64() / 100.0 / xs.len() as f64);
            }
            println!("{:>7} {name:<8} {:6.3} ns/element", isa.name(), best * 1e9);
        }
    }
}

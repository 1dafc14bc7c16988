//! Hand-run throughput check of the fused step kernel (not a timed test):
//!
//! ```text
//! cargo run --release -p lstm-kernels-simd --example step_gflops [isa]
//! ```
//!
//! Single-threaded, one layer step (and the same product on the epilogue-free GEMM
//! kernel) = `2 * rows * k * 4h` FLOP (the gate
//! math is not counted, as in BENCH_SHAPES.md). Prints the best of several
//! repetitions for each shape and each available ISA (or the named one).
//! `STEP_GFLOPS_SHAPES="rows,k,h;..."` picks other shapes.

use std::time::Instant;

use lstm_kernels_simd::{
    available_isas, packed_gate_panels_len, GemmRaw, Isa, Kernels, StepParams,
};

/// A slice of `n` floats starting on a 64-byte boundary inside `buf`.
fn aligned(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    buf.resize(n + 16, 0.0);
    let off = buf.as_ptr().align_offset(64);
    &mut buf[off..off + n]
}

fn bench(kern: &Kernels, rows: usize, k: usize, h: usize, align: bool, gemm: bool) -> f64 {
    let u = kern.unit_tile();
    let nt = kern.tiles(h);
    let mut wbuf = Vec::new();
    let n = packed_gate_panels_len(k, h, u);
    let w: &mut [f32] = if align {
        aligned(&mut wbuf, n)
    } else {
        // Deliberately 4 bytes past a 64-byte boundary.
        let s = aligned(&mut wbuf, n + 1);
        &mut s[1..]
    };
    for (i, x) in w.iter_mut().enumerate() {
        *x = ((i * 7919 % 2001) as f32 - 1000.0) * 1e-4;
    }
    let h_prev: Vec<f32> = (0..rows * k)
        .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
        .collect();
    let zx = vec![0.1f32; rows * nt * 4 * u];
    let mut c = vec![0.0f32; rows * nt * u];
    let mut m = vec![0.0f32; rows * nt * u];
    let mut gates = vec![0.0f32; rows * nt * 4 * u];
    let p = StepParams {
        forget_bias: 1.0,
        cell_clip: None,
    };
    let flop = 2.0 * rows as f64 * k as f64 * 4.0 * h as f64;
    // Enough steps for ~0.05 s per repetition, and the best of 20: the fastest
    // repetitions are those the machine's other tenants did not slow down.
    let steps = ((5e9 / flop) as usize).clamp(3, 100_000);
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t = Instant::now();
        for _ in 0..steps {
            if gemm {
                let raw = GemmRaw {
                    rows,
                    k,
                    a: h_prev.as_ptr(),
                    lda: k,
                    w: w.as_ptr(),
                    ld_w: 4 * u,
                    w_panel: k * 4 * u,
                    init: zx.as_ptr(),
                    ld_init: 4 * u * nt,
                    out: gates.as_mut_ptr(),
                    ld_out: 4 * u * nt,
                    tiles: 0..nt,
                };
                // SAFETY: h_prev is rows x k, w the packed panels of every tile, zx and
                // gates rows x tiles*4U; gates is a buffer of its own.
                unsafe { kern.gemm_tiles_raw(&raw) };
                continue;
            }
            kern.step_tiles(
                rows,
                k,
                h,
                &h_prev,
                w,
                &zx,
                None,
                &mut c,
                &mut m,
                0..nt,
                &p,
                None,
            );
        }
        best = best.min(t.elapsed().as_secs_f64() / steps as f64);
    }
    std::hint::black_box((&m, &gates));
    flop / best / 1e9
}

fn main() {
    let only = std::env::args()
        .nth(1)
        .map(|s| Isa::from_name(&s).expect("unknown ISA"));
    // The brief's two shapes, then the layers of BENCH_SHAPES.md; with
    // STEP_GFLOPS_EPILOGUE set, also k = 1, where the time is nearly all
    // gate math (its GFLOP/s only compares epilogue costs).
    let mut shapes = vec![
        (64, 1024, 1024),
        (1, 512, 512),
        (8, 256, 256),
        (60, 256, 256),
        (60, 128, 128),
        (32, 512, 512),
    ];
    if std::env::var_os("STEP_GFLOPS_EPILOGUE").is_some() {
        shapes.push((64, 1, 1024));
    }
    // STEP_GFLOPS_SHAPES="rows,k,h;rows,k,h" replaces the list.
    if let Ok(list) = std::env::var("STEP_GFLOPS_SHAPES") {
        shapes = list
            .split(';')
            .map(|t| {
                let v: Vec<usize> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                (v[0], v[1], v[2])
            })
            .collect();
    }
    for isa in available_isas() {
        if only.is_some_and(|o| o != isa) || (only.is_none() && isa == Isa::Scalar) {
            continue;
        }
        let kern = Kernels::for_isa(isa).unwrap();
        for &(rows, k, h) in &shapes {
            for (align, gemm) in [(true, false), (false, false), (true, true)] {
                let g = bench(&kern, rows, k, h, align, gemm);
                println!(
                    "{:>7} U={:<2} MR={} rows={rows:<3} K={k:<5} H={h:<5} {} w {}: {g:6.1} GFLOP/s",
                    isa.name(),
                    kern.unit_tile(),
                    kern.mr(),
                    if gemm { "gemm" } else { "step" },
                    if align { "aligned  " } else { "unaligned" }
                );
            }
        }
    }
}

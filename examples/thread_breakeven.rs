//! Where a second thread starts to pay: times `forward_inference` over a grid of widths,
//! batch sizes and lengths on the calling thread alone and on N threads (both forced with
//! `LstmOptions::call_threads`, on the same pool) and with the planner's choice,
//! interleaved, and prints per call shape the FLOPs of one cell's step and of the whole
//! call, the median times and the ratios to one thread. The planner's thread thresholds
//! (`MIN_THREAD_STEP_FLOPS` and the others in `src/engine/plan.rs`) come from this table;
//! `auto` is what they choose.
//!
//! `cargo run --release --example thread_breakeven -- [--threads N] [--reps K] [--hidden 64,256] [--batch 1,8] [--steps 1,100]`

use std::time::Instant;

use lstm_kernels::{ForwardInput, Lstm, LstmOptions, LstmSpec, LstmWeights, SplitMix64, Workspace};

fn list(v: &str) -> Vec<usize> {
    v.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut reps = 15;
    let mut hidden = vec![32, 64, 128, 256, 512];
    let mut batch = vec![1, 4, 16, 64];
    let mut steps = vec![1, 10, 100];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--threads" => threads = value.parse().expect("--threads N"),
            "--reps" => reps = value.parse().expect("--reps K"),
            "--hidden" => hidden = list(&value),
            "--batch" => batch = list(&value),
            "--steps" => steps = list(&value),
            other => panic!("unknown argument {other}"),
        }
    }
    println!(
        "hidden batch steps cell_step_flops call_flops t1_us tN_us auto_us t1/tN t1/auto (N = {threads})"
    );
    for &h in &hidden {
        let spec = LstmSpec::builder(h, &[h]).build().expect("spec");
        let weights = LstmWeights::random_uniform(&spec, 0.1, 1);
        let make = |call: Option<usize>| {
            let options = LstmOptions {
                threads: Some(threads),
                call_threads: call,
                ..LstmOptions::default()
            };
            Lstm::with_options(weights.clone(), options).expect("lstm")
        };
        let (one, many, auto) = (make(Some(1)), make(Some(threads)), make(None));
        for &b in &batch {
            for &t in &steps {
                let x = SplitMix64::new(2).uniform_vec(b * t * h, -1.0, 1.0);
                let input = ForwardInput::new(&x, b, t);
                let mut ws = Workspace::new(&spec, b, t);
                let flops = 2 * 4 * h * (h + h) * b;
                // Calls per timing, so that one timing is about 2 ms on one thread.
                let t0 = Instant::now();
                one.forward_inference(&input, &mut ws).expect("forward");
                let once = t0.elapsed().as_secs_f64();
                let calls = ((2e-3 / once.max(1e-7)) as usize).clamp(1, 10_000);
                let mut time = |lstm: &Lstm| {
                    let t0 = Instant::now();
                    for _ in 0..calls {
                        lstm.forward_inference(&input, &mut ws).expect("forward");
                    }
                    t0.elapsed().as_secs_f64() / calls as f64 * 1e6
                };
                let lstms = [&one, &many, &auto];
                let mut times = [Vec::new(), Vec::new(), Vec::new()];
                for lstm in lstms {
                    time(lstm);
                }
                for _ in 0..reps {
                    for (lstm, v) in lstms.iter().zip(&mut times) {
                        v.push(time(lstm));
                    }
                }
                let [a, c, d] = times.map(median);
                println!(
                    "{h} {b} {t} {flops} {} {a:.2} {c:.2} {d:.2} {:.3} {:.3}",
                    flops * t,
                    a / c,
                    a / d
                );
            }
        }
    }
}

//! Criterion benches of the training shapes of the shared `BENCH_SHAPES.md`
//! (forward-training plus backward), at 1 thread and at every core. Throughput is in
//! FLOPs as the suite counts them (3x the forward), so "elem/s" reads as FLOP/s.
//!
//! `cargo bench --bench train [-- FILTER]`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lstm_kernels::bench::{Work, SHAPES};
use lstm_kernels::{Gradients, LstmOptions, SplitMix64, Upstream, Workspace};

fn train(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = vec![1];
    if cores > 1 {
        threads.push(cores);
    }
    // The language-model step has its own bench (benches/lm.rs).
    for shape in SHAPES
        .iter()
        .filter(|s| s.works.contains(&Work::Train) && s.name != "seed-ptb-lm")
    {
        let mut group = c.benchmark_group(format!("train/{}", shape.name));
        group.throughput(Throughput::Elements(shape.flops(Work::Train) as u64));
        group.sample_size(20);
        for &t in &threads {
            let lstm = shape
                .lstm(LstmOptions {
                    isa: None,
                    threads: Some(t),
                    ..Default::default()
                })
                .expect("the suite's shapes build");
            let spec = lstm.weights().spec().clone();
            let data = shape.input();
            let lengths = shape.lengths();
            let input = shape.forward_input(&data, &lengths);
            let gout = SplitMix64::new(3).uniform_vec(
                shape.batch * shape.steps * spec.output_size(),
                -1.0,
                1.0,
            );
            let upstream = Upstream {
                output: Some(&gout),
                final_state: None,
            };
            let mut ws = Workspace::new(&spec, shape.batch, shape.steps);
            let mut reserve = lstm.reserve(shape.batch, shape.steps);
            let mut grads = Gradients::zeros(&spec, shape.batch, shape.steps);
            group.bench_function(format!("threads={t}"), |b| {
                b.iter(|| {
                    lstm.forward_training(&input, &mut ws, &mut reserve)
                        .expect("forward");
                    lstm.backward(&input, &reserve, &upstream, &mut ws, &mut grads)
                        .expect("backward");
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, train);
criterion_main!(benches);

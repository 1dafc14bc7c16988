//! Criterion benches of the forward shapes of the shared `BENCH_SHAPES.md` (the serving
//! shapes too; a streaming shape's iteration is all its calls), at 1 thread and at every
//! core. Throughput is reported in FLOPs as the suite counts them, so
//! criterion's "elem/s" reads as FLOP/s.
//!
//! `cargo bench --bench forward [-- FILTER]`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lstm_kernels::bench::{ForwardBench, Work, SHAPES};
use lstm_kernels::LstmOptions;

fn forward(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = vec![1];
    if cores > 1 {
        threads.push(cores);
    }
    for shape in SHAPES.iter().filter(|s| s.works.contains(&Work::Forward)) {
        let mut group = c.benchmark_group(format!("forward/{}", shape.name));
        group.throughput(Throughput::Elements(shape.flops(Work::Forward) as u64));
        group.sample_size(20);
        for &t in &threads {
            let options = LstmOptions {
                isa: None,
                threads: Some(t),
                ..Default::default()
            };
            let mut bench = ForwardBench::new(shape, options).expect("the suite's shapes build");
            group.bench_function(format!("threads={t}"), |b| {
                b.iter(|| bench.run().expect("forward"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);

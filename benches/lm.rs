//! Criterion bench of the `seed-ptb-lm` shape of the shared `BENCH_SHAPES.md`: one
//! training step of the seed's language model (embedding, the 200 -> 256 -> 128 stack,
//! the fused 128 -> 10,000 softmax layer and loss, backward, global-norm clip, SGD), at 1
//! thread and at every core. Throughput is in words (inputs), so "elem/s" reads as
//! words/s.
//!
//! `cargo bench --bench lm`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lstm_kernels::lm::train::SeedStep;

fn seed_ptb_lm(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = vec![1];
    if cores > 1 {
        threads.push(cores);
    }
    let mut group = c.benchmark_group("train/seed-ptb-lm");
    group.sample_size(10);
    for &t in &threads {
        let mut step = SeedStep::new(t).expect("the seed's model builds");
        group.throughput(Throughput::Elements(step.words() as u64));
        group.bench_function(format!("threads={t}"), |b| {
            b.iter(|| step.run().expect("a training step"))
        });
    }
    group.finish();
}

criterion_group!(benches, seed_ptb_lm);
criterion_main!(benches);

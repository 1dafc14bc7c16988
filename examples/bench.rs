//! The benchmark runner: `cargo run --release --example bench -- --shape NAME|all|off-suite
//! --work forward|train|all|sgemm --threads N --reps K [--plan heuristic|measure] [--force CHOICES]`.
//!
//! `--plan measure` times the candidate plans in the first (warm-up) call of each shape
//! (`Planning::Measure`). `--force call_threads=N,split_rows=B,step_projection=B,
//! split_directions=B` fixes those choices of the plan (`LstmOptions`; any subset), to
//! time one plan against another.
//!
//! `--work sgemm` times only the forward pass's matrix products through the crate's sgemm
//! (the ceiling a BLAS-based LSTM cannot beat; build with `--features openblas` for
//! OpenBLAS's).
//!
//! Prints one JSON line per shape and work:
//! `{"shape":..., "work":..., "threads":..., "median_s":..., "gflops":...}`
//! (FLOPs as the shared `BENCH_SHAPES.md` counts them).

use std::process::ExitCode;
use std::time::Instant;

use lstm_kernels::bench::{
    sgemm_ceiling_once, BenchShape, ForwardBench, SgemmBuffers, Work, OFF_SUITE, SHAPES,
};
use lstm_kernels::{Gradients, LstmOptions, Planning, SplitMix64, Upstream, Workspace};

struct Args {
    /// `--work sgemm`: time only the forward's matrix products through the crate's sgemm.
    sgemm: bool,
    shapes: Vec<&'static BenchShape>,
    works: Vec<Work>,
    threads: usize,
    reps: usize,
    planning: Planning,
    /// The plan choices `--force` fixes (only those fields are read).
    forced: LstmOptions,
}

/// `--force`'s list: `key=value` pairs separated by commas.
fn parse_forced(list: &str) -> Result<LstmOptions, String> {
    let mut o = LstmOptions::default();
    for pair in list.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or(format!("--force: `{pair}` is not key=value"))?;
        let flag = || match value {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(format!("--force {key}: `{value}` is not true or false")),
        };
        match key {
            "call_threads" => {
                o.call_threads = Some(value.parse().map_err(|e| format!("--force {key}: {e}"))?)
            }
            "split_rows" => o.split_rows = flag()?,
            "step_projection" => o.step_projection = flag()?,
            "split_directions" => o.split_directions = flag()?,
            other => return Err(format!("--force: unknown choice `{other}`")),
        }
    }
    Ok(o)
}

fn parse() -> Result<Args, String> {
    let mut shape = "all".to_string();
    let mut work = "all".to_string();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut reps = 20;
    let mut planning = Planning::Heuristic;
    let mut forced = LstmOptions::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--shape" => shape = value()?,
            "--work" => work = value()?,
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--reps" => reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--force" => forced = parse_forced(&value()?)?,
            "--plan" => {
                planning = match value()?.as_str() {
                    "heuristic" => Planning::Heuristic,
                    "measure" => Planning::Measure,
                    other => return Err(format!("--plan {other}: heuristic or measure")),
                }
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let shapes = if shape == "all" {
        SHAPES.iter().collect()
    } else if shape == "off-suite" {
        OFF_SUITE.iter().collect()
    } else {
        shape
            .split(',')
            .map(|n| BenchShape::by_name(n).ok_or(format!("unknown shape `{n}`")))
            .collect::<Result<_, _>>()?
    };
    let works = match work.as_str() {
        "all" => vec![Work::Forward, Work::Train],
        "forward" => vec![Work::Forward],
        "train" => vec![Work::Train],
        "sgemm" => vec![Work::Forward],
        other => return Err(format!("unknown work `{other}` (forward, train or all)")),
    };
    if threads == 0 || reps == 0 {
        return Err("--threads and --reps must be at least 1".into());
    }
    Ok(Args {
        shapes,
        works,
        threads,
        reps,
        planning,
        forced,
        sgemm: work == "sgemm",
    })
}

impl Args {
    /// The options of every `Lstm` the runner builds.
    fn options(&self, threads: usize) -> LstmOptions {
        LstmOptions {
            isa: None,
            threads: Some(threads),
            planning: self.planning,
            call_threads: self.forced.call_threads,
            split_rows: self.forced.split_rows,
            step_projection: self.forced.step_projection,
            split_directions: self.forced.split_directions,
            ..Default::default()
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One repetition of the shape's forward (see [`ForwardBench::run`]: a streaming shape's
/// repetition is all its calls).
fn forward(shape: &'static BenchShape, args: &Args) -> Result<f64, String> {
    let (threads, reps) = (args.threads, args.reps);
    let options = args.options(threads);
    let mut bench = ForwardBench::new(shape, options).map_err(|e| e.to_string())?;
    // Warm-up: sizes the workspace and brings the weights into cache.
    for _ in 0..3 {
        bench.run().map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        bench.run().map_err(|e| e.to_string())?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Forward-training plus backward with a fixed upstream gradient of the output.
fn train(shape: &BenchShape, args: &Args) -> Result<f64, String> {
    let (threads, reps) = (args.threads, args.reps);
    let lstm = shape
        .lstm(args.options(threads))
        .map_err(|e| e.to_string())?;
    let spec = lstm.weights().spec().clone();
    let data = shape.input();
    let lengths = shape.lengths();
    let input = shape.forward_input(&data, &lengths);
    let gout =
        SplitMix64::new(3).uniform_vec(shape.batch * shape.steps * spec.output_size(), -1.0, 1.0);
    let upstream = Upstream {
        output: Some(&gout),
        final_state: None,
    };
    let mut ws = Workspace::new(&spec, shape.batch, shape.steps);
    let mut reserve = lstm.reserve(shape.batch, shape.steps);
    let mut grads = Gradients::zeros(&spec, shape.batch, shape.steps);
    let mut once = || -> Result<f64, String> {
        let t0 = Instant::now();
        lstm.forward_training(&input, &mut ws, &mut reserve)
            .map_err(|e| e.to_string())?;
        lstm.backward(&input, &reserve, &upstream, &mut ws, &mut grads)
            .map_err(|e| e.to_string())?;
        Ok(t0.elapsed().as_secs_f64())
    };
    for _ in 0..2 {
        once()?;
    }
    Ok(median((0..reps).map(|_| once()).collect::<Result<_, _>>()?))
}

/// One training step of the seed's language model (`seed-ptb-lm`): forward, loss,
/// backward, clip, SGD.
fn lm_train(threads: usize, reps: usize) -> Result<f64, String> {
    let mut step = lstm_kernels::lm::train::SeedStep::new(threads).map_err(|e| e.to_string())?;
    for _ in 0..3 {
        step.run().map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        step.run().map_err(|e| e.to_string())?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn sgemm_ceiling(shape: &BenchShape, threads: usize, reps: usize) -> Result<f64, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let mut bufs = SgemmBuffers::default();
    pool.install(|| {
        for _ in 0..3 {
            sgemm_ceiling_once(shape, threads, &mut bufs);
        }
        Ok(median(
            (0..reps)
                .map(|_| sgemm_ceiling_once(shape, threads, &mut bufs))
                .collect(),
        ))
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            eprintln!(
                "usage: bench --shape NAME|all --work forward|train|all --threads N --reps K [--plan heuristic|measure]"
            );
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for shape in &args.shapes {
        for &work in &args.works {
            if !shape.works.contains(&work) {
                continue;
            }
            let result = match work {
                Work::Forward if args.sgemm => sgemm_ceiling(shape, args.threads, args.reps),
                Work::Forward => forward(shape, &args),
                Work::Train if shape.name == "seed-ptb-lm" => lm_train(args.threads, args.reps),
                Work::Train => train(shape, &args),
            };
            match result {
                Ok(median_s) => println!(
                    "{{\"shape\":\"{}\",\"work\":\"{}\",\"threads\":{},\"median_s\":{:.6e},\"gflops\":{:.2}{}}}",
                    shape.name,
                    if args.sgemm { "sgemm" } else { work.name() },
                    args.threads,
                    median_s,
                    shape.flops(work) / median_s / 1e9,
                    if shape.name == "seed-ptb-lm" {
                        format!(
                            ",\"words_per_s\":{:.1}",
                            (shape.batch * shape.steps) as f64 / median_s
                        )
                    } else {
                        String::new()
                    }
                ),
                Err(e) => {
                    eprintln!("bench: {} {}: {e}", shape.name, work.name());
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

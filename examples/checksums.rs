//! Records the exact bits of every result the crate computes, so that a change meant to
//! leave behaviour alone (a refactor) can be checked bit for bit:
//! `cargo run --release --example checksums [-- OPTIONS] > before.txt`, the same after the
//! change, then `diff before.txt after.txt`.
//!
//! Uses only the crate's public API, so the same file builds before and after.
//!
//! What it runs:
//! - every golden case under `fixtures/` (recursively, sorted): the reference engine
//!   once, then for every available ISA, 1 thread with the default options and 2 threads
//!   with every combination of `step_projection` and `split_rows` (`None`, `Some(true)`,
//!   `Some(false)`), every tensor of [`GoldenCase::outputs`];
//! - every shape of the benchmark suite, for every available ISA and 1 and 2 threads with
//!   the default options: `forward_inference` (output and final states), and for the
//!   shapes measured for training `forward_training` + `backward` with a fixed upstream
//!   gradient of the output (output, final states, every gradient); for `seed-ptb-lm` also
//!   two training steps of the seed's language model (costs, gradients, updated
//!   parameters).
//!
//! Prints, sorted, one line per tensor:
//! `<case-or-shape> <isa> t<threads> <variant> <tensor> len=<n> fnv=<hex>`, the hash being
//! the 64-bit FNV-1a of the tensor's `f32::to_bits` little-endian bytes (`f64::to_bits`
//! for the language model's costs, which are f64). A run that fails
//! prints `<case-or-shape> <isa> t<threads> <variant> ERROR <message>` instead (and the
//! example exits non-zero). Progress goes to stderr.
//!
//! Options:
//! - `--skip-slow-scalar`: leave out the scalar ISA on the bench shapes of more than
//!   20 GFLOP (forward, or training for the shapes measured for it);
//! - `--only golden|bench`: run one part;
//! - `--fixtures DIR` (repeatable): golden cases from there instead of `fixtures/`;
//! - `--shape NAME` (repeatable): only these bench shapes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lstm_kernels::bench::{BenchShape, ForwardBench, Work, SHAPES};
use lstm_kernels::golden::{collect_files, Engine, GoldenCase};
use lstm_kernels::lm::train::SeedStep;
use lstm_kernels::lm::{LanguageModel, LmWorkspace};
use lstm_kernels::{
    available_isas, Gradients, Isa, LstmOptions, LstmState, SplitMix64, Upstream, Workspace,
};

/// Bench shapes above this many FLOPs are "slow" on the scalar ISA.
const SLOW_SCALAR_FLOPS: f64 = 20e9;

/// The seed of the upstream output gradient of the bench shapes' training.
const UPSTREAM_SEED: u64 = 3;

struct Args {
    skip_slow_scalar: bool,
    golden: bool,
    bench: bool,
    fixtures: Vec<PathBuf>,
    shapes: Vec<&'static BenchShape>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        skip_slow_scalar: false,
        golden: true,
        bench: true,
        fixtures: Vec::new(),
        shapes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--skip-slow-scalar" => args.skip_slow_scalar = true,
            "--only" => match value()?.as_str() {
                "golden" => args.bench = false,
                "bench" => args.golden = false,
                other => return Err(format!("--only: `{other}` is not golden or bench")),
            },
            "--fixtures" => args.fixtures.push(PathBuf::from(value()?)),
            "--shape" => {
                let name = value()?;
                args.shapes
                    .push(BenchShape::by_name(&name).ok_or(format!("unknown shape `{name}`"))?);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.fixtures.is_empty() {
        args.fixtures
            .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"));
    }
    if args.shapes.is_empty() {
        args.shapes = SHAPES.iter().collect();
    }
    Ok(args)
}

/// 64-bit FNV-1a of the values' bit patterns, little-endian.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn hash_f32(v: &[f32]) -> u64 {
    fnv1a(v.iter().flat_map(|x| x.to_bits().to_le_bytes()))
}

fn hash_f64(v: &[f64]) -> u64 {
    fnv1a(v.iter().flat_map(|x| x.to_bits().to_le_bytes()))
}

/// Collects the output lines of one run: `<label> <tensor> len=<n> fnv=<hex>`.
struct Lines<'a> {
    label: String,
    out: &'a mut Vec<String>,
}

impl Lines<'_> {
    fn f32(&mut self, tensor: &str, v: &[f32]) {
        self.out.push(format!(
            "{} {tensor} len={} fnv={:016x}",
            self.label,
            v.len(),
            hash_f32(v)
        ));
    }

    fn f64(&mut self, tensor: &str, v: &[f64]) {
        self.out.push(format!(
            "{} {tensor} len={} fnv={:016x}",
            self.label,
            v.len(),
            hash_f64(v)
        ));
    }

    fn state(&mut self, prefix: &str, state: &LstmState) {
        for (k, cell) in state.cells.iter().enumerate() {
            self.f32(&format!("{prefix}/{k}/c"), &cell.c);
            self.f32(&format!("{prefix}/{k}/h"), &cell.h);
        }
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        let msg = e.to_string().replace('\n', " ");
        self.out.push(format!("{} ERROR {msg}", self.label));
    }
}

fn options(isa: Isa, threads: usize, sp: Option<bool>, sr: Option<bool>) -> LstmOptions {
    LstmOptions {
        isa: Some(isa),
        threads: Some(threads),
        // Every call on all of them, so that small shapes run the thread splits too.
        call_threads: Some(threads),
        step_projection: sp,
        split_rows: sr,
        ..Default::default()
    }
}

fn flag_name(v: Option<bool>) -> &'static str {
    match v {
        None => "auto",
        Some(true) => "on",
        Some(false) => "off",
    }
}

/// `(threads, step_projection, split_rows)` of every golden run of one ISA.
fn golden_variants() -> Vec<(usize, Option<bool>, Option<bool>)> {
    let flags = [None, Some(true), Some(false)];
    let mut v = vec![(1, None, None)];
    for sp in flags {
        for sr in flags {
            v.push((2, sp, sr));
        }
    }
    v
}

/// The case's name: its path under the repository's `fixtures/` (or under the folder it
/// was found in), without `.safetensors`; `tf/basic_step` whichever way it was named.
fn case_label(file: &Path, roots: &[PathBuf]) -> String {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let file = canon(file);
    let fixtures = canon(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"));
    let rel = file
        .strip_prefix(&fixtures)
        .ok()
        .or_else(|| {
            roots
                .iter()
                .filter(|r| r.is_dir())
                .find_map(|r| file.strip_prefix(canon(r)).ok())
        })
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.file_name().map(PathBuf::from).unwrap_or_default());
    let s = rel.with_extension("").to_string_lossy().replace('\\', "/");
    s.replace(' ', "_")
}

fn golden(args: &Args, isas: &[Isa], out: &mut Vec<String>) -> Result<(), String> {
    let files = collect_files(&args.fixtures).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err("no .safetensors file under the fixtures".into());
    }
    for (n, file) in files.iter().enumerate() {
        let name = case_label(file, &args.fixtures);
        let t0 = Instant::now();
        let case = GoldenCase::load(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut runs: Vec<(String, Engine)> =
            vec![("reference t1 default".to_string(), Engine::Reference)];
        for &isa in isas {
            for (threads, sp, sr) in golden_variants() {
                runs.push((
                    format!("{isa} t{threads} sp={},sr={}", flag_name(sp), flag_name(sr)),
                    Engine::Fast(options(isa, threads, sp, sr)),
                ));
            }
        }
        for (label, engine) in runs {
            let mut lines = Lines {
                label: format!("{name} {label}"),
                out: &mut *out,
            };
            match case.outputs(engine) {
                Ok(tensors) => {
                    for (tensor, v) in &tensors {
                        lines.f32(tensor, v);
                    }
                }
                Err(e) => lines.error(e),
            }
        }
        eprintln!(
            "checksums: golden {}/{} {name} ({:.1} s)",
            n + 1,
            files.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `forward_inference` of the shape: output and final states.
fn bench_forward(shape: &'static BenchShape, opts: LstmOptions, lines: &mut Lines<'_>) {
    let run = || -> lstm_kernels::Result<ForwardBench> {
        let mut bench = ForwardBench::new(shape, opts)?;
        bench.run()?;
        Ok(bench)
    };
    match run() {
        Ok(bench) => {
            lines.f32("forward/output", bench.workspace().output());
            lines.state("forward/final_state", bench.workspace().final_state());
        }
        Err(e) => lines.error(format!("forward: {e}")),
    }
}

/// `forward_training` + `backward` with a fixed upstream gradient of the output (as the
/// bench runner drives training): output, final states and every gradient.
fn bench_train(shape: &BenchShape, opts: LstmOptions, lines: &mut Lines<'_>) {
    let run = || -> lstm_kernels::Result<(Vec<f32>, LstmState, Gradients)> {
        let lstm = shape.lstm(opts)?;
        let spec = lstm.weights().spec().clone();
        let data = shape.input();
        let lengths = shape.lengths();
        let input = shape.forward_input(&data, &lengths);
        let gout = SplitMix64::new(UPSTREAM_SEED).uniform_vec(
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
        lstm.forward_training(&input, &mut ws, &mut reserve)?;
        // What forward_training produced, before backward gets the workspace.
        let output = ws.output().to_vec();
        let state = ws.final_state().clone();
        lstm.backward(&input, &reserve, &upstream, &mut ws, &mut grads)?;
        Ok((output, state, grads))
    };
    match run() {
        Ok((output, state, grads)) => {
            lines.f32("train/output", &output);
            lines.state("train/final_state", &state);
            let named = grads.to_tensorflow();
            let mut names: Vec<&str> = named.names().collect();
            names.sort_unstable();
            for name in names {
                match named.f32(name) {
                    Ok((_, v)) => lines.f32(&format!("train/grad/{name}"), v),
                    Err(e) => lines.error(format!("train/grad/{name}: {e}")),
                }
            }
            lines.f32("train/grad/input", &grads.input);
            lines.state("train/grad/initial_state", &grads.initial_state);
        }
        Err(e) => lines.error(format!("train: {e}")),
    }
}

/// Two training steps of the seed's language model (`seed-ptb-lm`, as the bench runner
/// times it) on `opts`: each step's cost, the second step's gradients and the parameters
/// after both.
fn bench_lm_step(opts: LstmOptions, lines: &mut Lines<'_>) {
    let run = |lines: &mut Lines<'_>| -> lstm_kernels::Result<()> {
        let threads = opts.threads.unwrap_or(1);
        let mut step = SeedStep::new(threads)?;
        // The same initial parameters, on the ISA asked for.
        step.model = LanguageModel::from_tensors(&step.model.to_tensors(), &step.config, opts)?;
        step.ws = LmWorkspace::new(&step.model, step.config.batch_size, step.config.num_steps);
        let mut costs = Vec::new();
        for _ in 0..2 {
            costs.push(step.run()?);
        }
        lines.f64("lm/costs", &costs);
        let g = step.ws.gradients();
        lines.f64("lm/grad/cost", &[g.cost]);
        for (k, layer) in g.layers.iter().enumerate() {
            let named = layer.to_tensorflow();
            let mut names: Vec<&str> = named.names().collect();
            names.sort_unstable();
            for name in names {
                let (_, v) = named.f32(name)?;
                lines.f32(&format!("lm/grad/lstm{k}/{name}"), v);
            }
            lines.f32(&format!("lm/grad/lstm{k}/input"), &layer.input);
            lines.state(
                &format!("lm/grad/lstm{k}/initial_state"),
                &layer.initial_state,
            );
        }
        lines.f32("lm/grad/softmax", &g.softmax);
        let params = step.model.to_tensors();
        let mut names: Vec<&str> = params.names().collect();
        names.sort_unstable();
        for name in names {
            let (_, v) = params.f32(name)?;
            lines.f32(&format!("lm/params/{name}"), v);
        }
        for (k, cell) in step.ws.state().iter().enumerate() {
            lines.f32(&format!("lm/state/{k}/c"), &cell.c);
            lines.f32(&format!("lm/state/{k}/h"), &cell.h);
        }
        Ok(())
    };
    if let Err(e) = run(lines) {
        lines.error(format!("lm: {e}"));
    }
}

fn bench(args: &Args, isas: &[Isa], out: &mut Vec<String>) {
    for shape in &args.shapes {
        let train = shape.works.contains(&Work::Train);
        let flops = if train {
            shape.flops(Work::Train)
        } else {
            shape.flops(Work::Forward)
        };
        for &isa in isas {
            if args.skip_slow_scalar && isa == Isa::Scalar && flops > SLOW_SCALAR_FLOPS {
                eprintln!(
                    "checksums: bench {} scalar skipped ({:.1} GFLOP)",
                    shape.name,
                    flops / 1e9
                );
                continue;
            }
            for threads in [1, 2] {
                let t0 = Instant::now();
                let opts = options(isa, threads, None, None);
                let mut lines = Lines {
                    label: format!("{} {isa} t{threads} default", shape.name),
                    out: &mut *out,
                };
                bench_forward(shape, opts, &mut lines);
                if train {
                    bench_train(shape, opts, &mut lines);
                }
                if shape.name == "seed-ptb-lm" {
                    bench_lm_step(opts, &mut lines);
                }
                eprintln!(
                    "checksums: bench {} {isa} t{threads} ({:.1} s)",
                    shape.name,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("checksums: {e}");
            eprintln!(
                "usage: checksums [--skip-slow-scalar] [--only golden|bench] [--fixtures DIR]... \
                 [--shape NAME]..."
            );
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let isas = available_isas();
    eprintln!(
        "checksums: ISAs {}",
        isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
    );
    let mut out = Vec::new();
    if args.golden {
        if let Err(e) = golden(&args, &isas, &mut out) {
            eprintln!("checksums: {e}");
            return ExitCode::FAILURE;
        }
    }
    if args.bench {
        bench(&args, &isas, &mut out);
    }
    out.sort();
    let errors = out.iter().filter(|l| l.contains(" ERROR ")).count();
    let mut text = out.join("\n");
    text.push('\n');
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        eprintln!("checksums: stdout: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "checksums: {} lines, {errors} errors, {:.1} s",
        out.len(),
        start.elapsed().as_secs_f64()
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

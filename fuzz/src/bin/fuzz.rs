//! The fuzz driver.
//!
//! ```text
//! fuzz --target NAME [--iters N] [--time SECONDS] [--seed S] [--max-len L]
//!      [--corpus DIR] [--crash-dir DIR] [--timeout SECONDS] [--in-process]
//! fuzz --target NAME --replay FILE...
//! fuzz --list
//! ```
//!
//! Input number `i` of a run is generated from a generator seeded with `(S, i)`, so
//! any input can be made again from its index. By default the driver is a supervisor:
//! a worker process (this binary with `--worker`) runs the inputs, catches panics with
//! `catch_unwind` and reports each one with its index, and says which input it is about
//! to run before each. When the worker dies (an abort, a segfault, a stack overflow) or
//! says nothing for `--timeout` seconds (a hang), the supervisor knows the input that
//! did it, reads the worker's stderr for why, keeps the input and starts a fresh worker
//! after it. So a run goes on after each crash, and the crashes are counted by kind: a
//! panic by its source location, an abort by its message, a signal by number.
//! `--in-process` runs everything in this process instead (for valgrind).
//!
//! Each kind's first inputs are written to `CRASH_DIR/<target>-<hash>.bin`, with a
//! `.txt` beside it saying what happened. The exit code is 1 when anything crashed.
//!
//! Every allocation is capped at 64 MiB (`FUZZ_ALLOC_CAP_MB` changes it), so that a
//! huge size is refused at once rather than paging a shared machine to death, and the
//! machine's memory looks small: the library's fallible allocations must turn the
//! refusal into `Error::OutOfMemory` (a valid outcome), and an allocation that aborts
//! instead (one sized from a caller's numbers without `try_reserve`) is reported as a
//! crash. Inputs are at most `--max-len` bytes and the targets build buffers of at most
//! 2^16 elements, so only sizes the library computes come near the cap.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lstm_kernels_fuzz::alloc_cap::{report_next_refusal, set_alloc_cap, CappedAlloc};
use lstm_kernels_fuzz::{
    digest, install_panic_hook, remove_scratch, run_catching, set_current_input,
    set_resolve_callers, set_verbose, target, Corpus, Rng, Target, TARGETS,
};

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// Crash inputs kept per kind of crash.
const FILES_PER_KIND: usize = 3;

#[derive(Debug, Clone)]
struct Args {
    target: String,
    iters: Option<u64>,
    time: Option<f64>,
    seed: u64,
    max_len: usize,
    corpus: Option<PathBuf>,
    crash_dir: PathBuf,
    timeout: f64,
    in_process: bool,
    replay: Vec<PathBuf>,
    list: bool,
    worker: bool,
    start: u64,
}

fn usage() -> String {
    let mut s = String::from(
        "usage: fuzz --target NAME [--iters N] [--time SECONDS] [--seed S] [--max-len L]\n\
         \x20           [--corpus DIR] [--crash-dir DIR] [--timeout SECONDS] [--in-process]\n\
         \x20      fuzz --target NAME --replay FILE...\n\
         \x20      fuzz --list\ntargets:\n",
    );
    for t in TARGETS {
        s.push_str(&format!("  {:<11} {}\n", t.name, t.about));
    }
    s
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: String::new(),
        iters: None,
        time: None,
        seed: 0,
        max_len: 128 << 10,
        corpus: None,
        crash_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes"),
        timeout: 30.0,
        in_process: false,
        replay: Vec::new(),
        list: false,
        worker: false,
        start: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match arg.as_str() {
            "--target" => a.target = value("--target")?,
            "--iters" => a.iters = Some(num("--iters", value("--iters")?)?),
            "--time" => a.time = Some(num("--time", value("--time")?)?),
            "--seed" => a.seed = num("--seed", value("--seed")?)?,
            "--max-len" => a.max_len = num("--max-len", value("--max-len")?)?,
            "--corpus" => a.corpus = Some(value("--corpus")?.into()),
            "--crash-dir" => a.crash_dir = value("--crash-dir")?.into(),
            "--timeout" => a.timeout = num("--timeout", value("--timeout")?)?,
            "--in-process" => a.in_process = true,
            "--list" => a.list = true,
            "--worker" => a.worker = true,
            "--start" => a.start = num("--start", value("--start")?)?,
            "--replay" => {
                a.replay.extend(it.by_ref().map(PathBuf::from));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !a.list && target(&a.target).is_none() {
        return Err(format!("unknown or missing --target `{}`", a.target));
    }
    Ok(a)
}

fn main() -> ExitCode {
    if let Some(mb) = std::env::var("FUZZ_ALLOC_CAP_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        set_alloc_cap(mb << 20);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fuzz: {e}");
            }
            eprint!("{}", usage());
            return ExitCode::from(2);
        }
    };
    if args.list {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let t = target(&args.target).expect("checked");
    install_panic_hook();
    let code = if !args.replay.is_empty() {
        report_next_refusal();
        replay(t, &args.replay)
    } else {
        let corpus = Corpus::load(
            &Corpus::fixtures_dir(),
            args.corpus.as_deref(),
            args.max_len,
        );
        if args.worker {
            worker(t, &args, &corpus)
        } else if args.in_process {
            in_process(t, &args, &corpus)
        } else {
            supervise(t, &args, &corpus)
        }
    };
    remove_scratch();
    code
}

fn generate(t: &Target, args: &Args, corpus: &Corpus, i: u64) -> Vec<u8> {
    let mut rng = Rng::for_iteration(args.seed, i);
    (t.generate)(&mut rng, corpus, args.max_len)
}

fn replay(t: &Target, files: &[PathBuf]) -> ExitCode {
    let mut failed = 0;
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                failed += 1;
                continue;
            }
        };
        match run_catching(t, &data) {
            Ok(()) => println!("ok     {}", f.display()),
            Err(r) => {
                println!("PANIC  {}: {r}", f.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The last input index of a run: `--iters`, or unbounded when only `--time` is given,
/// or 10 000.
fn end(args: &Args) -> u64 {
    match (args.iters, args.time) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 10_000,
    }
}

/// The worker: runs inputs `start..end`, writing `ok I` on stdout before input `I`
/// (one short write each: the line is the only record that survives an abort),
/// `panic I LOCATION\tMESSAGE` after a caught panic and `done I` at the end. Its panic
/// hook also writes every panic on stderr, which the supervisor reads after a crash.
fn worker(t: &Target, args: &Args, corpus: &Corpus) -> ExitCode {
    set_verbose(true);
    set_resolve_callers(false);
    let deadline = args
        .time
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut out = std::io::stdout().lock();
    let mut i = args.start;
    let stop = end(args);
    let mut checked = Instant::now();
    while i < stop {
        if deadline.is_some() && checked.elapsed() >= Duration::from_millis(100) {
            checked = Instant::now();
            if deadline.is_some_and(|d| checked >= d) {
                break;
            }
        }
        let input = generate(t, args, corpus, i);
        set_current_input(i);
        // Stdout is line-buffered: each line is written before the input runs.
        let _ = writeln!(out, "ok {i}");
        if let Err(r) = run_catching(t, &input) {
            let _ = writeln!(out, "panic {i} {}\t{}", r.location, r.message);
        }
        i += 1;
    }
    let _ = writeln!(out, "done {i}");
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// Crashes seen in a run, by kind.
#[derive(Default)]
struct Findings {
    kinds: BTreeMap<String, Kind>,
    /// Whether to find the callers of panics in std and of aborts by replaying.
    resolve: bool,
}

/// The library frame behind the crash of a kept input: a `--replay` of it in a child
/// process, whose hook names the caller of a panic in std and whose allocator names the
/// caller of a refused allocation.
fn replay_caller(t: &Target, file: &Path) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args(["--target", t.name, "--replay"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines().rev().find_map(|l| {
        l.split_once("called from ").map(|(_, c)| {
            c.trim_end_matches(')')
                .split(')')
                .next()
                .unwrap_or("")
                .to_string()
        })
    })
}

struct Kind {
    count: u64,
    message: String,
    first_input: u64,
    files: Vec<PathBuf>,
    /// For a panic inside std or a dependency, or an abort: the library frames that
    /// called it, from replays of the kept inputs.
    callers: std::collections::BTreeSet<String>,
}

impl Findings {
    /// Records input `i` as a crash of kind `key`, keeping the input when it is among the
    /// kind's first.
    fn record(
        &mut self,
        t: &Target,
        args: &Args,
        corpus: &Corpus,
        i: u64,
        key: &str,
        message: &str,
    ) {
        let kind = self.kinds.entry(key.to_string()).or_insert_with(|| Kind {
            count: 0,
            message: message.to_string(),
            first_input: i,
            files: Vec::new(),
            callers: Default::default(),
        });
        kind.count += 1;
        if kind.files.len() < FILES_PER_KIND {
            let data = generate(t, args, corpus, i);
            let _ = std::fs::create_dir_all(&args.crash_dir);
            let name = format!("{}-{}", t.name, digest(&data));
            let bin = args.crash_dir.join(format!("{name}.bin"));
            let txt = args.crash_dir.join(format!("{name}.txt"));
            if std::fs::write(&bin, &data).is_ok() {
                let _ = std::fs::write(
                    &txt,
                    format!(
                        "target: {}\nkind: {key}\nmessage: {message}\nseed: {} input: {i} max-len: {}\n",
                        t.name, args.seed, args.max_len
                    ),
                );
                if kind.files.is_empty() {
                    eprintln!(
                        "[{}] NEW CRASH {key}: {message} (input {i}) -> {}",
                        t.name,
                        bin.display()
                    );
                }
                if self.resolve && !key.contains(" at src/") && !key.contains(" at kernels/src/") {
                    if let Some(c) = replay_caller(t, &bin) {
                        let _ = std::fs::OpenOptions::new()
                            .append(true)
                            .open(&txt)
                            .and_then(|mut f| writeln!(f, "called from: {c}"));
                        kind.callers.insert(c);
                    }
                }
                kind.files.push(bin);
            }
        }
    }

    fn total(&self) -> u64 {
        self.kinds.values().map(|k| k.count).sum()
    }

    fn report(&self, t: &Target, args: &Args, inputs: u64, elapsed: f64) {
        println!(
            "target {}: {inputs} inputs in {elapsed:.1} s ({:.0} inputs/s), seed {}, {} crashes of {} kinds",
            t.name,
            inputs as f64 / elapsed.max(1e-9),
            args.seed,
            self.total(),
            self.kinds.len()
        );
        for (key, k) in &self.kinds {
            println!("  {key}");
            println!(
                "      {} times, first at input {}: {}",
                k.count, k.first_input, k.message
            );
            for c in &k.callers {
                println!("      called from {c}");
            }
            for f in &k.files {
                println!("      {}", f.display());
            }
        }
    }
}

/// The kind of a caught panic: its location.
fn panic_key(location: &str) -> String {
    format!("panic at {location}")
}

fn in_process(t: &Target, args: &Args, corpus: &Corpus) -> ExitCode {
    set_verbose(false);
    set_resolve_callers(false);
    let start = Instant::now();
    let deadline = args.time.map(|s| start + Duration::from_secs_f64(s));
    let mut findings = Findings::default();
    let stop = end(args);
    let mut i = args.start;
    while i < stop && deadline.is_none_or(|d| Instant::now() < d) {
        let input = generate(t, args, corpus, i);
        if let Err(r) = run_catching(t, &input) {
            findings.record(t, args, corpus, i, &panic_key(&r.location), &r.message);
        }
        i += 1;
    }
    findings.report(t, args, i - args.start, start.elapsed().as_secs_f64());
    if findings.total() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

enum Line {
    Ok(u64),
    Panic(u64, String, String),
    Done(u64),
}

fn parse_line(l: &str) -> Option<Line> {
    let (word, rest) = l.split_once(' ')?;
    match word {
        "ok" => rest.trim().parse().ok().map(Line::Ok),
        "done" => rest.trim().parse().ok().map(Line::Done),
        "panic" => {
            let (i, rest) = rest.split_once(' ')?;
            let (loc, msg) = rest.split_once('\t').unwrap_or((rest, ""));
            Some(Line::Panic(
                i.parse().ok()?,
                loc.to_string(),
                msg.to_string(),
            ))
        }
        _ => None,
    }
}

/// How one worker process ended.
enum Ended {
    /// It reported `done N`.
    Done(u64),
    /// It died, or hung (killed after `--timeout` seconds of silence), while running
    /// input `at`.
    Crashed { at: u64, hung: bool, status: String },
}

/// Runs one worker on inputs `start..stop` (until `deadline`) with its stderr in
/// `stderr`, and follows its reports, recording its caught panics in `findings`.
fn run_worker(
    t: &Target,
    args: &Args,
    corpus: &Corpus,
    findings: &mut Findings,
    (start, stop): (u64, u64),
    stderr: &Path,
    deadline: Option<Instant>,
) -> Ended {
    let exe = std::env::current_exe().expect("the driver's own path");
    let mut cmd = Command::new(exe);
    cmd.args(["--worker", "--target", t.name])
        .args(["--seed", &args.seed.to_string()])
        .args(["--max-len", &args.max_len.to_string()])
        .args(["--start", &start.to_string(), "--iters", &stop.to_string()]);
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(Instant::now()).as_secs_f64();
        cmd.args(["--time", &format!("{left:.3}")]);
    }
    if let Some(c) = &args.corpus {
        cmd.arg("--corpus").arg(c);
    }
    // No backtrace at an abort: symbolising one costs more than hundreds of inputs.
    cmd.env("RUST_BACKTRACE", "0");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    match std::fs::File::create(stderr) {
        Ok(f) => cmd.stderr(f),
        Err(_) => cmd.stderr(Stdio::null()),
    };
    let mut child = cmd.spawn().expect("cannot start a worker");
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut at = start;
    let mut hung = false;
    let mut done = None;
    loop {
        match rx.recv_timeout(Duration::from_secs_f64(args.timeout)) {
            Ok(line) => match parse_line(&line) {
                Some(Line::Ok(i)) => at = i,
                Some(Line::Panic(i, loc, msg)) => {
                    findings.record(t, args, corpus, i, &panic_key(&loc), &msg);
                }
                Some(Line::Done(i)) => done = Some(i),
                None => {}
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                hung = true;
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().map(|s| describe(&s)).unwrap_or_default();
    let _ = reader.join();
    match done {
        Some(i) if !hung => Ended::Done(i),
        _ => Ended::Crashed { at, hung, status },
    }
}

fn describe(s: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            let name = match sig {
                4 => "SIGILL",
                6 => "SIGABRT",
                7 => "SIGBUS",
                8 => "SIGFPE",
                9 => "SIGKILL",
                11 => "SIGSEGV",
                _ => "signal",
            };
            return format!("{name} ({sig})");
        }
    }
    format!("exit {}", s.code().unwrap_or(-1))
}

/// The kind and message of the crash of input `at` from its worker's stderr: the input's
/// last panic, else an out-of-memory or stack-overflow line, else how it ended.
fn crash_kind(stderr: &str, at: u64, hung: bool, status: &str) -> (String, String) {
    let prefix = format!("PANIC[{at}] at ");
    let panic = stderr.lines().rev().find_map(|l| l.strip_prefix(&prefix));
    let fatal = stderr.lines().rev().find(|l| {
        l.contains("memory allocation of")
            || l.contains("overflowed its stack")
            || l.contains("panic in a function that cannot unwind")
            || l.contains("panicked while")
    });
    let how = if hung { "hang" } else { "abort" };
    match (panic, fatal) {
        (_, Some(f)) if f.contains("memory allocation of") => (
            format!("{how}: out of memory (allocation over the cap), {status}"),
            f.trim().to_string(),
        ),
        (Some(p), _) => {
            let (loc, msg) = p.split_once(": ").unwrap_or((p, ""));
            (
                format!("{how} after panic at {loc}, {status}"),
                msg.to_string(),
            )
        }
        (None, Some(f)) => (format!("{how}: {status}"), f.trim().to_string()),
        (None, None) => (
            format!("{how}: {status}"),
            if hung {
                "no progress within the timeout".into()
            } else {
                "no message".into()
            },
        ),
    }
}

fn supervise(t: &Target, args: &Args, corpus: &Corpus) -> ExitCode {
    let start_time = Instant::now();
    let deadline = args.time.map(|s| start_time + Duration::from_secs_f64(s));
    let stop = end(args);
    let mut findings = Findings {
        resolve: true,
        ..Default::default()
    };
    let mut next = args.start;
    let _ = std::fs::create_dir_all(&args.crash_dir);
    let stderr_path =
        args.crash_dir
            .join(format!(".worker-{}-{}.stderr", t.name, std::process::id()));
    let mut last_status = Instant::now();
    while next < stop && deadline.is_none_or(|d| Instant::now() < d) {
        match run_worker(
            t,
            args,
            corpus,
            &mut findings,
            (next, stop),
            &stderr_path,
            deadline,
        ) {
            Ended::Done(i) => next = i,
            Ended::Crashed { at, hung, status } => {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let (key, message) = crash_kind(&err, at, hung, &status);
                findings.record(t, args, corpus, at, &key, &message);
                next = at + 1;
            }
        }
        if last_status.elapsed() >= Duration::from_secs(30) {
            last_status = Instant::now();
            let secs = start_time.elapsed().as_secs_f64();
            eprintln!(
                "[{}] {} inputs in {secs:.0} s ({:.0}/s), {} crashes of {} kinds",
                t.name,
                next - args.start,
                (next - args.start) as f64 / secs,
                findings.total(),
                findings.kinds.len()
            );
        }
    }
    let _ = std::fs::remove_file(&stderr_path);
    findings.report(
        t,
        args,
        next - args.start,
        start_time.elapsed().as_secs_f64(),
    );
    if findings.total() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

//! Structure-aware fuzzing of `lstm-kernels` on the stable toolchain.
//!
//! Each [`Target`] is a function `fn(&[u8])` that feeds its bytes to one parser of
//! outside data or one public entry point of the library and must never panic, whatever
//! the bytes: every `Err` the library returns is fine, a panic (or an abort, a hang, an
//! out-of-bounds access) is a finding. Each target also has a generator that makes
//! inputs worth trying from a seeded random generator: mutated fixtures, files
//! synthesised for a random spec and then damaged, typed cases read with `arbitrary`.
//!
//! The targets (see [`TARGETS`]):
//! - `weights`: `.safetensors` bytes through `Tensors::from_bytes` and
//!   `LstmWeights::from_tensors` in all four conventions, for a spec the first bytes
//!   choose;
//! - `golden`: a golden case (`GoldenCase::from_tensors`), checked on the reference
//!   engine (and the fast one) when it is small;
//! - `checkpoint`: the language model's checkpoint loader, from a file;
//! - `ptb`: the Penn Treebank reader (files in a folder) and the batch producer;
//! - `api`: `Lstm::forward_inference`, `forward_training`, `backward`, `sgd_step`,
//!   `reference::forward` and `reference::gradients` on a typed random case: any sizes,
//!   lengths, initial states, thread counts and ISAs.
//!
//! The driver is `src/bin/fuzz.rs`; `tests/regressions.rs` replays every kept input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

pub mod alloc_cap;
pub mod mutate;
pub mod rng;
pub mod st;
pub mod targets;
pub mod values;

pub use rng::Rng;

/// A fuzz target: the function under test and the generator of its inputs.
pub struct Target {
    /// The name `--target` takes, and the folder of its regression inputs.
    pub name: &'static str,
    /// One line on what it exercises.
    pub about: &'static str,
    /// Runs one input; must not panic.
    pub run: fn(&[u8]),
    /// Makes input number `i` from its generator, the corpus and a length cap.
    pub generate: fn(&mut Rng, &Corpus, usize) -> Vec<u8>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "weights",
        about: "safetensors bytes -> Tensors -> LstmWeights in the TF, PyTorch, Keras and ONNX conventions",
        run: targets::weights::run,
        generate: targets::weights::generate,
    },
    Target {
        name: "golden",
        about: "golden case from safetensors bytes, checked on the reference (and fast) engine when small",
        run: targets::golden::run,
        generate: targets::golden::generate,
    },
    Target {
        name: "checkpoint",
        about: "language-model checkpoint loader on a file, then one evaluation step when small",
        run: targets::checkpoint::run,
        generate: targets::checkpoint::generate,
    },
    Target {
        name: "ptb",
        about: "PTB reader (three files in a folder), vocabulary, ids and the batch producer",
        run: targets::ptb::run,
        generate: targets::ptb::generate,
    },
    Target {
        name: "api",
        about: "forward_inference / forward_training / backward / sgd_step / reference on arbitrary sizes",
        run: targets::api::run,
        generate: targets::api::generate,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Seed inputs: the repository's fixtures and any files of an extra folder.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// `.safetensors` files (name, bytes), sorted by path.
    pub safetensors: Vec<(String, Vec<u8>)>,
    /// Other files of the extra folder, sorted by path (any target may use them raw).
    pub raw: Vec<Vec<u8>>,
}

impl Corpus {
    /// Every `.safetensors` file of at most `max_len` bytes under `fixtures` and, when
    /// given, every file under `extra`. Unreadable folders are skipped.
    pub fn load(fixtures: &Path, extra: Option<&Path>, max_len: usize) -> Corpus {
        let mut out = Corpus::default();
        for dir in std::iter::once(fixtures).chain(extra) {
            let mut files = Vec::new();
            walk(dir, &mut files);
            files.sort();
            for path in files {
                if std::fs::metadata(&path).map_or(true, |m| m.len() > max_len as u64) {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                if path.extension().is_some_and(|e| e == "safetensors") {
                    out.safetensors.push((path.display().to_string(), bytes));
                } else if Some(dir) == extra {
                    out.raw.push(bytes);
                }
            }
        }
        out
    }

    /// The repository's `fixtures/` folder (next to this crate).
    pub fn fixtures_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Where a panic happened and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicReport {
    /// `file:line:column`.
    pub location: String,
    /// The panic message (first line).
    pub message: String,
}

impl std::fmt::Display for PanicReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panicked at {}: {}", self.location, self.message)
    }
}

static FIRST_PANIC: Mutex<Option<PanicReport>> = Mutex::new(None);
static VERBOSE: AtomicBool = AtomicBool::new(true);
static CURRENT_INPUT: AtomicU64 = AtomicU64::new(u64::MAX);
static RESOLVE_CALLERS: AtomicBool = AtomicBool::new(true);
static HOOK: Once = Once::new();

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Installs the panic hook that records the first panic of each input (whichever thread
/// it happens on: a pool worker's panic is the interesting one) and, when verbose, prints
/// it as one `PANIC at LOCATION: MESSAGE` line on stderr (`PANIC[i] at ...` once
/// [`set_current_input`] has named the input). A location inside std or a dependency is
/// followed by the library's frame that called it.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let mut location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_else(|| "unknown".into());
            if !is_ours(&location) && RESOLVE_CALLERS.load(Ordering::Relaxed) {
                // A panic inside std or a dependency (`capacity overflow`, rayon's
                // `chunk_size must not be zero`): name the project's frame that called it.
                if let Some(caller) = first_own_frame() {
                    location = format!("{location} (called from {caller})");
                }
            }
            let report = PanicReport {
                location,
                message: payload_message(info.payload())
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            if VERBOSE.load(Ordering::Relaxed) {
                match CURRENT_INPUT.load(Ordering::Relaxed) {
                    u64::MAX => eprintln!("PANIC at {}: {}", report.location, report.message),
                    i => eprintln!("PANIC[{i}] at {}: {}", report.location, report.message),
                }
            }
            let mut slot = FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(report);
            }
        }));
    });
}

/// Whether a source path is the workspace's own (not std's, not a registry crate's).
fn is_ours(path: &str) -> bool {
    !path.starts_with("/rustc/") && !path.contains("/.cargo/registry/") && path != "unknown"
}

/// Whether the panic hook names the library's frame that called a panic inside std or a
/// dependency (on by default). That takes a symbolised backtrace, which costs tens of
/// milliseconds the first time in a process: the driver's workers turn it off and the
/// supervisor asks a `--replay` of the kept inputs instead.
pub fn set_resolve_callers(on: bool) {
    RESOLVE_CALLERS.store(on, Ordering::Relaxed);
}

/// The first frame of a backtrace of this thread in the library's own sources (not in
/// std, a dependency or this harness), as `path:line:column` relative to the workspace.
pub fn first_own_frame() -> Option<String> {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| format!("{}/", p.display()))
        .unwrap_or_default();
    bt.lines()
        .filter_map(|l| l.trim().strip_prefix("at "))
        .map(|p| p.strip_prefix(&root).unwrap_or(p).trim_start_matches("./"))
        .find(|p| p.starts_with("src/") || p.starts_with("kernels/src/"))
        .map(str::to_string)
}

/// Tells the panic hook which input runs, for its lines (`PANIC[i] at ...`).
pub fn set_current_input(i: u64) {
    CURRENT_INPUT.store(i, Ordering::Relaxed);
}

/// Whether the panic hook prints each panic.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Runs `target` on `data`, turning a panic into its report.
///
/// # Errors
/// The first panic the input caused.
pub fn run_catching(target: &Target, data: &[u8]) -> Result<(), PanicReport> {
    install_panic_hook();
    FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
    match catch_unwind(AssertUnwindSafe(|| (target.run)(data))) {
        Ok(()) => Ok(()),
        Err(payload) => {
            let first = FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
            Err(first.unwrap_or_else(|| PanicReport {
                location: "unknown".into(),
                message: payload_message(payload.as_ref()),
            }))
        }
    }
}

/// A folder of this process for the files the targets write (checkpoints, PTB texts).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lstm-kernels-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch folder");
        dir
    })
}

/// A path in [`scratch_dir`] private to the calling thread (tests run in parallel).
pub fn scratch_path(name: &str) -> PathBuf {
    let id = format!("{:?}", std::thread::current().id());
    let id: String = id.chars().filter(char::is_ascii_digit).collect();
    scratch_dir().join(format!("t{id}-{name}"))
}

/// Removes [`scratch_dir`] (best effort).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// A short hex digest of bytes (FNV-1a, 64 bits): the name of a crash file.
pub fn digest(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boom(data: &[u8]) {
        if data.first() == Some(&7) {
            panic!("seven {}", data.len());
        }
    }

    #[test]
    fn panics_are_caught_with_their_location() {
        let t = Target {
            name: "boom",
            about: "",
            run: boom,
            generate: |_, _, _| Vec::new(),
        };
        set_verbose(false);
        assert_eq!(run_catching(&t, &[1]), Ok(()));
        let r = run_catching(&t, &[7, 0]).unwrap_err();
        set_verbose(true);
        assert_eq!(r.message, "seven 2");
        assert!(r.location.contains("lib.rs"), "{}", r.location);
    }

    #[test]
    fn every_target_has_a_unique_name_and_generates_within_max_len() {
        let corpus = Corpus::load(&Corpus::fixtures_dir(), None, 1 << 17);
        assert!(
            !corpus.safetensors.is_empty(),
            "the fixtures were not found"
        );
        for (i, t) in TARGETS.iter().enumerate() {
            assert_eq!(target(t.name).map(|x| x.name), Some(t.name));
            assert!(TARGETS[..i].iter().all(|u| u.name != t.name));
            let mut rng = Rng::new(1);
            for _ in 0..20 {
                assert!(
                    (t.generate)(&mut rng, &corpus, 4096).len() <= 4096,
                    "{}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn digests_differ() {
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_eq!(digest(b"").len(), 16);
    }
}

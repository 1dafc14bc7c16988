//! Every input kept under `fuzz/regressions/<target>/` is run through its target and
//! must not panic: the inputs that once crashed the library (named after what they did;
//! `fuzz/regressions/CRASHES.md` lists them) and a few ordinary ones per target. A new
//! crash found by `fuzz` is copied here with the fix that makes it pass.

use std::path::Path;

use lstm_kernels_fuzz::alloc_cap::CappedAlloc;
use lstm_kernels_fuzz::{remove_scratch, run_catching, target, TARGETS};

// As in the driver: the `oom-*` inputs ask for sizes that fit in `usize` but not in any
// machine; capped, the library must return `Error::OutOfMemory` (without the cap some
// would be granted by overcommit and the zeroing would wake the OOM killer).
#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

#[test]
fn kept_inputs_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("fuzz/regressions exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut ran = 0;
    let mut failures = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let t = target(&name).unwrap_or_else(|| {
            panic!(
                "fuzz/regressions/{name}: no such target (targets: {:?})",
                TARGETS.iter().map(|t| t.name).collect::<Vec<_>>()
            )
        });
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if let Err(r) = run_catching(t, &data) {
                failures.push(format!("{}: {r}", f.display()));
            }
            ran += 1;
        }
    }
    remove_scratch();
    assert!(
        failures.is_empty(),
        "{} inputs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran >= TARGETS.len(),
        "only {ran} kept inputs: every target should have some"
    );
}

//! The C test program (`tests/c/test_capi.c`) against the libraries cargo built: writes
//! the Rust API's expectations (`common/fixture.rs`), compiles the program with the C
//! compiler (`CC`, else `cc`) against `liblstm_kernels.so` and `liblstm_kernels.a`, runs
//! both, and fails unless each reproduces every bit and passes every error-path check.
//!
//! Ignored by a plain `cargo test`: cargo builds a `cdylib`/`staticlib` only for `cargo
//! build`, never for an integration test, so the libraries could be missing or stale
//! (and a nested cargo build would wait on the outer one's lock). `capi/ci.sh` builds
//! them, then runs this test with `--ignored`:
//!
//! ```sh
//! cargo build --release -p lstm-kernels-c
//! cargo test --release -p lstm-kernels-c --test c_program -- --ignored
//! ```
//!
//! `LSTM_CAPI_FIXTURE_DIR=dir` keeps the fixture (`dir/fixture.bin`,
//! `dir/weights.safetensors`) for `capi/ci.sh`, which runs the program again under
//! valgrind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/`, where cargo puts the libraries: the test runs from its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
#[ignore = "needs `cargo build -p lstm-kernels-c` first (same profile); capi/ci.sh runs it"]
fn the_c_program_reproduces_the_rust_apis_bits_through_both_libraries() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi");
    std::fs::create_dir_all(&tmp).unwrap();
    let fixture_dir = std::env::var_os("LSTM_CAPI_FIXTURE_DIR").map_or(tmp.clone(), PathBuf::from);
    std::fs::create_dir_all(&fixture_dir).unwrap();
    let (fixture, safetensors) = (
        fixture_dir.join("fixture.bin"),
        fixture_dir.join("weights.safetensors"),
    );
    common::fixture::write(&fixture, &safetensors);

    let libs = profile_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let source = manifest.join("tests/c/test_capi.c");
    let include = manifest.join("include");
    for (kind, link) in [
        (
            "shared",
            vec![
                format!("-L{}", libs.display()),
                format!("-Wl,-rpath,{}", libs.display()),
                "-llstm_kernels".into(),
            ],
        ),
        (
            "static",
            vec![
                libs.join("liblstm_kernels.a").display().to_string(),
                "-lpthread".into(),
                "-ldl".into(),
                "-lm".into(),
            ],
        ),
    ] {
        let lib = libs.join(if kind == "shared" {
            "liblstm_kernels.so"
        } else {
            "liblstm_kernels.a"
        });
        assert!(
            lib.exists(),
            "{} is missing: build it with `cargo build -p lstm-kernels-c` (same profile)",
            lib.display()
        );
        let exe = tmp.join(format!("test_capi_{kind}"));
        run(
            Command::new(&cc)
                .args([
                    "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-pthread", "-I",
                ])
                .arg(&include)
                .arg(&source)
                .arg("-o")
                .arg(&exe)
                .args(&link),
            &format!("compiling the C test ({kind})"),
        );
        let text = run(
            Command::new(&exe).arg(&fixture).arg(&safetensors),
            &format!("the C test ({kind})"),
        );
        assert!(
            text.contains(" passed, 0 failed"),
            "the C test ({kind}) did not report its count:\n{text}"
        );
    }
}

/// Only writes the fixture into `LSTM_CAPI_FIXTURE_DIR`: `capi/ci.sh` runs this under
/// valgrind before the C test runs there, since the Rust API's gradients on valgrind's
/// CPU (no AVX-512) are other bits than on the machine's (the `gemm` crate sums in an
/// order of its ISA), and the C test must match the Rust API's bits on the same CPU.
#[test]
#[ignore = "capi/ci.sh runs it under valgrind"]
fn write_the_fixture_only() {
    let dir = PathBuf::from(
        std::env::var_os("LSTM_CAPI_FIXTURE_DIR").expect("set LSTM_CAPI_FIXTURE_DIR"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    common::fixture::write(&dir.join("fixture.bin"), &dir.join("weights.safetensors"));
    assert!(dir.join("fixture.bin").metadata().unwrap().len() > 8);
}

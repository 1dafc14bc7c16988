//! Checks golden files: `cargo run --release --example golden -- PATH...`
//!
//! Prints one line per file and part (`PASS`/`FAIL`/`SKIP`), then
//! `golden: N passed, M failed, K skipped`; exits non-zero on any failure, any skipped
//! part (a skip is never a pass) or any path or file it cannot read.

use std::path::PathBuf;
use std::process::ExitCode;

use lstm_kernels::golden::{check_file, collect_files, Summary};

fn main() -> ExitCode {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!("usage: golden PATH... (files or folders of .safetensors golden cases)");
        return ExitCode::from(2);
    }
    let files = match collect_files(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("golden: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut summary = Summary::default();
    for file in &files {
        for report in check_file(file) {
            println!("{report}");
            summary.add(&report);
        }
    }
    println!("{summary}");
    if summary.failed > 0 || summary.skipped > 0 || files.is_empty() {
        if files.is_empty() {
            eprintln!("golden: no .safetensors file under the given paths");
        }
        if summary.skipped > 0 {
            eprintln!(
                "golden: {} part(s) skipped: the checker could not run them",
                summary.skipped
            );
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

//! The golden suite: every committed fixture, made by TensorFlow or PyTorch, checked on
//! every test run, plus checks that the checker itself can fail.

mod common;

use std::path::{Path, PathBuf};

use lstm_kernels::golden::{
    check_file, collect_files, GoldenCase, Outcome, Part, PartReport, Summary,
};

/// Under emulation (`.ci/aarch64.sh` sets `LSTM_KERNELS_SKIP_SLOW`), the cases over
/// 1 MB (the seed-sized ones) are left out: they take many minutes under qemu, and the
/// small cases exercise the same code paths. Natively every case runs.
fn skip_slow(file: &Path) -> bool {
    let slow = std::env::var_os("LSTM_KERNELS_SKIP_SLOW").is_some()
        && std::fs::metadata(file).is_ok_and(|m| m.len() > 1 << 20);
    if slow {
        println!("skipped under LSTM_KERNELS_SKIP_SLOW: {}", file.display());
    }
    slow
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[test]
fn every_committed_fixture_passes() {
    let files = collect_files(&[fixtures()]).unwrap();
    // The suite shrinking silently would make this test vacuous.
    assert!(files.len() >= 19, "only {} golden files found", files.len());
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for file in files.iter().filter(|f| !skip_slow(f)) {
        let reports = check_file(file);
        assert!(
            reports
                .iter()
                .any(|r| r.part == Part::Forward && matches!(r.outcome, Outcome::Pass { .. })),
            "{}: no passing forward part: {reports:?}",
            file.display()
        );
        for r in reports {
            summary.add(&r);
            if !matches!(r.outcome, Outcome::Pass { .. } | Outcome::Skip(_)) {
                failures.push(r.to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
    println!("{summary}");
}

/// The same files on the reference and on every ISA of this CPU, 1 and 2 threads.
#[test]
fn every_fixture_passes_on_every_engine() {
    let files = collect_files(&[fixtures()]).unwrap();
    let mut failures = Vec::new();
    for file in files.iter().filter(|f| !skip_slow(f)) {
        let case = GoldenCase::load(file).unwrap();
        for engine in common::engines() {
            for r in case.check_with(engine) {
                if !matches!(r.outcome, Outcome::Pass { .. } | Outcome::Skip(_)) {
                    failures.push(format!("{engine:?}: {r}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let files = collect_files(&[fixtures()]).unwrap();
    let mut names: Vec<String> = files
        .iter()
        .map(|f| lstm_kernels::golden::case_name(f))
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(
        before,
        names.len(),
        "two fixtures share a name; the checker's lines would be ambiguous"
    );
}

/// A case whose expectation is moved by ten times its tolerance must fail, naming the
/// tensor: the checker is able to say no.
#[test]
fn a_perturbed_case_fails() {
    let path = fixtures().join("tf").join("basic_h7_seqlen.safetensors");
    let case = GoldenCase::load(&path).unwrap();
    let mut tensors = case.tensors.clone();
    let (shape, out) = tensors.f32("expected/final_state/0/h").unwrap();
    let (shape, mut out) = (shape.to_vec(), out.to_vec());
    let tol = case.tolerance;
    out[3] += (10.0 * (tol.abs + tol.rel * f64::from(out[3].abs()))) as f32;
    tensors
        .insert_f32("expected/final_state/0/h", &shape, out)
        .unwrap();
    let bad = GoldenCase::from_tensors("perturbed".into(), tensors).unwrap();
    let reports = bad.check();
    match &reports[0].outcome {
        Outcome::Mismatch(c) => {
            assert_eq!(c.tensor, "expected/final_state/0/h");
            assert!(c.max_ratio > 5.0 && c.max_ratio < 15.0, "{c:?}");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let line = reports[0].to_string();
    assert!(
        line.starts_with("FAIL forward perturbed: expected/final_state/0/h max_err="),
        "{line}"
    );
    assert!(line.contains(" allowed="), "{line}");
}

#[test]
fn report_lines_follow_the_format() {
    let pass = PartReport {
        part: Part::Forward,
        name: "x".into(),
        outcome: Outcome::Pass { max_ratio: 0.25 },
    };
    assert_eq!(pass.to_string(), "PASS forward x max_ratio=0.2500");
    let skip = PartReport {
        part: Part::Gradients,
        name: "x".into(),
        outcome: Outcome::Skip("why".into()),
    };
    assert_eq!(skip.to_string(), "SKIP gradients x: why");
    let mut s = Summary::default();
    s.add(&pass);
    s.add(&skip);
    assert_eq!(s.to_string(), "golden: 1 passed, 0 failed, 1 skipped");
}

/// The seed's untrained model: its first-batch cost is about `T * ln(V)` = 184.2.
#[test]
fn untrained_seed_model_costs_t_ln_v() {
    let path = fixtures().join("lm").join("lm_seed.safetensors");
    if skip_slow(&path) {
        return;
    }
    let case = GoldenCase::load(&path).unwrap();
    let reports = case.check();
    let loss = reports
        .iter()
        .find(|r| r.part == Part::Loss)
        .expect("a loss part");
    assert!(matches!(loss.outcome, Outcome::Pass { .. }), "{loss}");
    let (_, want) = case.tensors.f32("expected/loss").unwrap();
    let seed_cost = 20.0 * (10000f32).ln();
    assert!(
        (want[0] - seed_cost).abs() < 0.01 * seed_cost,
        "{} vs {seed_cost}",
        want[0]
    );
}

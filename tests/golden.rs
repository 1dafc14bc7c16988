//! The golden suite: every committed fixture, made by TensorFlow or PyTorch, checked on
//! every test run, plus checks that the checker itself can fail.

mod common;

use std::path::{Path, PathBuf};

use lstm_kernels::golden::{
    check_file, collect_files, GoldenCase, Kind, Outcome, Part, PartReport, Summary,
};

/// Whether this run may leave out the slow cases: only when `LSTM_KERNELS_SKIP_SLOW` is
/// set, which `.ci/aarch64.sh` does (under emulation) and nothing else in `.ci/run`.
fn slow_skips_allowed() -> bool {
    std::env::var_os("LSTM_KERNELS_SKIP_SLOW").is_some()
}

/// Under emulation (`.ci/aarch64.sh` sets `LSTM_KERNELS_SKIP_SLOW`), the cases over
/// 1 MB (the seed-sized ones) are left out: they take many minutes under qemu, and the
/// small cases exercise the same code paths. Natively every case runs. A skipped file is
/// said on stderr (past the harness's capture) with the parts it would have checked.
fn skip_slow(file: &Path, test: &str) -> bool {
    let slow = slow_skips_allowed() && std::fs::metadata(file).is_ok_and(|m| m.len() > 1 << 20);
    if slow {
        common::say(&format!(
            "SKIP {test}: {} under LSTM_KERNELS_SKIP_SLOW ({} part(s))",
            file.display(),
            parts_of(file)
        ));
    }
    slow
}

/// How many parts (report lines) a case file has: forward, gradients when it has
/// expected gradients, loss for a language model.
fn parts_of(file: &Path) -> usize {
    let case = GoldenCase::load(file).unwrap();
    let grads = case
        .tensors
        .names()
        .any(|n| n.starts_with("expected/grad/"));
    1 + usize::from(grads) + usize::from(case.kind == Kind::LanguageModel)
}

/// The suite's verdict: no failure, no part the checker skipped, and no skipped file
/// unless the slow cases may be left out (`slow_allowed`).
fn verdict(summary: &Summary, failures: &[String], slow_allowed: bool) -> Result<(), String> {
    if !failures.is_empty() {
        return Err(format!("golden failures:\n{}", failures.join("\n")));
    }
    if summary.failed > 0 {
        return Err(format!("{summary}: failures counted but not listed"));
    }
    if summary.skipped > 0 && !slow_allowed {
        return Err(format!(
            "{summary}: nothing may be skipped unless LSTM_KERNELS_SKIP_SLOW is set"
        ));
    }
    Ok(())
}

#[test]
fn the_verdict_refuses_failures_and_unallowed_skips() {
    let s = |passed, failed, skipped| Summary {
        passed,
        failed,
        skipped,
    };
    assert_eq!(verdict(&s(28, 0, 0), &[], false), Ok(()));
    assert_eq!(verdict(&s(25, 0, 3), &[], true), Ok(()));
    let e = verdict(&s(25, 0, 3), &[], false).unwrap_err();
    assert!(
        e.contains("3 skipped") && e.contains("LSTM_KERNELS_SKIP_SLOW"),
        "{e}"
    );
    assert!(verdict(&s(27, 1, 0), &["FAIL forward x: y".into()], true).is_err());
    assert!(verdict(&s(27, 1, 0), &[], true).is_err());
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[test]
fn every_committed_fixture_passes() {
    const TEST: &str = "every_committed_fixture_passes";
    let files = collect_files(&[fixtures()]).unwrap();
    // The suite shrinking silently would make this test vacuous.
    assert!(files.len() >= 19, "only {} golden files found", files.len());
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for file in &files {
        if skip_slow(file, TEST) {
            summary.skipped += parts_of(file);
            continue;
        }
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
            // A part the checker skipped is a failure: the suite says what it checked.
            if !matches!(r.outcome, Outcome::Pass { .. }) {
                failures.push(r.to_string());
            }
        }
    }
    common::say(&format!("{TEST}: {summary}"));
    if let Err(e) = verdict(&summary, &failures, slow_skips_allowed()) {
        panic!("{e}");
    }
}

/// The same files on the reference and on every ISA of this CPU, 1 and 2 threads.
#[test]
fn every_fixture_passes_on_every_engine() {
    const TEST: &str = "every_fixture_passes_on_every_engine";
    let files = collect_files(&[fixtures()]).unwrap();
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for file in &files {
        if skip_slow(file, TEST) {
            summary.skipped += parts_of(file);
            continue;
        }
        let case = GoldenCase::load(file).unwrap();
        for engine in common::engines() {
            for r in case.check_with(engine) {
                summary.add(&r);
                if !matches!(r.outcome, Outcome::Pass { .. }) {
                    failures.push(format!("{engine:?}: {r}"));
                }
            }
        }
    }
    common::say(&format!("{TEST}: {summary}"));
    if let Err(e) = verdict(&summary, &failures, slow_skips_allowed()) {
        panic!("{e}");
    }
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
    if skip_slow(&path, "untrained_seed_model_costs_t_ln_v") {
        assert!(slow_skips_allowed());
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

//! The golden suite: every committed fixture, made by TensorFlow or PyTorch, checked on
//! every test run, plus checks that the checker itself can fail.

mod common;

use std::path::{Path, PathBuf};

use lstm_kernels::golden::{
    check_file, collect_files, Engine, GoldenCase, Kind, Outcome, Part, PartReport, Summary,
    MAX_TOLERANCE,
};
use lstm_kernels::{LstmOptions, Tensors};

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

/// A fixture's tensors with its `config` metadata edited by `edit`.
fn with_config(tensors: &Tensors, edit: impl FnOnce(&mut serde_json::Value)) -> Tensors {
    let mut config: serde_json::Value =
        serde_json::from_str(&tensors.metadata()["config"]).unwrap();
    edit(&mut config);
    let mut t = tensors.clone();
    t.set_metadata("config", &config.to_string());
    t
}

fn load(rel: &str) -> GoldenCase {
    GoldenCase::load(fixtures().join(rel)).unwrap()
}

/// A file that declares a huge tolerance (1e9: anything would pass) is refused with an
/// error naming the field, by `from_tensors` and by the checker's `FAIL` line.
#[test]
fn a_tolerance_above_the_cap_is_refused() {
    let case = load("tf/grad_basic_seqlen.safetensors");
    // The cap itself is accepted, for both tolerances.
    let cap = MAX_TOLERANCE;
    let at_cap = with_config(&case.tensors, |c| {
        for key in ["tolerance", "grad_tolerance"] {
            c[key] = serde_json::json!({"abs": cap.abs, "rel": cap.rel});
        }
    });
    let ok = GoldenCase::from_tensors("at_cap".into(), at_cap).unwrap();
    assert_eq!((ok.tolerance, ok.grad_tolerance), (cap, cap));
    for key in ["tolerance", "grad_tolerance"] {
        for part in ["abs", "rel"] {
            let t = with_config(&case.tensors, |c| c[key][part] = 1e9.into());
            let err = match GoldenCase::from_tensors("huge".into(), t.clone()) {
                Ok(c) => panic!("{key}.{part} = 1e9 was accepted: {:?}", c.tolerance),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(&format!("{key}.{part}")) && err.contains("cap"),
                "{err}"
            );
            let path = std::env::temp_dir().join(format!(
                "lstm-kernels-golden-{}-huge-{key}-{part}.safetensors",
                std::process::id()
            ));
            t.save(&path).unwrap();
            let reports = check_file(&path);
            let _ = std::fs::remove_file(&path);
            assert_eq!(reports.len(), 1, "{reports:?}");
            let line = reports[0].to_string();
            assert!(
                line.starts_with("FAIL forward ") && line.contains(&format!("{key}.{part}")),
                "{line}"
            );
        }
    }
}

/// The same number of elements in another shape: the dimensions reversed, or (when
/// that is the same) two more leading 1s: `[n]` as `[1, 1, n]`, a scalar as `[1, 1]`
/// (not `[1]`, which the format allows for the loss).
fn other_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.reverse();
    if s == shape {
        s.splice(0..0, [1, 1]);
    }
    s
}

/// An expected tensor with the right number of elements but another shape is a
/// failure naming the tensor and both shapes, on every engine: final states, the
/// output, logits, the loss and every kind of gradient.
#[test]
fn a_mis_shaped_expected_tensor_fails() {
    let cases = [
        (
            "tf/basic_h7_seqlen",
            "expected/final_state/0/h",
            Part::Forward,
        ),
        ("tf/basic_h7_seqlen", "expected/output", Part::Forward),
        (
            "tf/grad_basic_seqlen",
            "expected/final_state/1/c",
            Part::Forward,
        ),
        (
            "tf/grad_basic_seqlen",
            "expected/grad/layers/0/kernel",
            Part::Gradients,
        ),
        (
            "tf/grad_basic_seqlen",
            "expected/grad/layers/1/bias",
            Part::Gradients,
        ),
        (
            "tf/grad_basic_seqlen",
            "expected/grad/input",
            Part::Gradients,
        ),
        (
            "tf/grad_basic_seqlen",
            "expected/grad/initial_state/1/c",
            Part::Gradients,
        ),
        (
            "tf/grad_basic_seqlen",
            "grad_final_state/0/h",
            Part::Gradients,
        ),
        ("tf/grad_basic_seqlen", "grad_output", Part::Gradients),
        ("tf/grad_time_major", "expected/grad/input", Part::Gradients),
        (
            "torch/grad_bidir_proj",
            "expected/grad/weight_hr_l1_reverse",
            Part::Gradients,
        ),
        ("lm/lm_small", "expected/logits", Part::Forward),
        ("lm/lm_small", "expected/loss", Part::Loss),
        ("lm/lm_small", "expected/grad/embedding", Part::Gradients),
        ("lm/lm_small", "expected/grad/softmax_w", Part::Gradients),
        (
            "lm/lm_small",
            "expected/grad/layers/1/kernel",
            Part::Gradients,
        ),
    ];
    for (file, name, part) in cases {
        let case = load(&format!("{file}.safetensors"));
        let mut tensors = case.tensors.clone();
        let (shape, data) = tensors.f32(name).unwrap();
        let (shape, data) = (shape.to_vec(), data.to_vec());
        let bad_shape = other_shape(&shape);
        assert_eq!(
            bad_shape.iter().product::<usize>(),
            shape.iter().product::<usize>()
        );
        tensors.insert_f32(name, &bad_shape, data).unwrap();
        let bad = GoldenCase::from_tensors("misshaped".into(), tensors).unwrap();
        for engine in [Engine::Reference, Engine::Fast(LstmOptions::default())] {
            let reports = bad.check_with(engine);
            let report = reports
                .iter()
                .find(|r| r.part == part)
                .unwrap_or_else(|| panic!("{file} {name}: no {part} part: {reports:?}"));
            match &report.outcome {
                Outcome::Error(msg) => assert!(
                    msg.contains(name)
                        && msg.contains(&format!("{bad_shape:?}"))
                        && msg.contains(&format!("{shape:?}")),
                    "{file} {name} {engine:?}: {msg}"
                ),
                other => panic!("{file} {name} {engine:?}: expected a shape error, got {other:?}"),
            }
        }
    }
}

/// A file whose input has a zero dimension holds no element, so its other dimension is
/// bounded by nothing: `[2^31 - 1, 0]` must be refused as a shape before the checker sizes
/// a workspace or a state for 2^31 sequences (which the machine may grant by overcommit
/// and then fail to touch).
#[test]
fn an_input_with_no_token_is_refused_before_anything_is_sized() {
    let huge = i32::MAX as usize;
    let lm = load("lm/lm_small.safetensors");
    let mut t = lm.tensors.clone();
    t.insert_i32("input_ids", &[huge, 0], vec![]).unwrap();
    t.insert_i32("targets", &[huge, 0], vec![]).unwrap();
    let case = GoldenCase::from_tensors("no_token_lm".into(), t).unwrap();
    refused(&case.check(), "`input_ids`");

    let tf = load("tf/basic_h10.safetensors");
    let mut t = tf.tensors.clone();
    let i = t.f32("input").unwrap().0[2];
    t.insert_f32("input", &[huge, 0, i], vec![]).unwrap();
    let case = GoldenCase::from_tensors("no_token".into(), t).unwrap();
    refused(&case.check(), "`input`");
}

/// The first part is an error naming `tensor`; the parts after it did not run.
fn refused(reports: &[PartReport], tensor: &str) {
    match reports.first().map(|r| &r.outcome) {
        Some(Outcome::Error(e)) => assert!(e.contains(tensor) && e.contains("T >= 1"), "{e}"),
        other => panic!("expected an error naming {tensor}, got {other:?}"),
    }
    for r in &reports[1..] {
        assert!(
            matches!(&r.outcome, Outcome::Error(_) | Outcome::Skip(_)),
            "{r}"
        );
    }
}

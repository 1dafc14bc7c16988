//! Bad input gives an `Error` that names the tensor and the shapes, never a panic.

mod common;

use lstm_kernels::golden::GoldenCase;
use lstm_kernels::{
    CellState, Convention, Error, ForwardInput, InitialState, Lstm, LstmOptions, LstmSpec,
    LstmState, LstmWeights, Tensors, Workspace,
};

fn setup() -> (LstmSpec, LstmWeights) {
    let spec = LstmSpec::builder(3, &[4]).build().unwrap();
    let w = LstmWeights::random_uniform(&spec, 0.1, 1);
    (spec, w)
}

/// The error of the fast path, checked to be the reference's too.
fn forward_err(input: ForwardInput<'_>) -> Error {
    let (spec, w) = setup();
    let mut ws = Workspace::new(&spec, 2, 5);
    let reference = lstm_kernels::reference::forward(&w, &input, &mut ws).unwrap_err();
    let lstm = Lstm::new(w).unwrap();
    let mut ws = Workspace::new(&spec, 2, 5);
    let fast = lstm.forward_inference(&input, &mut ws).unwrap_err();
    assert_eq!(fast, reference);
    fast
}

fn assert_shape_err(e: &Error, tensor: &str, expected: &str, actual: &str) {
    match e {
        Error::Shape {
            tensor: t,
            expected: x,
            actual: a,
        } => {
            assert_eq!(t, tensor);
            assert!(
                x.contains(expected),
                "expected part `{x}` lacks `{expected}`"
            );
            assert!(a.contains(actual), "actual part `{a}` lacks `{actual}`");
        }
        other => panic!("expected a shape error for {tensor}, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(tensor) && msg.contains(expected) && msg.contains(actual),
        "{msg}"
    );
}

#[test]
fn input_of_the_wrong_length() {
    let x = vec![0.0; 2 * 5 * 3 - 1];
    let e = forward_err(ForwardInput::new(&x, 2, 5));
    assert_shape_err(&e, "input", "[2, 5, 3]", "29 elements");
}

#[test]
fn zero_batch_or_zero_steps() {
    let e = forward_err(ForwardInput::new(&[], 0, 5));
    assert_shape_err(&e, "input", "B >= 1", "[0, 5, 3]");
    let e = forward_err(ForwardInput::new(&[], 2, 0));
    assert_shape_err(&e, "input", "T >= 1", "[2, 0, 3]");
}

#[test]
fn sequence_length_of_the_wrong_shape_or_range() {
    let x = vec![0.0; 2 * 5 * 3];
    let e = forward_err(ForwardInput::new(&x, 2, 5).sequence_length(&[1, 2, 3]));
    assert_shape_err(&e, "sequence_length", "[2]", "[3]");
    for (bad, idx) in [([5, 6], 1usize), ([-1, 2], 0)] {
        let e = forward_err(ForwardInput::new(&x, 2, 5).sequence_length(&bad));
        assert_eq!(
            e,
            Error::Length {
                index: idx,
                value: bad[idx].into(),
                steps: 5
            }
        );
        assert!(e.to_string().contains("sequence_length"));
    }
}

#[test]
fn initial_state_of_the_wrong_shape() {
    let (spec, _) = setup();
    let x = vec![0.0; 2 * 5 * 3];
    let mut s = LstmState::zeros(&spec, 2);
    s.cells[0].h.pop();
    let e = forward_err(ForwardInput::new(&x, 2, 5).initial_state(InitialState::Given(&s)));
    assert_shape_err(&e, "initial_state/0/h", "[2, 4]", "7 elements");
    let s = LstmState {
        cells: vec![
            CellState {
                c: vec![0.0; 8],
                h: vec![0.0; 8],
            },
            CellState {
                c: vec![0.0; 8],
                h: vec![0.0; 8],
            },
        ],
    };
    let e = forward_err(ForwardInput::new(&x, 2, 5).initial_state(InitialState::Given(&s)));
    assert_shape_err(&e, "initial_state", "1 cells", "2 cells");
}

#[test]
fn carry_without_a_previous_pass_of_that_batch() {
    let x = vec![0.0; 2 * 5 * 3];
    let e = forward_err(ForwardInput::new(&x, 2, 5).initial_state(InitialState::Carry));
    assert_shape_err(&e, "initial_state", "batch 2", "no previous pass");
}

#[test]
fn workspace_of_another_spec() {
    let (_, w) = setup();
    let other = LstmSpec::builder(3, &[5]).build().unwrap();
    let mut ws = Workspace::new(&other, 2, 5);
    let x = vec![0.0; 2 * 5 * 3];
    let e = Lstm::new(w)
        .unwrap()
        .forward_inference(&ForwardInput::new(&x, 2, 5), &mut ws)
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

#[test]
fn weights_missing_mis_shaped_or_mis_typed() {
    let (spec, w) = setup();
    let tf = w.to_tensorflow();

    let mut missing = Tensors::new();
    let (s, k) = tf.f32("layers/0/kernel").unwrap();
    missing
        .insert_f32("layers/0/kernel", s, k.to_vec())
        .unwrap();
    let e = LstmWeights::from_tensors(&spec, &missing, Convention::TensorFlow).unwrap_err();
    assert_eq!(e, Error::MissingTensor("layers/0/bias".into()));
    assert!(e.to_string().contains("layers/0/bias"));

    let mut wrong = tf.clone();
    wrong
        .insert_f32("layers/0/kernel", &[6, 16], vec![0.0; 96])
        .unwrap();
    let e = LstmWeights::from_tensors(&spec, &wrong, Convention::TensorFlow).unwrap_err();
    assert_shape_err(&e, "layers/0/kernel", "[7, 16]", "[6, 16]");

    let mut typed = tf.clone();
    typed
        .insert_i32("layers/0/bias", &[16], vec![0; 16])
        .unwrap();
    let e = LstmWeights::from_tensors(&spec, &typed, Convention::TensorFlow).unwrap_err();
    assert!(
        matches!(&e, Error::Dtype { tensor, expected, actual } if tensor == "layers/0/bias" && expected == "F32" && actual == "I32"),
        "{e:?}"
    );

    let pt = LstmWeights::random_uniform(
        &LstmSpec::builder(3, &[4]).forget_bias(0.0).build().unwrap(),
        0.1,
        2,
    )
    .to_pytorch()
    .unwrap();
    let mut pt_wrong = pt.clone();
    pt_wrong
        .insert_f32("weight_hh_l0", &[16, 3], vec![0.0; 48])
        .unwrap();
    let e = LstmWeights::from_tensors(&spec, &pt_wrong, Convention::PyTorch).unwrap_err();
    assert_shape_err(&e, "weight_hh_l0", "[16, 4]", "[16, 3]");
}

#[test]
fn unreadable_and_truncated_files() {
    let (spec, w) = setup();
    let dir = std::env::temp_dir().join(format!("lstm-kernels-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("nope.safetensors");
    assert!(matches!(
        LstmWeights::load_safetensors(&spec, &missing, Convention::TensorFlow),
        Err(Error::Io(m)) if m.contains("nope.safetensors")
    ));
    let bytes = w.to_tensorflow().to_bytes().unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let e = LstmWeights::load_safetensors(&spec, &cut, Convention::TensorFlow).unwrap_err();
    assert!(
        matches!(&e, Error::Format(m) if m.contains("cut.safetensors")),
        "{e:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_threads_or_a_missing_isa() {
    let (_, w) = setup();
    let e = Lstm::with_options(
        w.clone(),
        LstmOptions {
            isa: None,
            threads: Some(0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("threads")),
        "{e:?}"
    );
    for isa in [
        lstm_kernels::Isa::Avx512,
        lstm_kernels::Isa::Avx2,
        lstm_kernels::Isa::Neon,
    ] {
        if !lstm_kernels::available_isas().contains(&isa) {
            let e = Lstm::with_options(
                w.clone(),
                LstmOptions {
                    isa: Some(isa),
                    threads: Some(1),
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(
                matches!(&e, Error::Config(m) if m.contains(isa.name())),
                "{e:?}"
            );
        }
    }
}

fn golden_with(config: &str, tweak: impl FnOnce(&mut Tensors)) -> Error {
    let mut t = Tensors::new();
    t.set_metadata("format", "lstm-golden/1");
    t.set_metadata("kind", "lstm");
    t.set_metadata("convention", "tensorflow");
    t.set_metadata("config", config);
    tweak(&mut t);
    GoldenCase::from_tensors("case".into(), t).unwrap_err()
}

#[test]
fn golden_metadata_errors() {
    let e = golden_with(
        r#"{"input_size": 3, "hidden_sizes": [4], "cell_clip": 1e999}"#,
        |_| {},
    );
    // serde_json reads 1e999 as out of range: either way it must not be accepted.
    assert!(matches!(e, Error::Format(_) | Error::Config(_)), "{e:?}");
    let e = golden_with(r#"{"input_size": 3, "hidden_sizes": [0]}"#, |_| {});
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let e = golden_with(r#"{"hidden_sizes": [4]}"#, |_| {});
    assert!(
        matches!(&e, Error::Format(m) if m.contains("input_size")),
        "{e:?}"
    );
    let e = golden_with("not json", |_| {});
    assert!(matches!(e, Error::Format(_)), "{e:?}");
    let e = golden_with(
        r#"{"input_size": 3, "hidden_sizes": [4], "forget_bias": "x"}"#,
        |_| {},
    );
    assert!(
        matches!(&e, Error::Format(m) if m.contains("forget_bias")),
        "{e:?}"
    );
    let e = golden_with(
        r#"{"input_size": 3, "hidden_sizes": [4], "tolerance": {"abs": -1}}"#,
        |_| {},
    );
    assert!(
        matches!(&e, Error::Format(m) if m.contains("tolerance")),
        "{e:?}"
    );
}

/// The issue's reproduction: `B * T * I` wrapped to the data's length in a release build,
/// and with 2 threads the in-place read and the in-loop write then went past the ends of
/// the caller's slices. Every size product is checked now, and sizes whose buffers could
/// not exist are an error before anything is sized or read.
#[test]
fn sizes_whose_products_wrap_are_refused() {
    let spec = LstmSpec::builder(4, &[4]).build().unwrap();
    let w = LstmWeights::random_uniform(&spec, 0.1, 1);
    let data = vec![0.5_f32; 4];
    let lengths = [2];
    for (batch, steps) in [(1, (1usize << 62) + 1), (usize::MAX, 1), (1 << 40, 1 << 40)] {
        let input = ForwardInput::new(&data, batch, steps).sequence_length(&lengths[..1]);
        let mut ws = Workspace::new(&spec, batch, steps);
        let e = lstm_kernels::reference::forward(&w, &input, &mut ws).unwrap_err();
        assert!(
            matches!(e, Error::Shape { ref tensor, .. } if tensor == "input"),
            "{e}"
        );
        for threads in [1, 2] {
            let options = LstmOptions {
                threads: Some(threads),
                call_threads: Some(threads),
                ..Default::default()
            };
            let lstm = Lstm::with_options(w.clone(), options).unwrap();
            let e = lstm.forward_inference(&input, &mut ws).unwrap_err();
            assert!(
                matches!(e, Error::Shape { ref tensor, .. } if tensor == "input"),
                "{e}"
            );
            // The sizing hints never panic; the pass refuses the sizes.
            let mut reserve = lstm.reserve(batch, steps);
            let mut g = lstm_kernels::Gradients::zeros(&spec, batch, steps);
            let e = lstm
                .forward_training(&input, &mut ws, &mut reserve)
                .unwrap_err();
            assert!(matches!(e, Error::Shape { .. }), "{e}");
            let up = lstm_kernels::Upstream::default();
            assert!(lstm
                .backward(&input, &reserve, &up, &mut ws, &mut g)
                .is_err());
        }
    }
}

/// A reserve filled by an `Lstm` of another spec (same batch and steps) used to reach the
/// engine, whose tapes are then the wrong widths.
#[test]
fn backward_refuses_a_reserve_of_another_spec() {
    let spec = LstmSpec::builder(3, &[4]).build().unwrap();
    let wide = LstmSpec::builder(3, &[9]).build().unwrap();
    let (batch, steps) = (2, 5);
    let x = vec![0.25_f32; batch * steps * 3];
    let input = ForwardInput::new(&x, batch, steps);
    let other = Lstm::new(LstmWeights::random_uniform(&wide, 0.1, 2)).unwrap();
    let mut reserve = other.reserve(batch, steps);
    let mut other_ws = Workspace::new(&wide, batch, steps);
    other
        .forward_training(&input, &mut other_ws, &mut reserve)
        .unwrap();
    let lstm = Lstm::new(LstmWeights::random_uniform(&spec, 0.1, 3)).unwrap();
    let mut ws = Workspace::new(&spec, batch, steps);
    lstm.forward_inference(&input, &mut ws).unwrap();
    let mut g = lstm_kernels::Gradients::zeros(&spec, batch, steps);
    let e = lstm
        .backward(&input, &reserve, &Default::default(), &mut ws, &mut g)
        .unwrap_err();
    assert!(e.to_string().contains("spec"), "{e}");
}

/// A batch whose every sequence has length 0 has no token; backward used to panic on the
/// empty transpose ("chunk_size must not be zero"). The final-state gradient passes
/// straight through to the initial state's.
#[test]
fn backward_over_a_batch_of_empty_sequences() {
    let spec = LstmSpec::builder(3, &[4]).build().unwrap();
    let lstm = Lstm::new(LstmWeights::random_uniform(&spec, 0.1, 4)).unwrap();
    let x = vec![0.5_f32; 2 * 3 * 3];
    let lengths = [0, 0];
    let input = ForwardInput::new(&x, 2, 3).sequence_length(&lengths);
    let mut ws = Workspace::new(&spec, 2, 3);
    let mut reserve = lstm.reserve(2, 3);
    lstm.forward_training(&input, &mut ws, &mut reserve)
        .unwrap();
    let mut fin = LstmState::zeros(&spec, 2);
    fin.cells[0].h = vec![0.25; 8];
    let up = lstm_kernels::Upstream {
        output: None,
        final_state: Some(&fin),
    };
    let mut g = lstm_kernels::Gradients::zeros(&spec, 2, 3);
    lstm.backward(&input, &reserve, &up, &mut ws, &mut g)
        .unwrap();
    assert_eq!(g.initial_state.cells[0].h, fin.cells[0].h);
    assert!(g.input.iter().all(|&v| v == 0.0));
}

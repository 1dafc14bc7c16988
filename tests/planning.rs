//! `Planning::Measure` and plans files: a measured plan gives the bits of the heuristic's,
//! a plans file round-trips and is checked like any outside data.

use lstm_kernels::{
    Error, ForwardInput, Gradients, InitialState, Lstm, LstmOptions, LstmSpec, LstmWeights,
    Planning, SplitMix64, Upstream, Workspace,
};

fn lstm(spec: &LstmSpec, planning: Planning, threads: usize) -> Lstm {
    let options = LstmOptions {
        threads: Some(threads),
        planning,
        ..LstmOptions::default()
    };
    Lstm::with_options(LstmWeights::random_uniform(spec, 0.3, 5), options).unwrap()
}

/// Output and final state of one call over `x` (batch `b`, `t` steps, `lens`), and then
/// of a second call carrying the state.
fn two_calls(l: &Lstm, x: &[f32], b: usize, t: usize, lens: &[i32]) -> Vec<Vec<f32>> {
    let spec = l.weights().spec().clone();
    let mut ws = Workspace::new(&spec, b, t);
    let mut out = Vec::new();
    let first = ForwardInput::new(x, b, t).sequence_length(lens);
    l.forward_inference(&first, &mut ws).unwrap();
    out.push(ws.output().to_vec());
    out.extend(ws.final_state().cells.iter().map(|c| c.h.clone()));
    let carry = ForwardInput::new(x, b, t).initial_state(InitialState::Carry);
    l.forward_inference(&carry, &mut ws).unwrap();
    out.push(ws.output().to_vec());
    out.extend(ws.final_state().cells.iter().map(|c| c.c.clone()));
    out
}

fn specs() -> Vec<LstmSpec> {
    vec![
        LstmSpec::builder(24, &[40, 16]).build().unwrap(),
        LstmSpec::builder(8, &[33])
            .peepholes(true)
            .proj_sizes(&[Some(12)])
            .bidirectional(true)
            .build()
            .unwrap(),
    ]
}

#[test]
fn a_measured_plan_gives_the_heuristics_bits() {
    for spec in specs() {
        let (b, t) = (13, 9);
        let x = SplitMix64::new(3).uniform_vec(b * t * spec.input_size(), -1.0, 1.0);
        let lens: Vec<i32> = (0..b as i32).map(|i| (i * 5) % (t as i32 + 1)).collect();
        for threads in [1, 2, 3] {
            let heuristic = two_calls(&lstm(&spec, Planning::Heuristic, threads), &x, b, t, &lens);
            let measuring = lstm(&spec, Planning::Measure, threads);
            assert_eq!(
                two_calls(&measuring, &x, b, t, &lens),
                heuristic,
                "threads {threads}"
            );
            // The measured plans are kept (two shapes: the lengths' and the full batch's).
            let json = measuring.plans_json();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["plans"].as_array().unwrap().len(), 2, "{json}");
        }
    }
}

#[test]
fn training_after_a_measured_forward_gives_the_heuristics_gradients() {
    let spec = LstmSpec::builder(10, &[20]).build().unwrap();
    let (b, t) = (7, 6);
    let x = SplitMix64::new(4).uniform_vec(b * t * 10, -1.0, 1.0);
    let g = SplitMix64::new(5).uniform_vec(b * t * 20, -1.0, 1.0);
    let grads = |planning| {
        let l = lstm(&spec, planning, 2);
        let mut ws = Workspace::new(&spec, b, t);
        let mut reserve = l.reserve(b, t);
        let mut grads = Gradients::zeros(&spec, b, t);
        let input = ForwardInput::new(&x, b, t);
        l.forward_training(&input, &mut ws, &mut reserve).unwrap();
        let up = Upstream {
            output: Some(&g),
            final_state: None,
        };
        l.backward(&input, &reserve, &up, &mut ws, &mut grads)
            .unwrap();
        grads
    };
    assert_eq!(grads(Planning::Measure), grads(Planning::Heuristic));
}

#[test]
fn plans_round_trip_through_json() {
    let spec = specs().remove(0);
    let a = lstm(&spec, Planning::Measure, 2);
    let (b, t) = (5, 4);
    let x = vec![0.25; b * t * spec.input_size()];
    two_calls(&a, &x, b, t, &[4, 1, 0, 3, 4]);
    let json = a.plans_json();
    let fresh = lstm(&spec, Planning::Heuristic, 2);
    assert_eq!(fresh.load_plans_json(&json).unwrap(), 2);
    assert_eq!(
        fresh.plans_json(),
        json,
        "the loaded plans are the saved ones"
    );
    // Results with loaded plans are the same bits.
    assert_eq!(
        two_calls(&fresh, &x, b, t, &[4, 1, 0, 3, 4]),
        two_calls(&a, &x, b, t, &[4, 1, 0, 3, 4])
    );
    // On an Lstm with fewer threads, the plans for more are left out.
    let one = lstm(&spec, Planning::Heuristic, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let on_one = v["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["threads"] == 1)
        .count();
    assert_eq!(one.load_plans_json(&json).unwrap(), on_one);
}

#[test]
fn a_bad_plans_file_is_refused_and_loads_nothing() {
    let spec = LstmSpec::builder(8, &[33]).peepholes(true).build().unwrap();
    let l = lstm(&spec, Planning::Heuristic, 2);
    let mut ws = Workspace::new(&spec, 6, 3);
    let x = vec![0.5; 6 * 3 * 8];
    l.forward_inference(&ForwardInput::new(&x, 6, 3), &mut ws)
        .unwrap();
    let good: serde_json::Value = serde_json::from_str(&l.plans_json()).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let format = |e: Error, part: &str| match e {
        Error::Format(m) => assert!(m.contains(part), "{m}"),
        other => panic!("expected a format error about {part}, got {other:?}"),
    };
    format(l.load_plans_json("{").unwrap_err(), "not JSON");
    format(
        l.load_plans_json(&edit(&|v| v["format"] = "other/1".into()))
            .unwrap_err(),
        "format",
    );
    format(
        l.load_plans_json(&edit(&|v| v["plans"][0]["threads"] = 0.into()))
            .unwrap_err(),
        "threads",
    );
    format(
        l.load_plans_json(&edit(&|v| v["plans"][0]["rows"] = (-1).into()))
            .unwrap_err(),
        "rows",
    );
    format(
        l.load_plans_json(&edit(&|v| {
            let cell = v["plans"][0]["cells"][0].clone();
            v["plans"][0]["cells"].as_array_mut().unwrap().push(cell)
        }))
        .unwrap_err(),
        "cell plans",
    );
    // Peepholes: their gradients sum over the rows, so the backward cannot split them.
    format(
        l.load_plans_json(&edit(&|v| {
            v["plans"][0]["threads"] = 2.into();
            v["plans"][0]["cells"][0]["by_rows"] = true.into();
            v["plans"][0]["cells"][0]["backward_by_rows"] = true.into();
        }))
        .unwrap_err(),
        "backward split by rows",
    );
    match l
        .load_plans_json(&edit(&|v| v["stack"]["hidden"][0] = 34.into()))
        .unwrap_err()
    {
        Error::Config(m) => assert!(m.contains("made for the stack"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    assert_eq!(l.plans_json(), good.to_string(), "nothing was loaded");
}

//! `golden`: a golden case from `.safetensors` bytes (`GoldenCase::from_tensors`),
//! then, when the case is small, `check_with(Engine::Reference)` and, when the first
//! byte asks, `check_with(Engine::Fast(..))` with 1 or 2 threads and a chosen ISA.
//!
//! Input: one option byte (bit 0: run the fast engine too; bit 1: two threads; bits
//! 2..: the ISA), then the file.

use lstm_kernels::golden::{Engine, GoldenCase};
use lstm_kernels::{Convention, LstmOptions, LstmSpec, LstmWeights, SplitMix64, Tensors};

use super::{isa, parsed_fixtures, weights_file, SpecHeader};
use crate::rng::Rng;
use crate::st::{StFile, StTensor};
use crate::values::SIZES;
use crate::{mutate, Corpus};

/// The largest `B * T` a case may have to be run (the loaders run at any size).
pub const MAX_ROWS: usize = 256;

/// Runs one input (see the module's doc).
pub fn run(data: &[u8]) {
    let opt = data.first().copied().unwrap_or(0);
    let file = data.get(1..).unwrap_or(&[]);
    let Ok(tensors) = Tensors::from_bytes(file) else {
        return;
    };
    let Ok(case) = GoldenCase::from_tensors("fuzz".into(), tensors) else {
        return;
    };
    if !small(&case) {
        return;
    }
    let _ = case.check_with(Engine::Reference);
    if opt & 1 != 0 {
        let options = LstmOptions {
            isa: isa(opt >> 2),
            threads: Some(1 + usize::from(opt >> 1 & 1)),
            // The small cases would otherwise run on one thread: every call on both.
            call_threads: Some(1 + usize::from(opt >> 1 & 1)),
            pin_threads: Some(false),
            ..Default::default()
        };
        let _ = case.check_with(Engine::Fast(options));
    }
}

/// Whether the case's `B * T` (from `input` or `input_ids`) is at most [`MAX_ROWS`].
/// A product that overflows counts as small: such a case must be rejected, and
/// quickly, so it is run. Nothing else is capped: the weights the engines run on are in
/// the file, whose size the driver caps.
fn small(case: &GoldenCase) -> bool {
    ["input", "input_ids"]
        .iter()
        .filter_map(|n| case.tensors.get(n))
        .all(|t| {
            t.shape
                .iter()
                .take(2)
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|rows| rows <= MAX_ROWS)
        })
}

const META: &[(&str, &str)] = &[
    ("format", "lstm-golden/1"),
    ("format", "lstm-golden/2"),
    ("kind", "lstm"),
    ("kind", "language_model"),
    ("kind", "gru"),
    ("convention", "tensorflow"),
    ("convention", "pytorch"),
    ("convention", "onnx"),
    ("config", "{}"),
    ("config", "[]"),
    ("config", "not json"),
    ("config", "{\"input_size\": 4, \"hidden_sizes\": [4]}"),
    (
        "config",
        "{\"input_size\": 4, \"hidden_sizes\": [4], \"proj_sizes\": [0]}",
    ),
    (
        "config",
        "{\"input_size\": 4, \"hidden_sizes\": [4], \"cell_clip\": -1}",
    ),
    (
        "config",
        "{\"input_size\": 4, \"hidden_sizes\": [4], \"tolerance\": {\"abs\": -1}}",
    ),
    (
        "config",
        "{\"input_size\": 18446744073709551615, \"hidden_sizes\": [4611686018427387905]}",
    ),
];

/// Names a golden case uses (for renames).
fn names(spec: Option<&LstmSpec>) -> Vec<String> {
    let mut v: Vec<String> = [
        "input",
        "sequence_length",
        "expected/output",
        "grad_output",
        "expected/grad/input",
        "input_ids",
        "targets",
        "embedding",
        "softmax_w",
        "softmax_b",
        "expected/loss",
        "expected/logits",
        "expected/grad/embedding",
        "expected/grad/softmax_w",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cells = spec.map_or(2, LstmSpec::num_cells);
    for k in 0..cells {
        for w in ["c", "h"] {
            for p in [
                "initial_state",
                "expected/final_state",
                "grad_final_state",
                "expected/grad/initial_state",
            ] {
                v.push(format!("{p}/{k}/{w}"));
            }
        }
    }
    if let Some(spec) = spec {
        let weights = super::convention_names(spec);
        v.extend(weights.iter().map(|n| format!("expected/grad/{n}")));
        v.extend(weights);
    }
    v
}

/// The `config` metadata of `spec`.
pub fn config_json(spec: &LstmSpec, convention: Convention, extra: &str) -> String {
    let hidden: Vec<String> = spec
        .layers()
        .iter()
        .map(|l| l.hidden_size.to_string())
        .collect();
    let proj: Vec<String> = spec
        .layers()
        .iter()
        .map(|l| l.proj_size.map_or("null".into(), |p| p.to_string()))
        .collect();
    let opt = |v: Option<f32>| v.map_or("null".to_string(), |x| format!("{x:?}"));
    let cell = match convention {
        Convention::PyTorch => "torch_lstm",
        _ if spec.use_peepholes() => "lstm",
        _ => "basic_lstm",
    };
    format!(
        "{{\"input_size\": {}, \"hidden_sizes\": [{}], \"cell\": \"{cell}\", \"forget_bias\": {:?}, \
         \"use_peepholes\": {}, \"cell_clip\": {}, \"proj_sizes\": [{}], \"proj_clip\": {}, \
         \"bidirectional\": {}, \"time_major\": {}{extra}}}",
        spec.input_size(),
        hidden.join(", "),
        spec.forget_bias(),
        spec.use_peepholes(),
        opt(spec.cell_clip()),
        proj.join(", "),
        opt(spec.proj_clip()),
        spec.bidirectional(),
        spec.time_major(),
    )
}

fn floats(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    rng.uniform_vec(n, -1.0, 1.0)
}

/// A small, valid LSTM case for a random spec: weights, input, lengths, initial state,
/// expected output and final states (random values), and gradients now and then.
pub fn synth_lstm_case(rng: &mut Rng) -> StFile {
    let mut header = SpecHeader::random_small(rng);
    header.convention %= 2;
    let Ok(spec) = header.build() else {
        return StFile::default();
    };
    // PyTorch cannot say peepholes or clips: such specs are written as TensorFlow's.
    let convention = match header.convention() {
        Convention::PyTorch if LstmWeights::zeros(&spec).to_pytorch().is_err() => {
            Convention::TensorFlow
        }
        c => c,
    };
    let mut f = weights_file(&spec, convention, rng.u64());
    let mut vals = SplitMix64::new(rng.u64());
    let (b, t) = (rng.range(1, 3), rng.range(1, 4));
    let (i, out) = (spec.input_size(), spec.output_size());
    let bt = |inner: usize| -> Vec<usize> {
        if spec.time_major() {
            vec![t, b, inner]
        } else {
            vec![b, t, inner]
        }
    };
    f.put(StTensor::f32(
        "input",
        &bt(i),
        &floats(&mut vals, b * t * i),
    ));
    if rng.chance(1, 2) {
        let lens: Vec<i32> = (0..b).map(|_| rng.below(t + 1) as i32).collect();
        f.put(StTensor::i32("sequence_length", &[b], &lens));
    }
    f.put(StTensor::f32(
        "expected/output",
        &bt(out),
        &floats(&mut vals, b * t * out),
    ));
    let with_init = rng.chance(1, 3);
    let grads = rng.chance(1, 2);
    for k in 0..spec.num_cells() {
        let layer = spec.layers()[spec.cell_layer(k)];
        for (w, n) in [("c", layer.hidden_size), ("h", layer.output_size())] {
            let v = floats(&mut vals, b * n);
            f.put(StTensor::f32(
                &format!("expected/final_state/{k}/{w}"),
                &[b, n],
                &v,
            ));
            if with_init {
                f.put(StTensor::f32(
                    &format!("initial_state/{k}/{w}"),
                    &[b, n],
                    &v,
                ));
            }
            if grads && rng.chance(1, 2) {
                f.put(StTensor::f32(
                    &format!("grad_final_state/{k}/{w}"),
                    &[b, n],
                    &v,
                ));
            }
        }
    }
    if grads {
        f.put(StTensor::f32(
            "grad_output",
            &bt(out),
            &floats(&mut vals, b * t * out),
        ));
        f.put(StTensor::f32(
            "expected/grad/input",
            &bt(i),
            &floats(&mut vals, b * t * i),
        ));
        let weights: Vec<StTensor> = f
            .tensors
            .iter()
            .filter(|x| {
                x.name.starts_with("layers/")
                    || x.name.starts_with("weight_")
                    || x.name.starts_with("bias_")
            })
            .cloned()
            .collect();
        for mut w in weights {
            w.name = format!("expected/grad/{}", w.name);
            f.put(w);
        }
    }
    f.set_meta("format", "lstm-golden/1");
    f.set_meta("kind", "lstm");
    f.set_meta(
        "convention",
        if convention == Convention::PyTorch {
            "pytorch"
        } else {
            "tensorflow"
        },
    );
    f.set_meta("config", &config_json(&spec, convention, ""));
    f
}

/// A small, valid language-model case: embedding, ids, targets, a basic TF stack,
/// softmax and a random expected loss (and logits, and gradients, now and then).
pub fn synth_lm_case(rng: &mut Rng) -> StFile {
    let (e, v) = (rng.range(1, 6), rng.range(1, 8));
    let hidden: Vec<usize> = (0..rng.range(1, 2)).map(|_| rng.range(1, 6)).collect();
    let Ok(spec) = LstmSpec::builder(e, &hidden).forget_bias(0.0).build() else {
        return StFile::default();
    };
    let mut f = weights_file(&spec, Convention::TensorFlow, rng.u64());
    let mut vals = SplitMix64::new(rng.u64());
    let (b, t) = (rng.range(1, 3), rng.range(1, 4));
    let h = spec.output_size();
    let ids: Vec<i32> = (0..b * t).map(|_| rng.below(v) as i32).collect();
    let targets: Vec<i32> = (0..b * t).map(|_| rng.below(v) as i32).collect();
    f.put(StTensor::i32("input_ids", &[b, t], &ids));
    f.put(StTensor::i32("targets", &[b, t], &targets));
    f.put(StTensor::f32(
        "embedding",
        &[v, e],
        &floats(&mut vals, v * e),
    ));
    f.put(StTensor::f32(
        "softmax_w",
        &[h, v],
        &floats(&mut vals, h * v),
    ));
    f.put(StTensor::f32("softmax_b", &[v], &floats(&mut vals, v)));
    f.put(StTensor::f32("expected/loss", &[], &[1.5]));
    f.put(StTensor::f32(
        "expected/logits",
        &[b * t, v],
        &floats(&mut vals, b * t * v),
    ));
    if rng.chance(1, 2) {
        f.put(StTensor::f32(
            "expected/grad/embedding",
            &[v, e],
            &floats(&mut vals, v * e),
        ));
        f.put(StTensor::f32(
            "expected/grad/softmax_b",
            &[v],
            &floats(&mut vals, v),
        ));
        f.put(StTensor::f32(
            "expected/grad/layers/0/kernel",
            &[e + hidden[0], 4 * hidden[0]],
            &floats(&mut vals, (e + hidden[0]) * 4 * hidden[0]),
        ));
    }
    if rng.chance(1, 4) {
        for (k, &hk) in hidden.iter().enumerate() {
            for w in ["c", "h"] {
                f.put(StTensor::f32(
                    &format!("initial_state/{k}/{w}"),
                    &[b, hk],
                    &floats(&mut vals, b * hk),
                ));
            }
        }
    }
    f.set_meta("format", "lstm-golden/1");
    f.set_meta("kind", "language_model");
    f.set_meta("convention", "tensorflow");
    f.set_meta(
        "config",
        &format!(
            "{{\"input_size\": {e}, \"hidden_sizes\": [{}], \"cell\": \"basic_lstm\", \"forget_bias\": 0.0, \"vocab_size\": {v}}}",
            hidden.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
        ),
    );
    f
}

/// A one-layer TF case whose config sizes may be huge, with every tensor shaped as the
/// loader computes its expected shape, in wrapping arithmetic (so `4 * H` may be 0):
/// the cases where an unchecked product lets a wrong file through.
pub fn synth_wrapping_case(rng: &mut Rng) -> StFile {
    let pick = |rng: &mut Rng| -> usize {
        if rng.chance(1, 2) {
            rng.range(1, 4)
        } else {
            *rng.pick(SIZES) as usize
        }
    };
    let (i, h, b, t) = (pick(rng), pick(rng), pick(rng), pick(rng));
    let lm = rng.chance(1, 3);
    let v = pick(rng);
    let mut f = StFile::default();
    let put = |f: &mut StFile, name: &str, shape: &[usize]| {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let n = n.filter(|&n| n <= 4096).unwrap_or(0);
        f.put(StTensor {
            name: name.into(),
            dtype: "F32".into(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: vec![0; n * 4],
        });
    };
    put(
        &mut f,
        "layers/0/kernel",
        &[i.wrapping_add(h), h.wrapping_mul(4)],
    );
    put(&mut f, "layers/0/bias", &[h.wrapping_mul(4)]);
    if lm {
        put(&mut f, "embedding", &[v, i]);
        put(&mut f, "softmax_w", &[h, v]);
        put(&mut f, "softmax_b", &[v]);
        put(&mut f, "expected/loss", &[]);
    } else {
        put(&mut f, "input", &[b, t, i]);
        put(&mut f, "expected/output", &[b, t, h]);
        put(&mut f, "expected/final_state/0/c", &[b, h]);
        put(&mut f, "expected/final_state/0/h", &[b, h]);
    }
    if lm {
        // Ids and targets: I32, zero ids (in the vocabulary when it is not empty).
        let n = b.checked_mul(t).filter(|&n| n <= 4096).unwrap_or(0);
        for name in ["input_ids", "targets"] {
            f.put(StTensor {
                name: name.into(),
                dtype: "I32".into(),
                shape: vec![b as u64, t as u64],
                data: vec![0; n * 4],
            });
        }
    }
    f.set_meta("format", "lstm-golden/1");
    f.set_meta("kind", if lm { "language_model" } else { "lstm" });
    f.set_meta("convention", "tensorflow");
    f.set_meta(
        "config",
        &format!("{{\"input_size\": {i}, \"hidden_sizes\": [{h}], \"forget_bias\": 0.0}}"),
    );
    f
}

/// Makes one input: an option byte and a case file (a mutated fixture, a synthesised
/// small case, a case of wrapping sizes, or damaged bytes).
pub fn generate(rng: &mut Rng, corpus: &Corpus, max_len: usize) -> Vec<u8> {
    let fixtures = parsed_fixtures(corpus);
    let (mut f, spec) = match rng.below(10) {
        0..=2 if !fixtures.is_empty() => {
            let fx = rng.pick(fixtures);
            (fx.file.clone(), fx.case.as_ref().map(|c| c.0.clone()))
        }
        3..=5 => (synth_lstm_case(rng), None),
        6 | 7 => (synth_lm_case(rng), None),
        _ => (synth_wrapping_case(rng), None),
    };
    let names = names(spec.as_ref());
    for _ in 0..rng.below(4) {
        f.mutate(rng, &names, META);
    }
    let mut file = f.to_bytes();
    mutate::sometimes(&mut file, rng, max_len, 8);
    let mut out = vec![rng.u64() as u8];
    out.extend_from_slice(&file);
    out.truncate(max_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lstm_kernels::golden::Outcome;

    #[test]
    fn synthesised_cases_load_and_run() {
        // The synthesised cases are valid: they load and every part runs to a verdict
        // (a mismatch, since the expected values are random), never an error.
        let mut rng = Rng::new(6);
        let mut ran = 0;
        for i in 0..30 {
            let f = if i % 2 == 0 {
                synth_lstm_case(&mut rng)
            } else {
                synth_lm_case(&mut rng)
            };
            if f.tensors.is_empty() {
                continue;
            }
            let t = Tensors::from_bytes(&f.to_bytes()).unwrap();
            let case = GoldenCase::from_tensors("t".into(), t).unwrap();
            assert!(small(&case));
            for r in case.check_with(Engine::Reference) {
                assert!(
                    matches!(r.outcome, Outcome::Mismatch(_) | Outcome::Pass { .. }),
                    "{r}"
                );
            }
            ran += 1;
        }
        assert!(ran >= 20, "only {ran} cases ran");
    }

    #[test]
    fn wrapping_cases_are_mostly_valid_files() {
        let mut rng = Rng::new(8);
        let parsed = (0..100)
            .filter(|_| Tensors::from_bytes(&synth_wrapping_case(&mut rng).to_bytes()).is_ok())
            .count();
        assert!(parsed >= 10, "only {parsed} of 100 parsed");
    }
}

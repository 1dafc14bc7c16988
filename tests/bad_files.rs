//! Files that lie: weights without the tensors a model needs, `.safetensors` headers that
//! do not describe their data, checkpoints whose metadata is malformed or disagrees with
//! their tensors, PTB folders that cannot make a corpus. Every one must be a clear
//! [`Error`] (naming the tensor, file or field), never a panic or a silent default.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lstm_kernels::lm::checkpoint::{self, Progress};
use lstm_kernels::lm::{LanguageModel, LmConfig, LmWorkspace, PtbData};
use lstm_kernels::{
    Convention, Error, LoadOptions, LstmOptions, LstmSpec, LstmWeights, SplitMix64, TensorData,
    Tensors,
};

// ---------------------------------------------------------------------------------------
// Helpers.

/// A fresh, empty folder under the system's temp dir, unique to this process and call.
fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lstm-kernels-bad-files-{}-{label}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `t` without the tensors `drop` (metadata kept).
fn without(t: &Tensors, drop: &[&str]) -> Tensors {
    let mut out = Tensors::new();
    for name in t.names() {
        if drop.contains(&name) {
            continue;
        }
        let tensor = t.get(name).unwrap();
        match &tensor.data {
            TensorData::F32(v) => out.insert_f32(name, &tensor.shape, v.clone()).unwrap(),
            TensorData::I32(v) => out.insert_i32(name, &tensor.shape, v.clone()).unwrap(),
            TensorData::Other(_) => unreachable!("the tests make F32 and I32 tensors only"),
        }
    }
    for (k, v) in t.metadata() {
        out.set_metadata(k, v);
    }
    out
}

fn assert_missing(result: lstm_kernels::Result<LstmWeights>, name: &str) {
    match result {
        Err(Error::MissingTensor(n)) => assert_eq!(n, name),
        Err(e) => panic!("expected MissingTensor({name}), got {e:?}"),
        Ok(_) => panic!("expected MissingTensor({name}), got Ok"),
    }
}

/// The `Format` message of `r`, or a failure naming what came instead.
fn format_msg<T>(r: lstm_kernels::Result<T>) -> String {
    match r {
        Err(Error::Format(m)) => m,
        Err(e) => panic!("expected a Format error, got {e:?}"),
        Ok(_) => panic!("expected a Format error, got Ok"),
    }
}

/// What went wrong over a table of cases, to report every failing case at once.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    /// Records a failure unless `r` is a `Format` error whose message has every `parts`.
    fn expect_format<T>(&mut self, case: &str, r: lstm_kernels::Result<T>, parts: &[&str]) {
        match r {
            Err(Error::Format(m)) => {
                for p in parts {
                    if !m.contains(p) {
                        self.0.push(format!("{case}: `{m}` does not mention `{p}`"));
                    }
                }
            }
            Err(e) => self
                .0
                .push(format!("{case}: expected a Format error, got {e:?}")),
            Ok(_) => self
                .0
                .push(format!("{case}: expected a Format error, got Ok")),
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} failing cases:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{msg}` does not mention `{p}`");
    }
}

// ---------------------------------------------------------------------------------------
// 1. Weights without a bias.

fn allow_missing_bias() -> LoadOptions {
    LoadOptions {
        allow_missing_bias: true,
    }
}

/// A two-layer bidirectional spec with PyTorch's semantics.
fn torch_spec() -> LstmSpec {
    LstmSpec::builder(3, &[4, 2])
        .forget_bias(0.0)
        .bidirectional(true)
        .build()
        .unwrap()
}

#[test]
fn pytorch_without_biases_is_an_error_by_default() {
    let spec = torch_spec();
    let pt = LstmWeights::random_uniform(&spec, 1.0, 11)
        .to_pytorch()
        .unwrap();
    let biases: Vec<&str> = pt.names().filter(|n| n.starts_with("bias_")).collect();
    assert_eq!(biases.len(), 8);
    let bias_free = without(&pt, &biases);
    assert_missing(
        LstmWeights::from_tensors(&spec, &bias_free, Convention::PyTorch),
        "bias_ih_l0",
    );
    // A bias missing in the second layer only is named too.
    let second = without(&pt, &["bias_ih_l1_reverse", "bias_hh_l1_reverse"]);
    assert_missing(
        LstmWeights::from_tensors(&spec, &second, Convention::PyTorch),
        "bias_ih_l1_reverse",
    );
}

#[test]
fn pytorch_with_half_a_bias_is_an_error_even_when_biases_may_be_absent() {
    let spec = torch_spec();
    let pt = LstmWeights::random_uniform(&spec, 1.0, 12)
        .to_pytorch()
        .unwrap();
    for (gone, kept) in [("bias_hh_l0", "bias_ih_l0"), ("bias_ih_l1", "bias_hh_l1")] {
        let half = without(&pt, &[gone]);
        assert!(half.contains(kept));
        for options in [LoadOptions::default(), allow_missing_bias()] {
            assert_missing(
                LstmWeights::from_tensors_with(&spec, &half, Convention::PyTorch, options),
                gone,
            );
        }
    }
}

#[test]
fn pytorch_bias_free_loads_as_zero_biases_when_allowed() {
    let spec = torch_spec();
    let pt = LstmWeights::random_uniform(&spec, 1.0, 13)
        .to_pytorch()
        .unwrap();
    let biases: Vec<&str> = pt.names().filter(|n| n.starts_with("bias_")).collect();
    let mut zeroed = pt.clone();
    for name in &biases {
        let (shape, v) = pt.f32(name).unwrap();
        zeroed.insert_f32(name, shape, vec![0.0; v.len()]).unwrap();
    }
    let want = LstmWeights::from_tensors(&spec, &zeroed, Convention::PyTorch).unwrap();
    let got = LstmWeights::from_tensors_with(
        &spec,
        &without(&pt, &biases),
        Convention::PyTorch,
        allow_missing_bias(),
    )
    .unwrap();
    assert_eq!(got, want);
    // The strict entry point is the default options.
    assert_missing(
        LstmWeights::from_tensors_with(
            &spec,
            &without(&pt, &biases),
            Convention::PyTorch,
            LoadOptions::default(),
        ),
        "bias_ih_l0",
    );
}

/// Keras tensors for a two-layer stack, with or without `bias`.
fn keras_tensors(spec: &LstmSpec, bias: Option<f32>) -> Tensors {
    let mut rng = SplitMix64::new(21);
    let mut t = Tensors::new();
    for k in 0..spec.num_layers() {
        let h = spec.layers()[k].hidden_size;
        let inp = spec.layer_input_size(k);
        t.insert_f32(
            &format!("layers/{k}/kernel"),
            &[inp, 4 * h],
            rng.uniform_vec(inp * 4 * h, -1.0, 1.0),
        )
        .unwrap();
        t.insert_f32(
            &format!("layers/{k}/recurrent_kernel"),
            &[h, 4 * h],
            rng.uniform_vec(h * 4 * h, -1.0, 1.0),
        )
        .unwrap();
        if let Some(b) = bias {
            t.insert_f32(&format!("layers/{k}/bias"), &[4 * h], vec![b; 4 * h])
                .unwrap();
        }
    }
    t
}

#[test]
fn keras_without_bias_is_an_error_by_default_and_zero_when_allowed() {
    let spec = LstmSpec::builder(3, &[4, 2])
        .forget_bias(0.0)
        .build()
        .unwrap();
    let t = keras_tensors(&spec, None);
    assert_missing(
        LstmWeights::from_tensors(&spec, &t, Convention::Keras),
        "layers/0/bias",
    );
    let one = without(&keras_tensors(&spec, Some(0.5)), &["layers/1/bias"]);
    assert_missing(
        LstmWeights::from_tensors(&spec, &one, Convention::Keras),
        "layers/1/bias",
    );
    // LSTM(use_bias=False), when the caller says so: what an explicit zero bias gives.
    let want =
        LstmWeights::from_tensors(&spec, &keras_tensors(&spec, Some(0.0)), Convention::Keras)
            .unwrap();
    let got =
        LstmWeights::from_tensors_with(&spec, &t, Convention::Keras, allow_missing_bias()).unwrap();
    assert_eq!(got, want);
    assert!(got.cell(1).bias().iter().all(|&b| b == 0.0));
}

/// ONNX tensors `W`, `R` and (optionally) `B` for a one-layer bidirectional LSTM.
fn onnx_tensors(h: usize, inp: usize, bias: Option<f32>) -> Tensors {
    let mut rng = SplitMix64::new(31);
    let mut t = Tensors::new();
    t.insert_f32(
        "layers/0/W",
        &[2, 4 * h, inp],
        rng.uniform_vec(2 * 4 * h * inp, -1.0, 1.0),
    )
    .unwrap();
    t.insert_f32(
        "layers/0/R",
        &[2, 4 * h, h],
        rng.uniform_vec(2 * 4 * h * h, -1.0, 1.0),
    )
    .unwrap();
    if let Some(b) = bias {
        t.insert_f32("layers/0/B", &[2, 8 * h], vec![b; 2 * 8 * h])
            .unwrap();
    }
    t
}

#[test]
fn onnx_without_b_is_an_error_by_default_and_zero_when_allowed() {
    let spec = LstmSpec::builder(3, &[2])
        .forget_bias(0.0)
        .bidirectional(true)
        .build()
        .unwrap();
    assert_missing(
        LstmWeights::from_tensors(&spec, &onnx_tensors(2, 3, None), Convention::Onnx),
        "layers/0/B",
    );
    let want =
        LstmWeights::from_tensors(&spec, &onnx_tensors(2, 3, Some(0.0)), Convention::Onnx).unwrap();
    let got = LstmWeights::from_tensors_with(
        &spec,
        &onnx_tensors(2, 3, None),
        Convention::Onnx,
        allow_missing_bias(),
    )
    .unwrap();
    assert_eq!(got, want);
}

#[test]
fn tensorflow_without_bias_is_an_error_by_default_and_zero_when_allowed() {
    let spec = LstmSpec::builder(3, &[4, 2]).build().unwrap();
    let w = LstmWeights::random_uniform(&spec, 1.0, 41);
    let tf = w.to_tensorflow();
    assert_missing(
        LstmWeights::from_tensors(
            &spec,
            &without(&tf, &["layers/1/bias"]),
            Convention::TensorFlow,
        ),
        "layers/1/bias",
    );
    let mut zeroed = tf.clone();
    zeroed
        .insert_f32("layers/1/bias", &[8], vec![0.0; 8])
        .unwrap();
    let want = LstmWeights::from_tensors(&spec, &zeroed, Convention::TensorFlow).unwrap();
    let got = LstmWeights::from_tensors_with(
        &spec,
        &without(&tf, &["layers/1/bias"]),
        Convention::TensorFlow,
        allow_missing_bias(),
    )
    .unwrap();
    assert_eq!(got, want);
    assert_eq!(got.cell(0), w.cell(0));
}

#[test]
fn load_safetensors_with_passes_the_options_on() {
    let spec = LstmSpec::builder(3, &[4]).forget_bias(0.0).build().unwrap();
    let dir = temp_dir("load-with");
    let path = dir.join("keras.safetensors");
    keras_tensors(&spec, None).save(&path).unwrap();
    assert_missing(
        LstmWeights::load_safetensors(&spec, &path, Convention::Keras),
        "layers/0/bias",
    );
    let got =
        LstmWeights::load_safetensors_with(&spec, &path, Convention::Keras, allow_missing_bias())
            .unwrap();
    assert!(got.cell(0).bias().iter().all(|&b| b == 0.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Weights of a larger model than the spec (a layer more, a second direction, peepholes,
/// a projection) are not silently cut down to the spec's.
#[test]
fn tensors_of_a_larger_model_are_an_error() {
    let one = LstmSpec::builder(3, &[4]).forget_bias(0.0).build().unwrap();
    let two = LstmSpec::builder(3, &[4, 4])
        .forget_bias(0.0)
        .build()
        .unwrap();
    let bidir = LstmSpec::builder(3, &[4])
        .forget_bias(0.0)
        .bidirectional(true)
        .build()
        .unwrap();
    let peep = LstmSpec::builder(3, &[4])
        .forget_bias(0.0)
        .peepholes(true)
        .build()
        .unwrap();
    let proj = LstmSpec::builder(3, &[4])
        .forget_bias(0.0)
        .proj_sizes(&[Some(4)])
        .build()
        .unwrap();
    let w = |spec: &LstmSpec| LstmWeights::random_uniform(spec, 1.0, 51);
    let mut failures = Vec::new();
    let mut check = |what: &str, r: lstm_kernels::Result<LstmWeights>, name: &str| match r {
        Err(Error::Config(m)) if m.contains(&format!("`{name}`")) => {}
        Err(e) => failures.push(format!(
            "{what}: expected a Config error naming {name}, got {e:?}"
        )),
        Ok(_) => failures.push(format!(
            "{what}: expected a Config error naming {name}, got Ok"
        )),
    };
    let tf = Convention::TensorFlow;
    let pt = Convention::PyTorch;
    check(
        "TF, a layer more",
        LstmWeights::from_tensors(&one, &w(&two).to_tensorflow(), tf),
        "layers/1/kernel",
    );
    check(
        "TF, a second direction",
        LstmWeights::from_tensors(&one, &w(&bidir).to_tensorflow(), tf),
        "layers/1/kernel",
    );
    check(
        "TF, peepholes",
        LstmWeights::from_tensors(&one, &w(&peep).to_tensorflow(), tf),
        "layers/0/w_i_diag",
    );
    // A projection as wide as the cell leaves the kernel's shape unchanged.
    check(
        "TF, a projection",
        LstmWeights::from_tensors(&one, &w(&proj).to_tensorflow(), tf),
        "layers/0/projection",
    );
    check(
        "PyTorch, a layer more",
        LstmWeights::from_tensors(&one, &w(&two).to_pytorch().unwrap(), pt),
        "weight_ih_l1",
    );
    check(
        "PyTorch, a second direction",
        LstmWeights::from_tensors(&one, &w(&bidir).to_pytorch().unwrap(), pt),
        "weight_ih_l0_reverse",
    );
    check(
        "PyTorch, a projection",
        LstmWeights::from_tensors(&one, &w(&proj).to_pytorch().unwrap(), pt),
        "weight_hr_l0",
    );
    check(
        "Keras, a layer more",
        LstmWeights::from_tensors(&one, &keras_tensors(&two, Some(0.0)), Convention::Keras),
        "layers/1/kernel",
    );
    let mut deeper = onnx_tensors(2, 3, Some(0.0));
    deeper
        .insert_f32("layers/1/W", &[2, 8, 4], vec![0.0; 64])
        .unwrap();
    let onnx_spec = LstmSpec::builder(3, &[2])
        .forget_bias(0.0)
        .bidirectional(true)
        .build()
        .unwrap();
    check(
        "ONNX, a layer more",
        LstmWeights::from_tensors(&onnx_spec, &deeper, Convention::Onnx),
        "layers/1/W",
    );
    let mut onnx = onnx_tensors(2, 3, Some(0.0));
    onnx.insert_f32("layers/0/P", &[2, 6], vec![0.0; 12])
        .unwrap();
    check(
        "ONNX, peepholes",
        LstmWeights::from_tensors(&onnx_spec, &onnx, Convention::Onnx),
        "layers/0/P",
    );
    // Other tensors (inputs, expected outputs) are left alone.
    let mut tf_more = w(&one).to_tensorflow();
    tf_more.insert_f32("input", &[1, 3], vec![0.0; 3]).unwrap();
    assert_eq!(
        LstmWeights::from_tensors(&one, &tf_more, tf).unwrap(),
        w(&one)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 5. Sizes that overflow.

/// A hidden size whose `4 * H` wraps to 0 in `usize`: tensors of shape `[.., 0]` must not
/// match it.
const HUGE: usize = 1 << (usize::BITS - 2);

#[test]
fn weight_sizes_that_overflow_are_an_error_not_a_panic() {
    // The spec itself refuses a layer whose weights could not exist (`4 * HUGE` wraps to
    // 0, so tensors of shape `[.., 0]` would otherwise match it in every convention).
    for hidden in [HUGE, usize::MAX] {
        match LstmSpec::builder(1, &[hidden]).forget_bias(0.0).build() {
            Err(Error::Config(m)) => assert_contains(&m, &["would not fit"]),
            other => panic!("hidden {hidden}: expected a Config error, got {other:?}"),
        }
    }
}

#[test]
fn tensor_shapes_whose_product_overflows_are_refused() {
    let mut t = Tensors::new();
    for shape in [vec![HUGE, 4], vec![2, HUGE, 2], vec![usize::MAX, 2]] {
        let e = t.insert_f32("w", &shape, vec![]).unwrap_err();
        assert!(
            matches!(&e, Error::Shape { tensor, .. } if tensor == "w"),
            "{shape:?}: {e:?}"
        );
        assert!(e.to_string().contains("overflow"), "{e}");
        let e = t.insert_i32("ids", &shape, vec![]).unwrap_err();
        assert!(
            matches!(&e, Error::Shape { tensor, .. } if tensor == "ids"),
            "{shape:?}: {e:?}"
        );
    }
    assert!(!t.contains("w") && !t.contains("ids"));
}

// ---------------------------------------------------------------------------------------
// 3. Safetensors headers that lie.

/// A `.safetensors` file by hand: the header's length (8 bytes, little-endian), the JSON
/// header, the data.
fn st(header: &str, data: &[u8]) -> Vec<u8> {
    st_raw(header.len() as u64, header.as_bytes(), data)
}

fn st_raw(declared_len: u64, header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = declared_len.to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

#[test]
fn offsets_past_the_end_of_the_data() {
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        &[0; 8],
    )));
    assert_contains(&msg, &["`w`", "16", "8 bytes"]);
    // Far past it, at the edge of u64.
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]}}"#,
        &[0; 16],
    )));
    assert_contains(&msg, &["`w`"]);
}

#[test]
fn overlapping_or_gapped_ranges() {
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        &[0; 24],
    )));
    assert_contains(&msg, &["`a`", "`b`", "overlap"]);
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#,
        &[0; 24],
    )));
    assert_contains(&msg, &["`b`", "8..16"]);
    // Bytes after the last tensor.
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 12],
    )));
    assert_contains(&msg, &["12 bytes", "8"]);
    // Begin after end.
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
        &[0; 8],
    )));
    assert_contains(&msg, &["`a`", "[8, 0]"]);
}

#[test]
fn a_huge_declared_header_length() {
    let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    for declared in [u64::MAX, 1 << 40, header.len() as u64 + 5] {
        let msg = format_msg(Tensors::from_bytes(&st_raw(declared, header, &[0; 4])));
        assert_contains(&msg, &["header", &declared.to_string()]);
    }
    // Shorter than the 8 bytes of the length itself.
    let msg = format_msg(Tensors::from_bytes(&[1, 0, 0]));
    assert_contains(&msg, &["3 bytes"]);
}

#[test]
fn a_name_that_is_not_utf8() {
    let mut header = br#"{"w"#.to_vec();
    header.push(0xff);
    header.extend_from_slice(br#"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
    let msg = format_msg(Tensors::from_bytes(&st_raw(
        header.len() as u64,
        &header,
        &[0; 4],
    )));
    assert_contains(&msg, &["UTF-8", "byte 3"]);
    // A lone surrogate escape names no Unicode scalar value.
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"w\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    )));
    assert_contains(&msg, &["header"]);
}

#[test]
fn shape_products_that_overflow() {
    for shape in ["[4611686018427387904,4]", "[4294967296,4294967296,2]"] {
        let header = format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,0]}}}}"#);
        let msg = format_msg(Tensors::from_bytes(&st(&header, &[])));
        assert_contains(&msg, &["`w`", "overflow"]);
    }
    // Elements that fit but bytes that do not.
    let header = r#"{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}"#;
    let msg = format_msg(Tensors::from_bytes(&st(header, &[])));
    assert_contains(&msg, &["`w`", "overflow"]);
}

#[test]
fn dtype_and_length_disagree() {
    // The control for the safetensors tests: the same construction, told the truth.
    let data: Vec<u8> = [1.5f32, -2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(7i32.to_le_bytes())
        .collect();
    let t = Tensors::from_bytes(&st(
        r#"{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"n":{"dtype":"I32","shape":[],"data_offsets":[12,16]}}"#,
        &data,
    ))
    .unwrap();
    assert_eq!(t.f32_shaped("w", &[3]).unwrap(), [1.5, -2.0, 3.0]);
    assert_eq!(t.i32("n").unwrap(), (&[][..], &[7][..]));
    assert_eq!(t.metadata().get("k").map(String::as_str), Some("v"));
    // The same, lying.
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,10]}}"#,
        &[0; 10],
    )));
    assert_contains(&msg, &["`w`", "F32", "[3]", "12 bytes", "10"]);
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    )));
    assert_contains(&msg, &["`ids`", "I64", "16 bytes", "8"]);
    // A dtype that does not exist.
    let msg = format_msg(Tensors::from_bytes(&st(
        r#"{"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    )));
    assert_contains(&msg, &["`w`", "F31"]);
}

#[test]
fn malformed_entries_name_the_tensor() {
    let mut failures = Failures::default();
    for (entry, what) in [
        (r#"{"shape":[1],"data_offsets":[0,4]}"#, "dtype"),
        (r#"{"dtype":"F32","data_offsets":[0,4]}"#, "shape"),
        (r#"{"dtype":"F32","shape":[1]}"#, "data_offsets"),
        (
            r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#,
            "shape",
        ),
        (
            r#"{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}"#,
            "shape",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0]}"#,
            "data_offsets",
        ),
        (
            r#"{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}"#,
            "data_offsets",
        ),
        (r#"[1, 2]"#, "object"),
    ] {
        let header = format!(r#"{{"w":{entry}}}"#);
        let r = Tensors::from_bytes(&st(&header, &[0; 4]));
        failures.expect_format(entry, r, &["`w`", what]);
    }
    // Not an object at all, and metadata that is not strings.
    for header in ["[]", r#"{"__metadata__":{"k":1}}"#, "{"] {
        let r = Tensors::from_bytes(&st(header, &[]));
        failures.expect_format(header, r, &["header"]);
    }
    failures.assert_none();
}

#[test]
fn load_names_the_file_of_a_lying_header() {
    let dir = temp_dir("lying");
    let path = dir.join("lies.safetensors");
    std::fs::write(
        &path,
        st(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0; 4],
        ),
    )
    .unwrap();
    let msg = format_msg(Tensors::load(&path));
    assert_contains(&msg, &["lies.safetensors", "`w`"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Checkpoints.

fn lm_config() -> LmConfig {
    LmConfig {
        name: "tiny".into(),
        init_scale: 0.3,
        hidden_sizes: vec![5, 3],
        num_steps: 4,
        batch_size: 2,
        embedding_size: 4,
        vocab_size: 9,
        max_epoch: 1,
        max_max_epoch: 3,
        ..LmConfig::seed()
    }
}

fn one_thread() -> LstmOptions {
    LstmOptions {
        isa: None,
        threads: Some(1),
        ..Default::default()
    }
}

fn progress() -> Progress {
    Progress {
        epochs_done: 2,
        seed: 17,
        history: vec![(9.25, 8.5), (7.125, 7.75)],
    }
}

/// A valid checkpoint in a fresh folder: (folder, path, its tensors and metadata).
fn saved_checkpoint(label: &str) -> (PathBuf, PathBuf, Tensors) {
    let dir = temp_dir(label);
    let path = dir.join("ckpt.safetensors");
    let config = lm_config();
    let model = LanguageModel::new(&config, 5, Some(1)).unwrap();
    checkpoint::save(&path, &model, &config, &progress()).unwrap();
    let t = Tensors::load(&path).unwrap();
    (dir, path, t)
}

/// `t` with metadata `key` set to `value`, written over `path`, then loaded.
fn load_with_meta(
    t: &Tensors,
    path: &Path,
    key: &str,
    value: &str,
) -> lstm_kernels::Result<checkpoint::Checkpoint> {
    let mut t = t.clone();
    t.set_metadata(key, value);
    t.save(path).unwrap();
    checkpoint::load(path, one_thread())
}

fn config_with(t: &Tensors, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&t.metadata()["config"]).unwrap();
    edit(&mut v);
    v.to_string()
}

#[test]
fn saves_are_whole_and_leave_no_temp_file() {
    let (dir, path, _) = saved_checkpoint("complete");
    assert_eq!(listing(&dir), ["ckpt.safetensors"]);
    let c = checkpoint::load(&path, one_thread()).unwrap();
    assert_eq!(c.config, lm_config());
    assert_eq!(c.progress, progress());
    let want = LanguageModel::new(&lm_config(), 5, Some(1)).unwrap();
    assert_eq!(c.model.to_tensors(), want.to_tensors());
    // Saving over it replaces it whole, and still leaves nothing else behind.
    let other = LanguageModel::new(&lm_config(), 6, Some(1)).unwrap();
    checkpoint::save(&path, &other, &lm_config(), &progress()).unwrap();
    assert_eq!(listing(&dir), ["ckpt.safetensors"]);
    let c = checkpoint::load(&path, one_thread()).unwrap();
    assert_eq!(c.model.to_tensors(), other.to_tensors());
    // A name without the extension.
    let bare = dir.join("run.1");
    checkpoint::save(&bare, &other, &lm_config(), &progress()).unwrap();
    assert_eq!(listing(&dir), ["ckpt.safetensors", "run.1"]);
    std::fs::remove_dir_all(&dir).unwrap();

    // A save that fails removes its temporary file: here the target is a folder that is
    // not empty, so the final rename fails.
    let dir = temp_dir("failed-save");
    let target = dir.join("ckpt.safetensors");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let e = checkpoint::save(&target, &other, &lm_config(), &progress()).unwrap_err();
    assert!(
        matches!(&e, Error::Io(m) if m.contains("ckpt.safetensors")),
        "{e:?}"
    );
    assert_eq!(listing(&dir), ["ckpt.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn saving_an_inconsistent_progress_is_an_error() {
    let dir = temp_dir("bad-progress");
    let path = dir.join("ckpt.safetensors");
    let config = lm_config();
    let model = LanguageModel::new(&config, 5, Some(1)).unwrap();
    let p = Progress {
        epochs_done: 3,
        ..progress()
    };
    let e = checkpoint::save(&path, &model, &config, &p).unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("history") && m.contains("epochs_done")),
        "{e:?}"
    );
    assert!(listing(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_finite_perplexities_survive_the_checkpoint() {
    // A diverged epoch has perplexity inf (exp of a huge cost) or NaN.
    let dir = temp_dir("non-finite");
    let path = dir.join("ckpt.safetensors");
    let config = lm_config();
    let model = LanguageModel::new(&config, 5, Some(1)).unwrap();
    let p = Progress {
        epochs_done: 3,
        seed: 1,
        history: vec![
            (f64::INFINITY, f64::NAN),
            (2.5, f64::NEG_INFINITY),
            (1.0, 0.5),
        ],
    };
    checkpoint::save(&path, &model, &config, &p).unwrap();
    let back = checkpoint::load(&path, one_thread()).unwrap().progress;
    assert_eq!(back.history.len(), 3);
    assert_eq!(back.history[0].0, f64::INFINITY);
    assert!(back.history[0].1.is_nan());
    assert_eq!(back.history[1], (2.5, f64::NEG_INFINITY));
    assert_eq!(back.history[2], (1.0, 0.5));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_config_that_does_not_parse_or_validate() {
    let (dir, path, t) = saved_checkpoint("config");
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("{not json".into(), vec!["config"]),
        ("[1, 2]".into(), vec!["config"]),
        (
            config_with(&t, |v| v["keep_prob"] = 2.0.into()),
            vec!["keep_prob"],
        ),
        (
            config_with(&t, |v| v["hidden_sizes"] = serde_json::json!([5, 0])),
            vec!["hidden_sizes"],
        ),
        (
            config_with(&t, |v| v["hidden_sizes"] = serde_json::json!([5, -3])),
            vec!["hidden_sizes"],
        ),
        (
            config_with(&t, |v| v["hidden_sizes"] = serde_json::json!([])),
            vec!["hidden_sizes"],
        ),
        (
            config_with(&t, |v| v["num_steps"] = "4".into()),
            vec!["num_steps"],
        ),
        (
            config_with(&t, |v| v["batch_size"] = (-2).into()),
            vec!["batch_size"],
        ),
        (
            config_with(&t, |v| v["init_scale"] = 1e300.into()),
            vec!["init_scale"],
        ),
        (
            config_with(&t, |v| {
                v.as_object_mut().unwrap().remove("vocab_size");
            }),
            vec!["vocab_size"],
        ),
        (config_with(&t, |v| v["name"] = 5.into()), vec!["name"]),
        (
            config_with(&t, |v| {
                v.as_object_mut().unwrap().remove("name");
            }),
            vec!["name"],
        ),
    ];
    let mut failures = Failures::default();
    for (config, mut parts) in cases {
        parts.push("ckpt.safetensors");
        let r = load_with_meta(&t, &path, "config", &config);
        failures.expect_format(&config, r, &parts);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    failures.assert_none();
}

#[test]
fn checkpoint_config_with_absurd_sizes() {
    let (dir, path, t) = saved_checkpoint("absurd");
    // Sizes that disagree with the tensors, however large.
    for (key, value) in [
        ("vocab_size", serde_json::json!(u64::MAX)),
        ("embedding_size", serde_json::json!(1u64 << 40)),
        ("hidden_sizes", serde_json::json!([u64::MAX, 3])),
    ] {
        let config = config_with(&t, |v| v[key] = value.clone());
        let e = load_with_meta(&t, &path, "config", &config).unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. } | Error::Config(_) | Error::Format(_)),
            "{key}: {e:?}"
        );
    }
    // One layer whose 4 * H wraps to 0, with tensors shaped to match the wrap.
    let mut lie = without(
        &t,
        &[
            "layers/0/kernel",
            "layers/0/bias",
            "layers/1/kernel",
            "layers/1/bias",
        ],
    );
    lie.insert_f32("layers/0/kernel", &[4 + HUGE, 0], vec![])
        .unwrap();
    lie.insert_f32("layers/0/bias", &[0], vec![]).unwrap();
    let config = config_with(&t, |v| v["hidden_sizes"] = serde_json::json!([HUGE]));
    let e = load_with_meta(&lie, &path, "config", &config).unwrap_err();
    // The config's own check refuses the sizes before any tensor is matched.
    assert!(
        matches!(&e, Error::Config(m) | Error::Format(m)
            if m.contains("overflow") || m.contains("would not fit")),
        "{e:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_tensors_that_disagree_with_the_config() {
    let (dir, path, t) = saved_checkpoint("tensors");
    let load = |t: &Tensors| {
        t.save(&path).unwrap();
        checkpoint::load(&path, one_thread())
    };
    // Missing.
    for name in ["softmax_b", "embedding", "layers/1/kernel", "layers/0/bias"] {
        match load(&without(&t, &[name])) {
            Err(Error::MissingTensor(n)) => assert_eq!(n, name),
            other => panic!("{name}: expected MissingTensor, got {other:?}"),
        }
    }
    // Mis-shaped.
    let mut shaped = t.clone();
    shaped
        .insert_f32("embedding", &[8, 4], vec![0.0; 32])
        .unwrap();
    match load(&shaped) {
        Err(Error::Shape {
            tensor,
            expected,
            actual,
        }) => {
            assert_eq!(tensor, "embedding");
            assert_eq!(expected, "[9, 4]");
            assert_eq!(actual, "[8, 4]");
        }
        other => panic!("expected a Shape error, got {other:?}"),
    }
    // Of another dtype.
    let mut typed = t.clone();
    typed.insert_i32("softmax_b", &[9], vec![0; 9]).unwrap();
    match load(&typed) {
        Err(Error::Dtype { tensor, .. }) => assert_eq!(tensor, "softmax_b"),
        other => panic!("expected a Dtype error, got {other:?}"),
    }
    // A tensor the config has no place for: a third layer, or anything else.
    for (name, shape) in [("layers/2/kernel", vec![6, 12]), ("stray", vec![1])] {
        let mut extra = t.clone();
        let n = shape.iter().product();
        extra.insert_f32(name, &shape, vec![0.0; n]).unwrap();
        let msg = format_msg(load(&extra));
        assert_contains(&msg, &[name, "ckpt.safetensors"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `t` with its metadata `key` removed.
fn without_meta(t: &Tensors, key: &str) -> Tensors {
    let mut out = Tensors::new();
    for name in t.names() {
        let (shape, v) = t.f32(name).unwrap();
        out.insert_f32(name, shape, v.to_vec()).unwrap();
    }
    for (k, v) in t.metadata() {
        if k != key {
            out.set_metadata(k, v);
        }
    }
    out
}

#[test]
fn checkpoint_metadata_that_is_malformed() {
    let (dir, path, t) = saved_checkpoint("metadata");
    let mut failures = Failures::default();
    for (key, value) in [
        ("epochs_done", "-1"),
        ("epochs_done", "two"),
        ("epochs_done", "1.5"),
        ("epochs_done", ""),
        ("epochs_done", "99999999999999999999999"),
        // Disagrees with the two entries of history.
        ("epochs_done", "3"),
        ("epochs_done", "18446744073709551615"),
        ("seed", "-3"),
        ("seed", "18446744073709551616"),
        ("seed", "0x11"),
        ("history", "not json"),
        ("history", "[[1.0]]"),
        ("history", r#"[["a", "b"], [1.0, 2.0]]"#),
        ("history", r#"{"x": 1}"#),
        ("history", "[[1.0, 2.0]]"),
        ("history", "[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]"),
        ("history", "[[1.0, 2.0], [null, 4.0]]"),
        ("history", r#"[[1.0, 2.0], ["infinity", 4.0]]"#),
        ("format", "lstm-kernels-lm/2"),
        ("format", ""),
        ("format", "LSTM-KERNELS-LM/1"),
    ] {
        let r = load_with_meta(&t, &path, key, value);
        failures.expect_format(&format!("{key} = {value}"), r, &[key, "ckpt.safetensors"]);
    }
    for key in ["format", "config", "epochs_done", "seed", "history"] {
        without_meta(&t, key).save(&path).unwrap();
        let r = checkpoint::load(&path, one_thread());
        failures.expect_format(&format!("no {key}"), r, &[key, "ckpt.safetensors"]);
    }
    // Truncated anywhere.
    let bytes = t.to_bytes().unwrap();
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let r = checkpoint::load(&path, one_thread());
        failures.expect_format(&format!("cut at {cut}"), r, &["ckpt.safetensors"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------
// 4. The PTB reader.

fn ptb_dir(label: &str, train: &[u8], valid: &[u8], test: &[u8]) -> PathBuf {
    let dir = temp_dir(label);
    for (name, text) in [
        ("ptb.train.txt", train),
        ("ptb.valid.txt", valid),
        ("ptb.test.txt", test),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

#[test]
fn ptb_vocabulary_larger_than_the_model() {
    let dir = ptb_dir("vocab", b" a b c d \n e a \n", b" a e \n", b" b \n");
    let d = PtbData::load(&dir).unwrap();
    // a b c d e <eos>.
    assert_eq!(d.vocab.len(), 6);
    d.check_vocab_size(6).unwrap();
    d.check_vocab_size(10_000).unwrap();
    match d.check_vocab_size(5) {
        Err(Error::Config(m)) => assert_contains(&m, &["6", "5", "vocab_size"]),
        other => panic!("expected a Config error, got {other:?}"),
    }
    // A model that did not check gets an error naming the tensor, not a panic.
    let config = LmConfig {
        vocab_size: 5,
        ..lm_config()
    };
    let model = LanguageModel::new(&config, 1, Some(1)).unwrap();
    let mut ws = LmWorkspace::new(&model, 1, 4);
    let window = &d.train[4..8];
    assert!(window.iter().any(|&id| id >= 5), "{:?}", d.train);
    let e = model.eval_step(&mut ws, window, window).unwrap_err();
    assert!(
        e.to_string().contains("inputs") || e.to_string().contains("targets"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ptb_files_that_make_no_corpus() {
    // Every word of the validation split but the ends of sentences is outside the
    // training vocabulary: a corpus of `<eos>` alone is no corpus.
    let dir = ptb_dir("unknown", b" a b c \n", b" x y z \n x \n", b" a \n");
    let msg = format_msg(PtbData::load(&dir));
    assert_contains(&msg, &["ptb.valid.txt", "4 words", "vocabulary"]);
    std::fs::write(dir.join("ptb.valid.txt"), " a ").unwrap();
    std::fs::write(dir.join("ptb.test.txt"), "q").unwrap();
    let msg = format_msg(PtbData::load(&dir));
    assert_contains(&msg, &["ptb.test.txt", "1 word", "vocabulary"]);
    std::fs::remove_dir_all(&dir).unwrap();

    // Each file empty, blank, not UTF-8, missing, or a folder.
    for (which, name) in [
        (0, "ptb.train.txt"),
        (1, "ptb.valid.txt"),
        (2, "ptb.test.txt"),
    ] {
        let mut texts: [&[u8]; 3] = [b" a b \n", b" a \n", b" b \n"];
        // Empty.
        texts[which] = b"";
        let dir = ptb_dir("empty", texts[0], texts[1], texts[2]);
        let msg = format_msg(PtbData::load(&dir));
        assert_contains(&msg, &[name, "no words"]);
        // Only whitespace.
        std::fs::write(dir.join(name), " \n\t\n").unwrap();
        let msg = format_msg(PtbData::load(&dir));
        assert_contains(&msg, &[name, "no words"]);
        // Not UTF-8, at byte 3.
        std::fs::write(dir.join(name), b" a \xc3\x28 \n").unwrap();
        let msg = format_msg(PtbData::load(&dir));
        assert_contains(&msg, &[name, "UTF-8", "byte 3"]);
        // Missing.
        std::fs::remove_file(dir.join(name)).unwrap();
        match PtbData::load(&dir) {
            Err(Error::Io(m)) => assert_contains(&m, &[&dir.join(name).display().to_string()]),
            Err(e) => panic!("expected an Io error, got {e:?}"),
            Ok(_) => panic!("expected an Io error, got Ok"),
        }
        // A folder where the file should be.
        std::fs::create_dir(dir.join(name)).unwrap();
        match PtbData::load(&dir) {
            Err(Error::Io(m)) => assert_contains(&m, &[name]),
            Err(e) => panic!("expected an Io error, got {e:?}"),
            Ok(_) => panic!("expected an Io error, got Ok"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

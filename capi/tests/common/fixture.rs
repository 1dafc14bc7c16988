//! The expectations the C test checks: cases of weights (as named tensors in each of the
//! four conventions), inputs and what the Rust API computes from them, written to one
//! little-endian binary file that `tests/c/test_capi.c` reads. The C test must reproduce
//! every output, state and gradient bit for bit through the C ABI.
//!
//! Format (`u64` counts and sizes; `floats` = `u64` count then `f32`s; `str` = `u64`
//! length then bytes): "LSTMFIX1", `u64` cases, then per case: `str` name; the
//! descriptor (`u64` input size, `u64` layers, `u64` hidden sizes, `u64` projections (0 =
//! none), `f32` forget bias, `u32` peepholes, `f32` cell clip, `f32` proj clip, `u32`
//! bidirectional, `u32` time major); `i32` convention; `u64` tensors, each `str` name,
//! `u64` ndim, `u64` dims, `floats` data; `u64` batch, `u64` steps; `u64` count then
//! `i32` lengths (0: none); `floats` initial state (empty: zeros); `floats` output and
//! final state; `floats` output and final state of a second pass carrying the state;
//! `u32` training, and when 1: `i32` gradient convention, `floats` upstream output and
//! final state (empty: absent), `floats` input and initial-state gradients, `u64` named
//! gradients, each `str` name and `floats` data.

use lstm_kernels::{
    ForwardInput, Gradients, InitialState, Lstm, LstmSpec, LstmState, LstmWeights, SplitMix64,
    Tensors, Upstream, Workspace,
};

const TENSORFLOW: i32 = 0;
const PYTORCH: i32 = 1;
const KERAS: i32 = 2;
const ONNX: i32 = 3;

/// One case: a stack, its weights in one convention, an input, and which gradients.
#[derive(Clone)]
struct Case {
    name: &'static str,
    input_size: usize,
    hidden: Vec<usize>,
    proj: Vec<usize>,
    forget_bias: f32,
    peepholes: bool,
    cell_clip: f32,
    bidirectional: bool,
    time_major: bool,
    convention: i32,
    batch: usize,
    steps: usize,
    lengths: Option<Vec<i32>>,
    given_state: bool,
    /// The convention of the exported weight gradients; `None`: no training.
    grads: Option<i32>,
    upstream_output: bool,
    upstream_state: bool,
}

impl Case {
    fn spec(&self) -> LstmSpec {
        let proj: Vec<Option<usize>> = self.proj.iter().map(|&p| (p > 0).then_some(p)).collect();
        let mut b = LstmSpec::builder(self.input_size, &self.hidden)
            .proj_sizes(&proj)
            .forget_bias(self.forget_bias)
            .peepholes(self.peepholes)
            .bidirectional(self.bidirectional)
            .time_major(self.time_major);
        if self.cell_clip > 0.0 {
            b = b.cell_clip(self.cell_clip);
        }
        b.build().expect("the fixture's specs are valid")
    }
}

fn cases() -> Vec<Case> {
    let base = Case {
        // The seed's Penn Treebank stack: 200 -> 256 -> 128, forget_bias 0.
        name: "tensorflow_seed_stack",
        input_size: 200,
        hidden: vec![256, 128],
        proj: vec![0, 0],
        forget_bias: 0.0,
        peepholes: false,
        cell_clip: 0.0,
        bidirectional: false,
        time_major: false,
        convention: TENSORFLOW,
        batch: 3,
        steps: 5,
        lengths: Some(vec![5, 2, 0]),
        given_state: false,
        grads: Some(TENSORFLOW),
        upstream_output: true,
        upstream_state: true,
    };
    vec![
        Case {
            name: "keras_seed_stack_given_state",
            convention: KERAS,
            lengths: Some(vec![1, 5, 3]),
            given_state: true,
            grads: None,
            ..base.clone()
        },
        Case {
            name: "onnx_bidirectional_peepholes_time_major",
            input_size: 7,
            hidden: vec![6, 5],
            proj: vec![0, 0],
            peepholes: true,
            cell_clip: 0.7,
            bidirectional: true,
            time_major: true,
            convention: ONNX,
            batch: 3,
            steps: 4,
            lengths: Some(vec![3, 0, 4]),
            given_state: true,
            grads: Some(TENSORFLOW),
            upstream_state: false,
            ..base.clone()
        },
        Case {
            name: "pytorch_bidirectional_projection",
            input_size: 5,
            hidden: vec![6, 4],
            proj: vec![3, 0],
            bidirectional: true,
            convention: PYTORCH,
            batch: 2,
            steps: 3,
            lengths: None,
            grads: Some(PYTORCH),
            upstream_output: false,
            ..base.clone()
        },
        base,
    ]
}

/// `canonical` (i, j, f, o blocks of `h` along the last of `rows x 4h`) with its gate
/// blocks put in `order` (for each output block, the canonical gate it holds), as
/// `[rows, 4h]` or, `transposed`, `[4h, rows]`.
fn reorder(
    canonical: &[f32],
    rows: usize,
    h: usize,
    order: [usize; 4],
    transposed: bool,
) -> Vec<f32> {
    let n = 4 * h;
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        for (blk, &g) in order.iter().enumerate() {
            for u in 0..h {
                let v = canonical[r * n + g * h + u];
                if transposed {
                    out[(blk * h + u) * rows + r] = v;
                } else {
                    out[r * n + blk * h + u] = v;
                }
            }
        }
    }
    out
}

/// The weights as the case's convention names them.
fn tensors(case: &Case, spec: &LstmSpec, w: &LstmWeights) -> Tensors {
    match case.convention {
        TENSORFLOW => w.to_tensorflow(),
        PYTORCH => w.to_pytorch().expect("PyTorch expresses the case"),
        KERAS => {
            let mut t = Tensors::new();
            for k in 0..spec.num_cells() {
                let c = w.cell(k);
                let layer = spec.layers()[spec.cell_layer(k)];
                let (h, inp) = (layer.hidden_size, spec.layer_input_size(spec.cell_layer(k)));
                // Keras: i, f, c, o.
                let order = [0, 2, 1, 3];
                let put = |t: &mut Tensors, what: &str, shape: &[usize], v: Vec<f32>| {
                    t.insert_f32(&format!("layers/{k}/{what}"), shape, v)
                        .unwrap();
                };
                put(
                    &mut t,
                    "kernel",
                    &[inp, 4 * h],
                    reorder(c.input_weights(), inp, h, order, false),
                );
                put(
                    &mut t,
                    "recurrent_kernel",
                    &[h, 4 * h],
                    reorder(c.recurrent_weights(), h, h, order, false),
                );
                put(
                    &mut t,
                    "bias",
                    &[4 * h],
                    reorder(c.bias(), 1, h, order, false),
                );
            }
            t
        }
        ONNX => {
            let mut t = Tensors::new();
            let d = spec.num_directions();
            for l in 0..spec.num_layers() {
                let (h, inp) = (spec.layers()[l].hidden_size, spec.layer_input_size(l));
                // ONNX: i, o, f, c, each gate's rows output-major.
                let order = [0, 3, 2, 1];
                let (mut wx, mut wr, mut b, mut p) = (vec![], vec![], vec![], vec![]);
                for dir in 0..d {
                    let c = w.cell(l * d + dir);
                    wx.extend(reorder(c.input_weights(), inp, h, order, true));
                    wr.extend(reorder(c.recurrent_weights(), h, h, order, true));
                    b.extend(reorder(c.bias(), 1, h, order, false));
                    b.extend(vec![0.0; 4 * h]);
                    let [wi, wf, wo] = c.peepholes().expect("the ONNX case has peepholes");
                    p.extend(wi.iter().chain(wo).chain(wf));
                }
                t.insert_f32(&format!("layers/{l}/W"), &[d, 4 * h, inp], wx)
                    .unwrap();
                t.insert_f32(&format!("layers/{l}/R"), &[d, 4 * h, h], wr)
                    .unwrap();
                t.insert_f32(&format!("layers/{l}/B"), &[d, 8 * h], b)
                    .unwrap();
                t.insert_f32(&format!("layers/{l}/P"), &[d, 3 * h], p)
                    .unwrap();
            }
            t
        }
        _ => unreachable!(),
    }
}

/// The little-endian writer of the format above.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u32(&mut self, v: u32) {
        self.0.extend(v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend(v.to_le_bytes());
    }
    fn u64(&mut self, v: usize) {
        self.0.extend((v as u64).to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend(v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len());
        self.0.extend(s.as_bytes());
    }
    fn floats(&mut self, v: &[f32]) {
        self.u64(v.len());
        v.iter().for_each(|&x| self.f32(x));
    }
}

/// A state packed as the C API lays it out: per cell `c` then `h`.
fn packed(s: &LstmState) -> Vec<f32> {
    s.cells
        .iter()
        .flat_map(|c| c.c.iter().chain(&c.h))
        .copied()
        .collect()
}

fn write_case(out: &mut Out, case: &Case, seed: u64) {
    let spec = case.spec();
    let weights = LstmWeights::random_uniform(&spec, 0.1, seed);
    let mut rng = SplitMix64::new(seed + 1000);
    out.str(case.name);
    out.u64(case.input_size);
    out.u64(case.hidden.len());
    case.hidden.iter().for_each(|&h| out.u64(h));
    case.proj.iter().for_each(|&p| out.u64(p));
    out.f32(case.forget_bias);
    out.u32(case.peepholes.into());
    out.f32(if case.cell_clip > 0.0 {
        case.cell_clip
    } else {
        f32::NAN
    });
    out.f32(0.0);
    out.u32(case.bidirectional.into());
    out.u32(case.time_major.into());
    out.i32(case.convention);
    let t = tensors(case, &spec, &weights);
    // The tensors must give back the same weights, or the bits below mean nothing.
    let conv = [
        lstm_kernels::Convention::TensorFlow,
        lstm_kernels::Convention::PyTorch,
        lstm_kernels::Convention::Keras,
        lstm_kernels::Convention::Onnx,
    ][case.convention as usize];
    assert_eq!(
        LstmWeights::from_tensors(&spec, &t, conv).unwrap(),
        weights,
        "{}",
        case.name
    );
    out.u64(t.names().count());
    for name in t.names() {
        let (shape, data) = t.f32(name).unwrap();
        out.str(name);
        out.u64(shape.len());
        shape.iter().for_each(|&d| out.u64(d));
        out.floats(data);
    }

    let (b, steps) = (case.batch, case.steps);
    out.u64(b);
    out.u64(steps);
    let lengths = case.lengths.clone().unwrap_or_default();
    out.u64(lengths.len());
    lengths.iter().for_each(|&l| out.i32(l));
    let input = rng.uniform_vec(b * steps * spec.input_size(), -1.0, 1.0);
    let state = case.given_state.then(|| {
        let mut s = LstmState::zeros(&spec, b);
        for cell in &mut s.cells {
            cell.c = rng.uniform_vec(cell.c.len(), -0.5, 0.5);
            cell.h = rng.uniform_vec(cell.h.len(), -0.5, 0.5);
        }
        s
    });
    out.floats(&state.as_ref().map(packed).unwrap_or_default());

    let lstm = Lstm::new(weights).unwrap();
    let mut fi = ForwardInput::new(&input, b, steps);
    if let Some(l) = &case.lengths {
        fi = fi.sequence_length(l);
    }
    if let Some(s) = &state {
        fi = fi.initial_state(InitialState::Given(s));
    }
    let mut ws = Workspace::new(&spec, b, steps);
    lstm.forward_inference(&fi, &mut ws).unwrap();
    out.floats(&input);
    out.floats(ws.output());
    out.floats(&packed(ws.final_state()));
    let carry = fi.initial_state(InitialState::Carry);
    lstm.forward_inference(&carry, &mut ws).unwrap();
    out.floats(ws.output());
    out.floats(&packed(ws.final_state()));

    let Some(grad_conv) = case.grads else {
        out.u32(0);
        return;
    };
    out.u32(1);
    out.i32(grad_conv);
    let mut reserve = lstm.reserve(b, steps);
    lstm.forward_training(&fi, &mut ws, &mut reserve).unwrap();
    let g_out = case
        .upstream_output
        .then(|| rng.uniform_vec(b * steps * spec.output_size(), -1.0, 1.0));
    let g_state = case.upstream_state.then(|| {
        let mut s = LstmState::zeros(&spec, b);
        for cell in &mut s.cells {
            cell.c = rng.uniform_vec(cell.c.len(), -1.0, 1.0);
            cell.h = rng.uniform_vec(cell.h.len(), -1.0, 1.0);
        }
        s
    });
    out.floats(g_out.as_deref().unwrap_or_default());
    out.floats(&g_state.as_ref().map(packed).unwrap_or_default());
    let mut grads = Gradients::zeros(&spec, b, steps);
    let upstream = Upstream {
        output: g_out.as_deref(),
        final_state: g_state.as_ref(),
    };
    lstm.backward(&fi, &reserve, &upstream, &mut ws, &mut grads)
        .unwrap();
    out.floats(&grads.input);
    out.floats(&packed(&grads.initial_state));
    let named = if grad_conv == PYTORCH {
        grads.to_pytorch().unwrap()
    } else {
        grads.to_tensorflow()
    };
    out.u64(named.names().count());
    for name in named.names() {
        out.str(name);
        out.floats(named.f32(name).unwrap().1);
    }
}

/// Writes the fixture to `path`, and the last case's weights (the seed's stack, in
/// TensorFlow's names) as a `.safetensors` file to `safetensors`.
pub fn write(path: &std::path::Path, safetensors: &std::path::Path) {
    let cases = cases();
    let mut out = Out::default();
    out.0.extend(b"LSTMFIX1");
    out.u64(cases.len());
    for (i, case) in cases.iter().enumerate() {
        write_case(&mut out, case, 42 + i as u64);
    }
    std::fs::write(path, &out.0).expect("write the fixture");
    let last = cases.last().expect("cases");
    let w = LstmWeights::random_uniform(&last.spec(), 0.1, 42 + cases.len() as u64 - 1);
    w.to_tensorflow()
        .save(safetensors)
        .expect("write the safetensors file");
}

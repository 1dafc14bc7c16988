//! `api`: the public forward and backward entry points on a typed case ([`ApiCase`],
//! read from the input with `arbitrary`): a spec of small sizes with every cell option,
//! any batch and step counts (huge ones included, and ones whose product with the input
//! size wraps around to the data's length), input data of a length that may or may not
//! match, sequence lengths of any length and values, initial states of any shapes,
//! `InitialState::Carry` with or without a previous pass, 1 to 3 threads, a forced ISA
//! and forced plans; then a sequence of calls: `forward_inference`, `forward_training`,
//! `backward` (upstream gradients of any shapes), `sgd_step`, `reference::forward`,
//! `reference::gradients`. Any `Err` is fine; a panic, an abort or a hang is a finding.
//!
//! No buffer is ever allocated from a fuzzed size without a cap: a length that would
//! need more than [`MAX_ELEMS`] elements is given as a short buffer instead, which the
//! library must refuse.

use arbitrary::{Arbitrary, Unstructured};
use lstm_kernels::{
    reference, CellState, ForwardInput, Gradients, InitialState, Lstm, LstmOptions, LstmSpec,
    LstmState, LstmWeights, Planning, TrainReserve, Upstream, Workspace,
};

use super::isa;
use crate::rng::Rng;
use crate::values::{self, wrap_to};
use crate::Corpus;

/// The most elements of a buffer built from a fuzzed length.
pub const MAX_ELEMS: usize = 1 << 16;
/// The most rows (`B * T`) for which the f64 reference backward runs.
pub const MAX_REFERENCE_ROWS: usize = 64;

/// A size: small, from the interesting list, the one that makes `B * T * I` wrap to a
/// small number, or any.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Size {
    /// `0..=8`.
    Small(u8),
    /// [`values::SIZES`].
    Edge(u8),
    /// The size that makes the product with the other size and the input size wrap to
    /// `n % 17` (when there is one).
    WrapTo(u8),
    /// Any.
    Any(u64),
}

/// The length of a buffer, relative to what it should be.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Len {
    /// The product the library expects (computed wrapping, as an unchecked check would).
    Exact,
    /// That product plus a small signed delta.
    Delta(i8),
    /// A small length.
    Small(u8),
}

/// A sequence length.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SeqLen {
    /// `T`.
    Full,
    /// `T - k`.
    Minus(u8),
    /// `T + k`.
    Plus(u8),
    /// `0..=255`.
    Small(u8),
    /// [`values::INTS`], narrowed.
    Edge(u8),
}

/// The `sequence_length` of a call.
#[derive(Debug, Clone, Arbitrary)]
pub enum Lengths {
    /// None (all `T`).
    None,
    /// `B` entries (when `B` is small enough), cycling through the values.
    PerRow(Vec<SeqLen>),
    /// Exactly these entries, however many.
    Raw(Vec<SeqLen>),
}

/// The shape of a state given as an argument (initial state, upstream gradient).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct StateShape {
    /// Cells added (positive) or left out (negative), usually 0.
    pub cells: i8,
    /// Length deltas of every `c` and `h`.
    pub c: Len,
    /// See `c`.
    pub h: Len,
    /// A fill value index into [`values::FLOATS`].
    pub fill: u8,
}

/// Where a call's state starts.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Init {
    /// `InitialState::Zeros`.
    Zeros,
    /// `InitialState::Carry`.
    Carry,
    /// `InitialState::Given` of this shape.
    Given(StateShape),
}

/// One call on the case's `Lstm`.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// `forward_inference`.
    Inference,
    /// `forward_training` into the reserve.
    Training,
    /// `backward` with upstream gradients of these shapes.
    Backward(Option<Len>, Option<StateShape>),
    /// `reference::forward`.
    Reference,
    /// `reference::gradients`.
    ReferenceGradients(Option<Len>, Option<StateShape>),
    /// `sgd_step` with the gradients and a learning rate from [`values::FLOATS`].
    Sgd(u8),
    /// A fresh workspace sized for `(b % 5, t % 5)`.
    NewWorkspace(u8, u8),
    /// `forward_inference` with a workspace made for another spec.
    ForeignWorkspace,
}

/// One call: what it does, its lengths and where its state starts.
#[derive(Debug, Clone, Arbitrary)]
pub struct Call {
    /// The call.
    pub op: Op,
    /// Its `sequence_length`.
    pub lengths: Lengths,
    /// Its initial state.
    pub init: Init,
}

/// A whole case.
#[derive(Debug, Clone, Arbitrary)]
pub struct ApiCase {
    /// Input size, `% 21` (0 is invalid).
    pub input_size: u8,
    /// Hidden sizes, `% 21`.
    pub hidden: [u8; 3],
    /// Layers, `% 3 + 1`.
    pub layers: u8,
    /// Projections, `% 21`.
    pub proj: [Option<u8>; 3],
    /// Peepholes.
    pub peepholes: bool,
    /// Clips and forget bias: indexes into [`values::FLOATS`].
    pub cell_clip: Option<u8>,
    /// See `cell_clip`.
    pub proj_clip: Option<u8>,
    /// See `cell_clip`.
    pub forget_bias: Option<u8>,
    /// Bidirectional.
    pub bidirectional: bool,
    /// Time-major.
    pub time_major: bool,
    /// Weight seed.
    pub weight_seed: u64,
    /// Weight scale, an index into [`values::FLOATS`] (NaN and infinite weights too).
    pub weight_scale: u8,
    /// `B`.
    pub batch: Size,
    /// `T`.
    pub steps: Size,
    /// The input's length.
    pub data: Len,
    /// The input's value, an index into [`values::FLOATS`].
    pub fill: u8,
    /// Threads, `% 3 + 1`; below 128 every call uses them all (`call_threads`); bit 6
    /// measures the plans (`Planning::Measure`).
    pub threads: u8,
    /// ISA choice (see [`super::isa_choices`]).
    pub isa: u8,
    /// Forced plan choices.
    pub step_projection: Option<bool>,
    /// See `step_projection`.
    pub split_rows: Option<bool>,
    /// Thread pinning.
    pub pin_threads: Option<bool>,
    /// The first workspace's sizes, `% 5`.
    pub ws_batch: u8,
    /// See `ws_batch`.
    pub ws_steps: u8,
    /// The calls, at most 6 run.
    pub calls: Vec<Call>,
}

/// `want` adjusted by `len`; `None` when that is more than [`MAX_ELEMS`] elements.
fn resolve_len(len: Len, want: usize) -> Option<usize> {
    let n = match len {
        Len::Exact => want,
        Len::Delta(d) => want.wrapping_add_signed(d as isize),
        Len::Small(s) => s as usize,
    };
    (n <= MAX_ELEMS).then_some(n)
}

/// A buffer of `len` (or, when that is too long, a short one the library must refuse).
fn buffer(len: Len, want: usize, value: f32) -> Vec<f32> {
    vec![value; resolve_len(len, want).unwrap_or(3)]
}

fn resolve_size(s: Size, other: usize, input: usize) -> usize {
    match s {
        Size::Small(v) => v as usize % 9,
        Size::Edge(i) => values::size(i),
        Size::WrapTo(n) => wrap_to(other.wrapping_mul(input), n as usize % 17).unwrap_or(1),
        Size::Any(v) => v as usize,
    }
}

fn seq_value(v: SeqLen, steps: usize) -> i32 {
    match v {
        SeqLen::Full => steps as i32,
        SeqLen::Minus(k) => steps.wrapping_sub(k as usize) as i32,
        SeqLen::Plus(k) => steps.wrapping_add(k as usize) as i32,
        SeqLen::Small(k) => k as i32,
        SeqLen::Edge(i) => values::INTS[i as usize % values::INTS.len()] as i32,
    }
}

fn lengths(l: &Lengths, batch: usize, steps: usize) -> Option<Vec<i32>> {
    match l {
        Lengths::None => None,
        Lengths::PerRow(v) => {
            let n = if batch <= MAX_ELEMS { batch } else { 2 };
            let v = if v.is_empty() { &[SeqLen::Full][..] } else { v };
            Some((0..n).map(|i| seq_value(v[i % v.len()], steps)).collect())
        }
        Lengths::Raw(v) => Some(v.iter().map(|&x| seq_value(x, steps)).collect()),
    }
}

fn state(spec: &LstmSpec, batch: usize, shape: StateShape) -> LstmState {
    let cells = spec
        .num_cells()
        .saturating_add_signed(shape.cells as isize % 3);
    let value = values::float(shape.fill);
    LstmState {
        cells: (0..cells)
            .map(|k| {
                let layer = spec.layers()[spec.cell_layer(k).min(spec.num_layers() - 1)];
                CellState {
                    c: buffer(shape.c, batch.wrapping_mul(layer.hidden_size), value),
                    h: buffer(shape.h, batch.wrapping_mul(layer.output_size()), value),
                }
            })
            .collect(),
    }
}

fn build_spec(c: &ApiCase) -> lstm_kernels::Result<LstmSpec> {
    let n = (c.layers % 3 + 1) as usize;
    let hidden: Vec<usize> = c.hidden[..n].iter().map(|&h| h as usize % 21).collect();
    let proj: Vec<Option<usize>> = c.proj[..n]
        .iter()
        .map(|p| p.map(|p| p as usize % 21))
        .collect();
    let mut b = LstmSpec::builder(c.input_size as usize % 21, &hidden)
        .peepholes(c.peepholes)
        .bidirectional(c.bidirectional)
        .time_major(c.time_major)
        .proj_sizes(&proj);
    if let Some(v) = c.cell_clip {
        b = b.cell_clip(values::float(v));
    }
    if let Some(v) = c.proj_clip {
        b = b.proj_clip(values::float(v));
    }
    if let Some(v) = c.forget_bias {
        b = b.forget_bias(values::float(v));
    }
    b.build()
}

/// Runs one input: reads an [`ApiCase`] and runs it.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(case) = ApiCase::arbitrary(&mut u) {
        run_case(&case);
    }
}

/// Runs a case (see the module's doc): whether each call that ran returned `Ok`.
pub fn run_case(c: &ApiCase) -> Vec<bool> {
    let mut results = Vec::new();
    let Ok(spec) = build_spec(c) else {
        return results;
    };
    let i = spec.input_size();
    let batch = resolve_size(c.batch, 1, i);
    let steps = resolve_size(c.steps, batch, i);
    let batch = match c.batch {
        Size::WrapTo(_) => resolve_size(c.batch, steps, i),
        _ => batch,
    };
    let rows = batch.checked_mul(steps);
    let x = buffer(
        c.data,
        batch.wrapping_mul(steps).wrapping_mul(i),
        values::float(c.fill),
    );

    let weights = LstmWeights::random_uniform(&spec, values::float(c.weight_scale), c.weight_seed);
    let options = LstmOptions {
        isa: isa(c.isa),
        threads: Some(c.threads as usize % 3 + 1),
        // Mostly every call on all of them (small cases then run the thread splits), and
        // with the high bit set the planner's choice.
        call_threads: (c.threads < 128).then_some(c.threads as usize % 3 + 1),
        // Bit 6: time the candidate plans on the first call of each shape.
        planning: if c.threads & 64 != 0 {
            Planning::Measure
        } else {
            Planning::Heuristic
        },
        step_projection: c.step_projection,
        split_rows: c.split_rows,
        // From the weights' seed, so that the corpus's inputs decode as before.
        split_directions: [None, Some(false), Some(true)][(c.weight_seed % 3) as usize],
        pin_threads: c.pin_threads,
    };
    let Ok(mut lstm) = Lstm::with_options(weights, options) else {
        return results;
    };
    let mut ws = Workspace::new(&spec, c.ws_batch as usize % 5, c.ws_steps as usize % 5);
    let mut ref_ws = Workspace::new(&spec, 1, 1);
    // Sized from the fuzzed B and T only when that is small; otherwise they start small
    // (wrong), as a caller's may, and the library must refuse or grow them.
    let small = rows.is_some_and(|r| r <= 4096);
    let mut reserve = if small {
        lstm.reserve(batch, steps)
    } else {
        TrainReserve::default()
    };
    let mut grads = if small {
        Gradients::zeros(&spec, batch, steps)
    } else {
        Gradients::zeros(&spec, 1, 1)
    };
    let out_len = batch.wrapping_mul(steps).wrapping_mul(spec.output_size());

    for call in c.calls.iter().take(6) {
        let lens = lengths(&call.lengths, batch, steps);
        let given = match call.init {
            Init::Given(shape) => Some(state(&spec, batch, shape)),
            _ => None,
        };
        let mut input = ForwardInput::new(&x, batch, steps);
        if let Some(l) = &lens {
            input = input.sequence_length(l);
        }
        input = input.initial_state(match (&call.init, &given) {
            (Init::Carry, _) => InitialState::Carry,
            (_, Some(s)) => InitialState::Given(s),
            _ => InitialState::Zeros,
        });
        match &call.op {
            Op::Inference => {
                results.push(lstm.forward_inference(&input, &mut ws).is_ok());
            }
            Op::Training => {
                results.push(lstm.forward_training(&input, &mut ws, &mut reserve).is_ok());
            }
            Op::Backward(g_out, g_state) => {
                let g_out = g_out.map(|l| buffer(l, out_len, 0.5));
                let g_state = g_state.map(|s| state(&spec, batch, s));
                let upstream = Upstream {
                    output: g_out.as_deref(),
                    final_state: g_state.as_ref(),
                };
                results.push(
                    lstm.backward(&input, &reserve, &upstream, &mut ws, &mut grads)
                        .is_ok(),
                );
            }
            Op::Reference => {
                results.push(reference::forward(lstm.weights(), &input, &mut ref_ws).is_ok());
            }
            Op::ReferenceGradients(g_out, g_state) => {
                // The f64 oracle is slow: small batches only, and any whose B * T
                // overflows (which must be refused before anything runs).
                if rows.is_none_or(|r| r <= MAX_REFERENCE_ROWS) {
                    let g_out = g_out.map(|l| buffer(l, out_len, 0.5));
                    let g_state = g_state.map(|s| state(&spec, batch, s));
                    let upstream = Upstream {
                        output: g_out.as_deref(),
                        final_state: g_state.as_ref(),
                    };
                    results.push(reference::gradients(lstm.weights(), &input, &upstream).is_ok());
                }
            }
            Op::Sgd(lr) => {
                results.push(lstm.sgd_step(&grads.weights, values::float(*lr)).is_ok());
            }
            Op::NewWorkspace(b, t) => {
                ws = Workspace::new(&spec, *b as usize % 5, *t as usize % 5);
            }
            Op::ForeignWorkspace => {
                let other = LstmSpec::builder(i + 1, &[3])
                    .build()
                    .expect("a valid spec");
                let mut foreign = Workspace::new(&other, 1, 1);
                results.push(lstm.forward_inference(&input, &mut foreign).is_ok());
            }
        }
    }
    results
}

/// Makes one input: random bytes, which `arbitrary` reads as a case.
pub fn generate(rng: &mut Rng, _corpus: &Corpus, max_len: usize) -> Vec<u8> {
    let n = rng.range(16, 256).min(max_len);
    rng.bytes(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(batch: Size, steps: Size, calls: Vec<Call>) -> ApiCase {
        ApiCase {
            input_size: 4,
            hidden: [4, 4, 4],
            layers: 0,
            proj: [None; 3],
            peepholes: false,
            cell_clip: None,
            proj_clip: None,
            forget_bias: None,
            bidirectional: false,
            time_major: false,
            weight_seed: 1,
            weight_scale: 4,
            batch,
            steps,
            data: Len::Exact,
            fill: 4,
            threads: 0,
            isa: 0,
            step_projection: None,
            split_rows: None,
            pin_threads: Some(false),
            ws_batch: 1,
            ws_steps: 1,
            calls,
        }
    }

    #[test]
    fn wrap_to_reaches_the_known_wrapping_shape() {
        // B = 1 and T = WrapTo(4) with I = 4: B * T * I wraps to 4, the data's length.
        let c = case(Size::Small(1), Size::WrapTo(4), vec![]);
        let spec = build_spec(&c).unwrap();
        let t = resolve_size(c.steps, 1, spec.input_size());
        assert!(t > u32::MAX as usize);
        assert_eq!(t.wrapping_mul(4), 4);
        assert_eq!(resolve_len(Len::Exact, t.wrapping_mul(4)), Some(4));
    }

    #[test]
    fn valid_cases_run_every_call() {
        let call = |op| Call {
            op,
            lengths: Lengths::PerRow(vec![SeqLen::Full, SeqLen::Small(1)]),
            init: Init::Zeros,
        };
        let calls = vec![
            call(Op::Inference),
            call(Op::Training),
            call(Op::Backward(Some(Len::Exact), None)),
            call(Op::Reference),
            call(Op::ReferenceGradients(Some(Len::Exact), None)),
            call(Op::Sgd(4)),
        ];
        let ok = run_case(&case(Size::Small(2), Size::Small(3), calls));
        assert_eq!(ok, vec![true; 6], "a valid call failed");
    }

    #[test]
    fn random_bytes_make_cases() {
        let mut rng = Rng::new(3);
        let made = (0..100)
            .filter(|_| {
                let d = generate(&mut rng, &Corpus::default(), 4096);
                ApiCase::arbitrary(&mut Unstructured::new(&d)).is_ok()
            })
            .count();
        assert!(made > 90, "{made}");
    }
}

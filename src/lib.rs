//! Fast, exact CPU LSTM kernels with TensorFlow's and PyTorch's semantics.
//!
//! `lstm-kernels` runs stacks of LSTM layers (TensorFlow `BasicLSTMCell` / `LSTMCell`
//! with peepholes, cell clipping and projection, or PyTorch `nn.LSTM`, bidirectional
//! included) over batch-major or time-major input with per-sequence lengths, as
//! `tf.compat.v1.nn.dynamic_rnn` does: outputs past a sequence's length are zero and its
//! final state is the state at its last real step.
//!
//! The pieces, oneDNN-style:
//! - [`LstmSpec`], the descriptor: sizes and cell options, validated once;
//! - [`LstmWeights`], in the crate's own layout, imported from (and exported to)
//!   TensorFlow, PyTorch, Keras and ONNX conventions, from slices or `.safetensors` files;
//! - [`Lstm`], the weights repacked once for the CPU's best SIMD kernels (AVX-512,
//!   AVX2+FMA, NEON or scalar, chosen at run time; `LSTM_KERNELS_ISA` forces one) and a
//!   thread count; results are bitwise identical whatever the thread count;
//! - [`Workspace`], every buffer a pass needs, owned by the caller so the hot loop does not
//!   allocate; it holds the output and the final state after a pass.
//!
//! [`reference::forward`] is the plain scalar implementation of the same contract, kept as
//! the oracle every fast path is tested against, and [`reference::gradients`] the f64
//! backward every gradient is tested against.
//!
//! # Bad input
//! - **Shapes and sizes.** Every caller-given size, length and tensor shape is checked
//!   before anything is sized or read; a mismatch is an [`Error`] naming the tensor, the
//!   expected and the actual shape (or the field), never a panic, a silent truncation or
//!   an out-of-bounds access. Sizes are multiplied with checked arithmetic: a spec, a
//!   batch or a file whose buffers would not fit in memory (their byte counts overflow
//!   `isize`) is an error too.
//! - **Memory.** Sizes that fit can still ask for more memory than the machine has. The
//!   buffers a pass sizes from its batch and lengths (outputs, state, scratch, the
//!   training reserve, gradients) and the packed weights are allocated fallibly: a
//!   refusal is [`Error::OutOfMemory`] naming the buffer, nothing has run, and the
//!   workspace and reserve stay usable (with no state to carry and no pass to
//!   differentiate). The constructors that only size buffers ahead ([`Workspace::new`],
//!   [`Lstm::reserve`], [`Gradients::zeros`]) take their sizes as a hint and never fail:
//!   a hint that cannot exist or be allocated leaves them empty, and the pass that uses
//!   them checks its own. [`LstmState::try_zeros`] is the fallible state constructor;
//!   `LstmState::zeros` and the language model's workspaces, which a caller sizes on
//!   purpose, panic (documented) when `batch` times a width overflows `usize`, as `vec!`
//!   would. The f64 oracle [`reference::gradients`] allocates as `Vec` does (an oracle
//!   for test-sized problems).
//! - **Non-finite values.** A NaN or an infinity in a sequence's input or initial state
//!   poisons only that sequence: every other sequence's outputs, final state and input
//!   gradient are the bits they are without it, outputs past each length stay `+0.0`,
//!   and nothing panics, on every ISA and thread count. Non-finite weights reach every
//!   sequence (they are everyone's), with the same guarantees otherwise. The crate does
//!   not scan for non-finite values: it costs a pass over the data, and NaN propagation
//!   already marks what it touched.
//!
//! The crate's layers (`ARCHITECTURE.md` has the map): `model` (what an LSTM is) <-
//! `engine` (how it runs) <- `api` (what a user holds) <- the oracles, the language
//! model, the golden checker and the benchmark suite.
//!
//! # Example
//! A two-layer stack of widths 256 and 128, as in the classic Penn Treebank model, over a
//! batch of three sequences of lengths 5, 2 and 0:
//! ```
//! use lstm_kernels::{ForwardInput, InitialState, Lstm, LstmSpec, LstmWeights, Workspace};
//!
//! let spec = LstmSpec::builder(200, &[256, 128]).forget_bias(0.0).build()?;
//! let lstm = Lstm::new(LstmWeights::random_uniform(&spec, 0.1, 42))?;
//! let (batch, steps) = (3, 5);
//! let input = vec![0.5_f32; batch * steps * 200];
//! let lengths = [5, 2, 0];
//!
//! let mut ws = Workspace::new(&spec, batch, steps);
//! lstm.forward_inference(&ForwardInput::new(&input, batch, steps).sequence_length(&lengths), &mut ws)?;
//! assert_eq!(ws.output().len(), batch * steps * 128);
//! // Past its length a sequence's output is zero; a length-0 sequence keeps its initial state.
//! assert!(ws.output()[(1 * steps + 2) * 128..(1 * steps + 3) * 128].iter().all(|&v| v == 0.0));
//! assert!(ws.final_state().cells[1].h[2 * 128..].iter().all(|&v| v == 0.0));
//!
//! // Carry the state into the next call, without copying it out.
//! let more = ForwardInput::new(&input, batch, steps).initial_state(InitialState::Carry);
//! lstm.forward_inference(&more, &mut ws)?;
//! # Ok::<(), lstm_kernels::Error>(())
//! ```

#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

mod api;
pub mod bench;
mod engine;
pub mod golden;
pub mod lm;
mod model;
pub mod reference;

pub use api::input::{ForwardInput, InitialState};
pub use api::lstm::Lstm;
pub use api::options::{LstmOptions, Planning};
pub use api::train::{Gradients, TrainReserve, Upstream};
pub use api::workspace::Workspace;
pub use lstm_kernels_simd::{available_isas, bounds, cpu_isas, isa_status, Isa, IsaStatus};
pub use model::error::{Error, Result};
pub use model::spec::{LayerSpec, LstmSpec, LstmSpecBuilder};
pub use model::state::{CellState, LstmState};
pub use model::tensors::{Tensor, TensorData, Tensors};
pub use model::weights::{
    CellParams, CellWeights, Convention, GateOrder, Layout, LoadOptions, LstmWeights, Matrix,
    SplitMix64,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

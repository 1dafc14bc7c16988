//! `Lstm`, the Python class over the crate's `Lstm`: its workspace, gradients and spare
//! training reserves live with it, so that repeated calls do not allocate; `Trace`, what a
//! training pass leaves for its backward pass.

use std::sync::atomic::{AtomicU64, Ordering};

use lstm_kernels::{
    ForwardInput, Gradients, InitialState, LoadOptions, Lstm as Core, LstmOptions, LstmSpec,
    LstmState, LstmWeights, TrainReserve, Upstream, Workspace,
};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{contiguous, f32_array, lengths, new_array};
use crate::convert::{
    convention, dict_from_tensors, pairs_from_state, spec, state_from_pairs, tensors_from_dict,
};
use crate::errors::{shape_error, to_py};

/// Identities of `Lstm` objects, so that a trace is differentiated only by the object
/// (and the weights) that recorded it.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A float32 array returned to Python.
type Array<'py> = Bound<'py, PyArrayDyn<f32>>;
/// A state returned to Python: one `(h, c)` pair per cell.
type Pairs<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// An LSTM stack on the crate's kernels, over NumPy float32 arrays.
#[pyclass(module = "lstm_kernels._lstm_kernels")]
pub struct Lstm {
    core: Core,
    ws: Workspace,
    grads: Gradients,
    /// Reserves of differentiated passes, reused by the next training passes.
    spare: Vec<TrainReserve>,
    id: u64,
    /// Bumped by every weight update: a trace from older weights is refused.
    generation: u64,
    allow_missing_bias: bool,
}

/// What `Lstm.forward_training` keeps for `Lstm.backward`: the crate's reserve, the input
/// (referenced, not copied: it must not change before the backward pass) and its lengths.
#[pyclass(module = "lstm_kernels._lstm_kernels")]
pub struct Trace {
    reserve: Option<TrainReserve>,
    input: Py<PyAny>,
    lengths: Option<Vec<i32>>,
    batch: usize,
    steps: usize,
    owner: u64,
    generation: u64,
}

/// `(B, T)` of an input array of `shape` for `spec`, or the crate-style shape error.
fn batch_steps(spec: &LstmSpec, shape: &[usize]) -> PyResult<(usize, usize)> {
    let names = if spec.time_major() {
        "[T, B, I]"
    } else {
        "[B, T, I]"
    };
    match *shape {
        [t, b, _] if spec.time_major() => Ok((b, t)),
        [b, t, _] => Ok((b, t)),
        _ => Err(shape_error("input", names, shape)),
    }
}

impl Lstm {
    fn spec(&self) -> &LstmSpec {
        self.core.weights().spec()
    }

    fn output_shape(&self, batch: usize, steps: usize) -> [usize; 3] {
        let out = self.spec().output_size();
        if self.spec().time_major() {
            [steps, batch, out]
        } else {
            [batch, steps, out]
        }
    }

    fn weights_from(&self, tensors: &Bound<'_, PyDict>, conv: &str) -> PyResult<LstmWeights> {
        let options = LoadOptions {
            allow_missing_bias: self.allow_missing_bias,
        };
        let t = tensors_from_dict(tensors)?;
        LstmWeights::from_tensors_with(self.spec(), &t, convention(conv)?, options).map_err(to_py)
    }

    /// The output and final state of the last pass, copied into new arrays.
    fn results<'py>(
        &self,
        py: Python<'py>,
        batch: usize,
        steps: usize,
    ) -> PyResult<(Array<'py>, Pairs<'py>)> {
        let out = new_array(
            py,
            self.ws.output().to_vec(),
            &self.output_shape(batch, steps),
        )?;
        let state = pairs_from_state(py, self.spec(), self.ws.final_state(), batch)?;
        Ok((out, state))
    }
}

/// The parsed arguments of a forward pass.
struct Args<'py> {
    x: PyReadonlyArrayDyn<'py, f32>,
    batch: usize,
    steps: usize,
    lengths: Option<Vec<i32>>,
    state: Option<LstmState>,
}

impl<'py> Args<'py> {
    fn parse(
        spec: &LstmSpec,
        x: &Bound<'py, PyAny>,
        lens: Option<&Bound<'py, PyAny>>,
        initial_state: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let x = f32_array(x, "input")?;
        let (batch, steps) = batch_steps(spec, x.shape())?;
        let lengths = lens
            .filter(|l| !l.is_none())
            .map(|l| lengths(l, steps))
            .transpose()?;
        let state = match initial_state.filter(|s| !s.is_none()) {
            Some(s) => Some(state_from_pairs(spec, s, batch, "initial_state")?),
            None => None,
        };
        Ok(Args {
            x,
            batch,
            steps,
            lengths,
            state,
        })
    }

    fn input<'a>(&'a self, data: &'a [f32], carry: bool) -> ForwardInput<'a> {
        let mut input = ForwardInput::new(data, self.batch, self.steps);
        if let Some(l) = &self.lengths {
            input = input.sequence_length(l);
        }
        match (&self.state, carry) {
            (Some(s), _) => input.initial_state(InitialState::Given(s)),
            (None, true) => input.initial_state(InitialState::Carry),
            (None, false) => input,
        }
    }
}

#[pymethods]
impl Lstm {
    /// Builds the stack from named weights (a dict of float32 arrays) or a
    /// `.safetensors` file, in `convention` (`pytorch`, `tensorflow`, `keras`, `onnx`).
    #[new]
    #[pyo3(signature = (
        input_size, hidden_sizes, *, weights=None, path=None, convention="pytorch",
        proj_sizes=None, forget_bias=0.0, peepholes=false, cell_clip=None, proj_clip=None,
        bidirectional=false, time_major=false, threads=None, allow_missing_bias=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        input_size: i64,
        hidden_sizes: Vec<i64>,
        weights: Option<&Bound<'_, PyDict>>,
        path: Option<std::path::PathBuf>,
        convention: &str,
        proj_sizes: Option<Vec<Option<i64>>>,
        forget_bias: f32,
        peepholes: bool,
        cell_clip: Option<f32>,
        proj_clip: Option<f32>,
        bidirectional: bool,
        time_major: bool,
        threads: Option<usize>,
        allow_missing_bias: bool,
    ) -> PyResult<Self> {
        let spec = spec(
            input_size,
            &hidden_sizes,
            proj_sizes.as_deref(),
            forget_bias,
            peepholes,
            cell_clip,
            proj_clip,
            bidirectional,
            time_major,
        )?;
        let conv = crate::convert::convention(convention)?;
        let options = LoadOptions { allow_missing_bias };
        let w = match (weights, path) {
            (Some(d), None) => {
                LstmWeights::from_tensors_with(&spec, &tensors_from_dict(d)?, conv, options)
            }
            (None, Some(p)) => LstmWeights::load_safetensors_with(&spec, p, conv, options),
            _ => {
                return Err(PyTypeError::new_err(
                    "Lstm: give exactly one of `weights` (a dict of arrays) and `path` (a .safetensors file)",
                ))
            }
        }
        .map_err(to_py)?;
        let core = Core::with_options(
            w,
            LstmOptions {
                threads,
                ..Default::default()
            },
        )
        .map_err(to_py)?;
        Ok(Lstm {
            ws: Workspace::new(&spec, 0, 0),
            grads: Gradients::zeros(&spec, 0, 0),
            core,
            spare: Vec::new(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            allow_missing_bias,
        })
    }

    /// Runs the stack for inference: `(output, [(h, c) per cell])`. `carry=True` starts
    /// from the final state of this object's previous pass (same batch size).
    #[pyo3(signature = (x, lengths=None, initial_state=None, carry=false))]
    fn forward<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        lengths: Option<&Bound<'py, PyAny>>,
        initial_state: Option<&Bound<'py, PyAny>>,
        carry: bool,
    ) -> PyResult<(Array<'py>, Pairs<'py>)> {
        let args = Args::parse(self.spec(), x, lengths, initial_state)?;
        if carry && args.state.is_some() {
            return Err(PyValueError::new_err(
                "give either initial_state or carry=True, not both",
            ));
        }
        let data = contiguous(&args.x, "input")?;
        let input = args.input(data, carry);
        let (core, ws) = (&self.core, &mut self.ws);
        py.detach(|| core.forward_inference(&input, ws))
            .map_err(to_py)?;
        self.results(py, args.batch, args.steps)
    }

    /// Runs the stack for training: `(output, [(h, c) per cell], trace)`; pass the trace
    /// to `backward`. The input array must not change until then.
    #[pyo3(signature = (x, lengths=None, initial_state=None))]
    fn forward_training<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        lengths: Option<&Bound<'py, PyAny>>,
        initial_state: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Array<'py>, Pairs<'py>, Trace)> {
        let args = Args::parse(self.spec(), x, lengths, initial_state)?;
        let data = contiguous(&args.x, "input")?;
        let input = args.input(data, false);
        let mut reserve = match self.spare.pop() {
            Some(r) => r,
            None => self.core.reserve(args.batch, args.steps),
        };
        let (core, ws) = (&self.core, &mut self.ws);
        let done = py.detach(|| core.forward_training(&input, ws, &mut reserve));
        if let Err(e) = done {
            self.spare.push(reserve);
            return Err(to_py(e));
        }
        let (out, state) = self.results(py, args.batch, args.steps)?;
        let trace = Trace {
            reserve: Some(reserve),
            input: x.clone().unbind(),
            lengths: args.lengths,
            batch: args.batch,
            steps: args.steps,
            owner: self.id,
            generation: self.generation,
        };
        Ok((out, state, trace))
    }

    /// Backward through time for the pass `trace` recorded, given the gradients of the
    /// loss with respect to the output and the final state (either may be `None`):
    /// `(grad_input, [(grad_h0, grad_c0) per cell], {name: weight gradient})`, the weight
    /// gradients under `convention`'s names (`pytorch` or `tensorflow`). A trace is
    /// differentiated once.
    #[pyo3(signature = (trace, grad_output=None, grad_final_state=None, convention="pytorch"))]
    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        trace: &mut Trace,
        grad_output: Option<&Bound<'py, PyAny>>,
        grad_final_state: Option<&Bound<'py, PyAny>>,
        convention: &str,
    ) -> PyResult<(Array<'py>, Pairs<'py>, Bound<'py, PyDict>)> {
        let export_tf = match crate::convert::convention(convention)? {
            lstm_kernels::Convention::PyTorch => false,
            lstm_kernels::Convention::TensorFlow => true,
            _ => {
                return Err(PyValueError::new_err(
                    "gradients are exported under 'pytorch' or 'tensorflow' names",
                ))
            }
        };
        if trace.owner != self.id {
            return Err(PyValueError::new_err(
                "backward: the trace was recorded by another Lstm",
            ));
        }
        if trace.generation != self.generation {
            return Err(PyValueError::new_err(
                "backward: the weights changed since the forward_training pass of this trace",
            ));
        }
        let Some(reserve) = trace.reserve.take() else {
            return Err(PyValueError::new_err(
                "backward: this trace was already differentiated",
            ));
        };
        let result = self.backward_with(py, trace, &reserve, grad_output, grad_final_state);
        match result {
            Ok(()) => self.spare.push(reserve),
            // A failed call (a bad gradient's shape) leaves the trace usable.
            Err(e) => {
                trace.reserve = Some(reserve);
                return Err(e);
            }
        }
        let spec = self.spec();
        let shape: Vec<usize> = if spec.time_major() {
            vec![trace.steps, trace.batch, spec.input_size()]
        } else {
            vec![trace.batch, trace.steps, spec.input_size()]
        };
        let gx = new_array(py, self.grads.input.clone(), &shape)?;
        let g0 = pairs_from_state(py, spec, &self.grads.initial_state, trace.batch)?;
        let gw = if export_tf {
            self.grads.to_tensorflow()
        } else {
            self.grads.to_pytorch().map_err(to_py)?
        };
        Ok((gx, g0, dict_from_tensors(py, &gw)?))
    }

    /// Replaces the weights (an optimizer's step): the same names and shapes as at
    /// construction; the packed buffers are reused.
    #[pyo3(signature = (weights, convention="pytorch"))]
    fn update_weights(&mut self, weights: &Bound<'_, PyDict>, convention: &str) -> PyResult<()> {
        let w = self.weights_from(weights, convention)?;
        self.core
            .update_weights(|old| {
                *old = w;
                Ok(())
            })
            .map_err(to_py)?;
        self.generation += 1;
        Ok(())
    }

    /// The weights under `convention`'s names (`pytorch` or `tensorflow`).
    #[pyo3(signature = (convention="pytorch"))]
    fn weights<'py>(&self, py: Python<'py>, convention: &str) -> PyResult<Bound<'py, PyDict>> {
        let t = match crate::convert::convention(convention)? {
            lstm_kernels::Convention::PyTorch => self.core.weights().to_pytorch().map_err(to_py)?,
            lstm_kernels::Convention::TensorFlow => self.core.weights().to_tensorflow(),
            _ => {
                return Err(PyValueError::new_err(
                    "weights are exported under 'pytorch' or 'tensorflow' names",
                ))
            }
        };
        dict_from_tensors(py, &t)
    }

    /// The instruction set the kernels use (`avx512`, `avx2`, `neon`, `scalar`).
    #[getter]
    fn isa(&self) -> &'static str {
        self.core.isa().name()
    }

    /// The crate's threads for this stack.
    #[getter]
    fn threads(&self) -> usize {
        self.core.threads()
    }

    /// Features per step of the input.
    #[getter]
    fn input_size(&self) -> usize {
        self.spec().input_size()
    }

    /// Features per step of the output (both directions).
    #[getter]
    fn output_size(&self) -> usize {
        self.spec().output_size()
    }

    /// Cells (layers times directions), the length of a state list.
    #[getter]
    fn num_cells(&self) -> usize {
        self.spec().num_cells()
    }

    /// Whether inputs and outputs are `[T, B, F]`.
    #[getter]
    fn time_major(&self) -> bool {
        self.spec().time_major()
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.core)
    }
}

impl Lstm {
    fn backward_with(
        &mut self,
        py: Python<'_>,
        trace: &Trace,
        reserve: &TrainReserve,
        grad_output: Option<&Bound<'_, PyAny>>,
        grad_final_state: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let x = trace.input.bind(py);
        let x = f32_array(x, "input")?;
        let data = contiguous(&x, "input")?;
        let mut input = ForwardInput::new(data, trace.batch, trace.steps);
        if let Some(l) = &trace.lengths {
            input = input.sequence_length(l);
        }
        let g_out = grad_output
            .filter(|g| !g.is_none())
            .map(|g| f32_array(g, "grad_output"))
            .transpose()?;
        let want = self.output_shape(trace.batch, trace.steps);
        if let Some(g) = &g_out {
            if g.shape() != want {
                return Err(shape_error("grad_output", &format!("{want:?}"), g.shape()));
            }
        }
        let g_out = g_out
            .as_ref()
            .map(|g| contiguous(g, "grad_output"))
            .transpose()?;
        let g_state = grad_final_state
            .filter(|g| !g.is_none())
            .map(|g| state_from_pairs(self.spec(), g, trace.batch, "grad_final_state"))
            .transpose()?;
        let upstream = Upstream {
            output: g_out,
            final_state: g_state.as_ref(),
        };
        let (core, ws, grads) = (&self.core, &mut self.ws, &mut self.grads);
        py.detach(|| core.backward(&input, reserve, &upstream, ws, grads))
            .map_err(to_py)
    }
}

"""The NumPy-facing LSTM: friendly constructors over the native ``Lstm``."""
import math

import numpy as np

from ._lstm_kernels import Lstm as _Core

_DEFAULT_THREADS = None

_TF_NAMES = ("tensorflow", "tf")


def set_default_threads(n):
    """Threads of the crate for stacks built from now on (``None``: every core). Each
    stack has its own pool: two processes on two cores want 1 each."""
    global _DEFAULT_THREADS
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a positive int or None, got {n!r}")
    _DEFAULT_THREADS = n


def get_default_threads():
    return _DEFAULT_THREADS


def _per_layer(value, num_layers, name):
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ValueError(f"{name} has {len(value)} entries, expected one per layer ({num_layers})")
        return list(value)
    return [value] * num_layers


def as_numpy_weights(weights):
    """A dict of name -> float32 array from a state dict of arrays or torch tensors (a
    torch tensor is read through ``.detach().cpu().numpy()``: no copy on the CPU)."""
    if not hasattr(weights, "items"):
        raise TypeError(f"weights must be a dict of name -> array, got {type(weights).__name__}")
    out = {}
    for name, value in weights.items():
        if hasattr(value, "detach") and hasattr(value, "numpy"):
            value = value.detach().cpu().numpy()
        out[name] = value
    return out


def pytorch_init(input_size, hidden_sizes, proj_sizes, bidirectional, bias=True, seed=0):
    """Weights under nn.LSTM's names, uniform in +-1/sqrt(H) as nn.LSTM initialises them."""
    rng = np.random.default_rng(seed)
    out = {}
    layer_in = input_size
    for layer, (h, p) in enumerate(zip(hidden_sizes, proj_sizes)):
        r = p or h
        k = 1.0 / math.sqrt(h)
        for suffix in ["", "_reverse"][: 2 if bidirectional else 1]:
            def u(*shape):
                return rng.uniform(-k, k, size=shape).astype(np.float32)
            out[f"weight_ih_l{layer}{suffix}"] = u(4 * h, layer_in)
            out[f"weight_hh_l{layer}{suffix}"] = u(4 * h, r)
            if bias:
                out[f"bias_ih_l{layer}{suffix}"] = u(4 * h)
                out[f"bias_hh_l{layer}{suffix}"] = u(4 * h)
            if p:
                out[f"weight_hr_l{layer}{suffix}"] = u(p, h)
        layer_in = r * (2 if bidirectional else 1)
    return out


class LSTM:
    """An LSTM stack on the crate's kernels, over NumPy float32 arrays.

    ``hidden_size`` and ``proj_size`` are an int (every layer) or one entry per layer.
    Weights come from ``weights`` (a dict, e.g. an ``nn.LSTM`` state dict: arrays or
    tensors) or ``path`` (a ``.safetensors`` file), named in ``convention``:
    ``"pytorch"`` (``weight_ih_l0`` ...), ``"tensorflow"`` (``layers/0/kernel`` ...),
    ``"keras"`` or ``"onnx"``; with neither, PyTorch's random initialisation.
    ``forget_bias`` defaults to TensorFlow's 1.0 under the TensorFlow convention, else 0.

    Inputs are ``[B, T, I]`` (``[T, B, I]`` when ``time_major``) float32 arrays, read in
    place when C-contiguous; another dtype is a ``TypeError``, another layout a
    ``ValueError``. States are lists of ``(h, c)`` pairs, one per cell (cell
    ``k = layer * D + direction``, as PyTorch's ``h_n``), ``h`` ``[B, P or H]``, ``c``
    ``[B, H]``. The GIL is released while the kernels run; one object must not be called
    from two threads at once (its workspace is shared: the second call raises
    ``RuntimeError: Already borrowed``).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, weights=None, path=None,
                 convention="pytorch", forget_bias=None, peepholes=False, cell_clip=None,
                 proj_size=None, proj_clip=None, bidirectional=False, time_major=False,
                 bias=True, threads=None, seed=0):
        hidden = _per_layer(hidden_size, num_layers, "hidden_size")
        proj = [p or None for p in _per_layer(proj_size, num_layers, "proj_size")]
        if forget_bias is None:
            forget_bias = 1.0 if str(convention).lower() in _TF_NAMES else 0.0
        if weights is None and path is None:
            if str(convention).lower() not in ("pytorch", "torch"):
                raise ValueError("random initial weights are PyTorch's: give weights or path for another convention")
            sizes = [input_size, *hidden, *(p for p in proj if p)]
            # Sizes the crate refuses get no weights: its spec check reports them.
            valid = all(isinstance(v, int) and v > 0 for v in sizes)
            weights = pytorch_init(input_size, hidden, proj, bidirectional, bias, seed) if valid else {}
        elif weights is not None:
            weights = as_numpy_weights(weights)
        if path is not None:
            path = str(path)
        self._convention = convention
        self._core = _Core(
            input_size, hidden, weights=weights, path=path, convention=convention,
            proj_sizes=proj if any(proj) else None, forget_bias=float(forget_bias),
            peepholes=peepholes, cell_clip=cell_clip, proj_clip=proj_clip,
            bidirectional=bidirectional, time_major=time_major,
            threads=threads if threads is not None else _DEFAULT_THREADS,
            allow_missing_bias=not bias,
        )

    @classmethod
    def from_state_dict(cls, state_dict, input_size, hidden_size, num_layers=1, **kwargs):
        """From a ``torch.nn.LSTM`` state dict (tensors or arrays)."""
        return cls(input_size, hidden_size, num_layers, weights=state_dict, convention="pytorch", **kwargs)

    @classmethod
    def load_safetensors(cls, path, input_size, hidden_size, num_layers=1, convention="pytorch", **kwargs):
        """From a ``.safetensors`` file of weights named in ``convention``."""
        return cls(input_size, hidden_size, num_layers, path=path, convention=convention, **kwargs)

    def __call__(self, x, lengths=None, initial_state=None, carry=False):
        """Inference: ``(output, final_state)``. ``lengths`` ``[B]`` (int32 or int64) in
        ``0..=T``: outputs past a length are 0 and its final state is the state at its
        last real step. ``carry=True`` starts from this object's previous final state."""
        return self._core.forward(x, lengths, initial_state, carry)

    forward = __call__

    def forward_training(self, x, lengths=None, initial_state=None):
        """As ``__call__``, plus a trace for :meth:`backward`: ``(output, final_state,
        trace)``. ``x`` must not change until the backward pass."""
        return self._core.forward_training(x, lengths, initial_state)

    def backward(self, trace, grad_output=None, grad_final_state=None, convention="pytorch"):
        """``(grad_input, grad_initial_state, {name: weight gradient})`` for the upstream
        gradients of the output and of the final state (a list of ``(h, c)`` pairs;
        either may be ``None``). Under PyTorch names both biases get the bias gradient."""
        return self._core.backward(trace, grad_output, grad_final_state, convention)

    def state_dict(self, convention="pytorch"):
        """The weights under ``convention``'s names (``pytorch`` or ``tensorflow``)."""
        return self._core.weights(convention)

    def load_state_dict(self, weights, convention=None):
        """Replaces the weights (same names and shapes); the packed buffers are reused."""
        self._core.update_weights(as_numpy_weights(weights), convention or self._convention)

    @property
    def isa(self):
        return self._core.isa

    @property
    def threads(self):
        return self._core.threads

    @property
    def input_size(self):
        return self._core.input_size

    @property
    def output_size(self):
        return self._core.output_size

    @property
    def num_cells(self):
        return self._core.num_cells

    def __repr__(self):
        return f"lstm_kernels.LSTM({self._core!r})"

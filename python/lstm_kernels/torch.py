"""``LSTM``: a drop-in for ``torch.nn.LSTM`` whose forward and backward are the crate's.

Same constructor, same parameters (``torch.nn.Parameter``s named as nn.LSTM's, so
``load_state_dict`` from an nn.LSTM works and any optimizer trains them), the same
inputs and outputs (padded tensors, batch-first or not, unbatched, ``PackedSequence``,
``(h0, c0)``). With autograd on, forward is the crate's forward-training pass and
backward its backward pass, through a ``torch.autograd.Function`` that returns the
gradients of the input, of ``h0`` and ``c0`` and of every weight; with autograd off
(``torch.no_grad()``, ``inference_mode``, or nothing that requires a gradient) the
crate's inference pass runs.

Differences from nn.LSTM: CPU and float32 only; ``dropout`` must be 0 (a
``NotImplementedError`` otherwise). ``bias=False`` is supported: the crate runs with zero
biases, which are not parameters, so nothing trains them (as nn.LSTM).
"""
import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ._lstm_kernels import Lstm as _Core
from ._numpy import get_default_threads


def _param_names(num_layers, bidirectional, bias, proj_size):
    """nn.LSTM's ``_flat_weights_names``, in its order."""
    names = []
    for layer in range(num_layers):
        for suffix in ["", "_reverse"][: 2 if bidirectional else 1]:
            names += [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
            if bias:
                names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
            if proj_size > 0:
                names.append(f"weight_hr_l{layer}{suffix}")
    return names


def _stack(pairs, which):
    return torch.from_numpy(np.stack([p[which] for p in pairs]))


def _pairs(h, c):
    """``[(h[k], c[k])]`` as arrays (views of contiguous tensors: no copy)."""
    hs = None if h is None else h.detach().contiguous().numpy()
    cs = None if c is None else c.detach().contiguous().numpy()
    n = len(hs) if hs is not None else len(cs)
    return [(None if hs is None else hs[k], None if cs is None else cs[k]) for k in range(n)]


class _LSTMFunction(torch.autograd.Function):
    """Forward-training and backward on the crate. Inputs: the module (for its core and
    parameter names), the padded input, the lengths (an int64 array or None), h0 and c0
    (or None), then every parameter, so autograd hands each its gradient."""

    @staticmethod
    def forward(ctx, module, core, x, lengths, h0, c0, *params):
        x_np = x.detach().numpy()
        init = None if h0 is None else _pairs(h0, c0)
        out, state, trace = core.forward_training(x_np, lengths, init)
        ctx.core, ctx.trace, ctx.names = core, trace, module._flat_weights_names
        # Saved for autograd's in-place check only: the trace references x's memory,
        # and the core holds these weights (a change before backward is an error).
        ctx.save_for_backward(x, *params)
        ctx.set_materialize_grads(False)
        return torch.from_numpy(out), _stack(state, 0), _stack(state, 1)

    @staticmethod
    def backward(ctx, g_out, g_h, g_c):
        ctx.saved_tensors  # raises if x or a weight changed in place since forward
        g_out = None if g_out is None else g_out.detach().contiguous().numpy()
        g_state = None if g_h is None and g_c is None else _pairs(g_h, g_c)
        gx, g0, gw = ctx.core.backward(ctx.trace, g_out, g_state)
        need = ctx.needs_input_grad
        gx = torch.from_numpy(gx) if need[2] else None
        g_h0 = _stack(g0, 0) if need[4] else None
        g_c0 = _stack(g0, 1) if need[5] else None
        g_params = [torch.from_numpy(gw[n]) if need[6 + i] else None for i, n in enumerate(ctx.names)]
        return (None, None, gx, None, g_h0, g_c0, *g_params)


class LSTM(nn.Module):
    """``torch.nn.LSTM`` on the crate's kernels (see the module's docstring).

    ``threads`` (keyword only, not nn.LSTM's): the crate's threads for this module;
    ``None`` takes :func:`lstm_kernels.set_default_threads`'s value, else every core.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 threads=None):
        super().__init__()
        if dropout:
            raise NotImplementedError("lstm_kernels.torch.LSTM: dropout between layers is not implemented (dropout must be 0)")
        if device is not None and torch.device(device).type != "cpu":
            raise NotImplementedError("lstm_kernels.torch.LSTM runs on the CPU only")
        if dtype is not None and dtype != torch.float32:
            raise TypeError(f"lstm_kernels.torch.LSTM is float32 only, got dtype {dtype}")
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative int, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.threads = threads
        d = 2 if bidirectional else 1
        r = proj_size or hidden_size
        self._flat_weights_names = _param_names(num_layers, bidirectional, bias, proj_size)
        for name in self._flat_weights_names:
            layer = int(name.split("_l")[1].split("_")[0])
            layer_in = input_size if layer == 0 else r * d
            shape = {
                "weight_ih": (4 * hidden_size, layer_in),
                "weight_hh": (4 * hidden_size, r),
                "bias_ih": (4 * hidden_size,),
                "bias_hh": (4 * hidden_size,),
                "weight_hr": (proj_size, hidden_size),
            }[name.split("_l")[0]]
            self.register_parameter(name, nn.Parameter(torch.empty(shape, dtype=torch.float32)))
        self._core = None
        self._key = None
        self.reset_parameters()

    @classmethod
    def from_module(cls, module, threads=None):
        """The same model as ``module`` (an ``nn.LSTM``), its weights copied."""
        if not isinstance(module, nn.LSTM):
            raise TypeError(f"from_module expects a torch.nn.LSTM, got {type(module).__name__}")
        new = cls(module.input_size, module.hidden_size, module.num_layers, module.bias,
                  module.batch_first, module.dropout, module.bidirectional, module.proj_size,
                  threads=threads)
        new.load_state_dict(module.state_dict())
        return new

    def reset_parameters(self):
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def flatten_parameters(self):
        """For nn.LSTM compatibility; the crate keeps its own packed copy."""

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        per = len(self._flat_weights_names) // (self.num_layers * (2 if self.bidirectional else 1))
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s

    def __getstate__(self):
        # The native core is rebuilt from the parameters on the next call (deepcopy,
        # pickling, torch.save of the module).
        state = self.__dict__.copy()
        state["_core"], state["_key"] = None, None
        return state

    def _weights(self):
        return {n: getattr(self, n).detach().numpy() for n in self._flat_weights_names}

    def _sync(self):
        """The crate's stack with the current parameters. An optimizer step changes them
        in place (their ``_version`` moves): then the weights are converted and repacked
        into the existing buffers, which costs about one pass over the weights."""
        params = self._flat_weights
        for p in params:
            if p.device.type != "cpu" or p.dtype != torch.float32:
                raise TypeError(f"lstm_kernels.torch.LSTM needs float32 CPU parameters, got {p.dtype} on {p.device}")
        key = tuple((id(p), p.data_ptr(), p._version) for p in params)
        if self._core is None:
            threads = self.threads if self.threads is not None else get_default_threads()
            self._core = _Core(
                self.input_size, [self.hidden_size] * self.num_layers, weights=self._weights(),
                convention="pytorch",
                proj_sizes=[self.proj_size] * self.num_layers if self.proj_size else None,
                bidirectional=self.bidirectional, time_major=not self.batch_first,
                threads=threads, allow_missing_bias=not self.bias,
            )
        elif key != self._key:
            self._core.update_weights(self._weights(), "pytorch")
        self._key = key
        return self._core

    def _check_hx(self, hx, batch, unbatched):
        d = 2 if self.bidirectional else 1
        r = self.proj_size or self.hidden_size
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx must be a tuple (h_0, c_0)")
        h0, c0 = hx
        for name, t, width in (("h_0", h0, r), ("c_0", c0, self.hidden_size)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
            if t.dtype != torch.float32:
                raise TypeError(f"tensor `{name}`: expected dtype float32, got {t.dtype}")
            want = (self.num_layers * d, width) if unbatched else (self.num_layers * d, batch, width)
            if tuple(t.shape) != want:
                raise ValueError(f"tensor `{name}`: expected shape {list(want)}, got {list(t.shape)}")
        if unbatched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        return h0, c0

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        bdim = 0 if self.batch_first else 1
        unbatched = False
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"input must be a tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"tensor `input`: expected a 2-D (unbatched) or 3-D input, got shape {list(input.shape)}")
            unbatched = input.dim() == 2
            x = input.unsqueeze(bdim) if unbatched else input
            lengths = None
        if x.device.type != "cpu":
            raise TypeError(f"lstm_kernels.torch.LSTM runs on the CPU, got input on {x.device}")
        if x.dtype != torch.float32:
            raise TypeError(f"tensor `input`: expected dtype float32, got {x.dtype}")
        x = x.contiguous()
        batch = x.shape[bdim]
        h0 = c0 = None
        if hx is not None:
            h0, c0 = self._check_hx(hx, batch, unbatched)
        lens = None if lengths is None else lengths.numpy()
        core = self._sync()
        params = self._flat_weights
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in params)
            or (h0 is not None and (h0.requires_grad or c0.requires_grad)))
        if needs_grad:
            out, h_n, c_n = _LSTMFunction.apply(self, core, x, lens, h0, c0, *params)
        else:
            init = None if h0 is None else _pairs(h0, c0)
            out, state = core.forward(x.detach().numpy(), lens, init)
            out, h_n, c_n = torch.from_numpy(out), _stack(state, 0), _stack(state, 1)
        if packed:
            out = self._repack(out, input, lengths)
        elif unbatched:
            out, h_n, c_n = out.squeeze(bdim), h_n.squeeze(1), c_n.squeeze(1)
        return out, (h_n, c_n)

    def _repack(self, out, input, lengths):
        """The padded output as a PackedSequence with the input's batch order."""
        bdim = 0 if self.batch_first else 1
        if input.sorted_indices is not None:
            out = out.index_select(bdim, input.sorted_indices)
            lengths = lengths.index_select(0, input.sorted_indices.cpu())
        data = pack_padded_sequence(out, lengths, batch_first=self.batch_first, enforce_sorted=True).data
        return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)

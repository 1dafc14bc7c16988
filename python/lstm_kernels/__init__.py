"""CPU LSTM kernels with TensorFlow and PyTorch semantics (the Rust crate `lstm-kernels`).

- :class:`LSTM`: a stack over NumPy float32 arrays (TF and PyTorch cells, peepholes,
  clipping, projection, bidirectional, time-major, lengths, carried state), forward,
  forward-training and backward.
- :mod:`lstm_kernels.torch`: ``LSTM``, a drop-in for ``torch.nn.LSTM`` whose forward and
  backward run on the crate (imported lazily, so NumPy users need no torch).
"""
from ._lstm_kernels import Lstm as _Core, Trace, available_isas, __version__
from ._numpy import LSTM, set_default_threads, get_default_threads

__all__ = ["LSTM", "Trace", "available_isas", "set_default_threads", "get_default_threads", "__version__"]

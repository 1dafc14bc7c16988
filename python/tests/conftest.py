"""Shared helpers of the Python package's tests."""
import json
import pathlib
import struct

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"

# The crate's stated tolerances (fixtures/README.md, "Tolerances"): abs 1e-5 + rel 1e-4
# for outputs and gradients, against float64 references. Here both sides are float32
# (the crate and torch.nn.LSTM), so the difference can reach the sum of both errors;
# the README measures each below 5e-7 abs on cases of this size, so the golden
# tolerance still leaves a margin of 10x while catching any wrong gate, order or sign
# (those give errors of 1e-2 and more).
ATOL, RTOL = 1e-5, 1e-4


def assert_close(got, want, atol=ATOL, rtol=RTOL, what=""):
    got = np.asarray(got.detach() if hasattr(got, "detach") else got, dtype=np.float64)
    want = np.asarray(want.detach() if hasattr(want, "detach") else want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)


def read_safetensors(path):
    """(tensors, metadata) of a .safetensors file: 8-byte header length, JSON header,
    then the little-endian data."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": "<f4", "I32": "<i4", "I64": "<i8"}
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtypes[h["dtype"]]).reshape(h["shape"]).copy()
    return out, meta


@pytest.fixture
def fixtures():
    return FIXTURES


def pytest_configure(config):
    # torch.nn.LSTM notes that it runs projected layers without oneDNN: expected here.
    config.addinivalue_line("filterwarnings", "ignore:LSTM with projections is not supported with oneDNN")

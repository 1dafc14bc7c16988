"""lstm_kernels.LSTM over NumPy arrays: the golden files, carried state, gradients, and
bad arguments (errors with the crate's messages, never a crash)."""
import json

import numpy as np
import pytest

import lstm_kernels
from conftest import assert_close, read_safetensors


def state_pairs(t, prefix, cells):
    return [(t[f"{prefix}/{k}/h"], t[f"{prefix}/{k}/c"]) for k in range(cells)]


def golden_model(path, t, meta, **kw):
    cfg = json.loads(meta["config"])
    layers = len(cfg["hidden_sizes"])
    proj = cfg.get("proj_sizes")
    return lstm_kernels.LSTM(
        cfg["input_size"], cfg["hidden_sizes"], layers, path=path, convention=meta["convention"],
        forget_bias=cfg.get("forget_bias", 0.0), peepholes=cfg.get("use_peepholes", False),
        cell_clip=cfg.get("cell_clip"), proj_size=proj, proj_clip=cfg.get("proj_clip"),
        bidirectional=cfg.get("bidirectional", False), time_major=cfg.get("time_major", False), **kw)


@pytest.mark.parametrize("case", ["tf/lstmcell_peep_clip_proj", "tf/time_major", "tf/zero_length",
                                  "torch/bidir_proj", "torch/stacked_varlen", "torch/torch_time_major"])
def test_golden_forward_from_safetensors(fixtures, case):
    path = fixtures / f"{case}.safetensors"
    t, meta = read_safetensors(path)
    m = golden_model(path, t, meta)
    init = state_pairs(t, "initial_state", m.num_cells) if "initial_state/0/h" in t else None
    out, state = m(t["input"], lengths=t.get("sequence_length"), initial_state=init)
    assert_close(out, t["expected/output"], what="output")
    for k, (h, c) in enumerate(state):
        assert_close(h, t[f"expected/final_state/{k}/h"], what=f"h{k}")
        assert_close(c, t[f"expected/final_state/{k}/c"], what=f"c{k}")


@pytest.mark.parametrize("case", ["torch/grad_bidir_proj", "torch/grad_stacked_varlen",
                                  "tf/grad_peep_clip_proj", "tf/grad_time_major"])
def test_golden_gradients(fixtures, case):
    path = fixtures / f"{case}.safetensors"
    t, meta = read_safetensors(path)
    m = golden_model(path, t, meta, threads=1)
    init = state_pairs(t, "initial_state", m.num_cells) if "initial_state/0/h" in t else None
    out, _, trace = m.forward_training(t["input"], t.get("sequence_length"), init)
    assert_close(out, t["expected/output"], what="output")
    g_state = state_pairs(t, "grad_final_state", m.num_cells) if "grad_final_state/0/h" in t else None
    gx, g0, gw = m.backward(trace, t["grad_output"], g_state, convention=meta["convention"])
    assert_close(gx, t["expected/grad/input"], what="grad input")
    if init is not None:
        for k, (h, c) in enumerate(g0):
            assert_close(h, t[f"expected/grad/initial_state/{k}/h"], what=f"grad h0[{k}]")
            assert_close(c, t[f"expected/grad/initial_state/{k}/c"], what=f"grad c0[{k}]")
    expected = {n[len("expected/grad/"):]: v for n, v in t.items()
                if n.startswith("expected/grad/") and "/initial_state/" not in n and n != "expected/grad/input"}
    assert expected and set(expected) <= set(gw)
    for name, want in expected.items():
        assert_close(gw[name], want, what=name)
    with pytest.raises(ValueError, match="already differentiated"):
        m.backward(trace, t["grad_output"])


def small(**kw):
    return lstm_kernels.LSTM(3, 4, 2, threads=1, **kw)


def test_carry_equals_one_long_call():
    m = small()
    x = np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32)
    full, state = m(x)
    first, _ = m(np.ascontiguousarray(x[:, :4]))
    second, carried = m(np.ascontiguousarray(x[:, 4:]), carry=True)
    # Same operations in the same order: the same bits.
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), full)
    for (h, c), (h2, c2) in zip(state, carried):
        np.testing.assert_array_equal(h, h2)
        np.testing.assert_array_equal(c, c2)


def test_weights_round_trip_and_update():
    m = small()
    w = m.state_dict()
    assert sorted(w) == sorted(f"{p}_l{l}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for l in (0, 1))
    x = np.ones((1, 2, 3), np.float32)
    before, _ = m(x)
    w2 = {k: v * 0.5 for k, v in w.items()}
    m.load_state_dict(w2)
    after, _ = m(x)
    assert not np.allclose(before, after)
    fresh = lstm_kernels.LSTM(3, 4, 2, weights=w2)
    np.testing.assert_array_equal(fresh(x)[0], after)


def test_tensorflow_names_and_threads():
    m = small()
    tf = m.state_dict("tensorflow")
    assert set(tf) == {"layers/0/kernel", "layers/0/bias", "layers/1/kernel", "layers/1/bias"}
    # The PyTorch export folds nothing here (forget_bias 0): importing the TF export with
    # forget_bias 0 gives the same function, on 2 threads the same bits as on 1.
    m2 = lstm_kernels.LSTM(3, 4, 2, weights=tf, convention="tensorflow", forget_bias=0.0, threads=2)
    x = np.random.default_rng(2).standard_normal((5, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(m(x)[0], m2(x)[0])


# Bad arguments: each raises the documented exception with the crate's message.

def test_wrong_dtype_is_type_error():
    with pytest.raises(TypeError, match=r"tensor `input`: expected a numpy.ndarray of dtype float32, got dtype float64"):
        small()(np.zeros((2, 3, 3)))
    with pytest.raises(TypeError, match="dtype float32"):
        small()([[[1.0, 2.0, 3.0]]])
    with pytest.raises(TypeError, match="sequence_length"):
        small()(np.zeros((2, 3, 3), np.float32), lengths=np.array([1.0, 2.0]))


def test_wrong_shapes_are_value_errors():
    m = small()
    with pytest.raises(ValueError, match=r"tensor `input`: expected shape \[B, T, I\], got \[2, 3\]"):
        m(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"tensor `input`: expected shape \[2, 5, 3\] \(30 elements\), got 40 elements"):
        m(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"tensor `sequence_length`: expected shape \[2\], got \[3\]"):
        m(np.zeros((2, 5, 3), np.float32), lengths=np.array([1, 2, 3], np.int32))
    with pytest.raises(ValueError, match=r"B >= 1 and T >= 1"):
        m(np.zeros((0, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"initial_state/1/c`: expected shape \[2, 4\], got \[2, 5\]"):
        z = np.zeros((2, 4), np.float32)
        m(np.zeros((2, 5, 3), np.float32), initial_state=[(z, z), (z, np.zeros((2, 5), np.float32))])
    with pytest.raises(ValueError, match="2 cells, got 1 cells"):
        m(np.zeros((2, 5, 3), np.float32), initial_state=[(z, z)])


def test_lengths_out_of_range():
    m = small()
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"entry 1 is 6, expected a length in 0..=5"):
        m(x, lengths=np.array([5, 6]))
    with pytest.raises(ValueError, match=r"entry 0 is -1"):
        m(x, lengths=np.array([-1, 2], np.int32))
    with pytest.raises(ValueError, match=r"entry 0 is 4294967296"):
        m(x, lengths=np.array([2 ** 32, 2]))


def test_non_contiguous_is_refused():
    x = np.zeros((2, 5, 6), np.float32)[:, :, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        small()(x)


def test_bad_configuration_and_weights(tmp_path):
    with pytest.raises(ValueError, match="input_size must be at least 1, got 0"):
        lstm_kernels.LSTM(0, 4)
    with pytest.raises(ValueError, match="input_size must be at least 1, got -3"):
        lstm_kernels.LSTM(-3, 4)
    with pytest.raises(ValueError, match="threads"):
        lstm_kernels.LSTM(3, 4, threads=0)
    w = small().state_dict()
    del w["bias_hh_l1"]
    with pytest.raises(ValueError, match="bias_hh_l1` is missing"):
        lstm_kernels.LSTM(3, 4, 2, weights=w)
    w = small().state_dict()
    w["weight_ih_l0"] = w["weight_ih_l0"][:, :2]
    with pytest.raises(ValueError, match=r"weight_ih_l0`: expected shape \[16, 3\]"):
        lstm_kernels.LSTM(3, 4, 2, weights=w)
    w = small().state_dict()
    w["weight_hh_l0"] = w["weight_hh_l0"].astype(np.float64)
    with pytest.raises(TypeError, match="weight_hh_l0"):
        lstm_kernels.LSTM(3, 4, 2, weights=w)
    with pytest.raises(OSError, match="I/O error"):
        lstm_kernels.LSTM(3, 4, path=tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="invalid file"):
        lstm_kernels.LSTM(3, 4, path=tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="convention"):
        lstm_kernels.LSTM(3, 4, weights=small().state_dict(), convention="caffe")


def test_carry_without_previous_pass_and_stale_trace():
    m = small()
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match="no previous pass"):
        m(x, carry=True)
    _, _, trace = m.forward_training(x)
    m.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match="weights changed"):
        m.backward(trace)
    _, _, trace = m.forward_training(x)
    with pytest.raises(ValueError, match="another Lstm"):
        small().backward(trace)
    with pytest.raises(ValueError, match=r"grad_output`: expected shape \[2, 5, 4\]"):
        m.backward(trace, np.zeros((2, 5, 5), np.float32))
    gx, _, _ = m.backward(trace, np.ones((2, 5, 4), np.float32))  # still usable after the refusal
    assert gx.shape == (2, 5, 3) and np.abs(gx).sum() > 0


def test_keras_and_onnx_names_give_the_same_function():
    """The same weights under Keras's names (gates i, f, c, o; kernels input-major) and
    ONNX's (gates i, o, f, c; [D, 4H, in]) as under PyTorch's: the same outputs, bit for
    bit (the import only moves numbers)."""
    torch_w = small().state_dict()
    x = np.random.default_rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    want, _ = small(weights=torch_w)(x)
    keras, onnx = {}, {}
    for layer in range(2):
        w_ih, w_hh = torch_w[f"weight_ih_l{layer}"], torch_w[f"weight_hh_l{layer}"]
        bias = torch_w[f"bias_ih_l{layer}"] + torch_w[f"bias_hh_l{layer}"]
        keras[f"layers/{layer}/kernel"] = np.ascontiguousarray(w_ih.T)
        keras[f"layers/{layer}/recurrent_kernel"] = np.ascontiguousarray(w_hh.T)
        keras[f"layers/{layer}/bias"] = bias

        def iofc(m):  # PyTorch's i, f, g, o blocks in ONNX's order i, o, f, c
            i, f, g, o = np.split(m, 4)
            return np.concatenate([i, o, f, g])
        onnx[f"layers/{layer}/W"] = iofc(w_ih)[None]
        onnx[f"layers/{layer}/R"] = iofc(w_hh)[None]
        onnx[f"layers/{layer}/B"] = np.concatenate([iofc(torch_w[f"bias_ih_l{layer}"]),
                                                    iofc(torch_w[f"bias_hh_l{layer}"])])[None]
    got_keras, _ = small(weights=keras, convention="keras")(x)
    got_onnx, _ = small(weights=onnx, convention="onnx")(x)
    # Keras has one bias (the sum), PyTorch and ONNX two: the crate adds them once, so
    # all three hold the same summed bias and compute the same bits.
    np.testing.assert_array_equal(got_keras, want)
    np.testing.assert_array_equal(got_onnx, want)


def test_two_objects_run_in_two_threads_with_the_gil_released():
    import threading
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 50, 3)).astype(np.float32)
    models = [small(), small(seed=1)]
    want = [m(x)[0] for m in models]
    got = [None, None]

    def run(k):
        for _ in range(20):
            got[k] = models[k](x)[0]
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)

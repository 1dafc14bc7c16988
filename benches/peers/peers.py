#!/usr/bin/env python3
"""Peer benchmarks for the BENCH_SHAPES suite: PyTorch (oneDNN), ONNX Runtime, and
TensorFlow for the language model step (`tf_lm.py`, in its own process).

Prints one JSON line per (peer, shape, work) on stdout, the crate runner's schema
plus "peer":

  {"peer": "pytorch-dense", "shape": "infer-b64-h1024", "work": "forward",
   "threads": 2, "median_s": 0.0123, "gflops": 187.3}

Everything else (kernel info, skipped combinations, progress) goes to stderr.
`--check` instead compares the peers' outputs (and oneDNN's gradients against
PyTorch's native autograd) and exits non-zero on a mismatch.

See README.md in this directory for what each peer runs.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes as suite  # noqa: E402

PEERS = ("pytorch-dense", "pytorch-packed", "onnxruntime", "tensorflow")
# (peer, work) combinations that exist; the rest are skipped with a note on stderr.
SUPPORTED = {
    ("pytorch-dense", "forward"),
    ("pytorch-dense", "train"),
    ("pytorch-packed", "forward"),
    ("onnxruntime", "forward"),
    ("tensorflow", "train"),  # seed-ptb-lm only
}
# The peers of the language-model step.
LM_PEERS = ("pytorch-dense", "tensorflow")
SEED = 20240611
ONNX_OPSET = 17
# PyTorch stacks gates i, f, g, o; ONNX stacks i, o, f, c.
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="all", help="a BENCH_SHAPES name, a comma list, all (the suite) or off-suite")
    p.add_argument("--work", default="all", choices=["forward", "train", "all"])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every peer")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions after warm-up (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed repetitions before timing")
    p.add_argument("--peer", default="all",
                   help="pytorch-dense|pytorch-packed|onnxruntime|tensorflow|all, or a comma list")
    p.add_argument("--check", action="store_true",
                   help="compare the peers' outputs (1e-4) and oneDNN vs native gradients, then exit")
    p.add_argument("--quiet-info", action="store_true", help="skip the per-benchmark oneDNN primitive probe")
    a = p.parse_args(argv)
    if a.threads < 1 or a.reps < 1 or a.warmup < 0:
        p.error("--threads and --reps must be >= 1, --warmup >= 0")
    if a.peer == "all":
        a.peers = list(PEERS)
    else:
        a.peers = [x.strip() for x in a.peer.split(",") if x.strip()]
        bad = [x for x in a.peers if x not in PEERS]
        if bad:
            p.error(f"unknown peer(s) {bad}; known: {', '.join(PEERS)}, all")
    return a


ARGS = parse_args()
# Thread pools must be sized before torch / MKL / OpenMP initialise.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
    from torch import nn  # noqa: E402
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402
    torch.set_num_threads(ARGS.threads)
    torch.set_num_interop_threads(1)
except ImportError:  # ONNX Runtime alone (--peer onnxruntime) does not need it
    torch = None
    if ARGS.check or any(p.startswith("pytorch") for p in ARGS.peers):
        raise


# ---------------------------------------------------------------- kernel info

def capture_stdout(fn):
    """Run fn() with the process's fd 1 redirected; return what was written there.
    oneDNN's verbose mode prints from C with printf, so sys.stdout cannot catch it."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tf:
        os.dup2(tf.fileno(), 1)
        try:
            fn()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        tf.seek(0)
        return tf.read().decode(errors="replace")


def onednn_verbose(fn):
    def run():
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            fn()
    return [ln for ln in capture_stdout(run).splitlines() if ln.startswith("onednn_verbose")]


def rnn_primitives(lines):
    """'brgemm:avx2 forward_inference x2, ...' from oneDNN verbose exec lines of rnn primitives."""
    seen = {}
    for ln in lines:
        f = ln.split(",")
        # onednn_verbose,v1,primitive,exec,cpu,rnn,<impl>,<prop_kind>,...
        if len(f) > 7 and f[2] == "primitive" and f[3] == "exec" and f[5] == "rnn":
            key = f"{f[6]} {f[7]}"
            seen[key] = seen.get(key, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in seen.items())


def torch_info():
    cfg = torch.__config__.show().splitlines()
    pick = lambda word: next((ln.strip(" -") for ln in cfg if word in ln), "?")  # noqa: E731
    log(f"[peers] torch {torch.__version__}: {pick('MKL-DNN')}; {pick('Math Kernel')}; {pick('OpenMP')}")
    log(f"[peers] torch ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"mkldnn enabled={torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled}, "
        f"threads={torch.get_num_threads()}, interop={torch.get_num_interop_threads()}")
    m = nn.LSTM(8, 8, batch_first=True)
    x = torch.zeros(2, 3, 8)
    lines = onednn_verbose(lambda: m(x))
    info = [ln.split(",", 3)[3] for ln in lines if ",info," in ln and ("oneDNN" in ln or ",cpu," in ln)]
    log("[peers] oneDNN: " + "; ".join(info))


def ort_info():
    import onnxruntime as ort
    build = ort.get_build_info() if hasattr(ort, "get_build_info") else "?"
    log(f"[peers] onnxruntime {ort.__version__} ({build.strip()}), available providers "
        f"{ort.get_available_providers()}; using CPUExecutionProvider, LSTM op = CPU EP DeepCPU LSTM (MLAS sgemm)")


# ---------------------------------------------------------------- data

def make_data(shape, seed=SEED):
    """Inputs uniform [-1, 1] [B, calls * T, I] (a streaming shape's calls one after
    another in time); per layer and direction PyTorch-convention weights uniform
    [-0.1, 0.1], keyed as nn.LSTM names them without `_l0` (`w_ih`, `w_hh_reverse`, `w_hr`
    for the projection)."""
    rng = np.random.default_rng(seed)
    u = lambda lo, hi, *dims: rng.uniform(lo, hi, dims).astype(np.float32)  # noqa: E731
    layers = []
    for i, h in shape.layers:
        r = shape.proj or h
        L = {"hidden": h}
        for sfx in ("", "_reverse")[:shape.dirs]:
            L["w_ih" + sfx] = u(-.1, .1, 4 * h, i)
            L["w_hh" + sfx] = u(-.1, .1, 4 * h, r)
            L["b_ih" + sfx] = u(-.1, .1, 4 * h)
            L["b_hh" + sfx] = u(-.1, .1, 4 * h)
            if shape.proj:
                L["w_hr" + sfx] = u(-.1, .1, r, h)
        layers.append(L)
    x = u(-1, 1, shape.batch, shape.steps * shape.calls, shape.input_size)
    grad_out = u(-1, 1, shape.batch, shape.steps, shape.hidden_out)
    return x, layers, grad_out


def torch_stack(layers, train=False):
    """The stack as single-layer nn.LSTM modules (widths differ per layer), run one after another."""
    mods = []
    for L in layers:
        h, i = L["hidden"], L["w_ih"].shape[1]
        bidir = "w_ih_reverse" in L
        proj = L["w_hr"].shape[0] if "w_hr" in L else 0
        m = nn.LSTM(i, h, num_layers=1, batch_first=True, bidirectional=bidir, proj_size=proj)
        with torch.no_grad():
            for name, p in m.named_parameters():
                # weight_ih_l0_reverse -> w_ih_reverse
                key = name.replace("_l0", "").replace("weight_", "w_").replace("bias_", "b_")
                p.copy_(torch.from_numpy(L[key]))
        m.train(train)
        mods.append(m)
    return mods


def run_stack(mods, inp):
    hn = cn = None
    for m in mods:
        inp, (hn, cn) = m(inp)
    return inp, hn, cn


# ---------------------------------------------------------------- peers: forward

def pytorch_dense_forward(shape, x, layers):
    mods = torch_stack(layers)
    xt = torch.from_numpy(x)
    T = shape.steps
    calls = [xt[:, k * T:(k + 1) * T].contiguous() for k in range(shape.calls)]

    def run():
        with torch.inference_mode():
            if not shape.stream_calls:
                return run_stack(mods, xt)
            # Each call one step, from the (h, c) every layer left after the previous one.
            states = [None] * len(mods)
            for xk in calls:
                inp = xk
                for j, m in enumerate(mods):
                    inp, states[j] = m(inp, states[j])
            return inp, states[-1][0], states[-1][1]
    return run


def pytorch_packed_forward(shape, x, layers):
    mods = torch_stack(layers)
    xt = torch.from_numpy(x)
    lengths = torch.tensor(shape.seq_lengths(), dtype=torch.int64)
    T = shape.steps

    def run():
        with torch.inference_mode():
            p = pack_padded_sequence(xt, lengths, batch_first=True, enforce_sorted=False)
            p, hn, cn = run_stack(mods, p)
            y, _ = pad_packed_sequence(p, batch_first=True, total_length=T)
            return y, hn, cn
    return run


def onnx_lstm_model(shape, layers, with_lengths):
    """One graph: Transpose [B,T,I]->[T,B,I], an LSTM node per layer (its
    [T, D, B, H] output back to [T, B, D*H] between them), Transpose back. ORT's CPU LSTM
    rejects layout=1. A streaming shape's graph takes every layer's initial (h, c) and
    returns its final ones (`h0_k`, `c0_k` in; `Y_h{k}`, `Y_c{k}` out). ONNX's LSTM has
    no projection: shapes with one have no ONNX Runtime peer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    assert not shape.proj, "ONNX LSTM has no projection"
    B, T, D = shape.batch, shape.steps, shape.dirs
    stateful = bool(shape.stream_calls)
    F = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", F, [B, T, shape.input_size])]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
    init = [numpy_helper.from_array(np.array([1], dtype=np.int64), "squeeze_axes")]
    nodes = [helper.make_node("Transpose", ["X"], ["x_tbi"], perm=[1, 0, 2])]
    outputs = []
    cur = "x_tbi"
    n = len(layers)
    for k, L in enumerate(layers):
        h = L["hidden"]
        reorder = lambda a: np.concatenate([a[g * h:(g + 1) * h] for g in TORCH_TO_ONNX_GATES])  # noqa: E731
        sfx = ("", "_reverse")[:D]
        init += [
            numpy_helper.from_array(np.stack([reorder(L["w_ih" + d]) for d in sfx]), f"W{k}"),
            numpy_helper.from_array(np.stack([reorder(L["w_hh" + d]) for d in sfx]), f"R{k}"),
            numpy_helper.from_array(np.stack([np.concatenate([reorder(L["b_ih" + d]), reorder(L["b_hh" + d])])
                                              for d in sfx]), f"B{k}"),
        ]
        ins = [cur, f"W{k}", f"R{k}", f"B{k}", "sequence_lens" if with_lengths else ""]
        if stateful:
            ins += [f"h0_{k}", f"c0_{k}"]
            for st in ("h0", "c0"):
                inputs.append(helper.make_tensor_value_info(f"{st}_{k}", F, [D, B, h]))
        last = k == n - 1
        outs = [f"y{k}"]
        if stateful or last:
            outs += [f"Y_h{k}", f"Y_c{k}"]
            outputs += [helper.make_tensor_value_info(f"Y_h{k}", F, [D, B, h]),
                        helper.make_tensor_value_info(f"Y_c{k}", F, [D, B, h])]
        nodes.append(helper.make_node(
            "LSTM", ins, outs, hidden_size=h, direction="bidirectional" if D == 2 else "forward",
            layout=0, name=f"lstm{k}"))
        if D == 1:
            nodes.append(helper.make_node("Squeeze", [f"y{k}", "squeeze_axes"], [f"h{k}"]))
        else:
            init.append(numpy_helper.from_array(np.array([T, B, D * h], dtype=np.int64), f"shape{k}"))
            nodes.append(helper.make_node("Transpose", [f"y{k}"], [f"yt{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"yt{k}", f"shape{k}"], [f"h{k}"]))
        cur = f"h{k}"
    nodes.append(helper.make_node("Transpose", [cur], ["Y"], perm=[1, 0, 2]))
    outputs.insert(0, helper.make_tensor_value_info("Y", F, [B, T, shape.hidden_out]))
    graph = helper.make_graph(nodes, f"lstm_{shape.name}", inputs, outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="lstm-kernels benches/peers")
    onnx.checker.check_model(model)
    return model


def onnxruntime_forward(shape, x, layers):
    import onnxruntime as ort
    with_lengths = shape.lengths is not None  # fixed-length shapes omit the optional input (= all T)
    model = onnx_lstm_model(shape, layers, with_lengths)
    so = ort.SessionOptions()
    so.intra_op_num_threads = ARGS.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    n = len(layers)
    last = n - 1
    if not shape.stream_calls:
        feeds = {"X": x}
        if with_lengths:
            feeds["sequence_lens"] = np.array(shape.seq_lengths(), dtype=np.int32)
        outs = ["Y", f"Y_h{last}", f"Y_c{last}"]
        run = lambda: sess.run(outs, feeds)  # noqa: E731
    else:
        T, D, B = shape.steps, shape.dirs, shape.batch
        calls = [np.ascontiguousarray(x[:, k * T:(k + 1) * T]) for k in range(shape.calls)]
        outs = ["Y"] + [f"Y_{s}{k}" for k in range(n) for s in ("h", "c")]
        zeros = {f"{s}0_{k}": np.zeros((D, B, L["hidden"]), np.float32)
                 for k, L in enumerate(layers) for s in ("h", "c")}

        def run():
            feeds = dict(zeros)
            for xk in calls:
                feeds["X"] = xk
                got = sess.run(outs, feeds)
                for k in range(n):
                    feeds[f"h0_{k}"], feeds[f"c0_{k}"] = got[1 + 2 * k], got[2 + 2 * k]
            return got[0], got[-2], got[-1]
    run.providers = sess.get_providers()
    return run


# ---------------------------------------------------------------- peers: training

def pytorch_dense_train(shape, x, layers, grad_out):
    """Forward in training mode + backward of loss = sum(out * grad_out): gradients of every
    weight and bias and of the input (dX), via oneDNN's rnn forward_training/backward."""
    mods = torch_stack(layers, train=True)
    params = [p for m in mods for p in m.parameters()]
    xt = torch.from_numpy(x).requires_grad_(True)
    g = torch.from_numpy(grad_out)

    def run():
        for p in params:
            p.grad = None
        xt.grad = None
        y, _, _ = run_stack(mods, xt)
        (y * g).sum().backward()
        return y, xt.grad, [p.grad for p in params]
    return run


def pytorch_lm_step(shape):
    """One training step of the seed PTB language model; inputs/targets random ids."""
    rng = np.random.default_rng(SEED)
    B, T, V = shape.batch, shape.steps, shape.vocab
    torch.manual_seed(SEED)
    emb = nn.Embedding(V, shape.embed)
    lstms = [nn.LSTM(i, h, batch_first=True) for i, h in shape.layers]
    proj = nn.Linear(shape.hidden_out, V)
    mods = nn.ModuleList([emb, *lstms, proj]).train()
    params = list(mods.parameters())
    with torch.no_grad():
        for p in params:
            p.uniform_(-0.1, 0.1)
    opt = torch.optim.SGD(params, lr=1.0)
    ids = torch.from_numpy(rng.integers(0, V, (B, T)))
    targets = torch.from_numpy(rng.integers(0, V, (B, T))).reshape(-1)
    ce = nn.CrossEntropyLoss(reduction="sum")

    def run():
        opt.zero_grad(set_to_none=True)
        h = emb(ids)
        for m in lstms:
            h, _ = m(h)
        logits = proj(h)
        loss = ce(logits.reshape(B * T, V), targets) / B  # = sum over t of the batch-mean CE
        loss.backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss
    return run


def tensorflow_lm_step(args):
    """The seed's graph in TensorFlow, run by tf_lm.py in a child process (TensorFlow and
    PyTorch each bring their own oneDNN and thread pools). None, with a note, when
    TensorFlow is not installed or fails."""
    import subprocess
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf_lm.py"),
           "--threads", str(args.threads), "--reps", str(args.reps), "--warmup", str(args.warmup)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        tail = "\n".join(res.stderr.strip().splitlines()[-3:])
        log(f"[peers] skip tensorflow seed-ptb-lm train: tf_lm.py failed (exit {res.returncode}): {tail}")
        return None
    rec = json.loads(lines[-1])
    version = rec.pop("tf_version", "?")
    if not args.quiet_info:
        log(f"[peers] tensorflow seed-ptb-lm train: TensorFlow {version} graph mode, "
            f"the seed's tf.compat.v1 graph, one session.run per step")
    return rec


def build(peer, shape, work):
    if shape.is_lm:
        return pytorch_lm_step(shape)
    x, layers, grad_out = make_data(shape)
    if work == "train":
        return pytorch_dense_train(shape, x, layers, grad_out)
    return {"pytorch-dense": pytorch_dense_forward, "pytorch-packed": pytorch_packed_forward,
            "onnxruntime": onnxruntime_forward}[peer](shape, x, layers)


def unsupported(peer, shape, work):
    """Why `peer` has no `work` on `shape`, or None when it has."""
    if (peer, work) not in SUPPORTED or (shape.is_lm and peer not in LM_PEERS) \
            or (peer == "tensorflow" and not shape.is_lm):
        return "not a peer for this work"
    if peer == "onnxruntime" and shape.proj:
        return "ONNX's LSTM has no projection"
    if peer == "pytorch-packed" and shape.stream_calls:
        return "a streaming call has one step per sequence: pytorch-dense is the same run"
    return None


# ---------------------------------------------------------------- timing

def median_seconds(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    gc.collect()
    gc.disable()
    try:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return statistics.median(ts)


def describe(peer, fn):
    if peer == "onnxruntime":
        return f"ORT providers {getattr(fn, 'providers', '?')} (no oneDNN)"
    prims = rnn_primitives(onednn_verbose(fn))
    return f"oneDNN rnn: {prims}" if prims else "no oneDNN rnn primitive (native ATen per-step addmm/linear)"


def bench_all(args):
    if torch is not None:
        torch_info()
    if "onnxruntime" in args.peers:
        ort_info()
    for shape, work in suite.select(args.shape, args.work):
        for peer in args.peers:
            why = unsupported(peer, shape, work)
            if why:
                log(f"[peers] skip {peer} {shape.name} {work}: {why}")
                continue
            if peer == "tensorflow":
                rec = tensorflow_lm_step(args)
                if rec is not None:
                    print(json.dumps(rec), flush=True)
                continue
            fn = build(peer, shape, work)
            if not args.quiet_info:
                fn()  # first call outside verbose: one-off allocations and reorders
                log(f"[peers] {peer} {shape.name} {work}: {describe(peer, fn)}")
            med = median_seconds(fn, args.reps, args.warmup)
            rec = {"peer": peer, "shape": shape.name, "work": work, "threads": args.threads,
                   "median_s": med, "gflops": shape.flops(work) / med / 1e9}
            if shape.is_lm:
                rec["words_per_s"] = shape.batch * shape.steps / med
            print(json.dumps(rec), flush=True)
            del fn
            gc.collect()


# ---------------------------------------------------------------- --check

def to_np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def check(args):
    """Same weights, same inputs: the three peers' Y (real steps), final h and c must agree
    within 1e-4; padded steps must be zero where the peer promises it; oneDNN's training
    gradients must match PyTorch's native (mkldnn disabled) autograd within 1e-4 relative."""
    torch_info()
    ort_info()
    tol = 1e-4
    ok = True

    def report(name, a, b, mask=None, rel=False):
        nonlocal ok
        a, b = to_np(a), to_np(b)
        if mask is not None:
            a, b = a[mask], b[mask]
        d = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = max(1.0, float(np.max(np.abs(b)))) if rel and b.size else 1.0
        good = d / scale <= tol
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {name}: max |diff| {d:.3e}"
              + (f" (scale {scale:.3g})" if rel else ""), flush=True)

    small_varlen = suite.Shape("check-varlen-b6-h12", ((16, 12), (12, 10)), 6, 9, ("forward",),
                               lengths=(9, 1, 5, 9, 3, 7))
    for shape in [suite.SHAPES["seed-ptb"], suite.SHAPES["infer-b8-h256-t100"], small_varlen,
                  suite.SHAPES["varlen-b64-h512"], suite.SHAPES["stream-b1-h512-t1"],
                  suite.SHAPES["small-b4-h128-t100"], suite.SHAPES["bidir-b16-h384-t60"]]:
        x, layers, _ = make_data(shape)
        dense = pytorch_dense_forward(shape, x, layers)()
        # A streaming shape: the last call's output and the final state after all calls.
        packed = dense if shape.stream_calls else pytorch_packed_forward(shape, x, layers)()
        onnx = onnxruntime_forward(shape, x, layers)()
        lens = np.array(shape.seq_lengths())
        valid = np.arange(shape.steps)[None, :] < lens[:, None]  # [B, T]
        n = shape.name
        report(f"{n} Y pytorch-packed vs pytorch-dense (real steps)", packed[0], dense[0], valid)
        report(f"{n} Y onnxruntime vs pytorch-dense (real steps)", onnx[0], dense[0], valid)
        report(f"{n} Y onnxruntime vs pytorch-packed (all steps)", onnx[0], packed[0])
        for k, name in ((1, "h_n"), (2, "c_n")):
            report(f"{n} {name} onnxruntime vs pytorch-packed", onnx[k], packed[k])
            if shape.lengths is None:
                report(f"{n} {name} onnxruntime vs pytorch-dense", onnx[k], dense[k])
        if shape.lengths is not None:
            report(f"{n} Y onnxruntime padding is zero", onnx[0], np.zeros_like(onnx[0]), ~valid)

    for name in ("seed-ptb", "train-b32-h512"):
        shape = suite.SHAPES[name]
        x, layers, g = make_data(shape)
        fn1 = pytorch_dense_train(shape, x, layers, g)
        path1 = rnn_primitives(onednn_verbose(fn1))
        y1, dx1, dw1 = fn1()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flags() notes TF32 on Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False):
                fn0 = pytorch_dense_train(shape, x, layers, g)
                path0 = rnn_primitives(onednn_verbose(fn0))
                y0, dx0, dw0 = fn0()
        good = bool(path1) and not path0
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {name} train paths: oneDNN run [{path1}], "
              f"native run [{path0 or 'no oneDNN rnn'}]", flush=True)
        report(f"{name} train Y oneDNN vs native", y1, y0)
        report(f"{name} train dX oneDNN vs native", dx1, dx0, rel=True)
        names = [f"layer{k}.{p}" for k in range(len(shape.layers))
                 for p in ("w_ih", "w_hh", "b_ih", "b_hh")]
        for pn, a, b in zip(names, dw1, dw0):
            report(f"{name} train d{pn} oneDNN vs native", a, b, rel=True)
    print("check: all peers agree" if ok else "check: MISMATCH", flush=True)
    return 0 if ok else 1


def main():
    if ARGS.check:
        sys.exit(check(ARGS))
    bench_all(ARGS)


if __name__ == "__main__":
    main()

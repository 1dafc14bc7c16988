"""lstm_kernels.torch.LSTM against torch.nn.LSTM (oneDNN where it applies) on the
benchmark suite's shapes (/work/shared/BENCH_SHAPES.md, benches/peers/shapes.py): forward
under torch.no_grad() and forward + backward (weight gradients; no optimizer step), in
the same process, the two modules interleaved repetition by repetition, medians.

    python python/bench/bench_torch.py --threads 2

Prints a Markdown table: milliseconds per repetition and the ratio torch / lstm_kernels
(above 1: the crate is faster).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstm_kernels
import lstm_kernels.torch as lkt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benches", "peers"))
from shapes import SHAPES  # noqa: E402  (the suite's one definition of the shapes)

DEFAULT = ["seed-ptb", "infer-b8-h256-t100", "train-b32-h512", "bidir-b16-h384-t60",
           "lstmp-b8-h768p192-t80", "varlen-b64-h512"]


def groups(shape):
    """The stack as nn.LSTM modules: consecutive layers of one width share a module."""
    out = []
    for i, h in shape.layers:
        prev = out[-1] if out else None
        width = shape.dirs * (shape.proj or h)
        if prev and prev["hidden"] == h and i == width:
            prev["layers"] += 1
        else:
            out.append({"input": i, "hidden": h, "layers": 1})
    return out


def build(shape, threads):
    torch.manual_seed(0)
    ref = nn.ModuleList(
        nn.LSTM(g["input"], g["hidden"], g["layers"], batch_first=True,
                bidirectional=shape.bidirectional, proj_size=shape.proj or 0)
        for g in groups(shape))
    for p in ref.parameters():
        nn.init.uniform_(p, -0.1, 0.1)
    mine = nn.ModuleList(lkt.LSTM.from_module(m, threads=threads) for m in ref)
    return ref, mine


def make_input(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape.batch, shape.steps, shape.input_size, generator=g) * 2 - 1
    if shape.lengths is None:
        return x
    return pack_padded_sequence(x, torch.tensor(shape.lengths), batch_first=True, enforce_sorted=False)


def run(stack, x):
    for m in stack:
        x, _ = m(x)
    return x


def work_fn(stack, x, work):
    if work == "forward":
        def f():
            with torch.no_grad():
                run(stack, x)
    else:
        def f():
            out = run(stack, x)
            data = out.data if hasattr(out, "batch_sizes") else out
            data.sum().backward()
    return f


def measure(fns, min_reps, budget, block, pause):
    """Interleaved in blocks: `block` repetitions of each function in turn, a `pause`
    at each switch, until each has `min_reps` and the time budget is spent; the median
    of each. Not one repetition each in turn: torch's OpenMP threads spin for a while
    after each parallel region, and a crate call that starts then shares the cores with
    them (as the crate's spinning barrier threads would slow torch's next op); the pause
    lets each side's threads go to sleep before the other side is timed."""
    times = [[] for _ in fns]
    for f in fns:  # warm-up: plans, packing, allocations, oneDNN primitives
        for _ in range(3):
            f()
    start = time.perf_counter()
    while len(times[0]) < min_reps or (time.perf_counter() - start < budget and len(times[0]) < 200):
        for f, t in zip(fns, times):
            time.sleep(pause)
            f()  # the block's first call, untimed: the caches are the other side's
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times], len(times[0])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shapes", nargs="*", default=DEFAULT)
    p.add_argument("--min-reps", type=int, default=10)
    p.add_argument("--budget", type=float, default=6.0, help="seconds per shape and work")
    p.add_argument("--block", type=int, default=5, help="repetitions of one side in a row")
    p.add_argument("--pause", type=float, default=0.05, help="seconds of sleep at each switch of side")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    by_name = SHAPES
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"CPU: {cpu}; threads: torch {torch.get_num_threads()}, lstm_kernels {args.threads}; "
          f"torch {torch.__version__} (oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}); "
          f"lstm_kernels {lstm_kernels.__version__}\n")
    print("| shape | work | torch.nn.LSTM ms | lstm_kernels ms | torch / lstm_kernels | lstm_kernels GFLOP/s | reps |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.shapes:
        shape = by_name[name]
        ref, mine = build(shape, args.threads)
        x = make_input(shape)
        for work in ("forward", "train"):
            (t_ref, t_mine), reps = measure([work_fn(ref, x, work), work_fn(mine, x, work)],
                                            args.min_reps, args.budget, args.block, args.pause)
            flops = shape.forward_flops() * (3 if work == "train" else 1)
            label = "forward (no_grad)" if work == "forward" else "forward + backward"
            print(f"| {name} | {label} | {t_ref * 1e3:.2f} | {t_mine * 1e3:.2f} | {t_ref / t_mine:.2f}x "
                  f"| {flops / t_mine / 1e9:.1f} | {reps} |", flush=True)


if __name__ == "__main__":
    main()

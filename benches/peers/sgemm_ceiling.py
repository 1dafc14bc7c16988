#!/usr/bin/env python3
"""The OpenBLAS sgemm rate on the matrix products of a BENCH_SHAPES forward.

An LSTM forward is, at its core, one input projection per layer and one recurrent
product per layer and step. This runs exactly those products, and nothing else, as bare
OpenBLAS `sgemm` calls (numpy's `matmul` into preallocated outputs; numpy's wheels carry
OpenBLAS): per layer `[sum(len), I] x [I, 4H]` once, then `[active_s, H] x [H, 4H]` for
every step `s` (`active_s` = sequences still running). No bias, no activation, no cell
update, no data movement between the products: it is the ceiling an LSTM built on
OpenBLAS could reach, and the yardstick of issue #3's "at least 90% of the sgemm GFLOP/s
that OpenBLAS reaches on the same matrix shapes".

GFLOP/s = the shape's forward FLOPs (BENCH_SHAPES' count, the same products) / the median
time of one pass. Prints one JSON line per shape:

  {"peer": "openblas-sgemm", "shape": "seed-ptb", "work": "forward", "threads": 2,
   "median_s": 0.0061, "gflops": 260.1, "openblas": "0.3.31..."}

The thread count is set through OPENBLAS_NUM_THREADS before numpy loads, so run this in
its own process (compare.py does, with `--sgemm`).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes as suite  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="all", help="a BENCH_SHAPES name, a comma list, or all")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=20, help="timed passes (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    if a.threads < 1 or a.reps < 1 or a.warmup < 0:
        p.error("--threads and --reps must be >= 1, --warmup >= 0")
    return a


def main():
    args = parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    cfg = np.show_config(mode="dicts")
    blas = cfg.get("Build Dependencies", {}).get("blas", {})
    if "openblas" not in str(blas.get("name", "")).lower():
        sys.exit(f"sgemm_ceiling: numpy's BLAS is {blas.get('name')!r}, not OpenBLAS")
    version = blas.get("version", "?")
    rng = np.random.default_rng(7)
    for shape, work in suite.select(args.shape, "forward"):
        if shape.is_lm:
            continue
        lens = shape.seq_lengths()
        active = [sum(1 for n in lens if n > s) for s in range(max(lens))]
        total = sum(lens)
        products = []
        for i, h in shape.layers:
            x = rng.uniform(-1, 1, (total, i)).astype(np.float32)
            wx = rng.uniform(-0.1, 0.1, (i, 4 * h)).astype(np.float32)
            products.append((x, wx, np.empty((total, 4 * h), np.float32)))
            wh = rng.uniform(-0.1, 0.1, (h, 4 * h)).astype(np.float32)
            hs = rng.uniform(-1, 1, (shape.batch, h)).astype(np.float32)
            out = np.empty((shape.batch, 4 * h), np.float32)
            products += [(hs[:a], wh, out[:a]) for a in active]

        def one_pass():
            for a, b, c in products:
                np.matmul(a, b, out=c)

        for _ in range(args.warmup):
            one_pass()
        ts = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            one_pass()
            ts.append(time.perf_counter() - t0)
        med = statistics.median(ts)
        print(json.dumps({"peer": "openblas-sgemm", "shape": shape.name, "work": work,
                          "threads": args.threads, "median_s": med,
                          "gflops": shape.flops(work) / med / 1e9, "openblas": version}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Crate vs peers, in one session, interleaved per benchmark, as a Markdown table.

For every thread count and every (shape, work) of BENCH_SHAPES:
  1. the crate's runner  `cargo run --release --example bench -- --shape S --work W --threads N --reps K`
  2. peers.py            `--shape S --work W --threads N --reps K`
  3. the crate's runner again (`--crate-runs` - 1 times)
with 2-3 repeated `--rounds` times. A peer's time is the median of its rounds' medians, the
crate's the median of its runs' medians (with two runs: their mean);
the spread between its runs is shown so a noisy machine is visible.

`--sgemm` adds, for every forward shape (the language model aside), one run of
sgemm_ceiling.py after the peers: the GFLOP/s that bare OpenBLAS sgemm calls reach on the
same matrix products, and the crate's GFLOP/s as a percentage of it.

`--crate-json FILE` (and `--peers-json FILE`) read pre-recorded JSON lines instead of
running cargo (peers.py); with both, nothing is run and only the table is built.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shapes as suite  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PEERS = ("pytorch-dense", "pytorch-packed", "onnxruntime", "tensorflow")
SGEMM = "openblas-sgemm"
DEFAULT_CRATE_CMD = "cargo run --release --example bench --"
DEFAULT_BUILD_CMD = "cargo build --release --example bench"


class Failure(Exception):
    pass


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per run (crate and peers)")
    p.add_argument("--warmup", type=int, default=5, help="peers.py warm-up repetitions")
    p.add_argument("--shape", default="all", help="a BENCH_SHAPES name, a comma list, all (the suite) or off-suite")
    p.add_argument("--work", default="all", choices=["forward", "train", "all"])
    p.add_argument("--peer", default="all", help="passed to peers.py (pytorch-dense|pytorch-packed|onnxruntime|tensorflow|all)")
    p.add_argument("--rounds", type=int, default=1,
                   help="peers runs per benchmark, each followed by the crate's runs after the first "
                        "(a peer's time is the median over rounds): on a machine whose speed drifts, "
                        "more rounds put crate and peers side by side more often")
    p.add_argument("--crate-runs", type=int, default=2,
                   help="crate runs per benchmark: one before the peers, the rest after (default 2)")
    p.add_argument("--markdown-out", metavar="FILE", help="also write the Markdown report here")
    p.add_argument("--json-out", metavar="FILE", help="write rows and every raw JSON line here")
    p.add_argument("--crate-json", metavar="FILE", help="pre-recorded crate JSON lines; cargo is not run")
    p.add_argument("--peers-json", metavar="FILE", help="pre-recorded peers.py JSON lines; peers.py is not run")
    p.add_argument("--crate-cmd", default=DEFAULT_CRATE_CMD,
                   help=f"the crate runner, before its options (default: {DEFAULT_CRATE_CMD!r})")
    p.add_argument("--build-cmd", default=DEFAULT_BUILD_CMD,
                   help="run once before any timing so compilation is not interleaved; '' to skip")
    p.add_argument("--sgemm", action="store_true",
                   help="also time the forward shapes' products as bare OpenBLAS sgemm calls "
                        "(sgemm_ceiling.py) and report the crate's share of that rate")
    p.add_argument("--peak", action="store_true",
                   help="measure the f32 FMA peak first (the kernels' fma_peak example: independent "
                        "FMA chains on register accumulators) and give each row the crate's share of "
                        "it (threads x the 1-thread peak)")
    p.add_argument("--python", default=sys.executable, help="interpreter for peers.py")
    p.add_argument("-v", "--verbose", action="store_true", help="echo the children's whole stderr")
    a = p.parse_args(argv)
    try:
        a.thread_list = [int(t) for t in a.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads wants a comma list of integers, got {a.threads!r}")
    if not a.thread_list or min(a.thread_list) < 1 or a.reps < 1 or a.crate_runs < 1 or a.rounds < 1:
        p.error("--threads, --reps, --rounds and --crate-runs must be >= 1")
    a.peer_list = list(PEERS) if a.peer == "all" else [x.strip() for x in a.peer.split(",") if x.strip()]
    return a


# ---------------------------------------------------------------- running children

def run_child(cmd, what, verbose, hint="", required=("shape", "work", "threads", "median_s")):
    """Run cmd in the repo root, return (json records from stdout, stderr text)."""
    log(f"[compare] {what}: {' '.join(shlex.quote(c) for c in cmd)}")
    try:
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise Failure(f"{what} could not start ({e}).{hint}")
    if verbose and proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.rstrip().splitlines()[-30:]) or "(its stderr was empty)"
        raise Failure(f"{what} failed with exit code {proc.returncode}:\n  {' '.join(cmd)}\n"
                      f"--- last lines of its stderr ---\n{tail}\n---{hint}")
    return parse_json_lines(proc.stdout.splitlines(), what, required), proc.stderr


def parse_json_lines(lines, what, required=("shape", "work", "threads", "median_s")):
    out = []
    for ln in lines:
        ln = ln.strip()
        if not ln.startswith("{"):
            if ln:
                log(f"[compare] {what}: ignoring non-JSON stdout line: {ln[:120]}")
            continue
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError as e:
            raise Failure(f"{what}: bad JSON line ({e}): {ln[:200]}")
        missing = [k for k in required if k not in rec]
        if missing:
            raise Failure(f"{what}: JSON line lacks {missing}: {ln[:200]}")
        out.append(rec)
    return out


def read_json_file(path, what):
    try:
        with open(path) as f:
            return parse_json_lines(f.read().splitlines(), f"{what} {path}")
    except OSError as e:
        raise Failure(f"cannot read {what} {path}: {e}")


CRATE_HINT = ("\nThe crate's runner is `examples/bench.rs` (`cargo run --release --example bench -- "
              "--shape S --work W --threads N --reps K`, one JSON line per benchmark). If it does not "
              "exist yet, use --crate-json FILE with pre-recorded lines (e.g. benches/peers/testdata/"
              "crate_sample.jsonl).")


def matching(records, shape, work, threads, peer=None):
    return [r for r in records if r["shape"] == shape and r["work"] == work
            and int(r["threads"]) == threads and (peer is None or r.get("peer") == peer)]


# ---------------------------------------------------------------- the session

def collect(args, benches):
    """Run (or read) everything; return (crate records, peer records, peer kernel-info lines)."""
    crate_file = read_json_file(args.crate_json, "crate JSON") if args.crate_json else None
    peers_file = read_json_file(args.peers_json, "peers JSON") if args.peers_json else None
    if crate_file is None and args.build_cmd.strip():
        run_child(shlex.split(args.build_cmd), "build the crate runner", args.verbose, CRATE_HINT)
    crate, peers, info = [], [], []

    def crate_run(shape, work, threads, k):
        if crate_file is not None:
            return
        cmd = shlex.split(args.crate_cmd) + ["--shape", shape, "--work", work,
                                             "--threads", str(threads), "--reps", str(args.reps)]
        total = 1 + args.rounds * (args.crate_runs - 1)
        recs, _ = run_child(cmd, f"crate run {k + 1}/{total} {shape} {work} t{threads}",
                            args.verbose, CRATE_HINT)
        got = matching(recs, shape, work, threads)
        if not got:
            raise Failure(f"the crate runner printed no JSON line for shape={shape} work={work} "
                          f"threads={threads} (it printed {len(recs)} line(s)).{CRATE_HINT}")
        for r in got:
            r["run"] = k
        crate.extend(got)

    for threads in args.thread_list:
        for shape, work in benches:
            crate_run(shape.name, work, threads, 0)
            k = 1
            for rnd in range(args.rounds):
                if peers_file is None:
                    cmd = [args.python, os.path.join(HERE, "peers.py"), "--shape", shape.name, "--work", work,
                           "--threads", str(threads), "--reps", str(args.reps), "--warmup", str(args.warmup),
                           "--peer", args.peer] + (["--quiet-info"] if rnd > 0 else [])
                    recs, err = run_child(cmd, f"peers {shape.name} {work} t{threads} round {rnd + 1}",
                                          args.verbose)
                    peers.extend(matching(recs, shape.name, work, threads))
                    for ln in err.splitlines():
                        if ln.startswith("[peers]") and "skip" not in ln and ln not in info:
                            info.append(ln)
                for _ in range(1, args.crate_runs):
                    crate_run(shape.name, work, threads, k)
                    k += 1
            if args.sgemm and peers_file is None and work == "forward" and not shape.is_lm:
                cmd = [args.python, os.path.join(HERE, "sgemm_ceiling.py"), "--shape", shape.name,
                       "--threads", str(threads), "--reps", str(args.reps)]
                recs, _ = run_child(cmd, f"sgemm ceiling {shape.name} t{threads}", args.verbose)
                peers.extend(matching(recs, shape.name, work, threads))
    if crate_file is not None:
        crate = crate_file
    if peers_file is not None:
        peers = peers_file
    return crate, peers, info


PEAK_CMD = ["cargo", "run", "--release", "-q", "-p", "lstm-kernels-simd", "--example", "fma_peak"]


def fma_peak(verbose):
    """The 1-thread f32 FMA peak in GFLOP/s, from the kernels' `fma_peak` example."""
    recs, _ = run_child(PEAK_CMD, "fma_peak", verbose, required=("peak_gflops_1_thread",))
    peaks = [float(r["peak_gflops_1_thread"]) for r in recs if "peak_gflops_1_thread" in r]
    if not peaks:
        raise Failure("fma_peak printed no peak")
    return max(peaks)


def build_rows(benches, thread_list, peer_list, crate, peers, peak=None):
    rows = []
    for threads in thread_list:
        for shape, work in benches:
            flops = shape.flops(work)
            c = [float(r["median_s"]) for r in matching(crate, shape.name, work, threads)]
            row = {"shape": shape.name, "work": work, "threads": threads, "flops": flops,
                   "crate_runs_s": c, "crate_median_s": statistics.median(c) if c else None,
                   "peers_median_s": {}}
            for r in matching(crate, shape.name, work, threads):
                if r.get("gflops") and abs(r["gflops"] / (flops / r["median_s"] / 1e9) - 1) > 0.01:
                    log(f"[compare] WARNING: crate gflops for {shape.name} {work} ({r['gflops']:.2f}) disagrees "
                        f"with BENCH_SHAPES' FLOP count ({flops / r['median_s'] / 1e9:.2f}); the table uses the latter")
            for peer in peer_list:
                p = [float(r["median_s"]) for r in matching(peers, shape.name, work, threads, peer)]
                if p:
                    row["peers_median_s"][peer] = statistics.median(p)
            cm = row["crate_median_s"]
            row["crate_spread"] = (max(c) - min(c)) / cm if len(c) > 1 else None
            row["crate_gflops"] = flops / cm / 1e9 if cm else None
            row["peak_share"] = row["crate_gflops"] / (peak * threads) if peak and cm else None
            if shape.is_lm and cm:
                row["crate_words_per_s"] = shape.batch * shape.steps / cm
            sg = [float(r["gflops"]) for r in matching(peers, shape.name, work, threads, SGEMM)]
            row["sgemm_gflops"] = statistics.median(sg) if sg else None
            if row["peers_median_s"]:
                best = min(row["peers_median_s"], key=row["peers_median_s"].get)
                row["fastest_peer"] = best
                row["speedup_vs_fastest_peer"] = row["peers_median_s"][best] / cm if cm else None
            else:
                row["fastest_peer"] = row["speedup_vs_fastest_peer"] = None
            rows.append(row)
    return rows


def ms(s):
    if s is None:
        return "—"
    v = s * 1e3
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def markdown(rows, peer_list, meta, info):
    lm = any("crate_words_per_s" in r for r in rows)
    sg = any(r.get("sgemm_gflops") for r in rows)
    pk = any(r.get("peak_share") for r in rows)
    head = (["shape", "work", "threads", "crate ms", "crate spread"] + [f"{p} ms" for p in peer_list]
            + ["crate GFLOP/s"] + (["% of FMA peak"] if pk else []) + (["crate words/s"] if lm else [])
            + (["OpenBLAS sgemm GFLOP/s", "crate / sgemm"] if sg else []) + ["speed-up vs fastest peer"])
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in rows:
        cells = [f"`{r['shape']}`", r["work"], str(r["threads"]), ms(r["crate_median_s"]),
                 f"{r['crate_spread'] * 100:.1f}%" if r["crate_spread"] is not None else "—"]
        cells += [ms(r["peers_median_s"].get(p)) for p in peer_list]
        cells.append(f"{r['crate_gflops']:.1f}" if r["crate_gflops"] else "—")
        if pk:
            cells.append(f"{r['peak_share'] * 100:.0f}%" if r.get("peak_share") else "—")
        if lm:
            cells.append(f"{r['crate_words_per_s']:.0f}" if "crate_words_per_s" in r else "")
        if sg:
            g = r.get("sgemm_gflops")
            cells.append(f"{g:.1f}" if g else "—")
            cells.append(f"{r['crate_gflops'] / g * 100:.0f}%" if g and r["crate_gflops"] else "—")
        sp = r["speedup_vs_fastest_peer"]
        cells.append(f"{sp:.2f}x vs {r['fastest_peer']}" if sp else "—")
        out.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        f"- {meta['date']}, {meta['machine']}; load average {meta['load_before']} before, "
        f"{meta['load_after']} after; crate {meta['crate_source']}, peers {meta['peers_source']}.",
        "- times are medians per call; crate ms = median of its runs (spread = (max - min) / median over "
        "its runs around the peers); speed-up = fastest peer's ms / crate ms (> 1: the crate is faster).",
        "- GFLOP/s per BENCH_SHAPES (2 * 4H * (I + H) per real step, training 3x, varlen counts sum(len)); "
        "`seed-ptb-lm` counts only its LSTM stack's training FLOPs.",
    ]
    if meta.get("peak"):
        notes.append(f"- f32 FMA peak {meta['peak']:.1f} GFLOP/s on one thread (`fma_peak`, 16 register "
                     "accumulator chains); % of FMA peak = crate GFLOP/s / (threads x that).")
    if sg:
        notes.append("- OpenBLAS sgemm: the same matrix products (per layer the input projection of every "
                     "token, then one recurrent product per step) as bare sgemm calls, nothing else "
                     "(sgemm_ceiling.py, numpy's OpenBLAS); crate / sgemm = crate GFLOP/s / that rate.")
    notes += [f"- {ln[len('[peers] '):]}" for ln in info]
    return "\n".join(out + notes) + "\n"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} logical CPUs, caches {caches()}, "
            f"{platform.system()} {platform.release()}")


def caches():
    """cpu0's data and unified caches as sysfs lists them: `L1d 48K, L2 2048K, L3 266240K
    (shared by 0-1)`; `?` where sysfs has none."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out = []
    for i in range(16):
        d = os.path.join(base, f"index{i}")
        try:
            read = lambda name: open(os.path.join(d, name)).read().strip()  # noqa: E731
            level, kind, size, shared = read("level"), read("type"), read("size"), read("shared_cpu_list")
        except OSError:
            break
        if kind == "Instruction":
            continue
        out.append(f"L{level}{'d' if kind == 'Data' else ''} {size} (CPUs {shared})")
    return ", ".join(out) or "?"


def loadavg():
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main():
    args = parse_args()
    benches = suite.select(args.shape, args.work)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
            "load_before": loadavg(), "reps": args.reps, "threads": args.thread_list,
            "crate_source": f"from {args.crate_json}" if args.crate_json else f"`{args.crate_cmd}`",
            "peers_source": f"from {args.peers_json}" if args.peers_json else "peers.py"}
    if not (args.crate_json and args.peers_json):
        one_min = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if one_min > 0.5:
            log(f"[compare] WARNING: 1-minute load average is {one_min:.2f}; something else is running, "
                "so these timings (multi-threaded ones above all) are not trustworthy")
    try:
        meta["peak"] = fma_peak(args.verbose) if args.peak else None
        crate, peers, info = collect(args, benches)
    except Failure as e:
        log(f"[compare] ERROR: {e}")
        return 2
    meta["load_after"] = loadavg()
    rows = build_rows(benches, args.thread_list, args.peer_list, crate, peers, meta["peak"])
    missing = [f"{r['shape']} {r['work']} t{r['threads']}" for r in rows if r["crate_median_s"] is None]
    if missing:
        log(f"[compare] WARNING: no crate result for {', '.join(missing)}")
    md = markdown(rows, args.peer_list, meta, info)
    print(md, end="")
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(md)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "peer_info": info, "rows": rows, "crate_lines": crate, "peer_lines": peers},
                      f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

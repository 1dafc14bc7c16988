#!/usr/bin/env python3
"""Stand-in for the crate runner, for testing compare.py without cargo:
   compare.py --build-cmd '' --crate-cmd "python3 benches/peers/testdata/fake_crate.py" ...
Replays the lines of crate_sample.jsonl (invented numbers) that match --shape/--work/--threads,
taking the first line for run 1 and the next for later runs; exits 1 if none match."""
import argparse, json, os, sys

p = argparse.ArgumentParser()
for o in ("--shape", "--work", "--threads", "--reps"):
    p.add_argument(o, required=True)
a = p.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "crate_sample.jsonl")) as f:
    recs = [json.loads(ln) for ln in f if ln.strip()]
hits = [r for r in recs if r["shape"] == a.shape and r["work"] == a.work and r["threads"] == int(a.threads)]
if not hits:
    sys.exit(f"fake_crate: no sample line for {a.shape} {a.work} threads={a.threads}")
counter = os.path.join("/tmp", f"fake_crate_{os.getppid()}_{a.shape}_{a.work}_{a.threads}")
n = int(open(counter).read()) if os.path.exists(counter) else 0
with open(counter, "w") as f:
    f.write(str(n + 1))
print(json.dumps(hits[min(n, len(hits) - 1)]))

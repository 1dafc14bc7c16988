#!/usr/bin/env bash
# Bounded fuzzing (issue 14): builds the stable-Rust fuzz driver (crate `fuzz/`) in release
# and runs every target for FUZZ_SECONDS seconds (default 6) with a fixed seed, then again
# with a seed derived from the date, so that each day explores new inputs: about a minute
# in all. Fails when any run finds a crash (a panic, an abort, a hang); the inputs are kept
# in FUZZ_CRASH_DIR (default fuzz/crashes/), each with a .txt saying what happened, and
# `fuzz --target NAME --replay FILE` runs one again.
#
#   bash .ci/fuzz.sh                  # about a minute
#   FUZZ_SECONDS=60 bash .ci/fuzz.sh  # longer
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-6}"
crash_dir="${FUZZ_CRASH_DIR:-fuzz/crashes}"
fixed_seed=1
date_seed="$(date -u +%Y%m%d)"

echo "== cargo build --release -p lstm-kernels-fuzz"
cargo build --release -p lstm-kernels-fuzz --bin fuzz
target_dir="${CARGO_TARGET_DIR:-target}"
fuzz="$target_dir/release/fuzz"
if [ ! -x "$fuzz" ]; then
  echo "fuzz.sh: no driver at $fuzz" >&2
  exit 2
fi

# The targets, as the driver lists them (two-space indented names).
targets="$("$fuzz" --list | awk '/^  [a-z]/ { print $1 }')"
if [ -z "$targets" ]; then
  echo "fuzz.sh: the driver lists no target" >&2
  exit 2
fi

failed=""
for target in $targets; do
  for seed in "$fixed_seed" "$date_seed"; do
    echo "== fuzz --target $target --seed $seed --time $seconds"
    if ! "$fuzz" --target "$target" --seed "$seed" --time "$seconds" --crash-dir "$crash_dir"; then
      failed="$failed $target/$seed"
    fi
  done
done

if [ -n "$failed" ]; then
  echo "fuzz.sh: crashes in$failed; inputs in $crash_dir" >&2
  exit 1
fi
echo "fuzz.sh: every target ran clean"

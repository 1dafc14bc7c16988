#!/usr/bin/env bash
# The C ABI's CI: builds liblstm_kernels.{so,a}, writes the Rust API's expectations and
# runs the C test through cargo (tests/c_program.rs), then compiles the C test and the
# C++ example with gcc/g++ against the shared library (rpath) and the static one, runs
# them, and runs the C test once under valgrind (no error, no definite leak).
# Run from anywhere: bash capi/ci.sh. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "== [$(date -u +%T)] capi: $*"; }
start=$(date +%s)

for tool in gcc g++ valgrind pkg-config; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ valgrind pkg-config
    break
  fi
done

step "cargo build --release -p lstm-kernels-c"
cargo build --release -p lstm-kernels-c
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
lib="$target_dir/release"
out="$target_dir/capi-ci"
rm -rf "$out" && mkdir -p "$out"

step "the header matches capi/src; the Rust API's expectations; the C test through cargo"
cargo test --release -p lstm-kernels-c --test header
LSTM_CAPI_FIXTURE_DIR="$out" cargo test --release -p lstm-kernels-c --test c_program -- --ignored

cflags=(-Wall -Wextra -Werror -O1 -pthread -I capi/include)
shared=(-L "$lib" -Wl,-rpath,"$lib" -llstm_kernels)
static=("$lib/liblstm_kernels.a" -lpthread -ldl -lm)

step "gcc: the C test against the shared and the static library"
gcc -std=c11 "${cflags[@]}" capi/tests/c/test_capi.c -o "$out/test_capi_shared" "${shared[@]}"
gcc -std=c11 "${cflags[@]}" capi/tests/c/test_capi.c -o "$out/test_capi_static" "${static[@]}"
"$out/test_capi_shared" "$out/fixture.bin" "$out/weights.safetensors" | tail -1
"$out/test_capi_static" "$out/fixture.bin" "$out/weights.safetensors" | tail -1
if ldd "$out/test_capi_static" | grep -q liblstm_kernels; then
  echo "test_capi_static links liblstm_kernels.so: it should be static" >&2
  exit 1
fi

step "g++: the C++ example against the shared and the static library"
g++ -std=c++17 "${cflags[@]}" capi/examples/cpp/example.cpp -o "$out/example_shared" "${shared[@]}"
g++ -std=c++17 "${cflags[@]}" capi/examples/cpp/example.cpp -o "$out/example_static" "${static[@]}"
"$out/example_shared" | tail -1
"$out/example_static" | tail -1

step "the README's C snippet (capi/examples/c/readme.c, the same text) builds and runs"
python3 - <<'PY'
import re, sys
readme = open("README.md").read()
blocks = re.findall(r"```c\n(.*?)```", readme, re.S)
if blocks != [open("capi/examples/c/readme.c").read()]:
    sys.exit("README.md's ```c block differs from capi/examples/c/readme.c")
PY
gcc -std=c11 "${cflags[@]}" capi/examples/c/readme.c -o "$out/readme_c" "${shared[@]}"
"$out/readme_c"

step "valgrind: the C test (shared library), on expectations made under valgrind too"
# Valgrind's CPU has no AVX-512: the Rust API's gradients there are other bits (the gemm
# crate sums in its ISA's order), so the fixture is written on the same emulated CPU.
test_bin=$(cargo test --release -p lstm-kernels-c --test c_program --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "c_program":
        print(m["executable"])')
vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
  --show-leak-kinds=definite)
LSTM_CAPI_FIXTURE_DIR="$out/valgrind" "${vg[@]}" "$test_bin" --ignored --exact write_the_fixture_only
"${vg[@]}" "$out/test_capi_shared" "$out/valgrind/fixture.bin" "$out/valgrind/weights.safetensors" | tail -1

step "pkg-config: capi/lstm_kernels.pc.in gives a file pkg-config reads"
sed -e "s|@PREFIX@|$out/prefix|" -e "s|@VERSION@|$(grep -m1 '^version' capi/Cargo.toml | cut -d'"' -f2)|" \
  capi/lstm_kernels.pc.in >"$out/lstm_kernels.pc"
PKG_CONFIG_PATH="$out" pkg-config --cflags --libs lstm_kernels
PKG_CONFIG_PATH="$out" pkg-config --static --libs lstm_kernels

step "done in $(($(date +%s) - start)) s"

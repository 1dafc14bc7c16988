#!/usr/bin/env bash
# Builds and tests lstm-kernels-simd for aarch64 (NEON and scalar paths)
# under qemu user-mode emulation. Idempotent: installs only what is
# missing. The linker and runner come from .cargo/config.toml.
set -euo pipefail

cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

missing=()
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || missing+=(libc6-dev-arm64-cross)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Every kernel test, and the crate's tests (NEON and scalar against the reference and the
# golden files); LSTM_KERNELS_SKIP_SLOW leaves out the seed-sized golden cases and the
# largest sgemm shapes, which take many minutes under emulation. These are the only skips
# .ci/run allows: tests/golden.rs prints each skipped file ("SKIP ...") and counts its parts
# in its summary line, and fails on any skip when the variable is not set. Tests that start
# a child process (kernels/tests/dispatch.rs) start it through the runner of
# .cargo/config.toml, since the host kernel cannot exec an aarch64 binary.
LSTM_KERNELS_SKIP_SLOW=1 cargo test --release --target "$target" --workspace

#!/usr/bin/env bash
# CI of the Python package: installs what it needs with pip (maturin, numpy, pytest, torch;
# what is already installed at a fitting version is kept), checks the extension's Rust
# (fmt, clippy; python/ is its own Cargo workspace, so the root's checks skip it), builds
# and installs the package (`pip install ./python`) and runs its tests. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYO3_PYTHON=${PYO3_PYTHON:-$(command -v "$PY")}
step() { echo "== [$(date -u +%T)] $*"; }

# `requirement` is installed when pip's resolver says so; else install it. torch comes from
# PyPI, the one index this workplace reaches (download.pytorch.org's CPU-only wheels do
# not): the CUDA build, several GB with its CUDA libraries, whose CPU kernels are used.
ensure() {
  local requirement=$1; shift
  if "$PY" - "$requirement" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
from pip._vendor.packaging.requirements import Requirement
req = Requirement(sys.argv[1])
try:
    ok = req.specifier.contains(version(req.name), prereleases=True)
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PYEOF
  then
    echo "$requirement: installed"
  else
    "$PY" -m pip install -q "$requirement" "$@"
  fi
}

step "python dependencies"
ensure "maturin>=1.5,<2"
ensure "numpy>=1.21"
ensure "pytest>=7"
ensure "torch>=2.0"

step "cargo fmt and clippy of the extension (python/Cargo.toml)"
cargo fmt --manifest-path python/Cargo.toml -- --check
cargo clippy --manifest-path python/Cargo.toml --all-targets -- -D warnings

step "pip install ./python (the abi3 wheel, built by maturin)"
# The build backend (maturin) was installed above: no isolated build environment to fetch.
"$PY" -m pip install -q --no-build-isolation ./python

step "pytest python/tests -q"
# From outside python/, so that the installed package, not the source folder, is imported.
"$PY" -m pytest python/tests -q -p no:cacheprovider

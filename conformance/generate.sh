#!/usr/bin/env bash
# Regenerate tests/data/conformance.jsonl by running the real flax.nnx.
#
# Creates (once) a virtualenv at $NNX_FLAX_VENV (default: target/flax-venv),
# installs conformance/requirements.txt into it and runs generate.py there.
# Nothing is installed globally.  Extra arguments go to generate.py
# (--seed, --count, --out).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NNX_FLAX_VENV:-$REPO/target/flax-venv}"
PYTHON="$VENV/bin/python"

if [ ! -x "$PYTHON" ]; then
  echo "creating virtualenv $VENV" >&2
  python3 -m venv "$VENV"
fi
"$PYTHON" -m pip install --quiet --disable-pip-version-check \
  -r "$REPO/conformance/requirements.txt"

"$PYTHON" "$REPO/conformance/generate.py" \
  --out "$REPO/tests/data/conformance.jsonl" "$@"

#!/usr/bin/env bash
# Sets up the Python tests' virtual environment:
#
#   scripts/pyvenv.sh VENV REQUIREMENTS
#
# makes VENV with python3 -m venv if it does not exist, and runs pip install
# -r REQUIREMENTS in it (downloading flax, jax and the rest, about 300 MB,
# unless pip's cache, ~/.cache/pip, has them) only when REQUIREMENTS changed
# since the last install that succeeded: VENV/.requirements.sha256 records
# its checksum. So once it has run, later runs need no network. Remove the
# stamp (or VENV) to install again.
set -euo pipefail

venv=${1:?usage: scripts/pyvenv.sh VENV REQUIREMENTS}
requirements=${2:?usage: scripts/pyvenv.sh VENV REQUIREMENTS}
stamp="$venv/.requirements.sha256"

if [ ! -x "$venv/bin/python" ]; then
  echo "making the virtual environment $venv"
  python3 -m venv "$venv"
fi
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  echo "$requirements is installed in $venv (unchanged since; pip skipped)"
  exit 0
fi
echo "pip install -r $requirements into $venv (downloads what pip's cache lacks)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
printf '%s\n' "$want" >"$stamp"

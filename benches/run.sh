#!/usr/bin/env bash
# Runs every benchmark, one after the other, and keeps a log:
#
#   bash benches/run.sh
#
# 1. cargo bench --bench ops      speed of split/filter/merge/flatten per leaf,
#                                 1,000 to 1,000,000 leaves, against the floor
# 2. cargo bench --bench memory   1 GiB of tensors split and merged ten times:
#                                 growth of resident memory, bytes per leaf;
#                                 once as a tree, once as a columnar state
#    cargo bench --bench cold     where a first call's time goes (call and
#                                 drop apart, four kinds of fresh input: trees
#                                 and a columnar state)
# 3. benches/side_by_side.py      Flax NNX (flax 0.12.8) and the Python package
#                                 on the same states, interleaved, in the
#                                 virtual environment target/pyvenv (made from
#                                 python/requirements-test.txt if missing, as
#                                 scripts/test.sh does)
# 4. benches/flat_side_by_side.py to_flat_state and from_flat_state, Flax and
#                                 the Python package, same venv
# 5. benches/python_ops.py        every State operation of the Python API
#                                 (flat states, pure dicts, map_state, diff,
#                                 State(), jax.tree on jax arrays, first-call
#                                 split/filter/merge, empty-state calls), Flax
#                                 and the package, same venv, checked equal
#                                 first, with a verdict against the targets
#                                 (about six minutes more; JAX_PLATFORMS=cpu)
#
# Takes about thirteen minutes; the memory step needs 1.1 GiB. Run it on a quiet
# machine: the script prints the load first. Everything printed goes to
# target/bench/run-<date>.log too. Exits 1 when a step fails (the memory
# check fails when its bound is not met); the other steps still run.
set -uo pipefail
cd "$(dirname "$0")/.."

mkdir -p target/bench
log="target/bench/run-$(date +%Y%m%d-%H%M%S).log"
exec > >(tee "$log") 2>&1

step() { printf '\n==> %s\n\n' "$*"; }
failed=()

step "machine"
echo "date:    $(date -Iseconds)"
echo "cpus:    $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "kernel:  $(uname -sr)"
echo "rustc:   $(rustc --version)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain -- src python Cargo.toml benches 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"

step "cargo build --release (the library the Python package loads)"
cargo build --release || failed+=("cargo build --release")

step "cargo bench --bench ops"
cargo bench --bench ops || failed+=("ops")

step "cargo bench --bench memory"
cargo bench --bench memory || failed+=("memory")
step "cargo bench --bench memory -- --columnar"
cargo bench --bench memory -- --columnar || failed+=("memory (columnar)")

step "cargo bench --bench cold"
cargo bench --bench cold || failed+=("cold")


step "python benches/side_by_side.py (target/pyvenv)"
venv=target/pyvenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-test.txt; then
  NNX_STATE_LIB="$PWD/target/release/libnnx_state.so" PYTHONPATH="$PWD/python" \
    "$venv/bin/python" benches/side_by_side.py || failed+=("side_by_side.py")
  step "python benches/flat_side_by_side.py (target/pyvenv)"
  NNX_STATE_LIB="$PWD/target/release/libnnx_state.so" PYTHONPATH="$PWD/python" \
    "$venv/bin/python" benches/flat_side_by_side.py || failed+=("flat_side_by_side.py")
  step "python benches/python_ops.py (target/pyvenv)"
  JAX_PLATFORMS=cpu NNX_STATE_LIB="$PWD/target/release/libnnx_state.so" PYTHONPATH="$PWD/python" \
    "$venv/bin/python" benches/python_ops.py || failed+=("python_ops.py")
else
  failed+=("pip install -r python/requirements-test.txt")
fi

step "done: log in $log"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi

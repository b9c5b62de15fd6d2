#!/usr/bin/env bash
# Builds a wheel of the Python package that carries the native library, so
# that `pip install nnx_state-*.whl` works on a machine without Rust.
#
#   python/build_wheel.sh [--out DIR] [--lib PATH] [--no-build] [--no-strip]
#   make wheel                                   # the same, default options
#
# 1. cargo build --release (skipped with --no-build);
# 2. copies the package (python/pyproject.toml, setup.py, README.md and
#    nnx_state/) to a temporary directory and the library (PATH, default
#    target/release/libnnx_state.so) into its nnx_state/, stripped of debug
#    information unless --no-strip. The source tree is left as it is: no
#    library copy is put in python/nnx_state/, where it would go stale and be
#    loaded before the cargo build (see _lib.py);
# 3. `pip wheel` builds it into DIR (default target/wheels). setup.py sees the
#    library and makes the wheel a platform wheel, tagged
#    py3-none-<platform> (e.g. py3-none-linux_x86_64).
#
# The python is $PYTHON (default python3). pip builds in an isolated
# environment and fetches setuptools for it (from PyPI, or pip's cache or
# --find-links); extra arguments after `--` go to `pip wheel` (e.g.
# `-- --no-build-isolation` with setuptools >= 70.1 installed).
#
# The wheel is tagged linux_x86_64, not manylinux: PyPI accepts only
# manylinux/musllinux wheels, which `auditwheel repair` makes from this one
# (it checks the glibc symbols the library uses and retags it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/target/wheels
lib=
build=1
strip_debug=1
python=${PYTHON:-python3}
pip_args=()

usage() { sed -n '2,26p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --lib) lib=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-strip) strip_debug=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; pip_args=("$@"); break ;;
    *) echo "build_wheel.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$(uname -s)" in
  Darwin) lib_name=libnnx_state.dylib ;;
  MINGW*|MSYS*|CYGWIN*) lib_name=nnx_state.dll ;;
  *) lib_name=libnnx_state.so ;;
esac

if [ "$build" = 1 ]; then
  (cd "$repo" && cargo build --release)
fi
lib=${lib:-$repo/target/release/$lib_name}
if [ ! -f "$lib" ]; then
  echo "build_wheel.sh: no library at $lib (run cargo build --release, or pass --lib)" >&2
  exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/nnx-state-wheel.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# The package's parent holds no Cargo.toml, so setup.py records no source
# tree: the installed package uses the library it carries and nothing else.
pkg=$stage/python
mkdir -p "$pkg"
cp "$repo/python/pyproject.toml" "$repo/python/setup.py" "$repo/python/README.md" "$pkg/"
cp -R "$repo/python/nnx_state" "$pkg/nnx_state"
rm -rf "$pkg/nnx_state/__pycache__" "$pkg/nnx_state/_build_config.py" \
  "$pkg"/nnx_state/libnnx_state.* "$pkg/nnx_state/nnx_state.dll"
cp "$lib" "$pkg/nnx_state/$lib_name"
chmod 755 "$pkg/nnx_state/$lib_name"
if [ "$strip_debug" = 1 ] && [ "$lib_name" = libnnx_state.so ] && command -v strip >/dev/null; then
  strip --strip-debug "$pkg/nnx_state/$lib_name"
fi

mkdir -p "$out"
"$python" -m pip wheel --no-deps --disable-pip-version-check --wheel-dir "$out" \
  ${pip_args[@]+"${pip_args[@]}"} "$pkg"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/python/pyproject.toml")
echo "built: $(ls -t "$out"/nnx_state-"$version"-*.whl | head -n 1)"

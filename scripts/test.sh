#!/usr/bin/env bash
# Runs every test: Rust (unit, integration, doc), the C programs and the C/C++
# header checks (driven by `cargo test`), the C programs again under
# AddressSanitizer and UndefinedBehaviorSanitizer (the first run of
# scripts/sanitize.sh; the full script also rebuilds the library with Rust's
# ASan, and cargo test already runs the programs under valgrind), and the
# Python package's tests in a local virtual environment that this script sets
# up (target/pyvenv), and the documentation site (`make docs`) with its links
# checked. What it needs, downloads and installs: README.md,
# "Running the tests".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# cmake and pkg-config for the packaging test: installed system-wide only
# as root, saying so first, and never with NNX_NO_SYSTEM_INSTALL=1.
bash scripts/system-tools.sh

step "cargo build --release (the library the Python tests load)"
cargo build --release

step "cargo test (Rust, C programs, C11/C++17 header checks, conformance replay)"
cargo test --all-targets
cargo test --doc

# Where the compiler cannot build with -fsanitize=address,undefined (no
# libasan/libubsan), say so and go on; scripts/sanitize.sh has the details.
step "C programs under ASan+UBSan (scripts/sanitize.sh --no-rust-asan --no-valgrind)"
probe=$(mktemp -d)
if printf 'int main(void) { return 0; }\n' >"$probe/probe.c" &&
   "${CC:-cc}" -fsanitize=address,undefined "$probe/probe.c" -o "$probe/probe" >/dev/null 2>&1 &&
   "$probe/probe"; then
  rm -rf "$probe"
  bash scripts/sanitize.sh --no-rust-asan --no-valgrind
else
  rm -rf "$probe"
  echo "note: skipped: ${CC:-cc} cannot build and run with -fsanitize=address,undefined here"
fi

if cargo clippy --version >/dev/null 2>&1; then
  step "cargo clippy --all-targets -- -D warnings"
  cargo clippy --all-targets -- -D warnings
else
  step "clippy is not installed here: lint skipped"
fi
if cargo fmt --version >/dev/null 2>&1; then
  step "cargo fmt --check"
  cargo fmt --check
fi

# The site needs the venv (pdoc, markdown-it-py), which docs.sh sets up; it
# runs before the Python tests, so that pytest's summary stays the last line.
step "Documentation site and its links (scripts/docs.sh --no-build: target/doc-site)"
bash scripts/docs.sh --no-build

step "Python tests (virtual environment in target/pyvenv)"
venv=target/pyvenv
# The venv is made once; pip runs only when the requirements changed.
bash scripts/pyvenv.sh "$venv" python/requirements-test.txt
NNX_STATE_LIB="$PWD/target/release/libnnx_state.so" \
  "$venv/bin/python" -m pytest python/tests -q

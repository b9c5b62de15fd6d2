#!/usr/bin/env bash
# Runs every C program (examples-c/*.c and tests/c/*.c) under the sanitizers
# and under valgrind, and exits non-zero on any finding.
#
#   bash scripts/sanitize.sh                  # the three runs below
#   bash scripts/sanitize.sh --no-rust-asan   # skip run 2
#   bash scripts/sanitize.sh --no-valgrind    # skip run 3
#   bash scripts/sanitize.sh --no-rust-asan --no-valgrind
#                                             # run 1 only (scripts/test.sh)
#   bash scripts/sanitize.sh --rust-tests     # also run 4
#
# 1. asan+ubsan: each program built with -fsanitize=address,undefined
#    against the library as cargo builds it (target/debug/libnnx_state.a);
#    ASan checks the C side and every allocation (the library's included),
#    LeakSanitizer the leaks, UBSan the C side's undefined behaviour.
# 2. asan+ubsan, Rust instrumented too: the same, against the library built
#    with `-Zsanitizer=address` (RUSTC_BOOTSTRAP=1 on the stable toolchain)
#    into target/sanitize/, so the library's own memory accesses are checked
#    as well. Skipped, with a note, where that build cannot be made.
# 3. valgrind: each program built plainly, run under memcheck with
#    --leak-check=full --errors-for-leak-kinds=definite,indirect,possible.
# 4. (--rust-tests) the Rust tests of the C API (contract, behaviour) and stress
#    (tests/stress.rs, tests/ffi_*.rs) built with
#    -Zsanitizer=address.
#
# Options for the runs: ASAN_OPTIONS=detect_leaks=1 (and
# allocator_may_return_null=1, so that a test asking for an impossible
# allocation gets the library's NNX_ERR_OUT_OF_MEMORY rather than an ASan
# abort), UBSAN_OPTIONS=halt_on_error=1. Build outputs go to
# target/sanitize/; `CC` picks the compiler (default cc).
set -uo pipefail
cd "$(dirname "$0")/.."

rust_asan=1
valgrind=1
rust_tests=0
for arg in "$@"; do
  case "$arg" in
    --no-rust-asan) rust_asan=0 ;;
    --no-valgrind) valgrind=0 ;;
    --rust-tests) rust_tests=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

CC=${CC:-cc}
OUT=target/sanitize
mkdir -p "$OUT"
CFLAGS=(-std=c11 -Wall -Wextra -Werror -Wpedantic -g -Iinclude)
SAN_FLAGS=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
LIBS=(-lpthread -ldl -lm)
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-}"
HOST=$(rustc -vV | sed -n 's/^host: //p')

failures=()
passes=0
step() { printf '\n==> %s\n' "$*"; }
fail() { failures+=("$1"); printf 'FAIL %s\n' "$1"; }

programs=(examples-c/*.c tests/c/*.c)
if [ ${#programs[@]} -eq 0 ]; then
  echo "no C programs found" >&2
  exit 1
fi

# Builds `source` with the given flags against `lib` and runs it, under the
# command in WRAP (an array) if set. $1: label, $2: library, $3: source,
# then the extra compiler flags.
run_program() {
  local label=$1 lib=$2 source=$3
  shift 3
  local name
  name=$(basename "$source" .c)
  local bin="$OUT/$label-$name"
  local log="$OUT/$label-$name.log"
  if ! "$CC" "${CFLAGS[@]}" "$@" "$source" "$lib" "${LIBS[@]}" -o "$bin" >"$log" 2>&1; then
    fail "$label $source (does not compile, see $log)"
    return
  fi
  if timeout 300 "${WRAP[@]}" "$bin" >>"$log" 2>&1; then
    passes=$((passes + 1))
    printf 'ok   %-8s %s\n' "$label" "$source"
  else
    fail "$label $source (see $log)"
    tail -n 40 "$log" | sed 's/^/    /'
  fi
}

step "cargo build (the library as it ships, debug profile)"
if ! cargo build --lib --quiet; then
  echo "cargo build failed" >&2
  exit 1
fi
plain_lib=target/debug/libnnx_state.a

step "1. asan+ubsan on the C programs, library built normally"
WRAP=()
for source in "${programs[@]}"; do
  run_program asan "$plain_lib" "$source" "${SAN_FLAGS[@]}"
done

if [ "$rust_asan" = 1 ]; then
  step "2. asan+ubsan on the C programs, library built with -Zsanitizer=address"
  asan_target="$OUT/rust-asan"
  if RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" \
       cargo build --lib --quiet --target "$HOST" --target-dir "$asan_target" \
       >"$OUT/rust-asan-build.log" 2>&1; then
    asan_lib="$asan_target/$HOST/debug/libnnx_state.a"
    for source in "${programs[@]}"; do
      run_program rustasan "$asan_lib" "$source" "${SAN_FLAGS[@]}"
    done
  else
    echo "skipped: the library cannot be built with -Zsanitizer=address here"
    tail -n 20 "$OUT/rust-asan-build.log" | sed 's/^/    /'
  fi
fi

if [ "$valgrind" = 1 ]; then
  step "3. valgrind memcheck on the C programs"
  if command -v valgrind >/dev/null 2>&1; then
    WRAP=(valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect,possible
          --error-exitcode=1)
    for source in "${programs[@]}"; do
      run_program valgrind "$plain_lib" "$source"
    done
    WRAP=()
  else
    fail "valgrind is not installed"
  fi
fi

if [ "$rust_tests" = 1 ]; then
  step "4. the Rust C-API contract, behaviour and stress tests with -Zsanitizer=address"
  tests=()
  for t in tests/stress.rs tests/ffi_*.rs; do
    [ -f "$t" ] && tests+=(--test "$(basename "$t" .rs)")
  done
  if RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" \
       RUSTDOCFLAGS="-Zsanitizer=address" \
       cargo test --quiet --target "$HOST" --target-dir "$OUT/rust-asan" "${tests[@]}" \
       >"$OUT/rust-tests.log" 2>&1; then
    passes=$((passes + 1))
    grep -E '^test result' "$OUT/rust-tests.log" | sed 's/^/    /'
    echo "ok   rust tests under asan"
  else
    fail "rust tests under asan (see $OUT/rust-tests.log)"
    tail -n 40 "$OUT/rust-tests.log" | sed 's/^/    /'
  fi
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
  printf '%d run(s) clean, %d failed:\n' "$passes" "${#failures[@]}"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
printf 'all %d runs clean\n' "$passes"

#!/usr/bin/env python3
"""Flax NNX and nnx_state side by side: the same model-shaped state, the same
operations, in one process, interleaved.

    python benches/side_by_side.py                 # defaults below
    python benches/side_by_side.py --sizes 1000,10000 --nnx-only-sizes '' --reps 9

(`bash benches/run.sh` runs it in target/pyvenv, with flax 0.12.8.)

The state is the one `benches/ops.rs` uses: `layers/<i>/attn/{q,k,v,o}: Param`,
`layers/<i>/norm/{scale: Param, mean, var: BatchStat}`, `layers/<i>/cache/{k,v}:
Cache`, nine leaves a layer, each holding a float32 array of shape (1,), so
that array work does not hide the tree work. It is built once per size (not
timed): in Flax as an `nnx.State` of nested dicts of `nnx.Param` /
`nnx.BatchStat` / `nnx.Cache`, and in nnx_state with `nnx_state.from_flat_state`
over the same paths in the same (model) order, lending it the very numpy
arrays the Flax variables hold.

Operations: `split_state(Param, BatchStat, Cache)`, `filter_state(Param)`,
`filter_state(PathContains('attn'))`, `merge_state` of the three split parts,
`to_flat_state`. Each is one library call from the Python package (plus its
constant Python wrapping); `to_flat_state` makes a few C calls and then one
Python object per leaf (see `flat_side_by_side.py` for flat states alone).

nnx_state remembers derived facts in the tree (recent partitions of a node
by type/path filters, the last merge), so calling the same operation again
on an unchanged state is cheaper than the first call. Two columns show it:

- `cold`: each sample runs on a fresh `deep_copy()` of the state (new nodes,
  new variables, nothing derived yet; for merge, the parts of a split of that
  copy), made before the timer starts. This is the first call on a state.
- `repeat`: each sample runs on the same state (same parts for merge) that
  was already used, as a loop that filters an unchanged state does, and the
  previous call's result is kept until this one returns, as an engine keeps
  the parts of its state from one step to the next (nnx_state remembers a
  result only while its caller holds it; one dropped is computed again). It
  runs right after the Flax sample, so it starts with CPU caches full of
  Flax's data; a second small table shows split and filter repeated back to
  back.

Flax keeps nothing between calls, so it has one column. The speed-up is
Flax's median over nnx_state's median, for each column.

Samples go round robin: for every repetition, every operation runs once in
Flax, once repeated and once cold, so machine noise hits all alike. Only the
call is timed; dropping its result is not (for either library), nor making
and freeing the fresh copies (after which the C allocator is trimmed, so that
no timed call pays for consolidating the copy's freed memory). Python's
garbage collector stays on, as in real use. Medians are reported.

nnx_state keeps the results of filter, split and merge only while they are
alive, so the `repeat` column holds each result until the next call returns
(see `Holder`); dropped results are computed again.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from ctypes import byref, c_size_t

import numpy as np

try:
    import nnx_state as nnx
except ImportError:  # not installed: the package of this source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
    import nnx_state as nnx

try:
    from flax import nnx as fnnx
    import flax
except ImportError:  # pragma: no cover - the venv of run.sh has flax
    fnnx = None
    flax = None

LAYER = (
    (("attn", "q"), "Param"),
    (("attn", "k"), "Param"),
    (("attn", "v"), "Param"),
    (("attn", "o"), "Param"),
    (("norm", "scale"), "Param"),
    (("norm", "mean"), "BatchStat"),
    (("norm", "var"), "BatchStat"),
    (("cache", "k"), "Cache"),
    (("cache", "v"), "Cache"),
)
LEAVES_PER_LAYER = len(LAYER)

OPS = (
    "split(Param, BatchStat, Cache)",
    "filter(Param)",
    "filter(PathContains('attn'))",
    "merge(3 parts)",
    "to_flat_state",
)

# The operations timed back to back as well.
CACHED_OPS = OPS[:3]

now = time.perf_counter_ns


# --------------------------------------------------------------------------
# Building the states (not timed)
# --------------------------------------------------------------------------


def layer_count(leaves: int) -> int:
    return -(-leaves // LEAVES_PER_LAYER)  # as ops.rs: 1,000 -> 112 layers, 1,008 leaves


def model_arrays(leaves: int) -> list[list[np.ndarray]]:
    """One float32 array of shape (1,) per leaf, layer by layer."""
    block = np.zeros((layer_count(leaves) * LEAVES_PER_LAYER, 1), np.float32)
    rows = list(block)  # views of one block: cheap to make, distinct arrays
    return [rows[i:i + LEAVES_PER_LAYER] for i in range(0, len(rows), LEAVES_PER_LAYER)]


def flax_state(arrays):
    cls = {"Param": fnnx.Param, "BatchStat": fnnx.BatchStat, "Cache": fnnx.Cache}
    layers = {}
    for i, row in enumerate(arrays):
        layer: dict = {}
        for ((group, name), kind), value in zip(LAYER, row):
            layer.setdefault(group, {})[name] = cls[kind](value)
        layers[i] = layer
    return fnnx.State({"layers": layers})


def nnx_state_of(arrays):
    cls = {"Param": nnx.Param, "BatchStat": nnx.BatchStat, "Cache": nnx.Cache}
    items = [
        (("layers", i, group, name), cls[kind](value))
        for i, row in enumerate(arrays)
        for ((group, name), kind), value in zip(LAYER, row)
    ]
    return nnx.from_flat_state(items)


# --------------------------------------------------------------------------
# The operations, written once per library
# --------------------------------------------------------------------------


def ops_for(lib):
    """name -> (prepare(state) -> input, run(input) -> result)."""
    types = (lib.Param, lib.BatchStat, lib.Cache)
    same = lambda s: s  # noqa: E731
    split_parts = lambda s: lib.split_state(s, *types)  # noqa: E731
    return {
        OPS[0]: (same, lambda s: lib.split_state(s, *types)),
        OPS[1]: (same, lambda s: lib.filter_state(s, lib.Param)),
        OPS[2]: (same, lambda s: lib.filter_state(s, lib.PathContains("attn"))),
        OPS[3]: (split_parts, lambda parts: lib.merge_state(*parts)),
        OPS[4]: (same, lambda s: lib.to_flat_state(s)),
    }


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


_trim = _malloc_trim()


def trim_allocator() -> None:
    if _trim is not None:
        _trim(0)


def timed(run, arg) -> int:
    t = now()
    result = run(arg)
    elapsed = now() - t
    del result  # not timed
    return elapsed


class Holder:
    """Times calls whose result is kept until the next call returns, as an
    engine keeps the parts of a state from one step to the next: nnx_state
    remembers a result only while its caller holds it."""

    def __init__(self):
        self.held = {}

    def timed(self, name, run, arg) -> int:
        t = now()
        result = run(arg)
        elapsed = now() - t
        previous = self.held.get(name)
        self.held[name] = result
        del previous  # not timed
        return elapsed


def check_same(fstate, state):
    """The outputs of both libraries hold the same paths with the same types."""

    def listing(lib, s):
        flat = lib.to_flat_state(s)
        return [(tuple(p), type(v).__name__) for p, v in zip(flat.paths, flat.leaves)]

    def describe(lib, out):
        if isinstance(out, tuple):
            return [listing(lib, x) for x in out]
        if not isinstance(out, lib.State):  # a FlatState
            return [(tuple(p), type(v).__name__) for p, v in zip(out.paths, out.leaves)]
        return listing(lib, out)

    theirs, ours = ops_for(fnnx), ops_for(nnx)
    for name in OPS:
        a = describe(fnnx, theirs[name][1](theirs[name][0](fstate)))
        b = describe(nnx, ours[name][1](ours[name][0](state)))
        if a != b:
            raise SystemExit(f"side_by_side: {name}: Flax and nnx_state disagree")


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def measure_size(leaves: int, reps: int, with_flax: bool, skip: set[str]):
    arrays = model_arrays(leaves)
    t = time.perf_counter()
    fstate = flax_state(arrays) if with_flax else None
    t_flax = time.perf_counter() - t
    t = time.perf_counter()
    state = nnx_state_of(arrays)
    t_nnx = time.perf_counter() - t
    n = state.num_leaves()
    print(
        f"  {n:,} leaves: built in {t_flax:.1f} s (Flax), {t_nnx:.1f} s (nnx_state, "
        "from_flat_state); not timed",
        flush=True,
    )
    if with_flax and leaves <= 10_000:
        check_same(fstate, state)

    names = [name for name in OPS if name not in skip]
    flax_ops = ops_for(fnnx) if with_flax else {}
    our_ops = ops_for(nnx)
    flax_inputs = {name: flax_ops[name][0](fstate) for name in names} if with_flax else {}
    repeat_inputs = {name: our_ops[name][0](state) for name in names}
    holder = Holder()
    for name in names:  # the first call, so that the samples are repeats
        holder.timed(name, our_ops[name][1], repeat_inputs[name])

    samples = {name: {"flax": [], "cold": [], "repeat": []} for name in names}
    for _ in range(reps):
        for name in names:
            prepare, run = our_ops[name]
            if with_flax:
                samples[name]["flax"].append(timed(flax_ops[name][1], flax_inputs[name]))
            samples[name]["repeat"].append(holder.timed(name, run, repeat_inputs[name]))
            fresh = prepare(state.deep_copy())
            samples[name]["cold"].append(timed(run, fresh))
            del fresh
            # Freeing the copy leaves the C allocator with many small free
            # chunks, which it would consolidate inside the next timed call
            # (0.15 ms at 100,000 leaves): do it here, untimed.
            trim_allocator()
    # The repeat column runs right after a Flax sample, with the CPU caches
    # full of Flax's data; here the cached operations run back to back.
    for name in names:
        if name in CACHED_OPS:
            run = our_ops[name][1]
            samples[name]["back to back"] = [
                holder.timed(name, run, repeat_inputs[name]) for _ in range(21)
            ]
    del flax_inputs, repeat_inputs, fstate, state, holder
    gc.collect()
    return n, {
        name: {k: statistics.median(v) if v else None for k, v in cols.items()}
        for name, cols in samples.items()
    }


def fmt_time(ns) -> str:
    if ns is None:
        return "-"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} us"


def fmt_per_leaf(ns, leaves) -> str:
    if ns is None:
        return "-"
    us = ns / leaves / 1e3
    return f"{us:.3f}" if us >= 0.1 else f"{us:.4f}"


def fmt_ratio(a, b) -> str:
    if a is None or b is None:
        return "-"
    r = a / b
    return f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x"


def print_table(rows):
    head = (
        f"| {'leaves':>9} | {'operation':<30} | {'Flax':>9} | {'nnx cold':>9} | {'nnx repeat':>10} "
        f"| {'speed-up cold':>13} | {'speed-up repeat':>15} "
        f"| {'Flax us/leaf':>12} | {'cold us/leaf':>12} | {'repeat us/leaf':>14} |"
    )
    print(head)
    cells = head.split("|")[1:-1]
    print("|" + "|".join(("-" * (len(c) - 1) + ":") if i != 1 else "-" * len(c) for i, c in enumerate(cells)) + "|")
    for n, name, m in rows:
        print(
            f"| {n:>9,} | {name:<30} | {fmt_time(m['flax']):>9} | {fmt_time(m['cold']):>9} "
            f"| {fmt_time(m['repeat']):>10} | {fmt_ratio(m['flax'], m['cold']):>13} "
            f"| {fmt_ratio(m['flax'], m['repeat']):>15} | {fmt_per_leaf(m['flax'], n):>12} "
            f"| {fmt_per_leaf(m['cold'], n):>12} | {fmt_per_leaf(m['repeat'], n):>14} |"
        )


def per_call(fn, calls=2000, batches=7) -> float:
    """Median time of one call, in ns, over batches of `calls` calls."""
    out = []
    for _ in range(batches):
        t = now()
        for _ in range(calls):
            fn()
        out.append((now() - t) / calls)
    return statistics.median(out)


def python_overhead():
    """What a call costs when the library has (almost) nothing to do."""
    from nnx_state._lib import lib as clib

    tiny = nnx.State({"a": nnx.Param(np.zeros(1, np.float32))})
    empty = nnx.State()
    fempty = fnnx.State({}) if fnnx else None
    h, out = tiny._h, c_size_t()
    rows = [
        ("raw ctypes call: lib.nnx_state_num_leaves(h, byref(out))",
         lambda: clib.nnx_state_num_leaves(h, byref(out)), None),
        ("State.num_leaves() (one C call, checked)", tiny.num_leaves, None),
        ("split_state(empty, Param, BatchStat, Cache)",
         lambda: nnx.split_state(empty, nnx.Param, nnx.BatchStat, nnx.Cache),
         (lambda: fnnx.split_state(fempty, fnnx.Param, fnnx.BatchStat, fnnx.Cache)) if fnnx else None),
        ("filter_state(empty, Param)", lambda: nnx.filter_state(empty, nnx.Param),
         (lambda: fnnx.filter_state(fempty, fnnx.Param)) if fnnx else None),
        ("filter_state(empty, PathContains('attn'))",
         lambda: nnx.filter_state(empty, nnx.PathContains("attn")),
         (lambda: fnnx.filter_state(fempty, fnnx.PathContains("attn"))) if fnnx else None),
        ("merge_state(empty, empty, empty)", lambda: nnx.merge_state(empty, empty, empty),
         (lambda: fnnx.merge_state(fempty, fempty, fempty)) if fnnx else None),
        ("to_flat_state(empty)", lambda: nnx.to_flat_state(empty),
         (lambda: fnnx.to_flat_state(fempty)) if fnnx else None),
    ]
    print("| call | nnx_state | Flax |")
    print("|---|---:|---:|")
    for label, ours, theirs in rows:
        a = per_call(ours)
        b = per_call(theirs) if theirs else None
        print(f"| {label} | {a / 1e3:.2f} us | {'-' if b is None else f'{b / 1e3:.2f} us'} |")


def git_describe() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "python", "Cargo.toml"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes in src, python or Cargo.toml)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000",
                   help="leaf counts run in both libraries (default: %(default)s)")
    p.add_argument("--nnx-only-sizes", default="1000000",
                   help="leaf counts run in nnx_state only, where Flax would take too long "
                        "(default: %(default)s; '' for none)")
    p.add_argument("--reps", type=int, default=None,
                   help="samples per operation and column (default: 31 up to 1,000 leaves, "
                        "15 up to 10,000, 7 up to 100,000, 5 above)")
    args = p.parse_args(argv)
    sizes = [(int(s), True) for s in args.sizes.split(",") if s]
    sizes += [(int(s), False) for s in args.nnx_only_sizes.split(",") if s]
    if fnnx is None:
        print("flax is not installed: nnx_state only", file=sys.stderr)
        sizes = [(s, False) for s, _ in sizes]

    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"flax {flax.__version__ if flax else '-'}")
    print(f"nnx_state: {nnx.library_path} (library {nnx.library_version}), commit {git_describe()}")
    print()
    print("Python-side cost of a call with (almost) nothing to do: the constant part")
    print("of every row below (ctypes, building the native filters, wrapping results).")
    print()
    python_overhead()
    print()

    rows = []
    started = time.perf_counter()
    for leaves, with_flax in sizes:
        reps = args.reps or (31 if leaves <= 1_000 else 15 if leaves <= 10_000 else 7 if leaves <= 100_000 else 5)
        reps = max(reps, 5)
        # to_flat_state builds Python objects leaf by leaf in both libraries:
        # at a million leaves that is tens of seconds a sample.
        skip = {"to_flat_state"} if not with_flax and leaves > 100_000 else set()
        print(f"measuring {leaves:,} leaves, {reps} samples per column"
              + ("" if with_flax else ", nnx_state only")
              + (f", without {', '.join(sorted(skip))}" if skip else "") + " ...", flush=True)
        n, medians = measure_size(leaves, reps, with_flax, skip)
        rows += [(n, name, m) for name, m in medians.items()]
    print(f"(measured in {time.perf_counter() - started:.0f} s)")
    print()
    print("Medians. cold: first call on a fresh copy; repeat: the same call again on an")
    print("unchanged state. speed-up: Flax median / nnx_state median.")
    print()
    print_table(rows)
    print()
    print("The same repeated calls back to back (21 in a row, warm CPU caches), as a loop")
    print("that does nothing else would see them:")
    print()
    print(f"| {'leaves':>9} | {'operation':<30} | {'nnx repeat, back to back':>24} | {'us/leaf':>8} |")
    print(f"|{'-' * 10}:|{'-' * 32}|{'-' * 25}:|{'-' * 9}:|")
    for n, name, m in rows:
        if m.get("back to back") is not None:
            print(f"| {n:>9,} | {name:<30} | {fmt_time(m['back to back']):>24} "
                  f"| {fmt_per_leaf(m['back to back'], n):>8} |")


if __name__ == "__main__":
    # Every state lives in a function and is gone before the interpreter
    # shuts down: freeing a state that holds lent numpy arrays during
    # shutdown can call a release callback that no longer exists.
    main()

#!/usr/bin/env python3
"""Flax NNX and nnx_state side by side on every State operation of the Python
API, the same model-shaped states, in one process, interleaved, medians, with
a verdict against the performance targets.

    JAX_PLATFORMS=cpu target/pyvenv/bin/python benches/python_ops.py
    JAX_PLATFORMS=cpu target/pyvenv/bin/python benches/python_ops.py --sizes 10,1000 --reps 9
    JAX_PLATFORMS=cpu target/pyvenv/bin/python benches/python_ops.py --million

(`bash benches/run.sh` runs it in target/pyvenv, with flax 0.12.8.)

The state is the one `benches/side_by_side.py` builds, with its builders:
`layers/<i>/attn/{q,k,v,o}: Param`, `layers/<i>/norm/{scale: Param, mean,
var: BatchStat}`, `layers/<i>/cache/{k,v}: Cache`, nine leaves a layer (a size
of 1,000 means 112 layers, 1,008 leaves), each leaf a float32 array of shape
(1,) holding its own index, so that a wrong leaf shows in the check.

Arrays: the `jax.tree` operations run on states of jax arrays (one
`jax.Array` of shape (1,) per leaf, on the CPU device, as in a real model);
the other operations run on numpy arrays, as side_by_side.py does, unless
`--arrays jax`. Both libraries' states are built from the same arrays
(nnx_state holds them without a copy).

Operations, each one library call on an input made before the timer starts:

- steady (the same input every sample, held from one sample to the next):
  `to_flat_state(state)`; `from_flat_state(flat)` of a flat state of the
  library's own variables (for nnx_state, of a copy: holding it would keep
  a Python object alive for each variable of `state`, which makes
  `to_flat_state(state)` cheaper, see flat_side_by_side.py);
  `to_pure_dict(state)`; `map_state(lambda path, x: x, state)`;
  `diff(state, filter_state(state, Param))` (5 of 9 leaves); in place on a
  state of its own, `replace_by_pure_dict(s, to_pure_dict(s))`;
  `State(nested)` from nested dicts of the library's variables in model
  order; `jax.tree.leaves(s)`, `jax.tree.map(lambda x: x, s)`,
  `jax.tree_util.tree_flatten_with_path(s)`.
- first call: `split_state(s, Param, BatchStat, Cache)`, `filter_state(s,
  Param)`, `merge_state(*parts)`, where `s` is a new state built for that
  sample with the builders (new nodes, new variables, over the same arrays),
  for both libraries, and `parts` is a split of such a state made before
  the timer starts. nnx_state remembers derived facts in a node; a state it
  never saw has none. Results are dropped after each call.
- the fixed cost of one call: split, filter and merge of an EMPTY state,
  the median over batches of 2,000 calls (dropping each result included),
  Flax and ours batch by batch.

Flax's `diff` looks each path up in a tuple of the other state's paths, so
its time grows with the square of the size (0.8 s at 10,000 leaves); above
`--flax-diff-max` leaves it is not run but predicted from the largest size
it ran at, times the squared ratio of leaf counts, and marked `~`. The check
then compares against Flax's own expression with a set of paths, which
selects the same leaves.

Before timing, for every size, each operation runs once in both libraries
and the results are compared leaf by leaf, in order: path (or jax key
path), variable class, metadata, class of the value, and the values (the
first calls on a fresh state; `replace_by_pure_dict` on a fresh state with
a pure dict of new values, so that a replacement that did nothing shows).
A difference stops the script with exit status 1 and the first differing
leaf: a wrong answer is never timed. Missed targets are reported, not an
error. (At 1,000,000 leaves there is no Flax to check against.)

Samples go round robin: for every repetition, every operation runs once in
Flax, then once in nnx_state. The garbage collector is paused during a
sample (as `timeit` does; see flat_side_by_side.py), and each sample ends
with `gc.collect(0)` inside the timed region, which charges each library
for the objects it made; the result is dropped after the timer stops.
(Freezing the inputs out of the collector instead, `gc.freeze()`, made the
collector run full collections of the young objects far more often, since
it counts only unfrozen objects as long-lived: calls that make 100,000
objects grew faster than their size.) Fresh inputs are built outside the timed region and followed by a
full collection (so that none falls into a timed call) and, once freed, by
a trim of the C allocator. Medians are reported.

With `--million`, 1,000,000 leaves run in nnx_state only (Flax would take
many minutes a sample; this adds twenty minutes or more). For the first-call
rows there, the Flax column is Flax's per-leaf cost at the largest measured
size times the leaf count, marked `~`, and the verdict is against it.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import time
from collections.abc import Mapping

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

# The state, its builders and the helpers are those of side_by_side.py and
# flat_side_by_side.py (this directory), so all three measure the same state.
from flat_side_by_side import timed  # noqa: E402
from side_by_side import (  # noqa: E402
    LAYER,
    cpu_model,
    flax,
    flax_state,
    fmt_per_leaf,
    fmt_time,
    fnnx,
    git_describe,
    model_arrays,
    nnx,
    now,
    trim_allocator,
)
from side_by_side import nnx_state_of as our_state  # noqa: E402

if fnnx is None:
    raise SystemExit("python_ops.py needs flax (run it in target/pyvenv, as benches/run.sh does)")

from flax.nnx import statelib as flax_statelib  # noqa: E402  (Flax does not export diff)
from flax.nnx import traversals as flax_traversals  # noqa: E402

FIRST_CALL = ("split(Param, BatchStat, Cache)", "filter(Param)", "merge(3 parts)")
FROM_FLAT, DIFF, REPLACE = "from_flat_state", "diff(state, filter(Param))", "replace_by_pure_dict"
# The steady operations that share one state.
ON_STATE = ("to_flat_state", "to_pure_dict", "map_state(identity)", DIFF)
JAX_OPS = ("jax.tree.leaves", "jax.tree.map(identity)", "tree_flatten_with_path")
EMPTY_OPS = ("split(empty, Param, BatchStat, Cache)", "filter(empty, Param)", "merge(empty, empty, empty)")
OPS = (
    "to_flat_state",
    FROM_FLAT,
    "to_pure_dict",
    "map_state(identity)",
    DIFF,
    REPLACE,
    "State(nested dicts)",
    *JAX_OPS,
    *FIRST_CALL,
)

# The targets.
NOT_SLOWER = 1.0  # at every size
FROM_1000 = 2.0  # from 1,000 leaves up
FIRST_CALL_100K = 100.0  # first-call split/filter/merge at 100,000 leaves
EMPTY_US = 5.0  # one call on an empty state


def identity(*args):
    return args[-1]


# --------------------------------------------------------------------------
# The two libraries, behind the same names
# --------------------------------------------------------------------------


class Lib:
    def __init__(self, name, mod, build, diff, unflatten):
        self.name, self.mod, self.build, self.diff, self.unflatten = name, mod, build, diff, unflatten
        self.kinds = (mod.Param, mod.BatchStat, mod.Cache)

    def nested(self, arrays) -> dict:
        """Nested dicts of new variables, in model order (the input of State())."""
        cls = dict(zip(("Param", "BatchStat", "Cache"), self.kinds))
        return self.unflatten({
            ("layers", i, group, name): cls[kind](value)
            for i, row in enumerate(arrays)
            for ((group, name), kind), value in zip(LAYER, row)
        })

    def split(self, s):
        return self.mod.split_state(s, *self.kinds)


FLAX = Lib("Flax", fnnx, flax_state, flax_statelib.diff, flax_traversals.unflatten_mapping)
OURS = Lib("nnx_state", nnx, our_state, nnx.diff, nnx.statelib.unflatten_mapping)


def flax_diff_by_set(state, other):
    """Flax's diff with the other state's paths in a set: the same leaves, in
    linear time (the reference where Flax's own would take minutes)."""
    paths = set(fnnx.to_flat_state(other).paths)
    return fnnx.from_flat_state({k: v for k, v in fnnx.to_flat_state(state) if k not in paths})


def runners(lib: Lib):
    """name -> run(input) -> result."""
    m = lib.mod
    return {
        "to_flat_state": m.to_flat_state,
        FROM_FLAT: m.from_flat_state,
        "to_pure_dict": m.to_pure_dict,
        "map_state(identity)": lambda s: m.map_state(identity, s),
        DIFF: lambda a: lib.diff(*a),
        REPLACE: lambda a: m.replace_by_pure_dict(*a),
        "State(nested dicts)": m.State,
        "jax.tree.leaves": jax.tree.leaves,
        "jax.tree.map(identity)": lambda s: jax.tree.map(identity, s),
        "tree_flatten_with_path": jax.tree_util.tree_flatten_with_path,
        FIRST_CALL[0]: lib.split,
        FIRST_CALL[1]: lambda s: m.filter_state(s, m.Param),
        FIRST_CALL[2]: lambda parts: m.merge_state(*parts),
    }


def steady_inputs(lib: Lib, arrays, jarrays, names) -> dict:
    """The inputs of the steady operations, each made once and held."""
    state = lib.build(arrays) if any(name in ON_STATE for name in names) else None
    inputs = {}
    for name in names:
        if name == DIFF:
            inputs[name] = (state, lib.mod.filter_state(state, lib.mod.Param))
        elif name in ON_STATE:
            inputs[name] = state
        elif name == FROM_FLAT:
            inputs[name] = lib.mod.to_flat_state(lib.build(arrays))
        elif name == REPLACE:
            own = lib.build(arrays)
            inputs[name] = (own, lib.mod.to_pure_dict(own))
        elif name == "State(nested dicts)":
            inputs[name] = lib.nested(arrays)
    if any(name in JAX_OPS for name in names):
        jstate = lib.build(jarrays)
        inputs.update({name: jstate for name in JAX_OPS if name in names})
    return inputs


def fresh_input(lib: Lib, name, arrays):
    """A state this library never saw (for merge: the parts of its split)."""
    s = lib.build(arrays)
    return lib.split(s) if name == FIRST_CALL[2] else s


# --------------------------------------------------------------------------
# Checking that both give the same answer (before any timing)
# --------------------------------------------------------------------------


def describe(x) -> tuple[list, np.ndarray]:
    """What a result holds, comparable across the libraries: one entry per
    leaf, in order (its path or jax key path, and for a variable its class
    and sorted metadata, then the class of the value), and all the values
    end to end in one array."""
    entries, arrays = [], []
    is_variable = {}  # by class: isinstance through the classes' metaclasses is slow

    def leaf(path, v):
        cls = type(v)
        if cls not in is_variable:
            is_variable[cls] = issubclass(cls, (fnnx.Variable, nnx.Variable))
        if is_variable[cls]:
            entries.append((path, type(v).__name__, tuple(sorted(v.get_metadata().items()))))
            v = v.get_value()
        else:
            entries.append((path, None, None))
        entries[-1] += (type(v).__name__,)
        arrays.append(np.asarray(v).ravel())

    def walk(prefix, x):
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], jax.tree_util.PyTreeDef):
            for kp, v in x[0]:  # tree_flatten_with_path
                leaf(prefix + (jax.tree_util.keystr(kp),), v)
        elif isinstance(x, (tuple, list)):  # split parts, jax.tree.leaves
            for i, part in enumerate(x):
                (walk if isinstance(part, Mapping) else leaf)(prefix + (i,), part)
        else:
            if isinstance(x, fnnx.State):
                x = fnnx.to_flat_state(x)
            elif isinstance(x, nnx.State):
                x = nnx.to_flat_state(x)
            elif isinstance(x, Mapping):  # a pure dict, in its own order
                x = flax_traversals.flatten_to_sequence(x)
            for path, v in x:
                leaf(prefix + tuple(path), v)

    walk((), x)
    return entries, np.concatenate(arrays) if arrays else np.zeros(0)


def differences(a, b) -> str | None:
    """Where two descriptions differ, or None."""
    (ea, va), (eb, vb) = a, b
    if ea == eb and np.array_equal(va, vb):
        return None
    if ea != eb:
        i = next((i for i, (x, y) in enumerate(zip(ea, eb)) if x != y), min(len(ea), len(eb)))
        return (f"{len(ea)} vs {len(eb)} leaves; first difference at leaf {i}: "
                f"Flax {ea[i] if i < len(ea) else '-'}, nnx_state {eb[i] if i < len(eb) else '-'}")
    i = int(np.flatnonzero(va != vb)[0])
    return f"the values differ first at leaf {i} ({ea[i][0]}): Flax {va[i]}, nnx_state {vb[i]}"


def check_size(steady: dict, arrays, names, flax_diff_runs: bool) -> None:
    """Runs every operation once in both libraries and compares the results:
    on the steady inputs (the timed ones; no operation but
    replace_by_pure_dict changes its input), on one fresh state for the
    three first calls (merge takes the parts its split gave), and for
    replace_by_pure_dict on a fresh state with a pure dict of new values
    (each value + 1, so that a replacement that did nothing shows)."""
    inputs = {}
    for lib in (FLAX, OURS):
        inputs[lib.name] = dict(steady[lib.name])
        inputs[lib.name][FIRST_CALL[0]] = inputs[lib.name][FIRST_CALL[1]] = lib.build(arrays)
        if REPLACE in names:
            own = lib.build(arrays)
            pure = jax.tree.map(lambda v: np.asarray(v) + 1, lib.mod.to_pure_dict(own))
            inputs[lib.name][REPLACE] = (own, pure)
    theirs, ours = runners(FLAX), runners(OURS)
    if not flax_diff_runs:
        theirs[DIFF] = lambda a: flax_diff_by_set(*a)
    results = {}
    for name in names:
        a_in, b_in = inputs["Flax"].get(name), inputs["nnx_state"].get(name)
        if name == FIRST_CALL[2]:
            a_in, b_in = results[FIRST_CALL[0]]
        a, b = theirs[name](a_in), ours[name](b_in)
        results[name] = a, b
        if name == REPLACE:  # in place: compare the states
            a, b = a_in[0], b_in[0]
            if differences(describe(fnnx.to_pure_dict(a)), describe(a_in[1])):
                raise SystemExit("python_ops: replace_by_pure_dict: Flax's state does not hold the new values")
        diff = differences(describe(a), describe(b))
        if diff:
            raise SystemExit(f"python_ops: {name}: Flax and nnx_state disagree: {diff}")


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def numbered(leaves: int) -> list[list[np.ndarray]]:
    """side_by_side's arrays, each holding its own index."""
    arrays = model_arrays(leaves)
    block = arrays[0][0].base  # the rows are views of one block
    block[:, 0] = np.arange(len(block), dtype=np.float32)
    return arrays


def as_jax(arrays):
    """The same values as jax arrays on the CPU device, the same rows."""
    flat = jax.device_put([a for row in arrays for a in row])
    width = len(arrays[0])
    return [flat[i:i + width] for i in range(0, len(flat), width)]


def settle() -> None:
    """Untimed: collect everything pending and give freed memory back."""
    gc.collect()
    trim_allocator()


def measure_size(leaves, reps, with_flax, flax_diff_runs, use_jax_everywhere, names):
    t = time.perf_counter()
    arrays = numbered(leaves)
    jarrays = as_jax(arrays) if use_jax_everywhere or any(name in JAX_OPS for name in names) else None
    if use_jax_everywhere:
        arrays = jarrays
    libs = (FLAX, OURS) if with_flax else (OURS,)
    run = {lib.name: runners(lib) for lib in libs}
    inputs = {lib.name: steady_inputs(lib, arrays, jarrays, names) for lib in libs}
    if with_flax:
        check_size(inputs, arrays, names, flax_diff_runs)
    n = sum(len(row) for row in arrays)
    settle()
    print(f"  {n:,} leaves: arrays, states{' and check' if with_flax else ' (no check: no Flax)'} in "
          f"{time.perf_counter() - t:.1f} s (not timed)", flush=True)

    samples = {(lib.name, name): [] for lib in libs for name in names}
    for _ in range(reps):
        for name in names:
            skip_flax = name == DIFF and not flax_diff_runs
            if name in FIRST_CALL:
                fresh = {lib.name: fresh_input(lib, name, arrays) for lib in libs}
                settle()
                for lib in libs:
                    samples[lib.name, name].append(timed(run[lib.name][name], fresh[lib.name]))
                del fresh
                trim_allocator()
                continue
            for lib in libs:
                if lib is FLAX and skip_flax:
                    continue
                samples[lib.name, name].append(timed(run[lib.name][name], inputs[lib.name][name]))
    del inputs
    settle()
    return n, {key: statistics.median(v) if v else None for key, v in samples.items()}


def empty_calls(names, batches=7, calls=2000):
    """Median ns of one call on an empty state, Flax and ours batch by batch."""
    out = {}
    for lib in (FLAX, OURS):
        empty = lib.mod.State({})
        m = lib.mod
        out[lib.name] = {
            EMPTY_OPS[0]: lambda m=m, e=empty, k=lib.kinds: m.split_state(e, *k),
            EMPTY_OPS[1]: lambda m=m, e=empty: m.filter_state(e, m.Param),
            EMPTY_OPS[2]: lambda m=m, e=empty: m.merge_state(e, e, e),
        }
    samples = {(lib, name): [] for lib in out for name in names}
    for _ in range(batches):
        for name in names:
            for lib, fns in out.items():
                fn = fns[name]
                t = now()
                for _ in range(calls):
                    fn()
                samples[lib, name].append((now() - t) / calls)
    return {key: statistics.median(v) for key, v in samples.items()}


# --------------------------------------------------------------------------
# Verdicts and the table
# --------------------------------------------------------------------------


def verdict(name, size, flax_ns, ours_ns) -> str | None:
    """None when the row meets its targets, else what it misses."""
    if name in EMPTY_OPS:
        misses = []
        if ours_ns / 1e3 >= EMPTY_US:
            misses.append(f"not under {EMPTY_US:.0f} us")
        if flax_ns < ours_ns:
            misses.append("slower than Flax")
        return "; ".join(misses) or None
    if flax_ns is None:
        return None
    ratio = flax_ns / ours_ns
    if name in FIRST_CALL and size == 100_000 and ratio < FIRST_CALL_100K:
        return f"under {FIRST_CALL_100K:.0f}x Flax"
    if size >= 1_000 and ratio < FROM_1000:
        return "slower than Flax" if ratio < NOT_SLOWER else f"under {FROM_1000:.0f}x Flax"
    if ratio < NOT_SLOWER:
        return "slower than Flax"
    return None


def fmt_ratio(r: float) -> str:
    return f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 0.1 else f"{r:.3f}x"


def array_kind(name, use_jax_everywhere) -> str:
    if name in EMPTY_OPS:
        return "-"
    return "jax" if name in JAX_OPS or use_jax_everywhere else "numpy"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,100,1000,10000,100000",
                   help="leaf counts run in both libraries (default: %(default)s)")
    p.add_argument("--million", action="store_true",
                   help="also 1,000,000 leaves, nnx_state only (twenty minutes more or so)")
    p.add_argument("--reps", type=int, default=None,
                   help="samples per operation and library (default: 41 up to 100 leaves, 21 up to "
                        "1,000, 7 up to 10,000, 5 up to 100,000, 3 above)")
    p.add_argument("--flax-diff-max", type=int, default=10_008,
                   help="largest size at which Flax's quadratic diff runs; above, it is predicted "
                        "(default: %(default)s)")
    p.add_argument("--only", default="",
                   help="comma-separated substrings: run only the operations whose name contains one")
    p.add_argument("--arrays", choices=("numpy", "jax"), default="numpy",
                   help="arrays of the operations other than jax.tree (default: %(default)s)")
    args = p.parse_args(argv)
    sizes = [(int(s), True) for s in args.sizes.split(",") if s]
    if args.million:
        sizes.append((1_000_000, False))
    use_jax = args.arrays == "jax"
    wanted = [w for w in args.only.split(",") if w]
    names = [n for n in OPS if not wanted or any(w in n for w in wanted)]
    empty_names = [n for n in EMPTY_OPS if not wanted or any(w in n for w in wanted)]

    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} {platform.release()}; "
          f"load {' '.join(open('/proc/loadavg').read().split()[:3])} (1, 5, 15 min)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__} "
          f"({jax.default_backend()}), flax {flax.__version__}")
    print(f"nnx_state: {nnx.library_path} (library {nnx.library_version}), commit {git_describe()}")
    print(f"arrays: jax arrays for {', '.join(JAX_OPS)}; "
          f"{'jax' if use_jax else 'numpy'} arrays for every other operation")
    t = now()
    for _ in range(1000):
        gc.collect(0)
    print(f"gc.collect(0) alone, in every sample of both libraries: {(now() - t) / 1000 / 1e3:.1f} us")
    print(flush=True)

    rows = []  # (size asked for, leaves, name, Flax ns, ours ns, whether Flax's is predicted)
    started = time.perf_counter()
    empty = empty_calls(empty_names)
    rows += [(0, 0, name, empty["Flax", name], empty["nnx_state", name], False) for name in empty_names]
    flax_per_leaf = {}  # first-call op -> (ns per leaf, at n)
    diff_at = None  # (ns, n) of Flax's diff at the largest size it ran
    for leaves, with_flax in sizes:
        reps = args.reps or (41 if leaves <= 100 else 21 if leaves <= 1_000 else 7 if leaves <= 10_000
                             else 5 if leaves <= 100_000 else 3)
        flax_diff_runs = with_flax and leaves <= args.flax_diff_max
        print(f"measuring {leaves:,} leaves, {reps} samples per operation and library"
              + ("" if with_flax else ", nnx_state only")
              + ("" if flax_diff_runs or not with_flax else ", Flax's diff predicted") + " ...", flush=True)
        n, med = measure_size(leaves, reps, with_flax, flax_diff_runs, use_jax, names)
        for name in names:
            f, o, predicted = med.get(("Flax", name)), med[("nnx_state", name)], False
            if name == DIFF:
                if f is not None:
                    diff_at = (f, n)
                elif with_flax and diff_at is not None:
                    f, predicted = diff_at[0] * (n / diff_at[1]) ** 2, True
            if name in FIRST_CALL:
                if f is not None:
                    flax_per_leaf[name] = f / n
                elif name in flax_per_leaf:
                    f, predicted = flax_per_leaf[name] * n, True
            rows.append((leaves, n, name, f, o, predicted))
    print(f"(measured in {time.perf_counter() - started:.0f} s; "
          f"load {' '.join(open('/proc/loadavg').read().split()[:3])})")
    print()
    print_table(rows, use_jax)


def print_table(rows, use_jax):
    print("Medians. speed-up: Flax / nnx_state. `~`: Flax predicted, not measured (diff: quadratic")
    print("from the largest size it ran at; first calls at 1,000,000: Flax's per-leaf cost at the")
    print("largest measured size). Leaves 0: an empty state, the cost of one call.")
    print("Targets: no op slower than Flax at any size; at least 2x Flax from 1,000 leaves up;")
    print("first-call split/filter/merge at least 100x Flax at 100,000 leaves; empty-state call")
    print("under 5 us.")
    print()
    head = (f"| {'leaves':>9} | {'operation':<38} | {'arrays':<6} | {'Flax':>10} | {'nnx_state':>9} "
            f"| {'speed-up':>8} | {'Flax us/leaf':>12} | {'ours us/leaf':>12} | verdict |")
    print(head)
    print("|---:|:---|:---|---:|---:|---:|---:|---:|:---|")
    misses = []
    for size, n, name, f, o, predicted in rows:
        v = verdict(name, size, f, o)
        mark = "~" if predicted else ""
        ratio = "-" if f is None else mark + fmt_ratio(f / o)
        per = (lambda ns: "-" if ns is None else fmt_per_leaf(ns, n)) if n else (lambda ns: "-")
        if v is None:
            shown = "ok" if f is not None else "- (no Flax)"
        else:
            shown = f"MISS: {v}" + (" (Flax predicted)" if predicted else "")
            misses.append(f"{name} at {n:,} leaves: {v}" + (" (against predicted Flax)" if predicted else "")
                          + ("" if f is None else f" ({ratio})"))
        print(f"| {n:>9,} | {name:<38} | {array_kind(name, use_jax):<6} "
              f"| {(mark + fmt_time(f)) if f is not None else '-':>10} | {fmt_time(o):>9} | {ratio:>8} "
              f"| {(mark if f is not None else '') + per(f):>12} | {per(o):>12} | {shown} |")
    predicted_first = [r for r in rows if r[2] in FIRST_CALL and r[5]]
    if predicted_first:
        print()
        print("First calls above the largest Flax size, against Flax's per-leaf cost there:")
        for size, n, name, f, o, _ in predicted_first:
            print(f"- {name} at {n:,} leaves: {o / n:.0f} ns/leaf; Flax's per-leaf cost predicts "
                  f"{f / n:.0f} ns/leaf, {fmt_ratio(f / o)} ours")
    print()
    if misses:
        print(f"Missed targets ({len(misses)}):")
        for m in misses:
            print(f"- {m}")
    else:
        print("Every row meets its targets.")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Flax NNX and nnx_state side by side on flat states: `to_flat_state` and
`from_flat_state` of the same model-shaped state, in one process,
interleaved, medians.

    target/pyvenv/bin/python benches/flat_side_by_side.py
    target/pyvenv/bin/python benches/flat_side_by_side.py --sizes 1000,10000 --reps 21

The state is the one `benches/side_by_side.py` uses:
`layers/<i>/attn/{q,k,v,o}: Param`, `layers/<i>/norm/{scale: Param, mean,
var: BatchStat}`, `layers/<i>/cache/{k,v}: Cache`, nine leaves a layer, each
a float32 array of shape (1,), built once per size (not timed).

Rows, for each size:

- `to_flat_state`: the call alone. nnx_state's flat state is backed by the
  library's own flat list and makes its path tuples and leaf objects when
  they are first read, so this row is the native flatten.
- `to_flat_state, every pair read (fresh)`: the call and `list(flat)`, when
  no Python object stands for the state's variables yet, so nnx_state makes
  one per leaf (the state was built and the objects it was built from were
  dropped; each sample's result is dropped before the next one).
- `to_flat_state, every pair read (live)`: the same while an earlier, read
  flat state of the same state is held, so every leaf's Python object
  already exists and comes back.
- `from_flat_state(flat state)`: of a held flat state that `to_flat_state`
  made and that was read (nnx_state: its leaves are unchanged, so the
  native list it is backed by is used).
- `from_flat_state(list of pairs)`: of `list(flat)`, a plain list of
  `(path, variable)` pairs, which nnx_state must encode.

Samples go round robin (Flax, then ours, for every row in every
repetition); the call is timed, not dropping its result. The garbage
collector is paused during a sample, as `timeit` does: at 100,000 leaves a
full collection of the inputs costs more than the operation, and it fell
into either library's samples by chance. Each sample ends with
`gc.collect(0)` inside the timed region, which scans every object the call
made and kept: each library pays for the objects it makes.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics

import numpy as np

# The state and its builders are side_by_side.py's (this directory), so both
# scripts measure the very same state.
from side_by_side import flax, flax_state, fnnx, model_arrays, nnx, now
from side_by_side import nnx_state_of as our_state


def timed(fn, arg) -> int:
    """One sample: the call and a collection of the young generation, with
    the collector paused in between (as `timeit` does), so that no full
    collection of the inputs, which is due at moments neither library
    chooses, falls into it; the young collection charges each library for
    the objects it made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t = now()
        result = fn(arg)
        gc.collect(0)
        elapsed = now() - t
    finally:
        if enabled:
            gc.enable()
    del result
    return elapsed


def check_same(fstate, state):
    a = fnnx.to_flat_state(fstate)
    b = nnx.to_flat_state(state)
    la = [(tuple(p), type(v).__name__) for p, v in a]
    lb = [(tuple(p), type(v).__name__) for p, v in b]
    if la != lb:
        raise SystemExit("flat_side_by_side: Flax and nnx_state flatten differently")
    back = nnx.to_flat_state(nnx.from_flat_state(b))
    if list(back.paths) != list(b.paths) or any(x is not y for x, y in zip(back.leaves, b.leaves)):
        raise SystemExit("flat_side_by_side: from_flat_state does not round-trip")


ROWS = (
    "to_flat_state",
    "to_flat_state, every pair read (fresh)",
    "to_flat_state, every pair read (live)",
    "from_flat_state(flat state)",
    "from_flat_state(list of pairs)",
)


def read_all(lib):
    return lambda state: list(lib.to_flat_state(state))


def measure(leaves: int, reps: int):
    arrays = model_arrays(leaves)
    fstate = flax_state(arrays)
    state = our_state(arrays)
    n = state.num_leaves()
    check_same(fstate, state)
    gc.collect()

    flax_flat = fnnx.to_flat_state(fstate)
    flax_pairs = list(flax_flat)
    samples = {(row, who): [] for row in ROWS for who in ("flax", "ours")}

    def sample(row, flax_call, flax_arg, our_call, our_arg):
        samples[row, "flax"].append(timed(flax_call, flax_arg))
        samples[row, "ours"].append(timed(our_call, our_arg))

    for _ in range(reps):
        sample(ROWS[0], fnnx.to_flat_state, fstate, nnx.to_flat_state, state)
        sample(ROWS[1], read_all(fnnx), fstate, read_all(nnx), state)
        held = nnx.to_flat_state(state)
        pairs = list(held)
        sample(ROWS[2], read_all(fnnx), fstate, read_all(nnx), state)
        sample(ROWS[3], fnnx.from_flat_state, flax_flat, nnx.from_flat_state, held)
        sample(ROWS[4], fnnx.from_flat_state, flax_pairs, nnx.from_flat_state, pairs)
        del held, pairs
    return n, {k: statistics.median(v) for k, v in samples.items()}


def fmt(ns) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} us"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    print(
        f"# flat states, Flax {flax.__version__} vs nnx_state {nnx.library_version}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}; "
        f"medians of {args.reps} interleaved samples"
    )
    print()
    print("| leaves | operation | Flax | nnx_state | speed-up | Flax us/leaf | ours us/leaf |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        n, m = measure(size, args.reps)
        for row in ROWS:
            flax_ns, ours_ns = m[row, "flax"], m[row, "ours"]
            print(
                f"| {n:,} | {row} | {fmt(flax_ns)} | {fmt(ours_ns)} | {flax_ns / ours_ns:.1f}x "
                f"| {flax_ns / n / 1e3:.2f} | {ours_ns / n / 1e3:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

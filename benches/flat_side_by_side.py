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

Columns:

- `to_flat (fresh)`: nnx_state's `to_flat_state` when no Python object
  stands for the state's variables yet, so it makes one per leaf (the state
  was built and the objects it was built from were dropped; each sample's
  result is dropped before the next one).
- `to_flat (live)`: the same while an earlier flat state of the same state
  is held, so every leaf's Python object already exists and comes back
  (`to_flat_state(s).leaves[i] is held.leaves[i]`).
- `from_flat`: `from_flat_state` of a held flat state of the library's own
  variables.

Flax's variables are always Python objects, so it has one column for each
operation. Samples go round robin (Flax, then ours, for every operation in
every repetition); the call is timed, not dropping its result. The garbage
collector stays on, as in real use. nnx_state's `to_flat_state` pauses it
while it makes its objects, which leaves their first scan to the next
collection of the young generation: so that this work is not hidden (or
pushed into the next sample), each sample of either library ends with
`gc.collect(0)`, inside the timed region.
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
    t = now()
    result = fn(arg)
    gc.collect(0)
    elapsed = now() - t
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


def measure(leaves: int, reps: int):
    arrays = model_arrays(leaves)
    fstate = flax_state(arrays)
    state = our_state(arrays)
    n = state.num_leaves()
    check_same(fstate, state)
    gc.collect()

    fflat = fnnx.to_flat_state(fstate)
    samples = {k: [] for k in ("flax to", "fresh", "live", "flax from", "from")}
    for _ in range(reps):
        # to_flat_state
        samples["flax to"].append(timed(fnnx.to_flat_state, fstate))
        samples["fresh"].append(timed(nnx.to_flat_state, state))
        held = nnx.to_flat_state(state)
        samples["live"].append(timed(nnx.to_flat_state, state))
        # from_flat_state (of the held flat)
        samples["flax from"].append(timed(fnnx.from_flat_state, fflat))
        samples["from"].append(timed(nnx.from_flat_state, held))
        del held
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
    print(
        "| leaves | Flax to_flat | ours to_flat (fresh) | ours to_flat (live) | speed-up fresh / live "
        "| Flax from_flat | ours from_flat | speed-up | Flax us/leaf to / from | ours us/leaf fresh / live / from |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        n, m = measure(size, args.reps)
        per = lambda k: m[k] / n / 1e3  # noqa: E731
        print(
            f"| {n:,} | {fmt(m['flax to'])} | {fmt(m['fresh'])} | {fmt(m['live'])} "
            f"| {m['flax to'] / m['fresh']:.1f}x / {m['flax to'] / m['live']:.1f}x "
            f"| {fmt(m['flax from'])} | {fmt(m['from'])} | {m['flax from'] / m['from']:.1f}x "
            f"| {per('flax to'):.2f} / {per('flax from'):.2f} "
            f"| {per('fresh'):.2f} / {per('live'):.2f} / {per('from'):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

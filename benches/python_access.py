#!/usr/bin/env python3
"""Per-call cost of reaching into a state from Python: one key at a time
(`state["layers"][5]["attn"]["q"]`), a membership test and a set, on the
model-shaped state of `side_by_side.py`. Medians of `--reps` samples of
`--calls` calls each, in microseconds per call.

    target/pyvenv/bin/python benches/python_access.py --leaves 10000 --reps 9
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

import nnx_state as nnx


def model_state(leaves: int) -> nnx.State:
    layers = -(-leaves // 9)
    one = lambda: np.zeros((1,), np.float32)  # noqa: E731
    return nnx.State({
        "layers": {
            i: {
                "attn": {name: nnx.Param(one()) for name in "qkvo"},
                "norm": {"scale": nnx.Param(one()), "mean": nnx.BatchStat(one()), "var": nnx.BatchStat(one())},
                "cache": {"k": nnx.Cache(one()), "v": nnx.Cache(one())},
            }
            for i in range(layers)
        }
    })


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--leaves", type=int, default=10000)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--calls", type=int, default=2000)
    args = p.parse_args()
    state = model_state(args.leaves)
    layers = state["layers"]
    value = nnx.Param(np.zeros((1,), np.float32))

    def get():
        return state["layers"][5]["attn"]["q"]

    def contains():
        return 5 in layers

    def put():
        layers[5]["attn"]["q"] = value

    ops = {"get 4 keys deep": get, "contains": contains, "set at 3 keys": put}
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(args.reps):
        for name, fn in ops.items():
            t = time.perf_counter_ns()
            for _ in range(args.calls):
                fn()
            samples[name].append((time.perf_counter_ns() - t) / args.calls)
    print(f"# Python access, nnx_state {nnx.library_version}; Python {platform.python_version()}; "
          f"medians of {args.reps} samples of {args.calls} calls\n")
    print("| leaves | " + " | ".join(f"ours {name}" for name in ops) + " |")
    print("|---:|" + "---:|" * len(ops))
    cells = " | ".join(f"{statistics.median(s) / 1000:.2f} us" for s in samples.values())
    print(f"| {args.leaves:,} | {cells} |")


if __name__ == "__main__":
    main()

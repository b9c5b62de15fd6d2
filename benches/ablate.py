#!/usr/bin/env python3
"""What each cache buys: the benchmarks run on the library as it is and on
copies of it with one cache taken out, interleaved, and the medians set side
by side.

    python3 benches/ablate.py                      # every patch, 3 rounds
    python3 benches/ablate.py --only memo,twin --rounds 5
    python3 benches/ablate.py --against 5083206    # HEAD against a commit instead
    python3 benches/ablate.py --only order --ops-args=--named-layers

Each `benches/ablations/NAME.patch` takes one cache out (the text above its
diff says which, and which benchmark shows what it buys: `bench: ops` is
`cargo bench --bench ops`, `bench: flat` is `benches/flat_side_by_side.py`
and `bench: access` is `benches/python_access.py`, both in target/pyvenv,
the virtual environment of `scripts/test.sh`). For each
patch the script makes a detached git worktree of HEAD under
target/ablate/NAME, applies the patch there and builds it with its own
target directory; `base` is HEAD unpatched. Then, round after round, every
variant runs its benchmark once right beside a run of the base (by turns
first and second), so that the machine's drifting load falls on both; the
ratio reported is the median of these paired ratios, with their range.

With `--against REV` the variant is the library at commit REV (no patch),
on the benchmarks of `--benches` (`ops,flat,side`; `side` is
`benches/side_by_side.py`): a check that a change kept every figure.

The ratio is the variant's time over the base's: 2.0x means the operation
takes twice as long without that cache. Needs git, cargo and, for the Python
benchmarks, target/pyvenv (made by `scripts/test.sh`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "ablate"
PATCHES = ROOT / "benches" / "ablations"
VENV_PYTHON = ROOT / "target" / "pyvenv" / "bin" / "python"

BENCHES = ("ops", "flat", "access", "side")
UNITS = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}
OPS_ROW = re.compile(r"^\s*(\d+)\s+(.+?)\s+([\d.]+)(ns|us|µs|ms|s)\s")


def run(cmd, cwd, env=None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ablate: {' '.join(map(str, cmd))} failed in {cwd}:\n{done.stdout}{done.stderr}")
    return done.stdout


def bench_of(patch: Path) -> str:
    match = re.search(r"^bench: (\w+)$", patch.read_text(), re.M)
    if not match or match.group(1) not in BENCHES:
        sys.exit(f"ablate: {patch} does not say `bench: ops`, `bench: flat` or `bench: access`")
    return match.group(1)


class Variant:
    def __init__(self, name: str, patch: Path | None, bench: str, rev: str = "HEAD"):
        self.name, self.patch, self.bench, self.rev = name, patch, bench, rev
        self.tree = WORK / name / "src"
        self.target = WORK / name / "target"
        self.samples: dict[str, list[float]] = {}
        # This variant's time over the base's, row by row, for each pair of
        # runs made one right after the other.
        self.ratios: dict[str, list[float]] = {}

    def prepare(self) -> None:
        if self.tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(self.tree)], cwd=ROOT)
            shutil.rmtree(self.tree, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        run(["git", "worktree", "add", "--detach", str(self.tree), self.rev], ROOT)
        if self.patch is not None:
            run(["git", "apply", str(self.patch)], self.tree)
        env = dict(os.environ, CARGO_TARGET_DIR=str(self.target))
        if self.bench == "ops":
            run(["cargo", "bench", "--bench", "ops", "--no-run"], self.tree, env)
        else:
            run(["cargo", "build", "--release", "--lib"], self.tree, env)

    def measure(self, args) -> dict[str, float]:
        if self.bench == "ops":
            env = dict(os.environ, CARGO_TARGET_DIR=str(self.target))
            out = run(["cargo", "bench", "--bench", "ops", "--", "--sizes", args.sizes,
                       "--seconds", str(args.seconds), *shlex.split(args.ops_args)], self.tree, env)
            rows = parse_ops(out)
        else:
            env = dict(os.environ, PYTHONPATH=str(self.tree / "python"),
                       NNX_STATE_LIB=str(self.target / "release" / "libnnx_state.so"))
            script, options = {
                "flat": ("flat_side_by_side.py", ["--sizes", args.py_sizes]),
                "side": ("side_by_side.py", ["--sizes", args.py_sizes, "--nnx-only-sizes", ""]),
                "access": ("python_access.py", ["--leaves", args.py_sizes.split(",")[0]]),
            }[self.bench]
            out = run([str(VENV_PYTHON), str(self.tree / "benches" / script), *options,
                       "--reps", str(args.py_reps)], self.tree, env)
            rows = parse_table(out)
        for row, ns in rows.items():
            self.samples.setdefault(row, []).append(ns)
        return rows

    def median(self, row: str) -> float | None:
        values = self.samples.get(row)
        return statistics.median(values) if values else None

    def remove(self) -> None:
        subprocess.run(["git", "worktree", "remove", "--force", str(self.tree)], cwd=ROOT)


def parse_ops(out: str) -> dict[str, float]:
    rows = {}
    for line in out.splitlines():
        m = OPS_ROW.match(line)
        if m and not m.group(2).startswith("floor"):
            rows[f"{int(m.group(1)):,} {m.group(2)}"] = float(m.group(3)) * UNITS[m.group(4)]
    return rows


def parse_table(out: str) -> dict[str, float]:
    """The nnx_state columns (`ours ...`, `nnx ...`) of the first table a
    Python benchmark prints with a `leaves` column, in ns."""
    tables: list[list[list[str]]] = [[]]
    for line in out.splitlines():
        if line.startswith("|"):
            tables[-1].append([c.strip() for c in line.strip("|").split("|")])
        elif tables[-1]:
            tables.append([])
    table = next(t for t in tables if t and t[0][0] == "leaves")
    header = table[0]
    rows = {}
    for cells in table[2:]:
        label = " ".join(c for name, c in zip(header, cells) if name in ("leaves", "operation"))
        for name, cell in zip(header, cells):
            m = re.fullmatch(r"([\d.,]+) (ns|us|µs|ms|s)", cell)
            if name.startswith(("ours", "nnx")) and m:
                rows[f"{label} {name}"] = float(m.group(1).replace(",", "")) * UNITS[m.group(2)]
    return rows


def show(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated patch names (default: all)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="10000,100000", help="ops: --sizes")
    p.add_argument("--seconds", type=float, default=0.3, help="ops: time budget per row")
    p.add_argument("--ops-args", default="", help="ops: more options, e.g. --named-layers")
    p.add_argument("--py-sizes", default="10000", help="flat: --sizes; access: --leaves (the first)")
    p.add_argument("--py-reps", type=int, default=9, help="flat, access: --reps")
    p.add_argument("--keep", action="store_true", help="keep the worktrees afterwards")
    p.add_argument("--against", metavar="REV", help="compare HEAD with commit REV instead of the patches")
    p.add_argument("--benches", default="ops,flat,side", help="with --against: the benchmarks")
    args = p.parse_args()

    wanted = {n for n in args.only.split(",") if n}
    patches = sorted(PATCHES.glob("*.patch"))
    unknown = wanted - {q.stem for q in patches}
    if unknown:
        sys.exit(f"ablate: no patch named {', '.join(sorted(unknown))} in {PATCHES}")
    chosen = [q for q in patches if not wanted or q.stem in wanted]
    if args.against and not wanted:
        chosen = []
    benches = {bench_of(q) for q in chosen}
    if args.against:
        benches |= set(args.benches.split(","))
        if not benches <= set(BENCHES):
            sys.exit(f"ablate: --benches takes {', '.join(BENCHES)}")
    variants = [Variant(f"base-{b}", None, b) for b in sorted(benches)]
    variants += [Variant(q.stem, q, bench_of(q)) for q in chosen]
    if args.against:
        variants += [Variant(f"{args.against}-{b}", None, b, args.against) for b in sorted(benches)]
    for v in variants:
        print(f"building {v.name} ...", file=sys.stderr)
        v.prepare()
    try:
        base = {v.bench: v for v in variants if v.name.startswith("base-")}
        for r in range(args.rounds):
            for v in variants:
                if v in base.values():
                    continue
                print(f"round {r + 1}/{args.rounds}: {v.name} and its base", file=sys.stderr)
                # Each variant runs right beside a run of its base, first
                # one then the other by turns, so that drifting load falls
                # on both.
                pair = (base[v.bench], v) if r % 2 == 0 else (v, base[v.bench])
                first, second = (x.measure(args) for x in pair)
                with_, without = (first, second) if r % 2 == 0 else (second, first)
                for row in with_.keys() & without.keys():
                    if with_[row] > 0:  # a row printed as 0.000 ms has no ratio
                        v.ratios.setdefault(row, []).append(without[row] / with_[row])
    finally:
        if not args.keep:
            for v in variants:
                v.remove()

    print(f"# HEAD (with) against each variant (without): {args.rounds} rounds of paired runs\n")
    print("with, without: medians over all runs; ratio: the median of the paired ratios,")
    print("and their range.\n")
    for v in variants:
        if v in base.values():
            continue
        b = base[v.bench]
        print(f"## {v.name} ({v.bench})\n")
        print("| row | with | without | ratio | range |\n|---|---:|---:|---:|---:|")
        for row in b.samples:
            ratios = v.ratios.get(row)
            if ratios:
                print(f"| {row} | {show(b.median(row))} | {show(v.median(row))} | "
                      f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}–{max(ratios):.2f} |")
        print()


if __name__ == "__main__":
    main()

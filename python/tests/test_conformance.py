"""Replays the committed conformance cases (tests/data/conformance.jsonl,
recorded from real flax.nnx; the format is documented at the top of
conformance/generate.py) through the Python API, and checks that every one
agrees: keys in the same order at every level, the very same leaf objects,
and the same errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnx_state as nnx
from conftest import REPO

CASES_PATH = REPO / "tests" / "data" / "conformance.jsonl"


def load_cases():
    with open(CASES_PATH, encoding="utf-8") as f:
        header = json.loads(f.readline())
        cases = [json.loads(line) for line in f if line.strip()]
    return header, cases


HEADER, CASES = load_cases()
BUILTIN = {
    name: getattr(nnx, name)
    for name in (
        "Variable", "Param", "BatchStat", "Cache", "Intermediate", "Perturbation",
        "RngState", "RngKey", "RngCount", "OptState", "OptArray", "OptVariable",
    )
}


def type_classes() -> dict[str, type]:
    classes = dict(BUILTIN)
    for name, parent in HEADER["types"]:
        classes[name] = nnx.variable_type(name, classes[parent])
    return classes


TYPES = type_classes()


class Leaves:
    """The leaves of one case by ID: created on first sight, then shared."""

    def __init__(self):
        self.by_id: dict[int, object] = {}

    def get(self, spec: dict):
        if "array" in spec:
            ident = spec["array"]
            if ident not in self.by_id:
                self.by_id[ident] = np.array([float(ident)], np.float32)
            return self.by_id[ident]
        ident = spec["var"]
        if ident not in self.by_id:
            value = np.array([float(ident)], np.float32)
            cls = TYPES[spec["type"]]
            self.by_id[ident] = cls(value) if spec["tag"] is None else cls(value, tag=spec["tag"])
        return self.by_id[ident]


def tree(pairs, leaves: Leaves) -> dict:
    out = {}
    for key, child in pairs:
        out[key] = tree(child["state"], leaves) if "state" in child else leaves.get(child)
    return out


def leaf_value(leaf) -> float:
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    return float(np.asarray(value)[0])


CALLBACKS = {
    "depth_even": lambda path, leaf: len(path) % 2 == 0,
    "last_key_int": lambda path, leaf: isinstance(path[-1], int),
    "is_variable": lambda path, leaf: isinstance(leaf, nnx.Variable),
    "value_gt_50": lambda path, leaf: leaf_value(leaf) > 50,
}


def build_filter(spec: dict):
    if "of_type" in spec:
        cls = TYPES[spec["of_type"]]
        return cls if spec["form"] == "class" else nnx.OfType(cls)
    if "tag" in spec:
        return spec["tag"] if spec["form"] == "str" else nnx.WithTag(spec["tag"])
    if "path_contains" in spec:
        return nnx.PathContains(spec["path_contains"], exact=spec["exact"])
    if "path_in" in spec:
        return nnx.PathIn(*(tuple(p) for p in spec["path_in"]))
    if "any" in spec:
        parts = [build_filter(p) for p in spec["any"]]
        return {"list": lambda: parts, "tuple": lambda: tuple(parts), "Any": lambda: nnx.Any(*parts)}[spec["form"]]()
    if "all" in spec:
        return nnx.All(*(build_filter(p) for p in spec["all"]))
    if "not" in spec:
        return nnx.Not(build_filter(spec["not"]))
    if "everything" in spec:
        return {"ellipsis": ..., "true": True, "instance": nnx.Everything()}[spec["everything"]]
    if "nothing" in spec:
        return {"none": None, "false": False, "instance": nnx.Nothing()}[spec["nothing"]]
    if "callback" in spec:
        return CALLBACKS[spec["callback"]]
    raise AssertionError(f"unknown filter {spec}")


def data_pointer(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def compare(state, expected, leaves: Leaves, at=()):
    keys = list(state)
    want = [pair[0] for pair in expected]
    assert keys == want and [type(k) for k in keys] == [type(k) for k in want], f"at {at}: keys {keys}, expected {want}"
    for key, child in expected:
        got = state[key]
        where = at + (key,)
        if "state" in child:
            assert isinstance(got, nnx.State), f"at {where}: a leaf where a state is expected"
            compare(got, child["state"], leaves, where)
            continue
        assert not isinstance(got, nnx.State), f"at {where}: a state where a leaf is expected"
        if "var" in child:
            assert got is leaves.by_id[child["var"]], f"at {where}: not the input variable {child['var']}"
        else:
            assert isinstance(got, np.ndarray), f"at {where}: not a bare array"
            assert data_pointer(got) == data_pointer(leaves.by_id[child["array"]]), f"at {where}: not the input array"


def run_case(case: dict):
    leaves = Leaves()
    op = case["op"]
    inputs = [nnx.State(tree(t, leaves)) for t in case.get("inputs", [])]
    filters = [build_filter(f) for f in case.get("filters", [])]
    expect = case["expect"]

    def call():
        if op == "filter":
            return nnx.filter_state(inputs[0], *filters)
        if op == "split":
            return nnx.split_state(inputs[0], *filters)
        if op == "merge":
            return nnx.merge_state(*inputs)
        if op == "diff":
            return nnx.statelib.diff(inputs[0], inputs[1])
        pairs = [(tuple(path), leaves.get(child)) for path, child in case["pairs"]]
        return nnx.from_flat_state(pairs)

    if "error" in expect:
        with pytest.raises(ValueError) as info:
            call()
        err = info.value
        if expect["error"] == "FILTER_ORDER":
            assert str(err).startswith("`...` or `True` can only be used as the last filters")
            assert err.status_name == "NNX_ERR_FILTER_ORDER"
        else:
            assert str(err).startswith("Non-exhaustive filters, got a non-empty remainder")
            assert err.status_name == "NNX_ERR_NON_EXHAUSTIVE"
            rest = nnx.filter_state(inputs[0], *filters, ...)[-1]
            assert nnx.to_flat_state(rest).paths[0] == tuple(expect["path"])
        return
    result = call()
    outputs = list(result) if isinstance(result, tuple) else [result]
    if op in ("filter", "split"):
        assert isinstance(result, tuple) == (len(filters) > 1)
    assert len(outputs) == len(expect["states"])
    for out, want in zip(outputs, expect["states"]):
        compare(out, want, leaves)


def test_the_file_is_what_we_expect():
    assert HEADER["format"] == "nnx-state-conformance"
    assert HEADER["version"] == 1
    assert len(CASES) >= 1000


def test_every_case_agrees_with_flax():
    failures = []
    for case in CASES:
        try:
            run_case(case)
        except Exception as e:  # collect them all, then report
            failures.append(f"case {case['id']} ({case['op']}): {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases disagree:\n" + "\n".join(failures[:20])

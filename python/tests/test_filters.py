"""Filters: every kind and literal, the "last filters" rule, callables and
their exceptions, and agreement between a filter's Python predicate and its
native evaluation."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import filterlib


@pytest.fixture
def state():
    return nnx.State({
        "conv": {"kernel": nnx.Param(np.full(1, 1.0)), "bias": nnx.Param(np.full(1, 2.0), tag="b")},
        "bn": {"mean": nnx.BatchStat(np.full(1, 3.0)), "var": nnx.BatchStat(np.full(1, 4.0), tag="stats")},
        "layers": {0: {"drop": nnx.RngKey(np.full(1, 5.0), tag="dropout")}, 1: {"count": nnx.RngCount(np.full(1, 6.0))}},
        "noise": nnx.Perturbation(np.full(1, 7.0)),
        "raw": np.full(1, 8.0),
    })


def selected(state, f) -> list[tuple]:
    return list(nnx.to_flat_state(nnx.filter_state(state, f)).paths)


ALL_PATHS = [
    ("bn", "mean"), ("bn", "var"), ("conv", "bias"), ("conv", "kernel"),
    ("layers", 0, "drop"), ("layers", 1, "count"), ("noise",), ("raw",),
]


def test_literals(state):
    assert selected(state, nnx.Param) == [("conv", "bias"), ("conv", "kernel")]
    assert selected(state, nnx.RngState) == [("layers", 0, "drop"), ("layers", 1, "count")]
    assert selected(state, nnx.Intermediate) == [("noise",)]
    assert selected(state, "stats") == [("bn", "var")]
    assert selected(state, [nnx.Param, "dropout"]) == [("conv", "bias"), ("conv", "kernel"), ("layers", 0, "drop")]
    assert selected(state, (nnx.BatchStat,)) == [("bn", "mean"), ("bn", "var")]
    assert selected(state, ...) == ALL_PATHS
    assert selected(state, True) == ALL_PATHS
    assert selected(state, None) == [] and selected(state, False) == []
    assert selected(state, []) == []
    assert selected(state, np.ndarray) == [("raw",)]  # a non-variable class: isinstance


def test_filter_classes(state):
    assert selected(state, nnx.OfType(nnx.BatchStat)) == [("bn", "mean"), ("bn", "var")]
    assert selected(state, nnx.WithTag("b")) == [("conv", "bias")]
    assert selected(state, nnx.PathContains("bn")) == [("bn", "mean"), ("bn", "var")]
    assert selected(state, nnx.PathContains(0)) == [("layers", 0, "drop")]
    assert selected(state, nnx.PathContains("0")) == []
    assert selected(state, nnx.PathContains("e", exact=False)) == [
        ("bn", "mean"), ("conv", "kernel"), ("layers", 0, "drop"), ("layers", 1, "count"), ("noise",),
    ]
    assert selected(state, nnx.PathIn(("raw",), ("bn", "var"), ("bn",))) == [("bn", "var"), ("raw",)]
    assert selected(state, nnx.PathIn()) == []
    assert selected(state, nnx.Any(nnx.Param, "stats")) == [("bn", "var"), ("conv", "bias"), ("conv", "kernel")]
    assert selected(state, nnx.Any()) == []
    assert selected(state, nnx.All(nnx.Param, nnx.PathContains("bias"))) == [("conv", "bias")]
    assert selected(state, nnx.All()) == ALL_PATHS
    assert selected(state, nnx.Not(nnx.Variable)) == [("raw",)]
    assert selected(state, nnx.Not(nnx.Any(nnx.Param, nnx.BatchStat, nnx.RngState))) == [("noise",), ("raw",)]
    assert selected(state, nnx.Everything()) == ALL_PATHS
    assert selected(state, nnx.Nothing()) == []


def test_python_predicates_agree_with_native(state):
    filters = [
        nnx.Param, "dropout", nnx.OfType(nnx.RngState), nnx.WithTag("stats"), nnx.PathContains("layers"),
        nnx.PathContains(1, exact=False), nnx.PathIn(("noise",)), nnx.Any(nnx.Cache, "b"),
        nnx.All(nnx.Variable, nnx.Not("b")), nnx.Not(nnx.PathContains("conv")), nnx.Everything(),
        nnx.Nothing(), [nnx.Intermediate, nnx.PathContains("raw")],
    ]
    flat = nnx.to_flat_state(state)
    for f in filters:
        predicate = filterlib.to_predicate(f)
        by_python = [path for path, leaf in flat if predicate(path, leaf)]
        assert by_python == selected(state, f), f


def test_everything_rule(state):
    for first in (..., True):
        with pytest.raises(ValueError, match=r"^`\.\.\.` or `True` can only be used as the last filters"):
            nnx.filter_state(state, first, nnx.Param)
        with pytest.raises(ValueError) as info:
            nnx.split_state(state, nnx.Param, first, "x")
        assert info.value.status_name == "NNX_ERR_FILTER_ORDER"
    rest, everything = nnx.filter_state(state, True, ...)
    assert len(nnx.to_flat_state(rest)) == 8 and len(everything) == 0
    # An Everything() instance is not checked, as in NNX: it takes everything.
    first, params = nnx.filter_state(state, nnx.Everything(), nnx.Param)
    assert len(nnx.to_flat_state(first)) == 8 and len(params) == 0
    # ... inside a list is an ordinary part.
    first, params = nnx.filter_state(state, [...], nnx.Param)
    assert len(params) == 0
    with pytest.raises(ValueError, match="can only be used as the last filters"):
        filterlib.filters_to_predicates([..., nnx.Param])


def test_split_must_be_exhaustive(state):
    params, rest = nnx.split_state(state, nnx.Param, ...)
    assert len(nnx.to_flat_state(params)) == 2 and len(nnx.to_flat_state(rest)) == 6
    with pytest.raises(ValueError, match="^Non-exhaustive filters, got a non-empty remainder") as info:
        nnx.split_state(state, nnx.Param, nnx.BatchStat)
    assert "('layers', 0, 'drop')" in str(info.value)


def test_callables_see_paths_and_leaves(state):
    seen = []

    def spy(path, leaf):
        seen.append((path, leaf))
        return isinstance(path[-1], int) or np.asarray(leaf)[0] > 6.5

    out = nnx.filter_state(state, spy)
    assert [p for p, _ in seen] == ALL_PATHS  # sorted order, each leaf once
    assert seen[0][1] is state.bn.mean  # the very variable object
    assert isinstance(seen[-1][1], np.ndarray)  # a bare array as numpy
    assert list(nnx.to_flat_state(out).paths) == [("noise",), ("raw",)]
    assert selected(state, lambda p, x: np.bool_(len(p) == 3)) == [("layers", 0, "drop"), ("layers", 1, "count")]
    nested = nnx.Not(nnx.Any(lambda p, x: p[0] == "bn", nnx.Param))
    assert selected(state, nested) == [("layers", 0, "drop"), ("layers", 1, "count"), ("noise",), ("raw",)]


class Sentinel(Exception):
    pass


def test_exceptions_in_callables_propagate(state):
    error = Sentinel("from the callback")

    def boom(path, leaf):
        if path == ("conv", "bias"):
            raise error
        return False

    for op in (nnx.filter_state, nnx.split_state):
        with pytest.raises(Sentinel) as info:
            op(state, nnx.BatchStat, boom, ...)
        assert info.value is error
    with pytest.raises(Sentinel):
        nnx.filter_state(state, nnx.All(nnx.Variable, nnx.Not(boom)))
    with pytest.raises(KeyboardInterrupt):
        nnx.filter_state(state, lambda p, x: (_ for _ in ()).throw(KeyboardInterrupt()))
    # The library is fine afterwards, and nothing is pending.
    assert selected(state, nnx.Param) == [("conv", "bias"), ("conv", "kernel")]
    assert nnx.filter_state(state, lambda p, x: True) == nnx.filter_state(state, ...)


def test_callbacks_are_released(state):
    gc.collect()
    before = len(filterlib._callbacks)
    for _ in range(50):
        nnx.filter_state(state, lambda p, x: False, nnx.Any(lambda p, x: True))
    gc.collect()
    assert len(filterlib._callbacks) == before


def test_unusual_keys_fall_back_to_python():
    state = nnx.State({1: nnx.Param(np.zeros(1)), "a": {2: nnx.Param(np.zeros(1))}})
    assert selected(state, nnx.PathContains(1.0)) == [(1,)]  # 1.0 == 1 in Python
    assert selected(state, nnx.PathIn(("a", 2.0))) == [("a", 2)]


def test_repr_and_equality():
    assert repr(nnx.OfType(nnx.Param)).startswith("OfType(<class ")
    assert repr(nnx.WithTag("x")) == "WithTag('x')"
    assert repr(nnx.PathContains("a", exact=False)) == "PathContains('a', exact=False)"
    assert repr(nnx.Any(nnx.Everything(), nnx.Nothing())) == "Any(Everything(), Nothing())"
    assert repr(nnx.Not(nnx.All())) == "Not(All())"
    assert nnx.Any("a", nnx.Param) == nnx.Any("a", nnx.Param)
    assert nnx.PathIn(("a",), ("b", 1)) == nnx.PathIn(("b", 1), ("a",))
    assert hash(nnx.Not(...)) == hash(nnx.Not(nnx.Everything()))
    with pytest.raises(TypeError):
        filterlib.to_predicate(3)


def test_literal_filter_lists_are_built_once(state):
    """A list of classes, tags, ``...`` and ``None`` is made native once and
    kept; any other list is built for each call and freed."""
    first = nnx.split_state(state, nnx.Param, "stats", ...)
    kept = filterlib.kept_filters((nnx.Param, "stats", ...))
    assert kept is not None
    again = nnx.split_state(state, nnx.Param, "stats", ...)
    assert filterlib.kept_filters((nnx.Param, "stats", ...)) is kept
    assert first == again
    # Equal but not a literal: never looked up, so never confused with one.
    assert filterlib.kept_filters((nnx.OfType(nnx.Param),)) is None
    assert filterlib.kept_filters(([nnx.Param, "stats"],)) is None
    before = len(filterlib._callbacks)
    nnx.filter_state(state, lambda p, x: True)
    assert filterlib.kept_filters((lambda p, x: True,)) is None
    gc.collect()
    assert len(filterlib._callbacks) == before
    # A wrong list fails every time, kept or not.
    for _ in range(2):
        with pytest.raises(ValueError, match="last filters"):
            nnx.filter_state(state, ..., nnx.Param)

"""State: the mapping protocol, live views, flat states, pure dicts and
errors (Flax's own State tests, re-expressed, are in test_flax_bar.py)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import nnx_state as nnx


def simple():
    return nnx.State({"a": nnx.Param(np.array(1)), "b": {"c": nnx.Param(np.array(2))}})


# --------------------------------------------------------------------------
# Flax's State tests are in test_flax_bar.py; here, filters on a model
# --------------------------------------------------------------------------


def linear_state(din=4, dout=5, seed=0):
    rng = np.random.default_rng(seed)
    return nnx.State({
        "bias": nnx.Param(np.zeros(dout, np.float32)),
        "kernel": nnx.Param(rng.normal(size=(din, dout)).astype(np.float32)),
    })


def test_path_contains_filters_a_model():
    # filters_test.py: Model with backbone1, backbone2 and head (Linear layers)
    state = nnx.State({
        "backbone1": linear_state(2, 3), "backbone2": linear_state(3, 3), "head": linear_state(3, 10),
    })
    head_state = nnx.state(state, nnx.PathContains("head"))
    backbones_state = nnx.state(state, nnx.PathContains("backbone", exact=False))
    assert "head" in head_state and "backbone" not in head_state
    assert "backbone1" in backbones_state and "backbone2" in backbones_state
    assert "head" not in backbones_state


# --------------------------------------------------------------------------
# The mapping protocol and live views
# --------------------------------------------------------------------------


def test_mapping_protocol():
    w, b = nnx.Param(np.ones(2)), nnx.Param(np.zeros(2))
    state = nnx.State({"w": w})
    state["b"] = b
    assert list(state) == ["w", "b"] and len(state) == 2
    assert list(state.keys()) == ["w", "b"] and list(state.values()) == [w, b]
    assert [k for k, _ in state.items()] == ["w", "b"]
    assert state.get("nope") is None and state.get("w") is w
    assert state.pop("b") is b and "b" not in state
    state.update({"c": {"d": b}})
    assert state.c.d is b
    assert state.setdefault("w", None) is w
    del state.c
    assert list(state) == ["w"]
    with pytest.raises(AttributeError, match="No attribute 'nope' in State"):
        state.nope


def test_int_and_str_keys_are_different():
    state = nnx.State({0: nnx.Param(np.zeros(1)), "0": nnx.BatchStat(np.zeros(1)), -5: {}})
    assert list(state) == [0, "0", -5]
    assert isinstance(state[0], nnx.Param) and isinstance(state["0"], nnx.BatchStat)
    with pytest.raises(KeyError):
        state[1]
    with pytest.raises(TypeError):
        state[1.5] = np.zeros(1)
    with pytest.raises(KeyError):
        state[1.5]
    assert 1.5 not in state and None not in state


def test_nested_views_are_live():
    state = nnx.State({"a": {"b": {"c": nnx.Param(np.zeros(1))}}})
    view = state["a"]["b"]
    view["d"] = np.arange(3)
    assert list(state.a.b) == ["c", "d"] and list(state["a"]["b"]["d"]) == [0, 1, 2]
    state["a"]["b"]["e"] = {"f": nnx.Cache(np.ones(1))}
    assert isinstance(view["e"]["f"], nnx.Cache)
    del state["a"]["b"]
    with pytest.raises(KeyError) as info:
        len(view)
    assert info.value.status_name == "NNX_ERR_KEY_NOT_FOUND"


def test_putting_a_state_copies_its_structure():
    inner = nnx.State({"x": nnx.Param(np.zeros(1))})
    outer = nnx.State({"inner": inner})
    inner["y"] = nnx.Param(np.ones(1))
    assert list(outer.inner) == ["x"]
    assert outer.inner.x is inner.x  # the leaves are shared


def test_bare_arrays_are_leaves():
    state = nnx.State({"p": nnx.Param(np.zeros(2)), "raw": np.arange(3), "py": 2.5})
    assert isinstance(state["raw"], np.ndarray) and state["py"] == 2.5
    assert list(nnx.filter_state(state, nnx.Param)) == ["p"]
    assert list(nnx.filter_state(state, nnx.Not(nnx.Param))) == ["py", "raw"]
    assert list(nnx.filter_state(state, nnx.PathContains("raw"))) == ["raw"]
    assert nnx.to_flat_state(state).paths == (("p",), ("py",), ("raw",))


def test_equality():
    v = nnx.Param(np.arange(3))
    a = nnx.State({"x": v, "y": {"z": np.zeros(2)}})
    b = nnx.State({"y": {"z": np.zeros(2)}, "x": v})
    assert a == b and a == {"x": v, "y": {"z": np.zeros(2)}}
    assert a != nnx.State({"x": nnx.Param(np.arange(3), tag="t"), "y": {"z": np.zeros(2)}})
    assert a == nnx.State({"x": nnx.Param(np.arange(3)), "y": {"z": np.zeros(2)}})
    assert a != nnx.State({"x": nnx.BatchStat(np.arange(3)), "y": {"z": np.zeros(2)}})
    assert a != nnx.State({"x": v, "y": {"z": np.zeros(3)}})
    assert nnx.State() == nnx.State({}) and nnx.State() != nnx.State({"e": {}})


def test_repr():
    state = nnx.State({"a": nnx.Param(np.ones(3, np.float32), tag="x"), "b": {0: np.arange(3)}, "e": {}})
    assert repr(state) == (
        "State({\n"
        "  'a': Param( # 3 (12 B)\n"
        "    value=array([1., 1., 1.], dtype=float32),\n"
        "    tag='x'\n"
        "  ),\n"
        "  'b': {\n"
        "    0: array([0, 1, 2])\n"
        "  },\n"
        "  'e': {}\n"
        "})"
    )
    assert repr(nnx.State()) == "State({})"
    assert state.to_string().startswith("State({")


def test_repr_matches_flax():
    flax_nnx = pytest.importorskip("flax.nnx")
    tree = lambda m: {  # noqa: E731
        "a": m.Param(np.ones(3, np.float32), tag="x"),
        "b": {"c": m.BatchStat(np.zeros((2, 2))), "d": np.arange(3)},
        "k": m.Param(np.ones((20, 30))),
        "e": {},
    }
    assert repr(nnx.State(tree(nnx))) == repr(flax_nnx.State(tree(flax_nnx)))


# --------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------


def test_methods_do_not_warn():
    state = linear_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = state.flat_state()
        assert nnx.State.from_flat_path(flat) == state
        assert state.filter(nnx.Param) == state
        assert state.split(nnx.Param, ...)[0] == state
        assert nnx.State.merge(state) == state
        assert state.map(lambda path, x: x) == state
        pure = state.to_pure_dict()
        state.replace_by_pure_dict(pure)
        state.value = nnx.Param(np.zeros(1))  # attribute assignment is item assignment
        assert "value" in state


def test_results_one_or_tuple():
    state = linear_state()
    assert isinstance(nnx.filter_state(state, nnx.Param), nnx.State)
    assert isinstance(nnx.filter_state(state, nnx.Param, ...), tuple)
    assert isinstance(nnx.split_state(state, ...), nnx.State)


def test_flat_state():
    state = nnx.State({"b": {"y": nnx.Param(np.zeros(1)), 1: np.zeros(1)}, "a": nnx.Cache(np.zeros(1)), "e": {}})
    flat = nnx.to_flat_state(state)
    assert flat.paths == (("a",), ("b", 1), ("b", "y"))
    assert len(flat) == 3 and flat[0][1] is state.a
    assert isinstance(flat[1:], nnx.FlatState) and flat[1:].paths == (("b", 1), ("b", "y"))
    assert [p for p, _ in flat] == list(flat.paths)
    assert flat.leaves[2] is state.b.y
    assert flat.to_nested_state() == nnx.State({"a": state.a, "b": {1: np.zeros(1), "y": state.b.y}})
    params = flat.filter(nnx.Param)
    assert isinstance(params, nnx.FlatState) and params.paths == (("b", "y"),)
    assert repr(nnx.FlatState([])) == "FlatState([])"


def test_from_flat_state_order_and_repeats():
    a, b, c = (nnx.Param(np.full(1, i)) for i in range(3))
    state = nnx.from_flat_state([(("x", 2), a), (("y",), b), (("x", 1), c), (("x", 2), b)])
    assert list(state) == ["x", "y"] and list(state.x) == [2, 1]
    assert state.x[2] is b
    assert nnx.from_flat_state({("z",): a}).z is a


def test_merge_and_diff():
    a, b, c = (nnx.Param(np.full(1, i)) for i in range(3))
    s1 = nnx.State({"x": a, "y": {"z": b}, "e": {}})
    s2 = nnx.State({"y": {"z": c}, "w": a})
    merged = nnx.merge_state(s1, s2)
    assert merged.y.z is c and list(merged) == ["x", "y", "w"]
    one = nnx.merge_state(s1)
    assert one == s1 and one is not s1 and list(one) == ["x", "y", "e"]
    assert (s1 | s2) == merged and (s1 | nnx.State()) is s1
    assert nnx.diff(s1, s2) == nnx.State({"x": a})
    assert (s1 - s2) == nnx.State({"x": a})
    assert nnx.diff(s1, nnx.State()) == s1
    assert nnx.merge_state({"k": a}, {"k": b}).k is b  # plain mappings too


def test_map_state():
    state = nnx.State({"a": nnx.Param(np.ones(2)), "b": {"c": np.arange(2)}})
    doubled = nnx.map_state(lambda path, x: (x[...] if isinstance(x, nnx.Variable) else x) * 2, state)
    assert list(doubled.a) == [2, 2] and list(doubled.b.c) == [0, 2]


def test_pure_dicts_and_int_paths():
    state = nnx.State({"layers": {0: {"w": nnx.Param(np.ones(2))}, 1: {"w": nnx.Param(np.ones(2))}}})
    pure = nnx.to_pure_dict(state)
    assert list(pure["layers"]) == [0, 1]
    stringified = {"layers": {"0": {"w": np.zeros(2)}, "1": {"w": np.full(2, 3.0)}}}
    assert list(nnx.restore_int_paths(stringified)["layers"]) == [0, 1]
    old = state.layers[0].w
    nnx.replace_by_pure_dict(state, stringified)  # '0' found as 0
    assert list(state.layers[1].w[...]) == [3.0, 3.0]
    assert state.layers[0].w is not old and list(old[...]) == [1.0, 1.0]  # Flax replaces, too
    with pytest.raises(ValueError, match="key in pure_dict not available in state"):
        nnx.replace_by_pure_dict(state, {"layers": {"7": {"w": np.zeros(2)}}})


def test_copies_and_pickle():
    v = nnx.Param(np.arange(3.0))
    state = nnx.State({"a": v, "b": {"c": v}})
    shallow = state.copy()
    assert shallow == state and shallow.a is v
    shallow["z"] = np.zeros(1)
    assert "z" not in state
    deep = state.deep_copy()
    assert deep.a is not v and deep.a is deep.b.c and (deep.a[...] == v[...]).all()
    back = pickle.loads(pickle.dumps(state))
    assert back == state and back.a is back.b.c and back.a is not v


def test_update_leaves():
    state = nnx.State({"a": {"b": nnx.Param(np.zeros(1))}, "keep": np.ones(1)})
    new = nnx.Param(np.ones(1))
    state.update_leaves({"a": {"b": new, "c": np.zeros(2)}})
    assert state.a.b is new and list(state.a) == ["b", "c"] and "keep" in state


def test_errors_carry_the_c_status():
    state = simple()
    with pytest.raises(KeyError) as info:
        state["missing"]
    err = info.value
    assert isinstance(err, nnx.NnxError) and err.status_name == "NNX_ERR_KEY_NOT_FOUND"
    assert "missing" in err.c_message and "NNX_ERR_KEY_NOT_FOUND" in str(err)
    with pytest.raises(ValueError) as info:
        nnx.split_state(state, nnx.BatchStat)
    assert info.value.status_name == "NNX_ERR_NON_EXHAUSTIVE"
    assert "('a',)" in str(info.value)
    with pytest.raises(ValueError, match=r"^`\.\.\.` or `True` can only be used as the last filters"):
        nnx.filter_state(state, True, nnx.Param)
    with pytest.raises(TypeError, match="Invalid collection filter"):
        nnx.filter_state(state, 42)

"""to_flat_state / from_flat_state go through the bulk C functions
(nnx_flat_paths, nnx_flat_leaves, nnx_flat_push_many): the results are the
ones the entry-by-entry route gives, on the cases where a bulk route could
differ (shared variables, live objects, bare arrays, paths of different
lengths, odd keys, errors)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import statelib, variablelib


def entry_by_entry(state):
    """The flat state, read with one C call per entry (the reference)."""
    out = []
    for path, leaf in statelib.FlatState(_walk(state, ()), sort=True):
        out.append((path, leaf))
    return out


def _walk(node, prefix):
    for key in node:
        value = node[key]
        if isinstance(value, nnx.State):
            yield from _walk(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def model(layers=3):
    items = []
    for i in range(layers):
        for group, name, cls in (("attn", "q", nnx.Param), ("norm", "mean", nnx.BatchStat), ("cache", "k", nnx.Cache)):
            items.append((("layers", i, group, name), cls(np.full(2, i, np.float32))))
    return nnx.from_flat_state(items)


def test_paths_order_and_objects_match_the_reference():
    state = model()
    state["top"] = nnx.Param(np.ones(1))
    state["bare"] = np.arange(3.0)
    state["deep"] = {"a": {"b": {"c": {"d": nnx.Intermediate(np.zeros(1))}}}}
    state[7] = nnx.Variable(np.zeros(1))
    flat = nnx.to_flat_state(state)
    ref = entry_by_entry(state)
    assert list(flat.paths) == [p for p, _ in ref]
    for (path, leaf), (_, want) in zip(flat, ref):
        if isinstance(want, nnx.Variable):
            assert leaf is want, path  # the live object comes back
            assert type(leaf) is type(want)
        else:
            assert isinstance(leaf, np.ndarray)
            np.testing.assert_array_equal(leaf, want)
    assert flat.paths[0] == (7,)  # ints before strings
    assert isinstance(flat.paths, tuple) and isinstance(flat.leaves, list)


def test_a_variable_at_two_paths_is_one_object():
    v = nnx.Param(np.zeros(2))
    w = nnx.BatchStat(np.ones(2))
    state = nnx.State({"a": v, "b": {"c": v, "d": w}, "e": w})
    ptrs = (v._ptr, w._ptr)
    del v, w
    gc.collect()
    before = variablelib.live_count()
    flat = nnx.to_flat_state(state)
    leaves = dict(flat)
    assert leaves[("a",)] is leaves[("b", "c")]
    assert leaves[("b", "d")] is leaves[("e",)]
    assert (leaves[("a",)]._ptr, leaves[("e",)]._ptr) == ptrs
    assert variablelib.live_count() == before + 2
    # The state keeps the objects it made while it does not change (as a
    # Flax State holds its Variables); a change through it lets them go,
    # and the state still works.
    del flat, leaves
    gc.collect()
    assert variablelib.live_count() == before + 2
    state["f"] = np.zeros(1)
    gc.collect()
    assert variablelib.live_count() == before
    again = nnx.to_flat_state(state)
    assert type(dict(again)[("a",)]) is nnx.Param


def test_some_objects_live_others_new():
    state = model(4)
    flat = nnx.to_flat_state(state)
    keep = flat.leaves[::3]  # every third object stays alive
    del flat
    gc.collect()
    again = nnx.to_flat_state(state)
    for obj in keep:
        assert any(obj is leaf for leaf in again.leaves)
    assert len({id(x) for x in again.leaves}) == len(again.leaves)
    third = nnx.to_flat_state(state)
    assert all(a is b for a, b in zip(again.leaves, third.leaves))


def test_types_registered_elsewhere_get_classes():
    special = nnx.variable_type("BulkSpecial", nnx.Param)
    state = nnx.State({"x": special(np.zeros(1)), "y": nnx.Param(np.zeros(1))})
    gc.collect()
    flat = nnx.to_flat_state(state)
    assert type(flat.leaves[0]) is special
    assert isinstance(flat.leaves[0], nnx.Param)


def test_empty_and_array_only_states():
    assert list(nnx.to_flat_state(nnx.State())) == []
    assert list(nnx.to_flat_state(nnx.State({"a": {}}))) == []
    flat = nnx.to_flat_state(nnx.State({"a": np.ones(2), "b": {"c": np.zeros(1)}}))
    assert flat.paths == (("a",), ("b", "c"))
    assert all(isinstance(x, np.ndarray) for x in flat.leaves)


def test_keys_of_every_kind_round_trip():
    odd = ["", "é", "a/b", "0", "with\0nul", "🙂"]
    items = [((k, -1, 2**63 - 1, -(2**63)), nnx.Param(np.zeros(1))) for k in odd]
    state = nnx.from_flat_state(items)
    flat = nnx.to_flat_state(state)
    assert sorted(flat.paths, key=statelib._path_sort_key) == list(flat.paths)
    assert set(flat.paths) == {p for p, _ in items}
    assert all(type(k) in (str, int) for p in flat.paths for k in p)


def test_from_flat_state_keeps_order_duplicates_and_identity():
    a, b, c = nnx.Param(np.zeros(1)), nnx.Cache(np.ones(1)), nnx.BatchStat(np.ones(2))
    items = [(("z", 1), a), (("a",), b), (("z", 1), c), (["m", "n"], np.arange(2.0))]
    state = nnx.from_flat_state(items)
    assert list(state) == ["z", "a", "m"]
    assert state["z"][1] is c  # the later leaf, at the first position
    assert state["a"] is b
    np.testing.assert_array_equal(state["m"]["n"], np.arange(2.0))
    # A mapping and a FlatState give the same.
    assert nnx.from_flat_state({("x", 0): a})["x"][0] is a
    flat = nnx.to_flat_state(state)
    again = nnx.from_flat_state(flat)
    pairs = list(zip(nnx.to_flat_state(again).leaves, flat.leaves))
    assert all(x is y for x, y in pairs if isinstance(y, nnx.Variable))


@pytest.mark.parametrize(
    "items, error",
    [
        ([(("a", True), nnx.Param(np.zeros(1)))], TypeError),
        ([(("a", 1.0), nnx.Param(np.zeros(1)))], TypeError),
        ([(("a", 2**63), nnx.Param(np.zeros(1)))], OverflowError),
        ([((), nnx.Param(np.zeros(1)))], ValueError),
        ([(("a",), "not an array")], TypeError),
        ([(("a", "\ud800"), nnx.Param(np.zeros(1)))], UnicodeEncodeError),
    ],
)
def test_from_flat_state_errors_are_the_usual_ones(items, error):
    with pytest.raises(error):
        nnx.from_flat_state([((("ok",)), nnx.Param(np.zeros(1)))] + items)


def test_from_flat_state_accepts_int_like_and_str_subclass_keys():
    class S(str):
        pass

    state = nnx.from_flat_state([((S("a"), np.int64(3)), nnx.Param(np.zeros(1)))])
    assert nnx.to_flat_state(state).paths == (("a", 3),)


def test_the_garbage_collector_is_left_as_it_was():
    state = model()
    assert gc.isenabled()
    nnx.to_flat_state(state)
    assert gc.isenabled()
    gc.disable()
    try:
        nnx.to_flat_state(state)
        assert not gc.isenabled()
    finally:
        gc.enable()


def _leaf_ids(state):
    return [(path, id(leaf)) for path, leaf in nnx.to_flat_state(state)]


def test_a_flat_state_read_lazily_rebuilds_the_same_state():
    """A flat state from to_flat_state is read only when asked; unread, or
    read but unchanged, from_flat_state rebuilds the very same leaves."""
    state = model()
    expected = entry_by_entry(state)
    unread = nnx.to_flat_state(state)
    assert len(unread) == len(expected)
    assert nnx.from_flat_state(unread) == state
    paths_only = nnx.to_flat_state(state)
    assert paths_only.paths == tuple(p for p, _ in expected)
    rebuilt = nnx.from_flat_state(paths_only)
    assert [(p, id(v)) for p, v in nnx.to_flat_state(rebuilt)] == _leaf_ids(state)
    read = nnx.to_flat_state(state)
    assert [(p, l) for p, l in read] == expected
    assert read[0] == expected[0] and read[-1] == expected[-1]
    assert list(read[1:3]) == expected[1:3]
    assert _leaf_ids(nnx.from_flat_state(read)) == _leaf_ids(state)
    assert isinstance(nnx.from_flat_state(read, cls=type("Sub", (nnx.State,), {})), nnx.State)


def test_a_changed_flat_state_rebuilds_what_it_holds():
    state = model()
    flat = nnx.to_flat_state(state)
    replacement = nnx.Param(np.zeros(3, np.float32))
    flat.leaves[0] = replacement
    rebuilt = nnx.from_flat_state(flat)
    assert rebuilt[flat.paths[0][0]][0]["attn"]["q"] is replacement
    assert state["layers"][0]["attn"]["q"] is not replacement
    flat.leaves.append(replacement)  # one leaf more than paths: as Flax, zip stops
    shorter = nnx.to_flat_state(state)
    del shorter.leaves[-1]
    assert len(nnx.to_flat_state(nnx.from_flat_state(shorter))) == len(shorter.paths) - 1


def test_a_flat_state_keeps_its_leaves_after_the_state_changes():
    state = model()
    flat = nnx.to_flat_state(state)
    before = entry_by_entry(state)
    state["layers"] = {}
    del state["layers"]
    gc.collect()
    assert [(p, l) for p, l in flat] == before
    assert nnx.from_flat_state(flat) == nnx.from_flat_state(before)


def test_a_state_keeps_its_flat_objects_until_its_tree_changes():
    state = model()
    first = nnx.to_flat_state(state)
    leaves = [leaf for _, leaf in first]  # read in full: the state keeps it
    again = nnx.to_flat_state(state)
    assert again.paths is first.paths and all(a is b for a, b in zip(again.leaves, leaves))
    again.leaves[0] = None  # a flat state's list is its own
    assert nnx.to_flat_state(state).leaves[0] is leaves[0]
    # A change through a view, which this object does not see, still counts.
    view = state["layers"][0]["attn"]
    new = nnx.Param(np.ones(1, np.float32))
    view["q"] = new
    changed = dict(nnx.to_flat_state(state))
    assert changed[("layers", 0, "attn", "q")] is new
    # A value changed in place (update) is read anew through the same object.
    nnx.update(state, nnx.State({"layers": {1: {"attn": {"q": new}}}}))
    np.testing.assert_array_equal(dict(nnx.to_flat_state(state))[("layers", 1, "attn", "q")].value, [1])
    import jax

    assert jax.tree.leaves(state)[0] is not None
    view["q"] = nnx.Param(np.full(1, 5, np.float32))
    assert any(float(x[0]) == 5 for x in jax.tree.leaves(state))


def test_arrays_lent_in_bulk_are_what_one_by_one_gives():
    from nnx_state import _arrays

    base = np.arange(12.0).reshape(3, 4)
    native_view = nnx.State({"w": nnx.Param(np.arange(3.0))})["w"][...]
    values = [
        np.arange(4, dtype=np.int32),  # lent
        base[:, 1],  # not contiguous: copied
        np.zeros((2, 0)),  # empty: copied
        native_view,  # a view of a native array: that array again
        np.array(7, np.int64),  # a scalar: lent
        np.arange(3.0).astype(">f8"),  # big-endian: a converted copy, lent
        np.ones(2, np.float32),
    ]
    gc.collect()
    before = _arrays.lent_count()
    handles = _arrays.to_native_many(values)
    try:
        assert _arrays.lent_count() == before + 4
        for value, handle in zip(values, handles):
            _arrays.lib.nnx_array_retain(handle)  # view_of takes one reference over
            out = _arrays.view_of(handle)
            assert out.dtype == value.dtype.newbyteorder("=") and out.shape == value.shape
            np.testing.assert_array_equal(out, value)
            if value is values[0]:
                assert out.ctypes.data == value.ctypes.data  # lent, not copied
        assert _arrays.native_of_view(native_view) == handles[3]
        _arrays.lib.nnx_array_release(handles[3])  # the reference native_of_view took
    finally:
        for handle in handles:
            _arrays.lib.nnx_array_release(handle)
    del out  # the last view holds its array
    gc.collect()
    assert _arrays.lent_count() == before


def test_a_bad_value_among_arrays_lent_in_bulk_keeps_nothing():
    from nnx_state import _arrays

    gc.collect()
    before = _arrays.lent_count()
    with pytest.raises(TypeError, match="numeric or boolean"):
        _arrays.to_native_many([np.ones(3), np.array(["a"]), np.zeros(2)])
    gc.collect()
    assert _arrays.lent_count() == before


def test_pairs_of_a_live_flat_state_are_built_with_its_encoded_paths():
    state = nnx.State({"a": {"x": nnx.Param(np.zeros(2)), 1: nnx.BatchStat(np.ones(1))}, "b": np.arange(3)})
    flat = nnx.to_flat_state(state)
    pairs = [(path, leaf) for path, leaf in flat]
    assert [path for path, _ in pairs] == [("a", 1), ("a", "x"), ("b",)]
    pairs[1] = (pairs[1][0], nnx.Cache(np.full(2, 5.0)))  # a new leaf, the same path object
    assert statelib._flat_with_paths(pairs, [path for path, _ in pairs]) is flat
    rebuilt = nnx.from_flat_state(pairs)
    assert rebuilt["a"][1] is state["a"][1] and isinstance(rebuilt["a"]["x"], nnx.Cache)
    assert nnx.to_flat_state(rebuilt).paths == flat.paths
    np.testing.assert_array_equal(rebuilt["b"], [0, 1, 2])
    # Equal paths that are other objects, fewer pairs, or paths of a flat
    # state already gone: encoded again, with the same result.
    copied = [(tuple(list(path)), leaf) for path, leaf in pairs]
    assert nnx.from_flat_state(copied) == rebuilt
    assert list(nnx.from_flat_state(pairs[:2])) == ["a"]
    del flat
    gc.collect()
    assert statelib._flat_with_paths(pairs, [path for path, _ in pairs]) is None
    assert nnx.from_flat_state(pairs) == rebuilt
    with pytest.raises(ValueError):
        nnx.from_flat_state(pairs + [(("c",), 1, 2)])

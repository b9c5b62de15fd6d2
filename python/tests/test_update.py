"""``update(target, *states)`` against ``flax.nnx.update``: the same calls
on the same states, side by side, give the same result (or the same error)."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_state as nnx

flax_nnx = pytest.importorskip("flax.nnx")
jnp = pytest.importorskip("jax.numpy")

pytestmark = pytest.mark.flax


def base(ns):
    return ns.State({
        "a": ns.Param(np.zeros(2), tag="t0"),
        "b": {"c": ns.BatchStat(np.zeros(1)), "d": np.zeros(3)},
    })


# Each case: the update arguments, made with `ns` (nnx_state or flax.nnx).
CASES = {
    "a variable": lambda ns: [ns.State({"a": ns.Param(np.ones(2), tag="new")})],
    "a pure dict of values": lambda ns: [{"a": np.full(2, 7.0), "b": {"d": np.arange(3.0)}}],
    "new keys": lambda ns: [{"z": ns.Param(np.ones(1)), "b": {"e": np.ones(1)}, "l": {0: np.ones(1)}}],
    "a new nested state": lambda ns: [ns.State({"n": {"m": ns.Param(np.ones(1))}})],
    "later wins": lambda ns: [{"a": np.full(2, 1.0)}, {"a": np.full(2, 2.0)}],
    "merged subtrees": lambda ns: [{"b": {"c": np.full(1, 4.0)}}, {"b": {"d": np.full(3, 9.0)}}],
    "states and dicts": lambda ns: [ns.State({"a": ns.Param(np.ones(2))}), {"b": {"d": np.ones(3)}}],
    "another type": lambda ns: [{"a": ns.BatchStat(np.full(2, 3.0))}],
    "None as a value": lambda ns: [{"a": None}],
    "a subtree for a bare array": lambda ns: [{"b": {"d": {"q": np.ones(1)}}}],
    "nothing": lambda ns: [{}],
    "an empty state for a variable": lambda ns: [{"a": ns.State({})}],
    "a leaf for a subtree": lambda ns: [{"b": np.ones(1)}],
    "a variable for a subtree": lambda ns: [{"b": ns.Param(np.ones(1))}],
}


def _flat(ns, state):
    return list((nnx if ns is nnx else flax_nnx).to_flat_state(state))


def _leaves(mapping) -> list:
    out = []
    for value in mapping.values():
        out.extend(_leaves(value) if hasattr(value, "items") else [value])
    return out


def _describe(ns, target, originals, sources) -> list:
    """Per leaf: path, type name, value, metadata, and whether it is the
    target's original variable / a source's variable object."""
    source_vars = [leaf for s in sources for leaf in _leaves(s)]
    out = []
    for path, leaf in _flat(ns, target):
        if isinstance(leaf, ns.Variable):
            value = leaf.get_value()
            out.append((
                path, type(leaf).__name__,
                None if value is None else np.asarray(value).tolist(),
                leaf.get_metadata(),
                leaf is originals.get(path),
                any(leaf is v for v in source_vars),
            ))
        else:
            out.append((path, "array", np.asarray(leaf).tolist()))
    return out


def _run(ns, update, case):
    target = base(ns)
    originals = dict(_flat(ns, target))
    sources = CASES[case](ns)
    try:
        update(target, *sources)
    except Exception as e:  # the same error in both worlds
        return ("error", type(e).__name__ if not isinstance(e, ValueError) else "ValueError", str(e).split(":")[0])
    return _describe(ns, target, originals, [s for s in sources if hasattr(s, "items")])


@pytest.mark.parametrize("case", CASES)
def test_update_as_flax(case):
    ours = _run(nnx, nnx.update, case)
    theirs = _run(flax_nnx, flax_nnx.update, case)
    assert ours == theirs


def test_the_variable_is_updated_where_it_is_shared():
    v = nnx.Param(np.zeros(2))
    target, other = nnx.State({"a": v}), nnx.State({"deep": {"x": v}})
    new = nnx.Param(np.arange(2.0), tag="moved")
    nnx.update(target, {"a": new})
    assert target["a"] is v and other["deep"]["x"] is v
    assert list(other["deep"]["x"][...]) == [0.0, 1.0] and v.tag == "moved"
    assert np.shares_memory(v[...], new[...])  # the value is shared, as in Flax


def test_a_dict_target():
    for ns, update in ((nnx, nnx.update), (flax_nnx, flax_nnx.update)):
        d = {"a": ns.Param(np.zeros(2)), "b": {"c": np.zeros(1)}}
        a = d["a"]
        update(d, {"a": np.ones(2), "b": {"c": np.ones(1)}, "n": np.ones(1)})
        assert d["a"] is a and list(np.asarray(a.get_value())) == [1.0, 1.0]
        assert list(d["b"]["c"]) == [1.0] and list(d["n"]) == [1.0]


@pytest.mark.parametrize("sources", [
    lambda ns: [ns.Param(np.ones(2), tag="t")],
    lambda ns: [np.full(2, 3.0)],
    lambda ns: [{}, np.full(2, 3.0)],
    lambda ns: [np.ones(2), np.ones(2)],
])
def test_a_variable_target(sources):
    results = []
    for ns, update in ((nnx, nnx.update), (flax_nnx, flax_nnx.update)):
        v = ns.Param(np.zeros(2))
        try:
            update(v, *sources(ns))
        except ValueError as e:
            results.append(str(e).split(":")[0])
            continue
        results.append((np.asarray(v.get_value()).tolist(), v.get_metadata()))
    assert results[0] == results[1]


def test_an_empty_mapping_leaves_a_variable_alone():
    # Flax sets the raw value to the dict here; a variable cannot hold one.
    v = nnx.Param(np.ones(2))
    nnx.update(v, {})
    assert list(v[...]) == [1.0, 1.0]


def test_what_update_refuses():
    s = nnx.State({"a": nnx.Param(np.zeros(1))})
    with pytest.raises(TypeError, match="from_flat_state"):
        nnx.update(s, nnx.to_flat_state(s))
    with pytest.raises(TypeError, match="States or nested mappings"):
        nnx.update(s, [(("a",), np.ones(1))])
    with pytest.raises(TypeError, match="mutable mapping"):
        nnx.update((1, 2), {})
    with pytest.raises(TypeError):
        nnx.update(s)


class Model(flax_nnx.Module):
    def __init__(self, rngs):
        self.batchnorm = flax_nnx.BatchNorm(2, rngs=rngs)
        self.linear = flax_nnx.Linear(2, 3, rngs=rngs)


def test_a_flax_module_target_goes_to_flax_update():
    model = Model(flax_nnx.Rngs(0))
    state = nnx.from_flax(flax_nnx.state(model))
    params, stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
    params["linear"]["bias"][...] += 1
    stats["batchnorm"]["mean"][...] = 5
    nnx.update(model, params, stats)
    assert isinstance(model.linear.bias.get_value(), jnp.ndarray)  # jax arrays, as Flax keeps them
    assert (model.linear.bias[...] == 1).all() and (model.batchnorm.mean[...] == 5).all()
    # The same as Flax's own update with the same values.
    twin = Model(flax_nnx.Rngs(0))
    flax_nnx.update(twin, nnx.to_flax(state, array_fn=jnp.asarray))
    for (p, a), (q, b) in zip(flax_nnx.to_flat_state(flax_nnx.state(model)), flax_nnx.to_flat_state(flax_nnx.state(twin))):
        assert p == q and type(a) is type(b) and (a[...] == b[...]).all()


def test_a_flax_state_target_and_a_flax_state_source():
    flax_state = flax_nnx.State({"a": flax_nnx.Param(jnp.zeros(2))})
    a = flax_state["a"]
    nnx.update(flax_state, nnx.State({"a": nnx.Param(np.ones(2))}))
    assert flax_state["a"] is a and (a[...] == 1).all()
    ours = nnx.State({"a": nnx.Param(np.zeros(2))})
    v = ours["a"]
    nnx.update(ours, flax_nnx.State({"a": flax_nnx.Param(jnp.full(2, 3.0))}))
    assert ours["a"] is v and list(v[...]) == [3.0, 3.0]

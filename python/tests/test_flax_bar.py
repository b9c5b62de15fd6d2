"""The bar: Flax's own tests of State and Variable (flax 0.12.8,
tests/nnx/state_test.py and tests/nnx/variable_test.py), re-expressed in our
words and run twice, with ``ns`` as ``flax.nnx`` and as ``nnx_state``: the
import swapped, the same test passes for both.

Each test names the Flax test it stands for. Flax's tests that build an
``nnx.Module`` are not part of the bar; those whose point is the State are
run here with the Module's state taken through ``from_flax`` (for
``nnx_state``) or as it is (for Flax). Not here:

- variable_test ``test_overloads_module``, ``test_jax_array``: the Module
  (a ``Linear`` of two Params) is Flax's own; the Params' part (``x @ w +
  b``, ``jnp.dot(x, w) + b``) is ``test_params_in_arithmetic``.
"""

from __future__ import annotations

import itertools
import typing as tp

import numpy as np
import pytest

import nnx_state

jax = pytest.importorskip("jax")
jnp = jax.numpy
P = jax.sharding.PartitionSpec

try:
    from flax import nnx as flax_nnx
except ImportError:  # pragma: no cover - depends on the environment
    flax_nnx = None

NAMESPACES = [
    pytest.param(nnx_state, id="nnx_state"),
    pytest.param(flax_nnx, id="flax", marks=pytest.mark.skipif(flax_nnx is None, reason="needs flax")),
]


@pytest.fixture(params=NAMESPACES)
def ns(request):
    return request.param


def needs_flax():
    if flax_nnx is None:
        pytest.skip("needs flax")


def module_state(ns, module):
    """``nnx.state(module)`` as ``ns`` holds it."""
    state = flax_nnx.state(module)
    return state if ns is flax_nnx else nnx_state.from_flax(state)


def two_params(ns):
    return ns.State({"a": ns.Param(jnp.array(1)), "b": {"c": ns.Param(jnp.array(2))}})


# --------------------------------------------------------------------------
# state_test.py
# --------------------------------------------------------------------------


def test_create_state(ns):
    state = two_params(ns)
    assert state["a"][...] == 1 and state["b"]["c"][...] == 2


def test_get_attr(ns):
    state = two_params(ns)
    assert state.a[...] == 1 and state.b.c[...] == 2


def test_set_attr(ns):
    state = two_params(ns)
    state.a[...] = 3
    state.b.c[...] = 4
    assert state["a"][...] == 3 and state["b"]["c"][...] == 4


def test_set_attr_variables(ns):
    state = two_params(ns)
    state.a[...] = 3
    state.b.c[...] = 4
    assert isinstance(state.a, ns.Param) and state.a[...] == 3
    assert isinstance(state.b.c, ns.Param) and state.b.c[...] == 4


def test_add_nested_attr(ns):
    state = two_params(ns)
    state.b.d = ns.Param(jnp.array(5))
    assert state["b"]["d"][...] == 5


def test_delete_nested_attr(ns):
    state = two_params(ns)
    del state["b"]["c"]
    assert "c" not in state["b"]


def test_integer_access(ns):
    """state_test ``test_integer_access`` (its Module through from_flax)."""
    needs_flax()

    class Stack(flax_nnx.Module):
        def __init__(self, rngs):
            self.layers = flax_nnx.List([flax_nnx.Linear(1, 2, rngs=rngs), flax_nnx.Linear(2, 3, rngs=rngs)])

    state = module_state(ns, Stack(flax_nnx.Rngs(0)))
    assert state.layers[0].kernel.shape == (1, 2)
    assert state.layers[1].kernel.shape == (2, 3)


def test_pure_dict(ns):
    """state_test ``test_pure_dict`` (its Linear through from_flax; the
    model updated from our state by ``nnx_state.update``)."""
    needs_flax()
    model = flax_nnx.Linear(4, 5, rngs=flax_nnx.Rngs(0))
    state = module_state(ns, model)
    pure = ns.to_pure_dict(state)
    assert isinstance(pure, dict)
    assert isinstance(pure["kernel"], jax.Array) and isinstance(pure["bias"], jax.Array)
    ns.replace_by_pure_dict(state, jax.tree.map(jnp.zeros_like, pure))
    assert isinstance(state, ns.State) and isinstance(state["kernel"], ns.Variable)
    assert type(state["kernel"]) is ns.Param
    assert jnp.array_equal(state["kernel"][...], jnp.zeros((4, 5)))
    ns.update(model, state)
    assert jnp.array_equal(model(jnp.ones((3, 4))), jnp.zeros((3, 5)))


def test_replace_by_pure_dict_takes_the_flat_round_trip_form(ns):
    """What replace_by_pure_dict leaves: new variables holding the new
    values (the old ones keep theirs), each top-level nested state with
    leaves sorted and without its empty nested states, a top-level state
    without leaves kept, the top level in its order; int-looking string
    keys match int keys; a subclass's own ``replace`` is called."""
    calls = []

    class Traced(ns.Param):
        def replace(self, value=None, **kwargs):
            calls.append(value)
            return super().replace(value, **kwargs)

    old = ns.Param(np.zeros(2, np.float32))
    state = ns.State({
        "top": {"z": old, "a": ns.BatchStat(np.ones(1, np.float32)), "empty": {}},
        "hollow": {},
        "layers": {0: {"w": Traced(np.zeros(1, np.float32))}},
    })
    new = np.full(2, 7, np.float32)
    ns.replace_by_pure_dict(state, {"top": {"z": new}, "layers": {"0": {"w": np.ones(1, np.float32)}}})
    assert list(state) == ["top", "hollow", "layers"]
    assert list(state["top"]) == ["a", "z"] and len(state["hollow"]) == 0
    assert state["top"]["z"] is not old and type(state["top"]["z"]) is ns.Param
    np.testing.assert_array_equal(state["top"]["z"][...], new)
    np.testing.assert_array_equal(old[...], [0, 0])
    assert len(calls) == 1 and type(state["layers"][0]["w"]) is Traced
    with pytest.raises(ValueError, match="not available in state"):
        ns.replace_by_pure_dict(state, {"top": {"missing": new}})


def test_diff(ns):
    """state_test ``test_diff`` (its Modules through from_flax)."""
    needs_flax()

    class Layers(flax_nnx.Module):
        def __init__(self, seed, n):
            rngs = flax_nnx.Rngs(seed)
            self.layers = flax_nnx.List([flax_nnx.Linear(4, 4, use_bias=False, rngs=rngs) for _ in range(n)])

    four_a, four_b, five = (module_state(ns, Layers(seed, n)) for seed, n in ((0, 4), (1, 4), (1, 5)))
    empty = ns.state({})
    assert ns.statelib.diff(four_b, four_a) == empty
    assert ns.statelib.diff(five, four_a) != empty
    assert ns.statelib.diff(four_a, five) == empty


# --------------------------------------------------------------------------
# variable_test.py
# --------------------------------------------------------------------------


def test_pytree(ns):
    one = ns.Param(1)
    assert one.get_value() == 1
    two = jax.tree.map(lambda x: x + 1, one)
    assert one.get_value() == 1 and two.get_value() == 2
    assert two is not one and type(two) is ns.Param


def test_params_in_arithmetic(ns):
    """variable_test ``test_overloads_module`` and ``test_jax_array``, the
    Params without their Module: a Param is an operand as its value is."""
    key = jax.random.key(0)
    w = ns.Param(jax.random.normal(key, (3, 4)))
    b = ns.Param(jnp.zeros((4,)))
    x = jnp.ones((3,))
    assert (x @ w + b).shape == (4,)
    assert (jnp.dot(x, w) + b).shape == (4,)  # type: ignore[arg-type]
    assert jnp.array_equal(x @ w + b, x @ w[...])


def test_proxy_access(ns):
    v = ns.Param(jnp.ones((2, 3)))
    assert v.T.shape == (3, 2)
    assert v.ndim == 2 and v.size == 6


def test_proxy_call(ns):
    class Times(tp.NamedTuple):
        factor: int

        def __call__(self, x):
            return self.factor * x

    v = ns.Param(Times(2))
    assert v(3) == 6


def test_binary_ops(ns):
    v1, v2 = ns.Param(jnp.array(2)), ns.Param(jnp.array(3))
    assert v1 + v2 == 5
    assert not (v1 == v2)
    v1[...] += v2
    assert v1[...] == 5


@pytest.mark.parametrize("v1,v2", list(itertools.product([np.array([1, 2]), np.array(2), 3], repeat=2)))
def test_eq_op(ns, v1, v2):
    p1 = ns.Param(jnp.asarray(v1) if isinstance(v1, np.ndarray) else v1)
    p2 = ns.Param(jnp.asarray(v2) if isinstance(v2, np.ndarray) else v2)
    if isinstance(v1, np.ndarray) or isinstance(v2, np.ndarray):
        assert (p1 == p2).all() == (v1 == v2).all()
    else:
        assert (p1 == p2) == (v1 == v2)


def test_mutable_array_context(ns):
    """variable_test ``test_mutable_array_context``: ``var_defaults`` sets the
    ``hijax`` default of new variables, as a context and as a plain call;
    values read back as arrays either way (nnx_state records the flag)."""
    start = ns.var_defaults().hijax
    with ns.var_defaults(hijax=False):
        v = ns.Variable(jnp.array(1.0))
        assert ns.var_defaults().hijax is False and not v.hijax
        assert not isinstance(v[...], jax.Ref)
        with ns.var_defaults(hijax=True):
            v = ns.Variable(jnp.array(1.0))
            assert ns.var_defaults().hijax is True and v.get_metadata("hijax") is True
            assert isinstance(v[...], jax.Array)
        v = ns.Variable(jnp.array(2.0))
        assert isinstance(v[...], jax.Array) and ns.var_defaults().hijax is False
        ns.var_defaults(hijax=True)  # a plain call: from here to the end of the block
        v = ns.Variable(jnp.array(0.0))
        assert ns.var_defaults().hijax is True and isinstance(v[...], jax.Array)
    v = ns.Variable(jnp.array(1.0))
    assert ns.var_defaults().hijax == start and isinstance(v[...], jax.Array)


def test_get_set_metadata(ns):
    required = {"hijax": False, "ref": False, "eager_sharding": True}
    v = ns.Variable(jnp.array(1.0))
    assert v.get_metadata() == required
    v.set_metadata(a=1, b=2)
    assert v.get_metadata("a") == 1 and v.get_metadata("b") == 2
    v.set_metadata({"b": 3, "c": 4, **required})
    assert v.get_metadata() == {"b": 3, "c": 4, **required}
    assert v.get_metadata("b") == 3 and v.get_metadata("c") == 4
    assert v.get_metadata("x", default=10) == 10


def test_set_module_metadata(ns):
    """variable_test ``test_set_module_metadata`` with a State in place of
    the Module: ``set_metadata(node, ..., only=...)``."""
    state = ns.State({"v": ns.Variable(jnp.array(0.0)), "p": ns.Param(jnp.array(1.0))})
    assert "foo" not in state["v"].get_metadata() and "foo" not in state["p"].get_metadata()
    ns.set_metadata(state, foo="bar")
    for name in "vp":
        metadata = state[name].get_metadata()
        assert metadata["foo"] == "bar" and "hijax" in metadata and "ref" in metadata
    ns.set_metadata(state, differentiable=False, only=ns.Param)
    assert "differentiable" not in state["v"].get_metadata()
    assert state["v"].get_metadata("foo") == "bar"
    assert state["p"].get_metadata("differentiable") is False and state["p"].get_metadata("foo") == "bar"


def test_broadcasting(ns):
    """variable_test ``test_broadcasting`` (skipped in Flax's suite for refs;
    plain variables index as their values do)."""
    v = ns.Param(jnp.array([1.0, 2.0, 3.0]))
    assert v[None].shape == (1, 3)


def test_set_metadata_out_sharding(ns):
    v = ns.Variable(jnp.array(1.0))
    v.set_metadata(out_sharding=P(None))
    assert v.get_metadata("out_sharding") == P(None)
    v.set_metadata("out_sharding", P("x"))
    assert v.get_metadata("out_sharding") == P("x")
    v.set_metadata({"out_sharding": P("y"), "hijax": False, "ref": False, "eager_sharding": True})
    assert v.get_metadata("out_sharding") == P("y")
    assert v.out_sharding == P("y")  # metadata reads as an attribute

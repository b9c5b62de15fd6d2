"""JAX pytrees: State, Variable and FlatState flatten as Flax's do (the same
leaves, in the same order, under the same key paths, with the same tree
structure), built side by side with flax.nnx; and nnx_state works without
jax."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import pytrees
from test_library import run_python

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
flax_nnx = pytest.importorskip("flax.nnx")

pytestmark = pytest.mark.flax


def _class_in(module: str, name: str, base: type) -> type:
    namespace: dict = {"base": base, "__name__": module}
    exec(f"class {name}(base):\n    pass\n", namespace)
    return namespace[name]


LORA = {nnx: _class_in("pt_models", "PtLora", nnx.Param), flax_nnx: _class_in("pt_models", "PtLora", flax_nnx.Param)}


def build(ns):
    """The same state with nnx_state or with flax.nnx."""
    f32 = np.float32
    return ns.State({
        "encoder": {
            "layers": {
                i: {
                    "kernel": ns.Param(np.full((2, 3), i, f32), note="model", scale=0.5, frozen=False),
                    "bias": ns.Param(np.arange(3, dtype=f32) + i),
                    "lora": LORA[ns](np.ones(2, f32), tag="lora"),
                }
                for i in (0, 1, 2, 10)
            },
            "norm": {"mean": ns.BatchStat(np.zeros(3, f32)), "var": ns.BatchStat(np.ones(3, f32))},
        },
        "cache": ns.Cache(np.zeros((1, 2), np.int32), tag="kv"),
        "step": np.array(3, np.int64),
        "aux": {"table": np.arange(4.0)},
    })


def _key_paths(tree):
    return [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _same_leaves(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


def _describe(tree) -> list:
    """Path, type name, metadata and value of every leaf of a state (ours or
    Flax's), for comparing results."""
    flat = nnx.to_flat_state(tree) if isinstance(tree, nnx.State) else flax_nnx.to_flat_state(tree)
    out = []
    for path, leaf in flat:
        if isinstance(leaf, (nnx.Variable, flax_nnx.Variable)):
            value = leaf.get_value()
            value = None if value is None else np.asarray(value).tolist()
            out.append((path, type(leaf).__name__, leaf.get_metadata(), value))
        else:
            out.append((path, "array", np.asarray(leaf).tolist()))
    return out


# --------------------------------------------------------------------------
# Flattening: as Flax
# --------------------------------------------------------------------------


def test_registered():
    assert pytrees.is_registered()


def test_flatten_with_path_as_flax():
    ours, theirs = build(nnx), build(flax_nnx)
    our_leaves, our_def = jax.tree_util.tree_flatten_with_path(ours)
    their_leaves, their_def = jax.tree_util.tree_flatten_with_path(theirs)
    assert [p for p, _ in our_leaves] == [p for p, _ in their_leaves]
    _same_leaves([x for _, x in our_leaves], [x for _, x in their_leaves])
    # The same structure, down to the aux data: State keys, dicts, each
    # variable's class name and sorted metadata.
    assert str(our_def) == str(their_def)
    _same_leaves(jax.tree.leaves(ours), jax.tree.leaves(theirs))
    assert jax.tree_util.tree_structure(ours).num_leaves == ours.num_leaves()


def test_key_paths_name_every_level():
    paths = _key_paths(build(nnx))
    tu = jax.tree_util
    assert (tu.DictKey("encoder"), tu.DictKey("layers"), tu.DictKey(10), tu.DictKey("kernel"), tu.GetAttrKey("value")) in paths
    assert (tu.DictKey("step"),) in paths


def test_tree_map_returns_a_state_as_flax_does():
    ours, theirs = build(nnx), build(flax_nnx)
    mapped = jax.tree.map(lambda x: x * 2, ours)
    assert isinstance(mapped, nnx.State)
    assert _describe(mapped) == _describe(jax.tree.map(lambda x: x * 2, theirs))
    assert jax.tree.structure(mapped) == jax.tree.structure(ours)
    assert type(mapped["encoder"]["layers"][0]["lora"]) is LORA[nnx]
    assert mapped["cache"].tag == "kv" and mapped["encoder"]["layers"][1]["kernel"].note == "model"
    # new variables, the old ones untouched
    assert mapped["cache"] is not ours["cache"] and (ours["encoder"]["layers"][1]["kernel"][...] == 1).all()
    # two trees at once
    both = jax.tree.map(lambda a, b: a + b, ours, mapped)
    assert _describe(both) == _describe(jax.tree.map(lambda a, b: a + b, theirs, jax.tree.map(lambda x: x * 2, theirs)))


def test_jax_arrays_from_tree_map_are_held():
    mapped = jax.tree.map(jnp.asarray, build(nnx))
    assert _describe(mapped) == _describe(build(nnx))
    split = nnx.split_state(mapped, nnx.Param, ...)
    assert [p for p, _ in nnx.to_flat_state(split[0])] == [p for p, _ in nnx.to_flat_state(nnx.filter_state(build(nnx), nnx.Param))]


def test_a_variable_alone():
    for ns in (nnx, flax_nnx):
        v = LORA[ns](np.arange(3.0), tag="x", rank=4)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(v)
        assert [p for p, _ in leaves] == [(jax.tree_util.GetAttrKey("value"),)]
        mapped = jax.tree.map(lambda x: x + 1, v)
        assert type(mapped) is type(v) and mapped.get_metadata() == v.get_metadata()
        assert list(np.asarray(mapped.get_value())) == [1.0, 2.0, 3.0]
    ours = str(jax.tree.structure(LORA[nnx](np.zeros(1), tag="x", rank=4)))
    assert ours == str(jax.tree.structure(LORA[flax_nnx](np.zeros(1), tag="x", rank=4)))


def test_flat_state_as_flax():
    ours, theirs = nnx.to_flat_state(build(nnx)), flax_nnx.to_flat_state(build(flax_nnx))
    assert _key_paths(ours) == _key_paths(theirs)
    assert str(jax.tree.structure(ours)) == str(jax.tree.structure(theirs))
    mapped = jax.tree.map(lambda x: x + 1, ours)
    assert isinstance(mapped, nnx.FlatState) and mapped.paths == ours.paths
    their_mapped = jax.tree.map(lambda x: x + 1, theirs)
    assert [type(v).__name__ for v in mapped.leaves] == [type(v).__name__ for v in their_mapped.leaves]
    assert [type(v) for v in mapped.leaves][:3] == [type(v) for v in ours.leaves][:3]
    _same_leaves(jax.tree.leaves(mapped), jax.tree.leaves(their_mapped))


def test_empty_nested_states_and_empty_values_stay():
    def make(ns):
        return ns.State({"a": {}, "b": ns.Param(np.ones(1)), "c": {"d": {}, "e": ns.Param(None)}, "f": {"g": {"h": {}}}})

    ours, theirs = make(nnx), make(flax_nnx)
    assert str(jax.tree.structure(ours)) == str(jax.tree.structure(theirs))
    _same_leaves(jax.tree.leaves(ours), jax.tree.leaves(theirs))
    for f in (lambda x: x + 1, lambda x: None):
        mapped = jax.tree.map(f, ours)
        assert str(jax.tree.structure(mapped)) == str(jax.tree.structure(jax.tree.map(f, theirs)))
        assert list(mapped) == ["a", "b", "c", "f"] and list(mapped["c"]) == ["d", "e"]
        assert len(mapped["a"]) == 0 and list(mapped["f"]["g"]) == ["h"] and len(mapped["f"]["g"]["h"]) == 0
    assert jax.tree.map(lambda x: None, ours)["b"].get_value() is None


def test_mixed_keys_flatten_in_the_library_order():
    # Flax cannot sort int and str keys together; here ints come first.
    s = nnx.State({"b": nnx.Param(np.ones(1)), 0: {"x": nnx.Param(np.zeros(1)), 1: np.ones(1)}, "a": np.zeros(2)})
    tu = jax.tree_util
    assert _key_paths(s) == [
        (tu.DictKey(0), tu.DictKey(1)),
        (tu.DictKey(0), tu.DictKey("x"), tu.GetAttrKey("value")),
        (tu.DictKey("a"),),
        (tu.DictKey("b"), tu.GetAttrKey("value")),
    ]
    mapped = jax.tree.map(lambda x: x + 1, s)
    assert _describe(mapped) == _describe(jax.tree.map(lambda x: x + 1, nnx.State(s)))
    assert jax.tree.structure(mapped) == jax.tree.structure(s)
    assert list(mapped) == [0, "a", "b"] and list(mapped[0]) == [1, "x"]


def test_classes_made_later_are_pytrees():
    Late = _class_in("pt_late", "PtLate", nnx.Cache)

    class MyState(nnx.State):
        __slots__ = ()

    leaves = jax.tree.leaves(MyState({"x": Late(np.arange(2.0))}))
    _same_leaves(leaves, [np.arange(2.0)])
    mapped = jax.tree.map(lambda x: x + 1, MyState({"x": Late(np.arange(2.0))}))
    assert type(mapped) is MyState and type(mapped["x"]) is Late


def test_loaded_types_are_pytrees(tmp_path):
    Saved = _class_in("pt_saved", "PtSaved", nnx.Param)
    nnx.save_safetensors(nnx.State({"w": Saved(np.ones(2))}), tmp_path / "m.safetensors")
    loaded = nnx.load_safetensors(tmp_path / "m.safetensors")
    mapped = jax.tree.map(lambda x: x * 3, loaded)
    assert type(mapped["w"]) is Saved and list(mapped["w"][...]) == [3.0, 3.0]


def _optax_step(tx, ns):
    params = ns.filter_state(build(ns), ns.Param)
    grads = jax.tree.map(lambda x: np.ones_like(x), params)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return pytest.importorskip("optax").apply_updates(params, updates), opt_state


def _compare_optax(tx) -> None:
    (ours, our_opt), (theirs, their_opt) = _optax_step(tx, nnx), _optax_step(tx, flax_nnx)
    assert isinstance(ours, nnx.State)
    assert [p for p, _ in nnx.to_flat_state(ours)] == [p for p, _ in flax_nnx.to_flat_state(theirs)]
    for (_, a), (_, b) in zip(nnx.to_flat_state(ours), flax_nnx.to_flat_state(theirs)):
        assert type(a).__name__ == type(b).__name__ and a.get_metadata() == b.get_metadata()
        np.testing.assert_allclose(a[...], np.asarray(b[...]), rtol=1e-6)
    assert _key_paths(our_opt) == _key_paths(their_opt)
    _same_leaves(jax.tree.leaves(our_opt), jax.tree.leaves(their_opt))


def test_optax_sgd_with_momentum_as_flax():
    optax = pytest.importorskip("optax")
    _compare_optax(optax.sgd(0.1, momentum=0.9))


# --------------------------------------------------------------------------
# Transformations: tracers and ShapeDtypeStruct held as opaque values
# --------------------------------------------------------------------------


def _params(ns):
    return ns.State({"w": ns.Param(np.ones((2, 2), np.float32)), "s": ns.BatchStat(np.full((2, 2), 2.0, np.float32))})


def test_jit_with_filter_split_merge_inside():
    def step(ns):
        def f(state):
            params, rest = ns.split_state(state, ns.Param, ...)
            params = jax.tree.map(lambda x: x * 2, params)
            return ns.merge_state(params, rest)

        return jax.jit(f)(_params(ns))

    assert _describe(step(nnx)) == _describe(step(flax_nnx))


def test_grad():
    def grads(ns):
        return jax.grad(lambda s: jnp.sum(s["w"][...] * s["s"][...]))(_params(ns))

    ours = grads(nnx)
    assert isinstance(ours, nnx.State) and _describe(ours) == _describe(grads(flax_nnx))


def test_eval_shape():
    ours = jax.eval_shape(lambda s: s, _params(nnx))
    theirs = jax.eval_shape(lambda s: s, _params(flax_nnx))
    assert isinstance(ours, nnx.State)
    assert [(p, v.get_value()) for p, v in nnx.to_flat_state(ours)] == [(p, v.get_value()) for p, v in flax_nnx.to_flat_state(theirs)]


def test_vmap():
    ours = jax.vmap(lambda s: jax.tree.map(lambda x: x + 1, s))(_params(nnx))
    assert _describe(ours) == _describe(jax.vmap(lambda s: jax.tree.map(lambda x: x + 1, s))(_params(flax_nnx)))


def test_optax_adam_as_flax():
    optax = pytest.importorskip("optax")
    _compare_optax(optax.adam(0.1))


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="a bare leaf is an array in the library's data model (a Variable holds None as no value, "
    "and any other object opaquely, but a bare leaf cannot be None or an opaque object)",
)
def test_none_for_a_bare_array():
    mapped = jax.tree.map(lambda x: None, nnx.State({"x": np.ones(1)}))
    assert mapped["x"] is None


def test_flattening_again_sees_every_change():
    # Each flatten keeps what it gave while nothing changed; any change to a
    # value or metadata, through any object, is seen by the next one.
    s = nnx.State({"a": nnx.Param(jnp.zeros(2)), "b": nnx.Param(jnp.ones(2))})
    tu = jax.tree_util
    for flatten in (tu.tree_flatten_with_path, lambda t: jax.tree.flatten(t)):
        first = flatten(s)
        assert flatten(s)[1] == first[1]
        s["a"].set_value(jnp.full(2, 7.0))
        leaves, treedef = flatten(s)
        np.testing.assert_array_equal(leaves[0][1] if isinstance(leaves[0], tuple) else leaves[0], [7.0, 7.0])
        nnx.to_flat_state(s)[1][1].set_metadata(note="changed")
        assert flatten(s)[1] != treedef
        assert "'note', 'changed'" in str(flatten(s)[1])
        s["b"].del_metadata("note")


# --------------------------------------------------------------------------
# What jax unflattens is built natively on first use
# --------------------------------------------------------------------------


def test_tree_map_makes_nothing_native_until_used():
    from nnx_state import _var_live, statelib

    def pending(x) -> bool:
        try:
            (statelib if isinstance(x, nnx.State) else _var_live).pending_of(x)
            return True
        except AttributeError:
            return False

    s = nnx.State({"a": {"w": nnx.Param(jnp.ones(3), note="n")}, "b": nnx.BatchStat(jnp.zeros(2))})
    mapped = jax.tree.map(lambda x: x * 2, jax.tree.map(lambda x: x + 1, s))
    assert jax.tree.structure(mapped) == jax.tree.structure(s)
    w, b = jax.tree.leaves(mapped, is_leaf=lambda x: isinstance(x, nnx.Variable))
    np.testing.assert_array_equal(w.get_value(), [4.0, 4.0, 4.0])
    assert pending(mapped) and pending(w) and pending(b)  # nothing native made
    # First native use: the state is built over these very objects.
    params = nnx.filter_state(mapped, nnx.Param)
    assert not (pending(mapped) or pending(w) or pending(b))
    assert params["a"]["w"] is w and mapped["a"]["w"] is w and mapped["b"] is b
    assert _var_live._live[w._ptr]() is w
    assert w.get_metadata() == s["a"]["w"].get_metadata()
    assert _describe(mapped) == _describe(nnx.State(mapped))


def test_a_pending_variable_becomes_native_on_first_write():
    s = nnx.State({"w": nnx.Param(jnp.ones(2), tag="t")})
    w = jax.tree.map(lambda x: x + 1, s)["w"]  # the state is built, its variable too
    lone = jax.tree.map(lambda x: x, nnx.Param(jnp.zeros(2), tag="u"))
    assert lone.tag == "u"  # metadata read natively: made first
    lone.set_value(jnp.full(2, 5.0))
    np.testing.assert_array_equal(lone.get_value(), [5.0, 5.0])
    other = jax.tree.map(lambda x: x, nnx.Param(jnp.zeros(2)))
    other.value = jnp.ones(2)  # a write before any read
    np.testing.assert_array_equal(other[...], [1.0, 1.0])
    np.testing.assert_array_equal(w.get_value(), [2.0, 2.0])


def test_numpy_values_from_tree_map_are_stored_at_once():
    # A numpy value comes back as a view of its native copy: stored now, so
    # that a read gives the same kind of object whenever it happens.
    from nnx_state import _var_live

    v = jax.tree.map(lambda x: np.asarray(x) + 1, nnx.Param(jnp.ones(2)))
    with pytest.raises(AttributeError):
        _var_live.pending_of(v)
    assert isinstance(v.get_value(), np.ndarray)


def test_pending_objects_are_made_native_once_across_threads():
    import threading
    from nnx_state import _var_live

    s = nnx.State({i: nnx.Param(jnp.full(2, float(i))) for i in range(64)})
    mapped = jax.tree.map(lambda x: x + 1, s)
    variables = jax.tree.leaves(mapped, is_leaf=lambda x: isinstance(x, nnx.Variable))
    seen: list = [[] for _ in range(4)]

    def use(out):
        out.append(mapped.num_leaves())
        out.extend(v._ptr for v in variables)

    threads = [threading.Thread(target=use, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out == seen[0] for out in seen) and seen[0][0] == 64
    assert all(_var_live._live[p]() is v for p, v in zip(seen[0][1:], variables))


def test_a_state_of_bare_tracers_passes_through_jit():
    # Built natively only when used: a jitted function may take and return a
    # state with bare arrays, as Flax's may.
    s = nnx.State({"x": jnp.ones(2), "p": nnx.Param(jnp.zeros(2))})
    out = jax.jit(lambda t: jax.tree.map(lambda x: x + 1, t))(s)
    np.testing.assert_array_equal(out["x"], [2.0, 2.0])
    np.testing.assert_array_equal(out["p"].get_value(), [1.0, 1.0])

    def uses_it_natively(t):
        return nnx.filter_state(t, nnx.Param)

    with pytest.raises(TypeError, match="tracer"):
        jax.jit(uses_it_natively)(s)


def test_a_pending_state_that_cannot_be_built_says_why_on_use():
    s = nnx.State({"x": np.ones(2)})
    bad = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), s)
    with pytest.raises(TypeError):
        len(bad)
    with pytest.raises(TypeError):  # still pending: the same error again
        bad.num_leaves()
    assert jax.tree.structure(bad) == jax.tree.structure(s)  # flattening needs nothing native


# --------------------------------------------------------------------------
# Without jax, and jax imported after nnx_state
# --------------------------------------------------------------------------

_USE_WITHOUT_JAX = """
import numpy as np, nnx_state as nnx
s = nnx.State({"a": nnx.Param(np.ones(2)), "b": {"c": nnx.BatchStat(np.zeros(1))}})
params, rest = nnx.split_state(s, nnx.Param, ...)
nnx.update(s, {"a": np.full(2, 3.0)})
class Mine(nnx.Param):
    pass
assert list(s["a"][...]) == [3.0, 3.0] and list(params) == ["a"] and Mine(np.zeros(1)).type_name
assert not nnx.pytrees.is_registered()
try:
    import jax
except ImportError:
    print("ok")
"""


def test_works_without_jax():
    done = run_python("import sys; sys.modules['jax'] = None\n" + _USE_WITHOUT_JAX)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_works_when_the_import_of_jax_fails():
    blocker = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith("jax."):
            raise ImportError("jax is blocked here")
sys.meta_path.insert(0, Block())
"""
    done = run_python(blocker + _USE_WITHOUT_JAX)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_jax_imported_after_nnx_state():
    code = """
import sys
import numpy as np, nnx_state as nnx
assert "jax" not in sys.modules and not nnx.pytrees.is_registered()
import jax.numpy as jnp
import jax
assert nnx.pytrees.is_registered()
s = nnx.State({"a": nnx.Param(np.ones(2))})
print(jax.tree_util.keystr(jax.tree_util.tree_flatten_with_path(s)[0][0][0]), type(jax.tree.map(lambda x: x + 1, s)).__name__)
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a'].value State"


def test_jax_imported_before_nnx_state():
    code = """
import jax, numpy as np, nnx_state as nnx
assert nnx.pytrees.is_registered()
print(len(jax.tree.leaves(nnx.State({"a": nnx.Param(np.ones(2)), "b": np.ones(1)}))))
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"

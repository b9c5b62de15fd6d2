"""Real Flax models across both ways, against Flax itself.

For every flax.nnx layer that holds state (and Rngs, Optimizer states,
decode caches, sharding annotations, custom Variable classes): the state
``nnx.state(model)`` gives goes through ``from_flax``, is filtered, split and
merged here, comes back through ``to_flax`` and goes into a model with
``nnx.update`` and ``nnx.merge``; at every step it is compared with what
Flax itself gives for the same steps: the same paths, the very Flax classes,
equal metadata (entries in the same order), values bit for bit (typed keys as keys
of the same implementation), one variable where Flax has one, and models
that compute the same outputs afterwards. Then through a safetensors file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import typing as tp
import warnings
from pathlib import Path

import numpy as np
import pytest

import nnx_state as nnx

F = pytest.importorskip("flax.nnx")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

pytestmark = [
    pytest.mark.flax,
    # Flax warns about its own deprecations (sow outside capture, ...).
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

_HOOKS = ("on_get_value", "on_set_value", "on_create_value", "on_add_axis", "on_remove_axis")

# --------------------------------------------------------------------------
# Comparing with Flax
# --------------------------------------------------------------------------


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def assert_bits(ours, theirs, where="", *, placement=True):
    """The same value: the same kind of object and, for arrays, the same
    dtype, shape, sharding and bytes; typed keys of the same implementation
    over the same key data. ``placement=False``: jax arrays on equivalent
    shardings (the same devices, split the same way) will do."""
    assert jax.tree.structure(ours) == jax.tree.structure(theirs), where
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        if _is_key(b):
            assert _is_key(a), f"{where}: {type(a).__name__} where Flax has a typed key"
            assert jax.random.key_impl(a) == jax.random.key_impl(b), where
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert type(a) is type(b), f"{where}: {type(a).__name__} where Flax has {type(b).__name__}"
        if isinstance(b, jax.Array):
            if placement:
                assert a.sharding == b.sharding, where
            else:
                assert a.sharding.is_equivalent_to(b.sharding, b.ndim), where
        if isinstance(b, (np.ndarray, jax.Array)):
            a, b = np.asarray(a), np.asarray(b)
            assert (a.dtype, a.shape) == (b.dtype, b.shape), where
            assert a.tobytes() == b.tobytes(), where
        else:
            assert a == b, where


def _without_hooks(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k not in _HOOKS}


def lineage(cls) -> list[str]:
    """The names of a variable class and its variable bases, up to Variable
    (Flax's or ours)."""
    root = nnx.Variable if isinstance(cls, nnx.VariableMeta) else F.Variable
    return [c.__name__ for c in cls.__mro__ if isinstance(c, type) and issubclass(c, root)]


def _held(var):
    """What a Flax variable holds, no hook run: the array in a ``jax.Ref``."""
    raw = var.get_raw_value()
    return raw[...] if var.get_metadata("ref", False) else raw


def assert_ours_match(state: nnx.State, flax_state):
    """``state`` (nnx_state) holds what the Flax state holds: the same paths,
    classes standing for the Flax classes, the same metadata and values, one
    variable wherever Flax has one."""
    ours, theirs = nnx.to_flat_state(state), F.to_flat_state(flax_state)
    assert list(ours.paths) == list(theirs.paths)
    pairs: dict[int, int] = {}
    for path, a, b in zip(ours.paths, ours.leaves, theirs.leaves):
        if isinstance(b, F.Variable):
            assert isinstance(a, nnx.Variable), path
            assert lineage(type(a)) == lineage(b.var_type), path
            assert a.get_metadata() == _without_hooks(b.get_metadata()), path
            assert pairs.setdefault(id(b), id(a)) == id(a), f"{path}: one Flax variable, two here"
            assert_bits(a.get_value(), _held(b), path)
        else:
            assert_bits(a, b, path)
    assert len(set(pairs.values())) == len(pairs), "two Flax variables became one here"


def _order(var) -> list[str]:
    """The order of a Flax variable's own metadata entries (Flax's required
    entries come last here, where Flax's constructor puts them, and a tree
    map sorts them in Flax)."""
    return [k for k in var.get_metadata() if k not in F.Variable.required_metadata]


def assert_same_flax(back, flax_state, *, placement=True):
    """``back`` (what ``to_flax`` gave) is what Flax has: a ``flax.nnx.State``
    with the same paths, the very Flax classes, equal metadata (its own
    entries in the same order), values bit for bit (``placement`` as for
    ``assert_bits``), and the same sharing."""
    assert isinstance(back, F.State)
    ours, theirs = F.to_flat_state(back), F.to_flat_state(flax_state)
    assert list(ours.paths) == list(theirs.paths)
    pairs: dict[int, int] = {}
    for path, a, b in zip(ours.paths, ours.leaves, theirs.leaves):
        assert type(a) is type(b), path
        if isinstance(b, F.Variable):
            assert a.get_metadata() == b.get_metadata(), path
            assert _order(a) == _order(b), path
            assert pairs.setdefault(id(b), id(a)) == id(a), f"{path}: one Flax variable became two"
            assert_bits(a.get_raw_value(), b.get_raw_value(), path, placement=placement)
        else:
            assert_bits(a, b, path, placement=placement)
    assert len(set(pairs.values())) == len(pairs), "two Flax variables became one"


def back_to_flax(state):
    """``to_flax`` as a user calls it for a model: numpy values (what a
    loaded file holds) become jax arrays."""
    return nnx.to_flax(state, array_fn=jnp.asarray)


# --------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------


def _x(*shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


class Dropper(F.Module):
    def __init__(self, seed):
        self.linear = F.Linear(3, 4, rngs=F.Rngs(seed))
        self.dropout = F.Dropout(0.5, rngs=F.Rngs(dropout=seed + 10))

    def __call__(self, x):
        return self.dropout(self.linear(x))


class Nested(F.Module):
    """nnx.List and nnx.Dict inside one another, and Sequential."""

    def __init__(self, seed):
        rngs = F.Rngs(seed)
        self.blocks = F.List([
            F.Sequential(F.Linear(2, 3, rngs=rngs), F.relu, F.Linear(3, 2, rngs=rngs)),
            F.Dict(norm=F.LayerNorm(2, rngs=rngs), proj=F.List([F.Linear(2, 2, rngs=rngs)])),
        ])

    def __call__(self, x):
        x = self.blocks[0](x)
        return self.blocks[1]["proj"][0](self.blocks[1]["norm"](x))


class Sower(F.Module):
    """An Intermediate (a tuple of arrays) and a Perturbation."""

    def __init__(self, seed):
        self.linear = F.Linear(2, 2, rngs=F.Rngs(seed))

    def __call__(self, x):
        y = self.linear(x)
        self.sow(F.Intermediate, "hidden", y)
        return self.perturb("noise", y)


class Trainer(F.Module):
    """A model and its nnx.Optimizer (adam, wrt=Param) side by side."""

    def __init__(self, seed):
        rngs = F.Rngs(seed)
        self.model = F.Sequential(F.Linear(2, 3, rngs=rngs), F.relu, F.Linear(3, 1, rngs=rngs))
        self.optimizer = F.Optimizer(self.model, optax.adam(1e-3), wrt=F.Param)

    def __call__(self, x):
        def loss(model):
            return jnp.mean(model(x) ** 2)

        grads = F.grad(loss)(self.model)
        self.optimizer.update(self.model, grads)
        return self.model(x)


def _make_lora_class():
    class Lora(F.Param):
        """A custom Flax class; made twice, two classes of one name."""

    return Lora


LoraA, LoraB = _make_lora_class(), _make_lora_class()


class Quantized(F.Param):
    pass


class Scale(Quantized):
    pass


class Customs(F.Module):
    def __init__(self, seed):
        key = jax.random.key(seed)
        self.a = LoraA(jax.random.normal(key, (2, 2)), rank=2, note="first")
        self.b = LoraB(jax.random.normal(jax.random.fold_in(key, 1), (2, 2)), rank=4)
        self.q = Quantized(jnp.arange(4, dtype=jnp.int8), bits=8, axes=("x",))
        self.s = Scale(jnp.ones((), jnp.bfloat16), per_channel=False, group=None)
        self.count = F.Variable(jnp.array(seed, jnp.uint32))

    def __call__(self, x):
        return x @ (self.a[...] + self.b[...]) * self.s[...].astype(jnp.float32)


class Counter(F.Module):
    """The metrics' own MetricState variables."""

    def __init__(self, seed):
        self.avg = F.metrics.Average()
        self.avg.update(values=jnp.arange(float(seed + 3)))

    def __call__(self, x):
        self.avg.update(values=x)
        return self.avg.compute()


def _decoder(seed):
    m = F.MultiHeadAttention(2, 4, qkv_features=4, decode=True, rngs=F.Rngs(seed))
    m.init_cache((1, 3, 4))
    return m


def _decode_step(m):
    return m(_x(1, 1, 4))


def _cell_step(m):
    carry = m.initialize_carry((1, 2), rngs=F.Rngs(carry=5))
    return m(carry, _x(1, 2))


def _rngs_draw(r):
    return jax.random.key_data(r()), jax.random.key_data(r.params())


ONE_DEVICE = jax.make_mesh((1,), ("model",))


def _partitioned(seed):
    init = F.with_partitioning(F.initializers.lecun_normal(), (None, "model"))
    with jax.set_mesh(ONE_DEVICE):
        return F.Linear(3, 4, kernel_init=init, bias_init=F.with_partitioning(F.initializers.zeros, ("model",)),
                        rngs=F.Rngs(seed))


def _with_mesh_metadata(seed):
    """A Mesh object in the metadata (with_partitioning(..., mesh=mesh))."""
    init = F.with_partitioning(F.initializers.lecun_normal(), (None, "model"), mesh=ONE_DEVICE)
    return F.Linear(3, 4, kernel_init=init, rngs=F.Rngs(seed))


def _with_partition_spec(seed):
    """A PartitionSpec in the metadata, and logical axis metadata."""
    P = jax.sharding.PartitionSpec
    with jax.set_mesh(ONE_DEVICE):
        return F.Linear(
            3, 4, rngs=F.Rngs(seed),
            kernel_init=F.with_partitioning(F.initializers.lecun_normal(), P(None, "model")),
            kernel_metadata={"sharding_rules": (("embed", None), ("mlp", "model"))},
        )


@dataclasses.dataclass
class Case:
    """A model: ``make(seed)`` builds it; ``run(model)`` uses it (moving its
    state: statistics, caches, counts) and gives its output, by default
    ``model(x)``."""

    name: str
    make: tp.Callable[[int], tp.Any]
    run: tp.Callable[[tp.Any], tp.Any] | None = None
    x: tp.Any = None
    mesh: tp.Any = None  # the mesh it is made under (jax.set_mesh)
    unsaveable: tuple = ()  # paths (tuples) of values held as objects: not for a file

    def __post_init__(self):
        if self.run is None:
            self.run = lambda m: m(self.x)


CASES = [
    Case("Linear", lambda s: F.Linear(3, 4, rngs=F.Rngs(s)), x=_x(2, 3)),
    Case("LinearGeneral", lambda s: F.LinearGeneral((2, 3), (4, 5), axis=(-2, -1), rngs=F.Rngs(s)), x=_x(1, 2, 3)),
    Case("Einsum", lambda s: F.Einsum("ab,bc->ac", (3, 4), (4,), rngs=F.Rngs(s)), x=_x(2, 3)),
    Case("Conv", lambda s: F.Conv(2, 3, (3, 3), rngs=F.Rngs(s)), x=_x(1, 5, 5, 2)),
    Case("ConvTranspose", lambda s: F.ConvTranspose(2, 3, (3, 3), rngs=F.Rngs(s)), x=_x(1, 5, 5, 2)),
    Case("Embed", lambda s: F.Embed(10, 4, rngs=F.Rngs(s)), x=jnp.array([[1, 2, 9]])),
    Case("BatchNorm", lambda s: F.BatchNorm(3, use_running_average=False, rngs=F.Rngs(s)), x=_x(4, 3)),
    Case("LayerNorm", lambda s: F.LayerNorm(3, rngs=F.Rngs(s)), x=_x(2, 3)),
    Case("RMSNorm", lambda s: F.RMSNorm(3, rngs=F.Rngs(s)), x=_x(2, 3)),
    Case("GroupNorm", lambda s: F.GroupNorm(4, num_groups=2, rngs=F.Rngs(s)), x=_x(2, 4)),
    Case("InstanceNorm", lambda s: F.InstanceNorm(3, rngs=F.Rngs(s)), x=_x(2, 5, 3)),
    Case("MultiHeadAttention", lambda s: F.MultiHeadAttention(2, 4, qkv_features=4, decode=False, rngs=F.Rngs(s)),
         x=_x(1, 3, 4)),
    Case("MultiHeadAttention-decode", _decoder, run=_decode_step),
    Case("LoRA", lambda s: F.LoRA(3, 2, 4, rngs=F.Rngs(s)), x=_x(2, 3)),
    Case("LoRALinear", lambda s: F.LoRALinear(3, 4, lora_rank=2, rngs=F.Rngs(s)), x=_x(2, 3)),
    Case("LSTMCell", lambda s: F.LSTMCell(2, 3, rngs=F.Rngs(s)), run=_cell_step),
    Case("GRUCell", lambda s: F.GRUCell(2, 3, rngs=F.Rngs(s)), run=_cell_step),
    Case("Sequential", lambda s: F.Sequential(F.Linear(2, 3, rngs=F.Rngs(s)), F.relu, F.Linear(3, 1, rngs=F.Rngs(s))),
         x=_x(2, 2)),
    Case("List-Dict-nesting", Nested, x=_x(2, 2)),
    Case("custom-variables", Customs, x=_x(1, 2)),
    Case("metrics", Counter, x=jnp.arange(3.0)),
    Case("partitioned", _partitioned, x=_x(2, 3), mesh=ONE_DEVICE),
    Case("partitioned-PartitionSpec", _with_partition_spec, x=_x(2, 3), mesh=ONE_DEVICE),
    Case("Mesh-metadata", _with_mesh_metadata, x=_x(2, 3)),
    Case("Optimizer", Trainer, x=_x(4, 2)),
    Case("Dropout-Rngs", Dropper, x=_x(2, 3)),
    Case("Rngs", lambda s: F.Rngs(s, params=s + 1), run=_rngs_draw),
    Case("RNN", lambda s: F.RNN(F.LSTMCell(2, 3, rngs=F.Rngs(s))), x=_x(1, 5, 2)),
    Case("sow-perturb", Sower, x=_x(1, 2), unsaveable=(("hidden",),)),
]

# The filters each state is split with, here and in Flax.
SPLITS = [
    ((nnx.Param, nnx.BatchStat, ...), (F.Param, F.BatchStat, ...)),
    ((nnx.Not(nnx.Param), nnx.Param), (F.Not(F.Param), F.Param)),
    ((nnx.PathContains("kernel"), ...), (F.PathContains("kernel"), ...)),
]


def _warm(case: Case, seed: int = 0):
    """The model of ``case``, run once so that every kind of state has moved
    off its initial value (stats, caches, counts, optimizer moments)."""
    model = case.make(seed)
    case.run(model)
    return model


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request) -> Case:
    return request.param


# --------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------


def test_from_flax_holds_what_flax_holds(case):
    flax_state = F.state(_warm(case))
    assert_ours_match(nnx.from_flax(flax_state), flax_state)


def test_to_flax_gives_back_what_flax_had(case):
    flax_state = F.state(_warm(case))
    assert_same_flax(back_to_flax(nnx.from_flax(flax_state)), flax_state)


@pytest.mark.parametrize("split", range(len(SPLITS)))
def test_split_and_merge_as_flax(case, split):
    ours_filters, flax_filters = SPLITS[split]
    flax_state = F.state(_warm(case))
    state = nnx.from_flax(flax_state)
    parts = nnx.split_state(state, *ours_filters)
    flax_parts = F.split_state(flax_state, *flax_filters)
    for part, flax_part in zip(parts, flax_parts):
        assert_ours_match(part, flax_part)
        assert_same_flax(back_to_flax(part), flax_part)
    merged = nnx.merge_state(*parts)
    assert_same_flax(back_to_flax(merged), F.merge_state(*flax_parts))
    # Filtering as Flax filters: every filter alone.
    for ours_f, flax_f in zip(ours_filters, flax_filters):
        if ours_f is not ...:
            assert_ours_match(nnx.filter_state(state, ours_f), F.filter_state(flax_state, flax_f))


def test_update_and_merge_a_model(case):
    """A model updated from our state, and one merged from its graphdef and
    our parts, are the model Flax gets from its own state: the same state,
    and the same outputs on the next call."""
    model = _warm(case)
    flax_state = F.state(model)
    state = nnx.from_flax(flax_state)

    twin = case.make(1)
    F.update(twin, back_to_flax(state))
    assert_same_flax(F.state(twin), flax_state)

    twin2 = case.make(2)
    nnx.update(twin2, state)  # nnx_state's update hands a Flax target to Flax
    assert_same_flax(F.state(twin2), flax_state)

    graphdef, params, rest = F.split(model, F.Param, ...)
    ours_params, ours_rest = nnx.split_state(state, nnx.Param, ...)
    merged = F.merge(graphdef, back_to_flax(ours_params), back_to_flax(ours_rest))
    reference = F.merge(graphdef, params, rest)
    assert_same_flax(F.state(merged), F.state(reference))

    expected = case.run(_warm(case))
    for m in (twin, twin2, merged):
        assert_bits(case.run(m), expected, case.name)


def test_through_safetensors(case, tmp_path):
    """Saved, loaded and given to Flax (under the model's mesh, if any): what
    Flax had, values placed as their annotations say. A value held as an
    object (a sown tuple) has no place in a file: the error names it, and
    the rest saves."""
    flax_state = F.state(_warm(case))
    state = nnx.from_flax(flax_state)
    path = tmp_path / "model.safetensors"
    if case.unsaveable:
        with pytest.raises(ValueError, match=f"cannot save '{'/'.join(case.unsaveable[0])}'"):
            nnx.save_safetensors(state, path)
        assert not path.exists()
        state = nnx.filter_state(state, nnx.Not(nnx.PathIn(*case.unsaveable)))
        flax_state = F.filter_state(flax_state, F.Not(F.filterlib.PathIn(*case.unsaveable)))
    nnx.save_safetensors(state, path)
    loaded = nnx.load_safetensors(path)
    assert nnx.to_flat_state(loaded).paths == nnx.to_flat_state(state).paths
    with jax.set_mesh(case.mesh) if case.mesh is not None else contextlib.nullcontext():
        back = back_to_flax(loaded)
    assert_same_flax(back, flax_state, placement=False)


@pytest.mark.parametrize("name", ["Linear", "BatchNorm", "MultiHeadAttention-decode", "Optimizer"])
def test_values_come_back_as_the_very_jax_arrays(name):
    """Without ``array_fn``: the jax arrays Flax had, not copies."""
    case = next(c for c in CASES if c.name == name)
    flax_state = F.state(_warm(case))
    back = nnx.to_flax(nnx.from_flax(flax_state))
    for (path, a), (_, b) in zip(F.to_flat_state(back), F.to_flat_state(flax_state)):
        assert a.get_raw_value() is b.get_raw_value(), path


# --------------------------------------------------------------------------
# Sharing, types, metadata
# --------------------------------------------------------------------------


class Tied(F.Module):
    """An encoder and a decoder that share one embedding table."""

    def __init__(self, seed):
        rngs = F.Rngs(seed)
        embed = F.Embed(8, 4, rngs=rngs)
        self.encoder = F.Dict(embed=embed, proj=F.Linear(4, 4, rngs=rngs))
        self.decoder = F.Dict(embed=embed, norm=F.LayerNorm(4, rngs=rngs))


def test_a_variable_at_two_paths_stays_one_both_ways():
    model = Tied(0)
    flax_state = F.State({"enc": F.state(model.encoder), "dec": F.state(model.decoder)})
    assert flax_state["enc"]["embed"]["embedding"] is flax_state["dec"]["embed"]["embedding"]
    state = nnx.from_flax(flax_state)
    assert_ours_match(state, flax_state)
    table = state["enc"]["embed"]["embedding"]
    assert table is state["dec"]["embed"]["embedding"]
    # Through split and merge: still one variable.
    params, rest = nnx.split_state(state, nnx.PathContains("embed"), ...)
    assert params["enc"]["embed"]["embedding"] is params["dec"]["embed"]["embedding"] is table
    merged = nnx.merge_state(rest, params)
    assert merged["enc"]["embed"]["embedding"] is merged["dec"]["embed"]["embedding"]
    table[...] = np.zeros(table.shape, table.dtype)  # seen at both paths
    assert not merged["dec"]["embed"]["embedding"][...].any()
    back = back_to_flax(merged)
    assert back["enc"]["embed"]["embedding"] is back["dec"]["embed"]["embedding"]
    F.update(model, F.State({"encoder": back["enc"]}))
    assert not model.decoder["embed"].embedding[...].any()


def test_nnx_state_of_a_tied_model_lists_the_table_once_as_flax_does():
    model = Tied(0)
    flax_state = F.state(model)
    state = nnx.from_flax(flax_state)
    assert_ours_match(state, flax_state)
    assert_same_flax(back_to_flax(state), flax_state)


def test_custom_classes_are_the_very_classes_and_filter_apart():
    flax_state = F.state(Customs(0))
    state = nnx.from_flax(flax_state)
    ours_a, ours_b = type(state["a"]), type(state["b"])
    assert ours_a is not ours_b and ours_a.__name__ == ours_b.__name__ == "Lora"
    assert issubclass(ours_a, nnx.Param) and issubclass(type(state["s"]), type(state["q"]))
    only_a = nnx.filter_state(state, ours_a)
    assert list(only_a) == ["a"] and list(F.filter_state(flax_state, LoraA)) == ["a"]
    back = back_to_flax(state)
    assert type(back["a"]) is LoraA and type(back["b"]) is LoraB
    assert type(back["q"]) is Quantized and type(back["s"]) is Scale
    # A second conversion pairs with the same classes.
    again = nnx.from_flax(flax_state)
    assert type(again["a"]) is ours_a and type(again["b"]) is ours_b


def test_flax_defined_classes_pair_with_ours():
    pairs = {
        F.Param: nnx.Param, F.BatchStat: nnx.BatchStat, F.Cache: nnx.Cache,
        F.Intermediate: nnx.Intermediate, F.Perturbation: nnx.Perturbation,
        F.RngState: nnx.RngState, F.RngKey: nnx.RngKey, F.RngCount: nnx.RngCount,
        F.optimizer.OptState: nnx.OptState, F.optimizer.OptArray: nnx.OptArray,
        F.optimizer.OptVariable: nnx.OptVariable,
    }
    for flax_cls, ours in pairs.items():
        state = nnx.from_flax(F.State({"v": flax_cls(jnp.zeros(2))}))
        assert type(state["v"]) is ours, flax_cls
        assert type(back_to_flax(state)["v"]) is flax_cls
    # Flax's classes of its own that have no built-in type here.
    for flax_cls in (F.LoRAParam, F.metrics.MetricState):
        state = nnx.from_flax(F.State({"v": flax_cls(jnp.zeros(2))}))
        assert lineage(type(state["v"])) == lineage(flax_cls)
        assert type(back_to_flax(state)["v"]) is flax_cls


def test_variables_without_a_value():
    class Holder(F.Module):
        def __init__(self):
            self.v = F.Variable(None)
            self.c = F.Cache(None, note="not yet")

    flax_state = F.state(Holder())
    state = nnx.from_flax(flax_state)
    assert state["v"].get_value() is None and state["c"].note == "not yet"
    assert_same_flax(back_to_flax(state), flax_state)


def test_eager_sharding_false_travels():
    with F.use_eager_sharding(False):
        flax_state = F.state(F.Linear(2, 3, rngs=F.Rngs(0)))
    assert flax_state["kernel"].get_metadata("eager_sharding") is False
    state = nnx.from_flax(flax_state)
    assert state["kernel"].eager_sharding is False
    assert_same_flax(back_to_flax(state), flax_state)


def test_mesh_metadata_is_the_mesh_here_and_after():
    """A ``jax.sharding.Mesh`` in the metadata is held as data (its axis
    names, sizes, types and devices) and read back as an equal Mesh."""
    model = _with_mesh_metadata(0)
    flax_state = F.state(model)
    mesh = flax_state["kernel"].get_metadata("mesh")
    state = nnx.from_flax(flax_state)
    ours = state["kernel"].get_metadata("mesh")
    assert isinstance(ours, jax.sharding.Mesh) and ours == mesh
    assert F.get_partition_spec(back_to_flax(state)) == F.get_partition_spec(flax_state)


def test_partition_specs_come_back_as_flax_gives_them():
    flax_state = F.state(_with_partition_spec(0))
    back = back_to_flax(nnx.from_flax(flax_state))
    assert F.get_partition_spec(back) == F.get_partition_spec(flax_state)
    spec = back["kernel"].get_metadata("out_sharding")
    assert isinstance(spec, jax.sharding.PartitionSpec) and spec == jax.sharding.PartitionSpec(None, "model")


def test_metadata_that_is_code_is_refused_by_path():
    """Hooks given to one variable (not defined by its class) are code: the
    error names the path and the entry instead of dropping them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hooked = F.Param(jnp.ones(2), on_get_value=lambda var, value: value * 2)
    with pytest.raises(TypeError, match=r"'layer/w'.*on_get_value"):
        nnx.from_flax(F.State({"layer": {"w": hooked}}))
    with pytest.raises(TypeError, match=r"'w'.*metadata 'init'"):
        nnx.from_flax(F.State({"w": F.Param(jnp.ones(2), init=F.initializers.zeros)}))


def test_class_hooks_come_back_with_the_class():
    class Doubled(F.Param):
        def on_get_value(self, value):
            return value * 2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flax_state = F.State({"w": Doubled(jnp.ones(2))})
    state = nnx.from_flax(flax_state)
    assert "on_get_value" not in state["w"].get_metadata()
    back = back_to_flax(state)
    assert type(back["w"]) is Doubled and back["w"].get_metadata() == flax_state["w"].get_metadata()
    assert_bits(back["w"].get_value(), flax_state["w"].get_value())


def test_hijax_and_ref_variables_come_back_as_such():
    class Model(F.Module):
        def __init__(self):
            self.r = F.Param(jnp.arange(3.0), ref=True)
            self.h = F.Param(jnp.arange(2.0), hijax=True)

    flax_state = F.state(Model())
    state = nnx.from_flax(flax_state)
    assert type(state["h"]) is nnx.Param and state["h"].hijax and state["r"].ref
    assert state["h"].get_metadata() == flax_state["h"].get_metadata()
    back = back_to_flax(state)
    assert type(back["h"]) is type(flax_state["h"]) and back["h"].var_type is F.Param
    assert type(back["r"].get_raw_value()) is type(flax_state["r"].get_raw_value())
    for name in "hr":
        assert back[name].get_metadata() == flax_state[name].get_metadata()
        assert_bits(back[name].get_value(), flax_state[name].get_value(), name)


# --------------------------------------------------------------------------
# A real mesh of 4 CPU devices (in a subprocess: the device count is fixed
# when the backend starts)
# --------------------------------------------------------------------------

MESH_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    import traceback
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx as F
    import nnx_state as nnx
    from test_real_models import assert_ours_match, assert_same_flax

    path = sys.argv[1]
    assert len(jax.devices()) == 4
    mesh = jax.make_mesh((2, 2), ("data", "model"))

    class Block(F.Module):
        def __init__(self, seed):
            rngs = F.Rngs(seed)
            self.up = F.Linear(4, 8, rngs=rngs, kernel_init=F.with_partitioning(
                F.initializers.lecun_normal(), (None, "model")))
            self.down = F.Linear(8, 4, rngs=rngs, kernel_init=F.with_partitioning(
                F.initializers.lecun_normal(), ("model", "data"), mesh=mesh))

    def metadata(model, flax_state, state, back):
        assert state["down"]["kernel"].get_metadata("mesh") is mesh
        assert F.get_partition_spec(back) == F.get_partition_spec(flax_state)
        for p, v in F.to_flat_state(back):
            assert v.get_metadata() == flax_state[p[0]][p[1]].get_metadata(), p

    def values(model, flax_state, state, back):
        # The sharded arrays are held as themselves, and come back so.
        kernel = flax_state["up"]["kernel"].get_value()
        assert kernel.sharding.spec == jax.P(None, "model") and len(kernel.sharding.device_set) == 4
        assert state["up"]["kernel"].get_value() is kernel and back["up"]["kernel"].get_value() is kernel
        assert_ours_match(state, flax_state)
        assert_same_flax(back, flax_state)
        twin = Block(1)
        F.update(twin, nnx.to_flax(nnx.filter_state(state, nnx.Param)))
        assert_same_flax(F.state(twin), flax_state)
        x = jnp.ones((2, 4))
        assert (np.asarray(twin.up(x)) == np.asarray(model.up(x))).all()

    def file(model, flax_state, state, back):
        # A sharded array is not for a file; gathered, it is, and comes back
        # placed as its annotations say (under the mesh).
        try:
            nnx.save_safetensors(state, path)
        except ValueError as e:
            assert "cannot save 'down/bias'" in str(e), e
        else:
            raise AssertionError("a sharded array was saved")
        nnx.save_safetensors(jax.device_get(state), path)
        loaded = nnx.to_flax(nnx.load_safetensors(path), array_fn=jnp.asarray)
        for p in (("up", "kernel"), ("down", "kernel")):
            a, b = loaded[p[0]][p[1]].get_value(), flax_state[p[0]][p[1]].get_value()
            assert a.sharding == b.sharding, (p, a.sharding, b.sharding)
        # A tree map sorts the metadata entries, in Flax too.
        assert_same_flax(loaded, jax.tree.map(lambda x: x, flax_state), placement=False)

    results = {}
    with jax.set_mesh(mesh):
        model = Block(0)
        flax_state = F.state(model)
        state = nnx.from_flax(flax_state)
        back = nnx.to_flax(state, array_fn=jnp.asarray)
        for check in (metadata, values, file):
            try:
                check(model, flax_state, state, back)
                results[check.__name__] = "ok"
            except Exception:
                results[check.__name__] = traceback.format_exc()
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def under_four_devices(tmp_path_factory):
    """What the checks of MESH_SCRIPT found, by name: "ok" or the traceback."""
    here = Path(__file__).resolve().parent
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(here.parent), str(here)]))
    path = tmp_path_factory.mktemp("mesh") / "sharded.safetensors"
    result = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT, str(path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("check", ["metadata", "values", "file"])
def test_under_a_mesh_of_four_devices(check, under_four_devices):
    """Under a real ``jax.sharding.Mesh`` of 4 CPU devices: the metadata (the
    Mesh itself, partition specs), the sharded arrays as themselves, and a
    gathered checkpoint placed again when it comes back."""
    assert under_four_devices[check] == "ok", under_four_devices[check]

"""from_flax / to_flax against a live flax.nnx (skipped without flax)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import nnx_state as nnx

flax_nnx = pytest.importorskip("flax.nnx")
jnp = pytest.importorskip("jax.numpy")

pytestmark = pytest.mark.flax


class Model(flax_nnx.Module):
    def __init__(self, rngs):
        self.batchnorm = flax_nnx.BatchNorm(2, rngs=rngs)
        self.linear = flax_nnx.Linear(2, 3, rngs=rngs)


class LoRA(flax_nnx.Param):
    pass


def test_from_flax_model_state():
    model = Model(flax_nnx.Rngs(0))
    flax_state = flax_nnx.state(model)
    state = nnx.from_flax(flax_state)
    assert nnx.to_flat_state(state).paths == flax_nnx.to_flat_state(flax_state).paths
    for (path, ours), (_, theirs) in zip(nnx.to_flat_state(state), flax_nnx.to_flat_state(flax_state)):
        assert type(ours).__name__ == type(theirs).__name__, path
        assert np.array_equal(ours[...], np.asarray(theirs[...]))
    params, stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
    assert list(params["batchnorm"]) == ["bias", "scale"] and list(stats["batchnorm"]) == ["mean", "var"]
    # jax buffers are read-only: copied, so the values stay writable here.
    params["linear"]["bias"][...] += 1
    assert (np.asarray(model.linear.bias[...]) == 0).all()


def test_round_trip_updates_a_model():
    model = Model(flax_nnx.Rngs(0))
    state = nnx.from_flax(flax_nnx.state(model))
    params, batch_stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
    params["linear"]["bias"][...] += 1
    merged = nnx.merge_state(params, batch_stats)
    flax_nnx.update(model, nnx.to_flax(merged, array_fn=jnp.asarray))
    assert (model.linear.bias[...] == jnp.array([1, 1, 1])).all()


def test_types_metadata_and_sharing_travel():
    shared = LoRA(np.arange(4.0), tag="lora")
    flax_state = flax_nnx.State({"a": shared, "b": {"c": shared, "d": flax_nnx.Cache(np.zeros(2))}, "raw": np.ones(3)})
    state = nnx.from_flax(flax_state)
    assert state.a is state.b.c and type(state.a).__name__ == "LoRA"
    assert isinstance(state.a, nnx.Param) and state.a.tag == "lora"
    assert np.shares_memory(state.a[...], shared.get_value())  # numpy: no copy
    assert isinstance(state.raw, np.ndarray)
    back = nnx.to_flax(state)
    assert isinstance(back, flax_nnx.State)
    assert type(back["a"]) is LoRA and back["a"] is back["b"]["c"]
    assert back["a"].get_metadata("tag") == "lora"
    assert np.shares_memory(np.asarray(back["a"].get_value()), state.a[...])
    assert type(back["b"]["d"]) is flax_nnx.Cache


def test_types_made_here_go_to_flax_by_name():
    Mine = nnx.variable_type("OnlyHere", nnx.BatchStat)
    back = nnx.to_flax(nnx.State({"x": Mine(np.zeros(1))}))
    cls = type(back["x"])
    assert cls.__name__ == "OnlyHere" and issubclass(cls, flax_nnx.BatchStat)
    again = nnx.to_flax(nnx.State({"y": Mine(np.zeros(1))}))
    assert type(again["y"]) is cls


def test_jax_arrays_are_held_as_themselves():
    value = jnp.arange(4.0)
    for copy in (None, True, False):
        state = nnx.from_flax(flax_nnx.State({"p": flax_nnx.Param(value), "raw": value}), copy=copy)
        held = state.p[...]
        assert held is value and state.raw is value  # no copy: jax's own buffer, through DLPack
        native = nnx.dlpack(state.p)
        assert np.from_dlpack(native).ctypes.data == value.unsafe_buffer_pointer()
        state.p[...] = 5.0  # a new jax array, as Flax sets one
        assert isinstance(state.p[...], type(value)) and list(state.p[...]) == [5.0] * 4
        assert list(np.asarray(value)) == [0, 1, 2, 3]


def test_copy_false_lends_read_only_numpy_memory():
    value = np.arange(4.0)
    value.flags.writeable = False
    state = nnx.from_flax(flax_nnx.State({"p": flax_nnx.Param(value)}), copy=False)
    view = state.p[...]
    assert not view.flags.writeable and np.shares_memory(view, value)
    state.p[...] = 5.0  # a read-only value is copied on write
    assert list(state.p[...]) == [5.0] * 4 and list(value) == [0, 1, 2, 3]


def test_flax_filters_agree_on_converted_state():
    model = Model(flax_nnx.Rngs(0))
    flax_state = flax_nnx.state(model)
    state = nnx.from_flax(flax_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for ours_f, flax_f in [
            (nnx.Param, flax_nnx.Param),
            (nnx.PathContains("bias"), flax_nnx.PathContains("bias")),
            (nnx.Not(nnx.BatchStat), flax_nnx.Not(flax_nnx.BatchStat)),
        ]:
            a = nnx.to_flat_state(nnx.filter_state(state, ours_f)).paths
            b = flax_nnx.to_flat_state(flax_nnx.filter_state(flax_state, flax_f)).paths
            assert a == b


def _sharded_model():
    import jax

    init = flax_nnx.with_partitioning(flax_nnx.initializers.lecun_normal(), (None, "model"))
    mesh = jax.make_mesh((1,), ("model",))
    with jax.set_mesh(mesh):
        return flax_nnx.Linear(3, 4, kernel_init=init, rngs=flax_nnx.Rngs(0)), mesh


def test_sharding_metadata_travels_both_ways():
    model, _ = _sharded_model()
    flax_state = flax_nnx.state(model)
    flax_kernel = flax_state["kernel"]
    # What Flax 0.12 keeps: the annotation as a tuple, the mesh as None.
    assert flax_kernel.get_metadata(exclude_required=True) == {"out_sharding": (None, "model"), "mesh": None}
    state = nnx.from_flax(flax_state)
    kernel = state["kernel"]
    assert kernel.get_metadata(exclude_required=True) == {"out_sharding": (None, "model"), "mesh": None}
    assert type(kernel.get_metadata("out_sharding")) is tuple and kernel.out_sharding == (None, "model")
    assert kernel.get_metadata() == flax_kernel.get_metadata()
    # Back to Flax outside any mesh: no re-sharding, the same metadata.
    back = nnx.to_flax(state, array_fn=jnp.asarray)
    for (path, theirs), (_, ours) in zip(flax_nnx.to_flat_state(flax_state), flax_nnx.to_flat_state(back)):
        assert type(ours) is type(theirs), path
        assert ours.get_metadata() == theirs.get_metadata(), path
        assert list(ours.get_metadata()) == list(theirs.get_metadata()), path
        assert type(ours.get_metadata().get("out_sharding")) is type(theirs.get_metadata().get("out_sharding"))
        assert np.array_equal(np.asarray(ours[...]), np.asarray(theirs[...])), path
    flax_nnx.update(model, back)


def test_optimizer_state_metadata_travels():
    import optax

    model, mesh = _sharded_model()
    import jax

    with jax.set_mesh(mesh):
        optimizer = flax_nnx.Optimizer(model, optax.adamw(1e-3), wrt=flax_nnx.Param)
    flax_state = flax_nnx.state(optimizer)
    state = nnx.from_flax(flax_state)
    mu = state["opt_state"][0]["mu"]["kernel"]
    assert type(mu).__name__ == "OptVariable"
    assert mu.get_metadata(exclude_required=True) == flax_state["opt_state"][0]["mu"]["kernel"].get_metadata(
        exclude_required=True
    )
    back = nnx.to_flax(state)
    for (path, theirs), (_, ours) in zip(flax_nnx.to_flat_state(flax_state), flax_nnx.to_flat_state(back)):
        assert ours.get_metadata() == theirs.get_metadata(), path

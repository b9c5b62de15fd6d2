"""flax msgpack checkpoints (``flax.serialization.to_bytes`` /
``msgpack_serialize`` of real flax.nnx models) read with ``load_msgpack``."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_state as nnx

F = pytest.importorskip("flax.nnx")
jax = pytest.importorskip("jax")
serialization = pytest.importorskip("flax.serialization")
jnp = jax.numpy

pytestmark = [pytest.mark.flax, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


class Model(F.Module):
    def __init__(self, seed):
        rngs = F.Rngs(seed, dropout=seed + 1)
        self.layers = F.List([F.Linear(3, 4, rngs=rngs), F.Linear(4, 2, rngs=rngs)])
        self.norm = F.BatchNorm(2, rngs=rngs)
        self.drop = F.Dropout(0.5, rngs=rngs)
        self.half = F.Param(jnp.arange(3, dtype=jnp.bfloat16))


def _data(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(x)
    return x


def _bits(x):
    a = np.asarray(_data(x))
    return a.dtype.str, a.shape, a.tobytes()


@pytest.fixture(scope="module")
def model():
    return Model(0)


def assert_like_flax(state, flax_state):
    ours, theirs = nnx.to_flat_state(state), F.to_flat_state(flax_state)
    assert list(ours.paths) == list(theirs.paths)
    for (path, a), (_, b) in zip(ours, theirs):
        assert type(a).__name__ == type(b).__name__, path
        assert a.get_metadata() == b.get_metadata(), path
        assert _bits(a.get_value()) == _bits(b.get_value()), path


def test_params_from_to_bytes_with_like(model, tmp_path):
    params = F.state(model, F.Param)
    path = tmp_path / "params.msgpack"
    path.write_bytes(serialization.to_bytes(F.to_pure_dict(params)))
    assert_like_flax(nnx.load_msgpack(path, like=params), params)
    assert_like_flax(nnx.load_msgpack(path.read_bytes(), like=nnx.from_flax(params)), params)
    abstract = F.state(F.eval_shape(lambda: Model(0)), F.Param)
    assert_like_flax(nnx.load_msgpack(str(path), like=abstract), params)


def test_a_whole_state_with_key_data_becomes_keys_again(model):
    state = F.state(model)
    # Flax cannot serialize a typed key: what it writes is the key data.
    data = serialization.msgpack_serialize(jax.tree.map(_data, F.to_pure_dict(state)))
    loaded = nnx.load_msgpack(data, like=state)
    assert_like_flax(loaded, state)
    key = loaded["drop"]["rngs"]["key"].get_value()
    assert jax.random.key_impl(key) == jax.random.key_impl(state["drop"]["rngs"]["key"].get_value())
    abstract = F.state(F.eval_shape(lambda: Model(0)))  # a ShapeDtypeStruct of a key dtype there
    assert_like_flax(nnx.load_msgpack(data, like=abstract), state)


def test_types_rules_filter_and_bare_arrays(model):
    state = F.state(model)
    data = serialization.msgpack_serialize(jax.tree.map(lambda x: np.asarray(_data(x)), F.to_pure_dict(state)))
    rules = {"path:mean | path:var": "BatchStat", "path:rngs & path:count": "RngCount",
             "path:rngs & path:key": "RngKey", "...": nnx.Param}
    typed = nnx.load_msgpack(data, types=rules)
    flat = dict(nnx.to_flat_state(typed))
    assert [type(v).__name__ for v in flat.values()] == [type(v).__name__ for _, v in F.to_flat_state(state)]
    assert ("layers", 0, "kernel") in flat  # decimal keys as ints, as Flax has them
    for (path, a), (_, b) in zip(nnx.to_flat_state(typed), F.to_flat_state(state)):
        assert _bits(a.get_value()) == _bits(b.get_value()), path
    bare = nnx.load_msgpack(data, filter="path:norm", int_keys=False)
    assert [p for p, _ in nnx.to_flat_state(bare)] == [("norm", k) for k in ("bias", "mean", "scale", "var")]
    assert all(isinstance(v, np.ndarray) for _, v in nnx.to_flat_state(bare))
    only = nnx.load_msgpack(data, types=rules, filter=nnx.BatchStat)
    assert [p for p, _ in nnx.to_flat_state(only)] == [("norm", "mean"), ("norm", "var")]
    with pytest.raises(TypeError, match=r"did you mean RngKey"):
        nnx.load_msgpack(data, types={"...": "RngKy"})


def test_a_variable_level_in_the_bytes_becomes_the_variable(model):
    """msgpack of ``{"kernel": {"value": array}}`` (a tree flattened with its
    Variables' value level) loads as the variables."""
    data = serialization.msgpack_serialize({"lin": {"kernel": {"value": np.ones((2, 2), np.float32)},
                                                    "bias": {"value": np.zeros(2, np.float32)}}})
    state = nnx.load_msgpack(data, types={"...": "Param"})
    assert type(state["lin"]["kernel"]) is nnx.Param and state["lin"]["bias"].shape == (2,)


def test_not_msgpack_and_missing_files(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\xc1 not msgpack")
    with pytest.raises(ValueError, match="bad.msgpack' is not flax msgpack"):
        nnx.load_msgpack(bad)
    with pytest.raises(FileNotFoundError, match="missing.msgpack"):
        nnx.load_msgpack(tmp_path / "missing.msgpack")

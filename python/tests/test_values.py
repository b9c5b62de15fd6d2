"""What a Variable holds comes back as what it was (SPEC §8): numpy arrays
over the native buffer, jax arrays and typed keys as themselves (their CPU
buffers held through DLPack), everything else as the very object, held
opaquely; through every operation, released exactly once, safe across
threads; side by side with Flax where Flax has an answer."""

from __future__ import annotations

import copy
import gc
import pickle
import sys
import threading
from ctypes import byref, c_void_p

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import _arrays, _keys, _lib, _values, variablelib
from test_library import run_python

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
flax_nnx = pytest.importorskip("flax.nnx")

P = jax.sharding.PartitionSpec


class Thing:
    """An object of no kind the library knows."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Thing) and other.n == self.n


def _objects():
    """One value of each opaque kind, fresh each time."""
    return {
        "float": 2.5,
        "int": 7,
        "bool": True,
        "list": [1, 2, 3],
        "sds": jax.ShapeDtypeStruct((2, 3), jnp.float32),
        "spec": P(None, "model"),
        "thing": Thing(1),
        "complex": jnp.ones(2, jnp.complex64),  # a dtype native arrays cannot hold
    }


def _native_array(v) -> tuple[int, bool]:
    """(data address, writable) of the native array a variable holds."""
    kind, handle = _values.read(v._ptr)[:2]
    assert kind == _values.ARRAY
    try:
        _, _, data, writable = _arrays.array_info(handle)
        return data, writable
    finally:
        _lib.lib.nnx_array_release(handle)


def _native_bare_array(state, key) -> int:
    keys, n, keep = _keys.path_arg((key,))
    out = c_void_p()
    _lib.check(_lib.lib.nnx_state_get_array(state._h, keys, n, byref(out)))
    try:
        return _arrays.array_info(out.value)[2]
    finally:
        _lib.lib.nnx_array_release(out.value)


def _kind(v) -> int:
    out = _lib.c_uint32()
    _lib.check(_lib.lib.nnx_variable_value_kind(v._ptr, byref(out)))
    return out.value


def _every_way(state):
    """The state through every operation that shares leaves."""
    params, rest = nnx.split_state(state, nnx.Param, ...)
    yield nnx.merge_state(params, rest)
    yield nnx.filter_state(state, ...)
    yield nnx.from_flat_state(nnx.to_flat_state(state))
    yield state.copy()
    yield nnx.State(state)
    yield nnx.map_state(lambda path, leaf: leaf, state)
    yield nnx.diff(state, nnx.State())
    target = nnx.State()
    nnx.update(target, state)  # new keys: copies of the variables, sharing their values
    yield target


# --------------------------------------------------------------------------
# Each kind comes back as itself
# --------------------------------------------------------------------------


def test_numpy_arrays_come_back_over_the_native_buffer():
    a = np.arange(3.0)
    v = nnx.Param(a)
    assert isinstance(v[...], np.ndarray) and np.shares_memory(v[...], a)
    assert _native_array(v) == (a.ctypes.data, True)
    states = list(_every_way(nnx.State({"v": v})))
    v[...] += 1  # seen by every state holding v (update's new key: a copy sharing the array)
    for s in states:
        assert list(s["v"][...]) == [1.0, 2.0, 3.0]


def test_jax_arrays_come_back_as_themselves_without_a_copy():
    x = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)
    v = nnx.Param(x)
    assert v.get_value() is x and v[...] is x and v.value is x
    assert _kind(v) == _values.ARRAY  # a native array: filters, checkpoints and C see it
    data, writable = _native_array(v)
    assert data == x.unsafe_buffer_pointer() and not writable  # jax's own buffer, read-only
    state = nnx.State({"v": v, "bare": x})
    assert state["bare"] is x and _native_bare_array(state, "bare") == x.unsafe_buffer_pointer()
    for s in _every_way(state):
        assert s["v"].get_value() is x and s["bare"] is x
    assert nnx.to_pure_dict(state) == {"v": x, "bare": x}
    assert v.copy().get_value() is x
    assert state.deep_copy()["v"].get_value() is not x  # new bytes (numpy, writable)
    # the array held by the library exports to jax again over the same buffer
    assert jax.dlpack.from_dlpack(nnx.dlpack(v)).unsafe_buffer_pointer() == x.unsafe_buffer_pointer()


def test_jax_values_are_set_as_flax_sets_them():
    for ns in (nnx, flax_nnx):
        x = jnp.zeros(3)
        v = ns.Param(x)
        y = jnp.ones(3)
        v[...] = y  # same shape, dtype and sharding: the array itself
        assert v[...] is y
        v[...] += 1
        v[1] = 5.0  # .at[1].set(5.0)
        assert isinstance(v[...], jax.Array) and list(np.asarray(v[...])) == [2.0, 5.0, 2.0]
        assert list(np.asarray(x)) == [0.0, 0.0, 0.0]
    v = nnx.Param([1, 2, 3])
    v[0] = 9  # any other object: written in place
    assert v.get_value() == [9, 2, 3]


def test_typed_keys_come_back_as_themselves():
    k = jax.random.key(42)
    v = nnx.RngKey(k, tag="dropout")
    assert v.get_value() is k and _kind(v) == _values.KEY
    assert _native_array_of_key(v) == jax.random.key_data(k).unsafe_buffer_pointer()
    for s in _every_way(nnx.State({"k": v})):
        assert s["k"].get_value() is k
    assert v.copy().get_value() is k
    keys = jax.random.split(k, 3)
    rbg = jax.random.key(0, impl="rbg")
    for key in (keys, rbg):
        assert nnx.RngKey(key).get_value() is key
    deep = nnx.State({"k": v}).deep_copy()["k"].get_value()  # new key data: a new key
    assert deep is not k and jax.dtypes.issubdtype(deep.dtype, jax.dtypes.prng_key)
    assert str(jax.random.key_impl(deep)) == "threefry2x32"
    np.testing.assert_array_equal(jax.random.key_data(deep), jax.random.key_data(k))
    assert v.shape == () and v.dtype == k.dtype
    with pytest.raises(TypeError, match="typed PRNG key"):
        nnx.State({"bare": k})


def _native_array_of_key(v) -> int:
    kind, data, impl = _values.read(v._ptr)
    assert kind == _values.KEY and impl == b"threefry2x32"
    try:
        return _arrays.array_info(data)[2]
    finally:
        _lib.lib.nnx_array_release(data)


@pytest.mark.parametrize("name", list(_objects()))
def test_other_objects_come_back_as_the_very_object(name):
    obj = _objects()[name]
    v = nnx.Param(obj)
    assert v.get_value() is obj and _kind(v) == _values.OPAQUE
    for s in _every_way(nnx.State({"v": v})):
        assert s["v"].get_value() is obj
    assert nnx.State({"v": v}).deep_copy()["v"].get_value() is obj  # shared, as the library never changes it
    assert v.copy().get_value() is obj
    assert nnx.to_pure_dict(nnx.State({"v": v})) == {"v": obj}
    other = nnx.Param(None)
    other.set_value(obj)
    assert other.get_value() is obj
    other.update_from_state(nnx.Param(np.ones(1)))
    assert isinstance(other.get_value(), np.ndarray)


def test_none_is_no_value():
    v = nnx.Param(None)
    assert v.get_value() is None and _kind(v) == _values.NONE
    v.set_value(2.5)
    v.set_value(None)
    assert v.get_value() is None


def test_bare_leaves_are_arrays():
    with pytest.raises(TypeError):
        nnx.State({"x": jax.ShapeDtypeStruct((2,), jnp.float32)})

    def inside(x):
        with pytest.raises(TypeError, match="tracer"):
            nnx.State({"x": x})
        return x

    jax.jit(inside)(jnp.ones(2))


def test_tracers_are_held_inside_jit():
    seen = []

    def f(x):
        v = nnx.Param(x)
        s = nnx.State({"a": v, "b": nnx.BatchStat(x + 1)})
        params, stats = nnx.split_state(s, nnx.Param, nnx.BatchStat)
        seen.append(nnx.merge_state(params, stats)["a"].get_value() is x)
        return params["a"][...] * stats["b"][...]

    np.testing.assert_allclose(jax.jit(f)(jnp.full(2, 2.0)), [6.0, 6.0])
    assert seen == [True]


# --------------------------------------------------------------------------
# Released exactly once
# --------------------------------------------------------------------------


def test_every_holder_gives_its_reference_back():
    objs = [_objects()[k] for k in ("float", "sds", "spec", "thing", "list")]
    x = jnp.arange(4.0)
    k = jax.random.key(1)
    tracked = objs + [x, k]
    before = [sys.getrefcount(o) for o in tracked]
    state = nnx.State({f"o{i}": nnx.Param(o) for i, o in enumerate(objs)})
    state["x"] = nnx.Param(x)
    state["bare"] = x
    state["k"] = nnx.RngKey(k)
    kept = list(_every_way(state)) + [state.deep_copy(), copy.copy(state)]
    nnx.Param(objs[0]).set_value(objs[1])  # the old object given back on set
    assert [sys.getrefcount(o) for o in tracked] != before
    del state, kept
    gc.collect()
    assert [sys.getrefcount(o) for o in tracked] == before
    assert all(getattr(held, "obj", None) is not x for held in _arrays._lent.values())
    assert all(origin[0] is not x for origin in _arrays.origins.values())


def test_the_object_dies_with_its_last_holder():
    import weakref

    obj = Thing(5)
    ref = weakref.ref(obj)
    state = nnx.State({"a": nnx.Param(obj)})
    copies = [state.copy(), state.deep_copy()]
    del obj
    gc.collect()
    assert ref() is not None
    del state
    gc.collect()
    assert ref() is not None and copies[1]["a"].get_value() is ref()
    del copies
    gc.collect()
    assert ref() is None


def test_jax_buffers_stay_alive_after_the_array_is_deleted():
    x = jnp.arange(4.0) + 1
    v = nnx.Param(x)
    data = _native_array(v)[0]
    del x
    gc.collect()
    assert _native_array(v)[0] == data and list(np.asarray(v[...])) == [1.0, 2.0, 3.0, 4.0]


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------


def test_readers_while_one_thread_sets():
    values = [Thing(i) for i in range(4)] + [jnp.arange(3.0), np.ones(2), jax.random.key(0), None, 1.5]
    counted = [o for o in values if o is not None]  # None's count moves with the whole process
    before = [sys.getrefcount(o) for o in counted]
    v = nnx.Param(values[0])
    state = nnx.State({"v": v})
    stop = threading.Event()
    errors: list = []

    def read():
        try:
            while not stop.is_set():
                got = state["v"].get_value()
                if not (got is None or any(got is o for o in values) or isinstance(got, np.ndarray)):
                    errors.append(got)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(3000):
            v.set_value(values[i % len(values)])
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors
    del v, state
    gc.collect()
    assert [sys.getrefcount(o) for o in counted] == before


def test_release_on_another_thread():
    obj = Thing(3)
    before = sys.getrefcount(obj)
    state = nnx.State({"a": nnx.Param(obj), "x": nnx.Param(jnp.ones(2))})
    holder = [state]
    del state
    t = threading.Thread(target=holder.clear)
    t.start()
    t.join()
    gc.collect()
    assert sys.getrefcount(obj) == before


# --------------------------------------------------------------------------
# What the rest of the package does with them
# --------------------------------------------------------------------------


def test_repr_as_flax():
    for make in (
        lambda ns: ns.Param(jnp.ones(2)),
        lambda ns: ns.Param(jax.ShapeDtypeStruct((2,), jnp.float32)),
        lambda ns: ns.Param(3.0),
        lambda ns: ns.RngKey(jax.random.key(0), tag="x"),
        lambda ns: ns.Param(np.zeros(0)),
    ):
        assert repr(make(nnx)) == repr(make(flax_nnx))
    listing = nnx.State({"s": nnx.Param(jax.ShapeDtypeStruct((2,), jnp.float32)), "k": nnx.RngKey(jax.random.key(0))}).to_string()
    assert "<opaque python:jax.ShapeDtypeStruct>" in listing and "key<fry>[]" in listing


def test_proxies_on_every_kind():
    sds = nnx.Param(jax.ShapeDtypeStruct((2, 3), jnp.float32))
    assert sds.shape == (2, 3) and sds.dtype == jnp.float32
    x = nnx.Param(jnp.arange(3.0))
    assert isinstance(x + 1, jax.Array) and list(np.asarray(x * 2)) == [0.0, 2.0, 4.0]
    assert x.T.shape == (3,) and len(x) == 3 and float(nnx.Param(jnp.float32(2.0))) == 2.0
    f = nnx.Param(2.5)
    assert f + 1 == 3.5 and -f == -2.5 and float(f) == 2.5 and (f == 2.5) is True
    with pytest.raises(AttributeError):
        f.shape
    assert nnx.Param([1, 2])[1] == 2 and len(nnx.Param([1, 2])) == 2


def test_state_equality_on_every_kind():
    def make(x, k, o):
        return nnx.State({"x": nnx.Param(x), "k": nnx.RngKey(k), "o": nnx.Param(o), "f": nnx.Param(1.0)})

    a = make(jnp.ones(2), jax.random.key(0), jax.ShapeDtypeStruct((2,), jnp.float32))
    assert a == make(jnp.ones(2), jax.random.key(0), jax.ShapeDtypeStruct((2,), jnp.float32))
    assert a == make(np.ones(2, np.float32), jax.random.key(0), jax.ShapeDtypeStruct((2,), jnp.float32))
    assert a != make(jnp.ones(2), jax.random.key(1), jax.ShapeDtypeStruct((2,), jnp.float32))
    assert a != make(jnp.ones(2), jax.random.key(0), jax.ShapeDtypeStruct((3,), jnp.float32))
    assert a != make(jnp.ones(2), jax.random.key(0), 1.0)


def test_pickling_keeps_what_each_value_is():
    values = [np.arange(3.0), jnp.arange(3.0), jax.random.key(5), 2.5, [1, 2], jax.ShapeDtypeStruct((2,), jnp.float32), P("a"), None]
    for value in values:
        for ns in (nnx, flax_nnx):
            back = pickle.loads(pickle.dumps(ns.Param(value, tag="t"))).get_value()
            assert type(back) is type(value)
            if jax.dtypes.issubdtype(getattr(value, "dtype", np.float32), jax.dtypes.prng_key):
                np.testing.assert_array_equal(jax.random.key_data(back), jax.random.key_data(value))
            elif isinstance(value, (np.ndarray, jax.Array)):
                np.testing.assert_array_equal(back, value)
            else:
                assert back == value
    state = nnx.State({"a": nnx.Param(jnp.ones(2)), "k": nnx.RngKey(jax.random.key(1)), "o": nnx.Param(2.5)})
    assert pickle.loads(pickle.dumps(state)) == state

    def traced(x):
        with pytest.raises(Exception):
            pickle.dumps(nnx.Param(x))
        return x

    jax.jit(traced)(jnp.ones(1))


def test_deep_copy_as_python_copies():
    lst = [1, [2]]
    for ns in (nnx, flax_nnx):
        v = copy.deepcopy(ns.Param(lst, tag="t"))
        assert type(v) is ns.Param and v.tag == "t"
        assert v.get_value() == lst and v.get_value() is not lst and v.get_value()[1] is not lst[1]
    # (Flax's deepcopy of a jax-valued variable gives the bare array, through
    # its attribute proxy; here it is a variable holding a new jax array.)
    x = jnp.arange(2.0)
    w = copy.deepcopy(nnx.Param(x))
    assert isinstance(w, nnx.Param) and isinstance(w.get_value(), jax.Array) and w.get_value() is not x
    np.testing.assert_array_equal(w.get_value(), x)
    k = jax.random.key(2)
    dk = copy.deepcopy(nnx.RngKey(k)).get_value()
    assert dk is not k and jax.dtypes.issubdtype(dk.dtype, jax.dtypes.prng_key)
    assert copy.copy(nnx.Param(lst)).get_value() is lst


def test_saving_an_opaque_value_names_its_path_and_writes_nothing(tmp_path):
    path = tmp_path / "m.safetensors"
    state = nnx.State({"enc": {"w": nnx.Param(np.ones(2))}, "abs": {"shape": nnx.Param(jax.ShapeDtypeStruct((2,), jnp.float32))}})
    with pytest.raises(ValueError, match=r"cannot save 'abs/shape'.*opaque value \(python:jax.ShapeDtypeStruct\)"):
        nnx.save_safetensors(state, path)
    assert not path.exists()
    nnx.save_safetensors(nnx.State({"w": nnx.Param(np.ones(2))}), path)
    written = path.read_bytes()
    with pytest.raises(ValueError, match="abs/shape"):
        nnx.save_safetensors(state, path)
    assert path.read_bytes() == written
    with pytest.raises(ValueError, match="abs/shape"):
        nnx.save_safetensors(state, tmp_path / "sharded", max_shard_size=8)
    assert not (tmp_path / "sharded").exists() or not list((tmp_path / "sharded").iterdir())


def test_keys_and_jax_arrays_round_trip_through_safetensors(tmp_path):
    keys = jax.random.split(jax.random.key(7), 3)
    state = nnx.State({"k": nnx.RngKey(jax.random.key(3), tag="default"), "ks": nnx.RngKey(keys), "w": nnx.Param(jnp.arange(3.0))})
    nnx.save_safetensors(state, tmp_path / "m.safetensors")
    loaded = nnx.load_safetensors(tmp_path / "m.safetensors")
    assert loaded == state
    for name in ("k", "ks"):
        key = loaded[name].get_value()
        assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == state[name].get_value().shape
        assert str(jax.random.key_impl(key)) == "threefry2x32"
    assert isinstance(loaded["w"].get_value(), np.ndarray)  # read from the file: numpy over the mapping


def test_keys_without_jax(tmp_path):
    nnx.save_safetensors(nnx.State({"k": nnx.RngKey(jax.random.key(3)), "w": nnx.Param(np.ones(2))}), tmp_path / "m.safetensors")
    code = f"""
import sys
sys.modules["jax"] = None
import nnx_state as nnx
s = nnx.load_safetensors({str(tmp_path / "m.safetensors")!r})
assert "key<fry>[]" in s.to_string()
k = s["k"].get_value()
assert isinstance(k, nnx.KeyData) and k.impl == "threefry2x32"
assert k.data.dtype.name == "uint32" and k.data.shape == (2,)
# Put back into a variable, it is a typed key again: saved, it loads as one.
s["k2"] = nnx.RngKey(k)
nnx.save_safetensors(s, {str(tmp_path / "again.safetensors")!r})
print(k.data.tolist())
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([int(x) for x in jax.random.key_data(jax.random.key(3))])
    again = nnx.load_safetensors(tmp_path / "again.safetensors")
    for name in ("k", "k2"):
        key = again[name].get_value()
        assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        assert (jax.random.key_data(key) == jax.random.key_data(jax.random.key(3))).all()


class Dropper(flax_nnx.Module):
    def __init__(self):
        self.linear = flax_nnx.Linear(2, 3, rngs=flax_nnx.Rngs(0))
        self.dropout = flax_nnx.Dropout(0.1, rngs=flax_nnx.Rngs(0))


def test_from_flax_to_flax_round_trip_keys_and_jax_arrays_bit_for_bit():
    model = Dropper()
    flax_state = flax_nnx.state(model)
    state = nnx.from_flax(flax_state)
    assert isinstance(state["dropout"]["rngs"]["key"], nnx.RngKey)
    back = nnx.to_flax(state)
    theirs, again = flax_nnx.to_flat_state(flax_state), flax_nnx.to_flat_state(back)
    assert theirs.paths == again.paths
    for (path, a), (_, b) in zip(theirs, again):
        assert type(a) is type(b) and a.get_metadata() == b.get_metadata(), path
        assert b.get_value() is a.get_value(), path  # the very jax arrays and keys
    flax_nnx.update(model, back)
    x = jnp.ones((4, 2))
    twin = Dropper()
    flax_nnx.update(twin, nnx.to_flax(nnx.from_flax(flax_nnx.state(model))))
    np.testing.assert_array_equal(model.dropout(model.linear(x)), twin.dropout(twin.linear(x)))


def test_foreign_opaque_values_are_described_never_touched():
    out = c_void_p()
    _lib.check(_lib.lib.nnx_variable_new_opaque(nnx.Param._type_id, b"test:buffer", 0x1234, _lib.release_fn(), None, byref(out)))
    v = variablelib.wrap_variable(out.value, owned=True)
    value = v.get_value()
    assert isinstance(value, _values.ForeignValue) and (value.type_name, value.address) == ("test:buffer", 0x1234)
    assert nnx.filter_state(nnx.State({"v": v}), ...)["v"].get_value() == value
    assert v.copy().get_value() == value  # shared natively, as a split shares it
    with pytest.raises(TypeError, match="another library"):
        v.copy(value)  # but never made from its Python description
    with pytest.raises(TypeError, match="another library"):
        nnx.Param(value)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(v)
    assert "test:buffer" in repr(v)


# --------------------------------------------------------------------------
# Transformations, side by side with Flax: jax arrays come out
# --------------------------------------------------------------------------


def _model(ns):
    return ns.State({"w": ns.Param(jnp.ones((2, 2))), "s": ns.BatchStat(jnp.full((2, 2), 2.0)), "n": ns.Param(jnp.float32(3.0))})


def _compare(ours, theirs):
    assert isinstance(ours, nnx.State)
    a, b = nnx.to_flat_state(ours), flax_nnx.to_flat_state(theirs)
    assert a.paths == b.paths
    for (path, x), (_, y) in zip(a, b):
        assert type(x).__name__ == type(y).__name__, path
        xv, yv = x.get_value(), y.get_value()
        assert type(xv) is type(yv), path
        if isinstance(yv, jax.ShapeDtypeStruct):
            assert xv == yv
        else:
            np.testing.assert_array_equal(xv, yv)


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: jax.jit(lambda t: jax.tree.map(lambda x: x * 2, t))(s),
        lambda s: jax.grad(lambda t: jnp.sum(t["w"][...] * t["s"][...]) * t["n"][...])(s),
        lambda s: jax.vmap(lambda t: jax.tree.map(lambda x: x + 1, t), in_axes=0)(jax.tree.map(lambda x: jnp.stack([x, x]), s)),
        lambda s: jax.eval_shape(lambda t: t, s),
    ],
    ids=["jit", "grad", "vmap", "eval_shape"],
)
def test_transformations_give_what_flax_gives(transform):
    _compare(transform(_model(nnx)), transform(_model(flax_nnx)))


def test_optax_adam_steps_as_flax():
    optax = pytest.importorskip("optax")

    def steps(ns):
        params = _model(ns)
        tx = optax.adam(0.1)
        opt_state = tx.init(params)
        for _ in range(3):
            grads = jax.grad(lambda p: jnp.sum(p["w"][...] ** 2) + p["n"][...] * jnp.sum(p["s"][...]))(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return params, opt_state

    (ours, our_opt), (theirs, their_opt) = steps(nnx), steps(flax_nnx)
    _compare(ours, theirs)
    for x, y in zip(jax.tree.leaves(our_opt), jax.tree.leaves(their_opt)):
        assert type(x) is type(y)
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------
# Several devices (a subprocess: the device count is fixed at jax's start)
# --------------------------------------------------------------------------

_SHARDED = """
import jax
jax.config.update("jax_num_cpu_devices", 4)
import sys, numpy as np, jax.numpy as jnp
import nnx_state as nnx
from nnx_state import _values
mesh = jax.make_mesh((4,), ("data",))
sharded = jax.device_put(jnp.arange(8.0), jax.NamedSharding(mesh, jax.P("data")))
assert len(sharded.sharding.device_set) == 4
before = sys.getrefcount(sharded)
v = nnx.Param(sharded)
assert v.get_value() is sharded and _values.read(v._ptr)[0] == _values.OPAQUE
state = nnx.State({"v": v})
params, = (nnx.split_state(state, nnx.Param),)
assert params["v"].get_value() is sharded
assert "<opaque python:jaxlib._jax.ArrayImpl>" in state.to_string()
on_one = jax.device_put(jnp.ones(2), jax.devices()[2])  # one CPU device: a native array over its buffer
w = nnx.Param(on_one)
assert w.get_value() is on_one and _values.read(w._ptr)[0] == _values.ARRAY
doubled = jax.jit(lambda s: jax.tree.map(lambda x: x * 2, s))(state)
assert doubled["v"].get_value().sharding == sharded.sharding
del v, state, params, w, doubled
import gc; gc.collect()
assert sys.getrefcount(sharded) == before
print("ok")
"""


def test_a_sharded_array_is_held_as_itself():
    done = run_python(_SHARDED, JAX_PLATFORMS="cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

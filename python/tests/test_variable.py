"""Variables: the registry, values without copies, dtypes and metadata
(Flax's own Variable tests, re-expressed, are in test_flax_bar.py)."""

from __future__ import annotations

import collections
import copy
import json
import math
import pickle

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import _lib
from nnx_state import _arrays, _jax_meta, _var_metadata, variablelib

from test_library import run_python

# --------------------------------------------------------------------------
# Values of every kind
# --------------------------------------------------------------------------


def test_value_of_a_python_scalar():
    r1 = nnx.Param(1)
    assert r1.get_value() == 1
    r1.set_value(2)
    assert r1.get_value() == 2


# --------------------------------------------------------------------------
# Classes and the native registry
# --------------------------------------------------------------------------


def test_builtin_hierarchy():
    assert issubclass(nnx.Perturbation, nnx.Intermediate)
    assert issubclass(nnx.RngKey, nnx.RngState) and issubclass(nnx.RngCount, nnx.RngState)
    assert issubclass(nnx.OptArray, nnx.OptState) and issubclass(nnx.OptVariable, nnx.OptState)
    p = nnx.Perturbation(np.zeros(1))
    assert isinstance(p, nnx.Intermediate) and isinstance(p, nnx.Variable)
    assert not isinstance(p, nnx.Param)
    assert p.type_name == "Perturbation"
    assert nnx.Param._type_id == 1 and nnx.OptVariable._type_id == 11


def test_subclassing_registers_the_type():
    class QuantParam8(nnx.Param):  # a name no other test takes
        pass

    QuantParam = QuantParam8
    q = QuantParam(np.zeros(2), tag="q")
    assert isinstance(q, nnx.Param) and isinstance(q, QuantParam)
    assert q.type_name == "QuantParam8"
    assert variablelib.lookup_type("QuantParam8") == QuantParam._type_id
    assert variablelib.type_parent(QuantParam._type_id) == nnx.Param._type_id
    state = nnx.State({"w": q, "b": nnx.Param(np.zeros(1))})
    only = nnx.filter_state(state, QuantParam)
    assert list(only) == ["w"] and only["w"] is q
    assert type(state["w"]) is QuantParam
    # Subclasses get __slots__ = (), like Flax's variables.
    with pytest.raises(AttributeError, match="set_metadata"):
        q.anything = 1


def test_variable_type_is_by_name():
    first = nnx.variable_type("SameName", nnx.Param)
    second = nnx.variable_type("SameName", nnx.Param)
    assert first is second and first.__name__ == "SameName"
    with pytest.raises(ValueError) as info:
        nnx.variable_type("SameName", nnx.BatchStat)
    assert info.value.status_name == "NNX_ERR_TYPE_CONFLICT"
    # A class statement is a type of its own, even with the same name (the
    # cases are in test_class_identity.py).

    class SameName(nnx.Param):
        pass

    assert SameName._type_id != first._type_id
    assert not isinstance(first(np.zeros(1)), SameName)
    assert nnx.variable_type("SameName", nnx.Param) is first


def test_variable_type_and_deeper_levels():
    Base = nnx.variable_type("LoraParam", nnx.Param)
    Deep = nnx.variable_type("LoraA", Base)
    d = Deep(np.zeros(1))
    assert isinstance(d, Base) and isinstance(d, nnx.Param)
    assert not isinstance(Base(np.zeros(1)), Deep)
    assert Deep.__name__ == "LoraA" and Deep.__mro__[1] is Base


def test_custom_type_name():
    class Local(nnx.Cache, type_name="mylib.Local"):
        pass

    assert Local(np.zeros(1)).type_name == "mylib.Local"
    assert variablelib.lookup_type("mylib.Local") == Local._type_id


def test_types_registered_natively_get_a_class():
    from ctypes import byref, c_uint32

    out = c_uint32()
    nnx._lib.lib.nnx_type_register(b"FromC", nnx.BatchStat._type_id, byref(out))
    v = variablelib.new_variable(nnx.BatchStat, None)  # a BatchStat, for comparison
    cls = variablelib.class_for_type(out.value)
    assert cls.__name__ == "FromC" and issubclass(cls, nnx.BatchStat)
    assert isinstance(cls(np.zeros(1)), nnx.BatchStat)
    assert not isinstance(v, cls)


def test_same_native_variable_same_object():
    v = nnx.Param(np.zeros(3))
    state = nnx.State({"a": v, "b": {"c": v}})
    assert state["a"] is v and state["b"]["c"] is v and state["a"] is state["a"]
    leaves = nnx.to_flat_state(state).leaves
    assert leaves[0] is leaves[1] is v


# --------------------------------------------------------------------------
# Values: no copies, shared by every holder
# --------------------------------------------------------------------------


def test_numpy_values_are_not_copied():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = nnx.Param(a)
    assert np.shares_memory(v[...], a)
    assert np.shares_memory(v.value, v.get_value())
    a[0, 0] = 100  # Flax keeps the very array too
    assert v[0, 0] == 100


def test_view_writes_are_seen_by_every_state():
    v = nnx.Param(np.zeros(3, np.float32))
    s1 = nnx.State({"x": v})
    s2 = nnx.State({"deep": {"y": v}})
    s1["x"][...] += 1
    assert (s2["deep"]["y"][...] == 1).all()
    s2.deep.y[1] = 7
    assert list(s1.x[...]) == [1, 7, 1]


def test_set_value_replaces_the_value_everywhere():
    v = nnx.BatchStat(np.zeros(3))
    s = nnx.State({"v": v})
    before = v[...]
    v.set_value(np.ones(4, np.int32))
    assert s["v"].shape == (4,) and s["v"].dtype == np.int32
    assert (before == 0).all()  # an old view keeps the old array alive
    v.value = np.full(2, 5.0)
    assert list(s["v"][...]) == [5.0, 5.0]
    v[...] = 3  # in place, broadcasting, keeping dtype and shape
    assert list(s["v"][...]) == [3.0, 3.0]


def test_read_only_and_strided_inputs_are_copied():
    a = np.arange(4.0)
    a.flags.writeable = False
    v = nnx.Param(a)
    assert not np.shares_memory(v[...], a)
    v[...] += 1
    assert list(v[...]) == [1, 2, 3, 4] and list(a) == [0, 1, 2, 3]
    b = np.arange(10.0)[::2]
    w = nnx.Param(b)
    assert not np.shares_memory(w[...], b) and list(w[...]) == list(b)
    c = np.arange(6.0).reshape(2, 3).T
    assert (nnx.Param(c)[...] == c).all()


def test_view_of_a_view_reuses_the_native_array():
    v = nnx.Param(np.arange(3.0))
    w = nnx.Param(v[...])
    assert np.shares_memory(v[...], w[...])
    v[...] += 1
    assert list(w[...]) == [1.0, 2.0, 3.0]


def test_a_view_keeps_the_native_array_alive():
    import gc

    state = nnx.State({"a": nnx.Param(np.arange(1000.0))})
    view = state["a"][...]
    del state
    gc.collect()
    assert view.sum() == sum(range(1000))


@pytest.mark.parametrize(
    "dtype",
    [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
     np.uint64, np.float16, np.float32, np.float64],
)
def test_dtypes_round_trip(dtype):
    a = (np.arange(6) % 3).astype(dtype).reshape(3, 2)
    v = nnx.Variable(a)
    assert v.dtype == np.dtype(dtype)
    assert v[...].dtype == np.dtype(dtype) and (v[...] == a).all()
    bare = nnx.State({"x": a})["x"]
    assert bare.dtype == np.dtype(dtype) and (bare == a).all()


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_ml_dtypes(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dtype = np.dtype(getattr(ml_dtypes, name))
    a = np.array([0.5, 1.0, -2.0], dtype=dtype)
    v = nnx.Param(a)
    assert v.dtype == dtype and np.shares_memory(v[...], a)
    assert (v[...].astype(np.float32) == np.array([0.5, 1.0, -2.0], np.float32)).all()
    v[...] += dtype.type(1)
    assert (a.astype(np.float32) == np.array([1.5, 2.0, -1.0], np.float32)).all()


def test_byte_order_and_bad_dtypes():
    big = np.arange(3, dtype=">i4")
    assert list(nnx.Param(big)[...]) == [0, 1, 2]
    for bad in (np.zeros(2, np.complex64), np.array(["a"]), np.array([object()])):
        with pytest.raises(TypeError):
            nnx.Param(bad)


def test_no_value():
    v = nnx.Cache(None)
    assert v.get_value() is None and v.value is None
    assert "value=None" in repr(v)
    v[...] = np.zeros(2)
    assert v.shape == (2,)
    v.set_value(None)
    assert v.get_value() is None


def test_proxied_protocols():
    v = nnx.Param(np.array([3.0, 1.0, 2.0]))
    assert len(v) == 3 and list(v) == [3.0, 1.0, 2.0] and 2.0 in v
    assert np.sum(v) == 6.0 and np.asarray(v).dtype == np.float64
    assert (v * 2 == np.array([6, 2, 4])).all() and (2 * v == v + v).all()
    assert (-v < 0).all() and (v >= 1).all() and (abs(-v) == v).all()
    assert float(nnx.Param(np.array(2.5))) == 2.5 and int(nnx.Param(np.array(3))) == 3
    assert (v @ v) == 14.0
    with pytest.raises(NotImplementedError, match=r"variable\[\.\.\.\] \+= x"):
        v += 1
    with pytest.raises(TypeError):
        hash(v)


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


def test_tag_and_metadata_kinds():
    v = nnx.Param(np.zeros(1), tag="dropout", scale=2.5, n=3, frozen=True, axis="x")
    assert v.tag == "dropout"
    assert v.get_metadata(exclude_required=True) == {
        "tag": "dropout", "scale": 2.5, "n": 3, "frozen": True, "axis": "x",
    }
    assert type(v.get_metadata("n")) is int and type(v.get_metadata("frozen")) is bool
    assert nnx.Param(np.zeros(1)).tag is None
    v.del_metadata("tag")
    assert v.tag is None and not v.has_metadata("tag") and v.has_metadata("hijax")
    with pytest.raises(KeyError) as info:
        v.get_metadata("tag")
    assert info.value.status_name == "NNX_ERR_KEY_NOT_FOUND"


def same(a, b) -> bool:
    """Equal and of the very same types all the way down (True is not 1, 1 is
    not 1.0, a tuple is not a list, dict order counts); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


STRUCTURED = {
    "out_sharding": (None, "model"),
    "mesh": None,
    "one": (1,),
    "empty": (),
    "axes": ["batch", None, ["inner"]],
    "optimizer": {"lr": 1e-3, "betas": (0.9, 0.999), "nesterov": False, "steps": [1, 10], "": {}},
    "flags": [True, False, 1, 0, 1.0, -0.0],
    "order": {"z": 1, "a": 2, "m": {"y": None, "b": ()}},
    "floats": (float("inf"), float("-inf"), float("nan"), 5e-324, 1e300),
    "ints": (-(2**63), 2**63 - 1),
    "text": ["", "a\0b", "é ☃ 😀", 'quote"s', "back\\slash"],
    "with_nul": "x\0y",
}


def test_structured_metadata_comes_back_as_it_went_in():
    v = nnx.Param(np.zeros(1), **STRUCTURED)
    got = v.get_metadata(exclude_required=True)
    assert same(got, STRUCTURED), got
    for name, value in STRUCTURED.items():
        assert same(v.get_metadata(name), value), name
        assert same(getattr(v, name), value), name  # metadata reads as attributes
    # The three ways of set_metadata, and the copies a variable makes.
    w = nnx.Param(np.zeros(1))
    w.set_metadata("out_sharding", (None, "model"))
    w.set_metadata(axes=["a", ("b",)])
    assert same(w.get_metadata("out_sharding"), (None, "model"))
    assert same(w.get_metadata("axes"), ["a", ("b",)])
    w.set_metadata({**STRUCTURED, "hijax": False, "ref": False, "eager_sharding": True})
    assert same(w.get_metadata(exclude_required=True), STRUCTURED)
    assert same(w.copy().get_metadata(), v.get_metadata())
    assert same(copy.deepcopy(v).get_metadata(), v.get_metadata())
    assert same(pickle.loads(pickle.dumps(v)).get_metadata(), v.get_metadata())
    assert same(w.replace(value=np.ones(2), one=[1]).get_metadata("one"), [1])
    # What was put in is copied: changing the Python value changes nothing.
    axes = ["a"]
    w.set_metadata(axes=axes)
    axes.append("b")
    assert w.get_metadata("axes") == ["a"]
    # numpy scalars come back as Python ones; subclasses as their base kind.
    w.set_metadata(np_values=(np.int32(3), np.float32(0.5), np.bool_(True)))
    assert same(w.get_metadata("np_values"), (3, 0.5, True))
    w.set_metadata(sub=collections.OrderedDict(b=1, a=2), point=collections.namedtuple("P", "x y")(1, 2))
    assert same(w.get_metadata("sub"), {"b": 1, "a": 2}) and same(w.get_metadata("point"), (1, 2))
    # A tuple tag is no tag; repr shows the values as Python does.
    w.set_metadata(tag=("t",))
    assert w.tag is None and nnx.WithTag("t")(("w",), w) is False
    assert "out_sharding=(None, 'model')" in repr(v) and "one=(1,)" in repr(v)


def test_metadata_that_is_not_representable():
    v = nnx.Param(np.zeros(1), keep=(1,))
    cases = [
        ({"bad": object()}, TypeError, "metadata 'bad'.*object"),
        ({"bad": {1: "x"}}, TypeError, "metadata 'bad'.*dict key 1 is not a str"),
        ({"bad": [{"ok": 1, (1, 2): 2}]}, TypeError, "metadata 'bad'"),
        ({"bad": {1, 2}}, TypeError, "metadata 'bad'.*set"),
        ({"bad": np.zeros(2)}, TypeError, "metadata 'bad'.*ndarray"),
        ({"bad": 2**63}, ValueError, "metadata 'bad'.*64-bit"),
        ({"bad": (0, [-(2**63) - 1])}, ValueError, "metadata 'bad'.*64-bit"),
        ({"bad": "\ud800"}, ValueError, "metadata 'bad'"),
        ({"bad": ("\ud800",)}, ValueError, "metadata 'bad'"),
    ]
    for entries, error, match in cases:
        with pytest.raises(error, match=match):
            v.set_metadata(**entries)
        with pytest.raises(error, match=match):
            v.set_metadata({"ok": 1, **entries})  # checked before anything changes
        with pytest.raises(error, match=match):
            nnx.Param(np.zeros(1), **entries)
    assert v.get_metadata(exclude_required=True) == {"keep": (1,)}


def test_metadata_nests_at_most_nnx_max_depth_levels():
    v = nnx.Param(np.zeros(1))
    deepest = None
    for level in range(_lib.NNX_MAX_DEPTH):
        deepest = (deepest,) if level % 2 else [deepest]
    v.set_metadata(deep=deepest)
    assert same(v.get_metadata("deep"), deepest)
    with pytest.raises(ValueError, match=f"metadata 'deeper' is nested deeper than {_lib.NNX_MAX_DEPTH} levels"):
        v.set_metadata(deeper=[deepest])
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="metadata 'loop'"):
        v.set_metadata(loop=loop)
    assert list(v.get_metadata(exclude_required=True)) == ["deep"]


def test_jax_sharding_objects_are_metadata(tmp_path):
    """A Mesh, an AbstractMesh and a PartitionSpec (what Flax keeps in
    sharding metadata) are stored as data and read back as equal jax
    objects: the very Mesh in the same process; through copies, pickles and
    a safetensors file."""
    jax = pytest.importorskip("jax")
    P = jax.sharding.PartitionSpec
    mesh = jax.make_mesh((1,), ("model",))
    entries = {
        "mesh": mesh,
        "abstract": mesh.abstract_mesh,
        "spec": P(None, "model", ("a", "b"), P.UNCONSTRAINED),
        "unreduced": P("x", unreduced={"y"}),
        "nested": {"specs": [P("model"), P()], "mesh": mesh},
    }
    v = nnx.Param(np.zeros(2), **entries)
    assert v.get_metadata("mesh") is mesh and v.mesh is mesh
    assert v.get_metadata(exclude_required=True) == entries
    for other in (v.copy(), copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert other.get_metadata(exclude_required=True) == entries
    path = tmp_path / "mesh.safetensors"
    nnx.save_safetensors(nnx.State({"v": v}), path)
    assert nnx.load_safetensors(path)["v"].get_metadata(exclude_required=True) == entries
    # What C and the file see: a map naming the kind.
    form = json.loads(_var_metadata._JSON.encode(_var_metadata._json_form("mesh", mesh)))
    assert form[:3] == ["map", "__jax__", "Mesh"] and "device_ids" in form
    with pytest.raises(ValueError, match="first key is '__jax__'"):
        v.set_metadata(mine={"__jax__": "Mesh"})
    with pytest.raises(TypeError, match="axis names must be str"):
        v.set_metadata(bad=P(("x", 1)))


def test_a_mesh_on_devices_that_are_not_here_is_an_abstract_mesh():
    jax = pytest.importorskip("jax")
    mesh = jax.make_mesh((1,), ("model",))
    form = _jax_meta.encode(mesh)
    assert _jax_meta.decode(form) is mesh
    elsewhere = _jax_meta.decode({**form, "device_ids": (10_000,)})
    assert elsewhere == mesh.abstract_mesh


def test_sharding_metadata_without_jax_is_the_map(tmp_path):
    jax = pytest.importorskip("jax")
    path = tmp_path / "mesh.safetensors"
    nnx.save_safetensors(nnx.State({"v": nnx.Param(np.zeros(1), spec=jax.sharding.PartitionSpec("x"))}), path)
    out = run_python(
        "import sys; sys.modules['jax'] = None\n"
        "import nnx_state as nnx\n"
        f"print(nnx.load_safetensors({str(path)!r})['v'].get_metadata('spec'))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'__jax__': 'PartitionSpec', 'parts': ('x',)}"


def test_flax_names_of_out_sharding_are_renamed_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'sharding_names' is deprecated"):
        v = nnx.Param(np.zeros(1), sharding_names=("x",))
    assert v.get_metadata(exclude_required=True) == {"out_sharding": ("x",)}
    with pytest.warns(DeprecationWarning, match="'sharding' is deprecated"):
        v.set_metadata(sharding=("y",))
    with pytest.warns(DeprecationWarning):
        v.set_metadata("sharding_names", ("z",))
    with pytest.warns(DeprecationWarning):
        assert v.sharding_names == ("z",)
    assert v.get_metadata(exclude_required=True) == {"out_sharding": ("z",)}


def test_defaults_for_new_variables():
    assert nnx.var_defaults() == nnx.VarDefaults(hijax=False, ref=False)
    assert dict(nnx.var_defaults()) == {"hijax": False, "ref": False}
    with nnx.var_defaults(ref=True):
        assert nnx.Param(np.zeros(1)).ref is True
        assert nnx.Param(np.zeros(1), ref=False).ref is False
    assert nnx.Param(np.zeros(1)).ref is False

    @nnx.use_eager_sharding(False)
    def make():
        return nnx.Param(np.zeros(1))

    assert nnx.using_eager_sharding() is True  # a decorator sets nothing now
    assert make().eager_sharding is False and nnx.Param(np.zeros(1)).eager_sharding is True
    with nnx.use_eager_sharding(False):
        assert nnx.using_eager_sharding() is False
    assert nnx.using_eager_sharding() is True


def test_metadata_limits():
    v = nnx.Param(np.zeros(1))
    with pytest.raises(TypeError, match="nnx_state stores None, bool, int, float, str"):
        v.set_metadata(axes=("x", object()))
    with pytest.raises(TypeError):
        v.set_metadata({"ok": 1, "bad": [1, object()]})
    assert v.get_metadata(exclude_required=True) == {}  # nothing was changed
    # hijax and ref are recorded when a variable is made and never change.
    h = nnx.Param(np.zeros(1), hijax=True)
    assert h.hijax is True and h.get_metadata("hijax") is True and not h.ref
    with pytest.raises(ValueError, match="Cannot change `hijax` metadata, expected True, got False"):
        h.set_metadata(hijax=False)
    with pytest.raises(ValueError, match="Cannot change `ref`"):
        v.set_metadata(ref=True)
    with pytest.raises(ValueError, match="Cannot change `ref`"):
        v.set_metadata({"ref": True})
    v.set_metadata(eager_sharding=False)
    assert v.get_metadata("eager_sharding") is False
    v.set_metadata(eager_sharding=True)
    assert v.get_metadata(exclude_required=True) == {}
    with pytest.raises(TypeError):
        v.set_metadata()


def test_repr_like_flax():
    v = nnx.Param(np.array([1.0, 2.0], np.float32), tag="x")
    assert repr(v) == "Param( # 2 (8 B)\n  value=array([1., 2.], dtype=float32),\n  tag='x'\n)"


# --------------------------------------------------------------------------
# Copies
# --------------------------------------------------------------------------


def test_copy_replace_deepcopy_pickle():
    v = nnx.Param(np.arange(3.0), tag="t")
    c = v.copy()
    assert c is not v and type(c) is nnx.Param and c.tag == "t"
    assert np.shares_memory(c[...], v[...])  # the value is shared, as in Flax
    r = v.replace(np.zeros(2), tag="u")
    assert list(r[...]) == [0, 0] and r.tag == "u" and v.tag == "t"
    d = copy.deepcopy(v)
    assert not np.shares_memory(d[...], v[...]) and (d[...] == v[...]).all()
    Custom = nnx.variable_type("PickledType", nnx.Param)
    p = pickle.loads(pickle.dumps(Custom(np.arange(2), tag="p")))
    assert type(p) is Custom and p.tag == "p" and list(p[...]) == [0, 1]
    other = nnx.Param(np.ones(1), tag="o")
    v.copy_from(other)
    assert v[...] == 1 and v.tag == "o"
    with pytest.raises(ValueError, match="incompatible"):
        v.copy_from(nnx.BatchStat(np.ones(1)))


def test_view_writability_follows_the_native_array():
    a = np.arange(3.0)
    a.flags.writeable = False
    ptr = _arrays.to_native(a, copy=False)  # lent read-only
    v = variablelib.new_variable(nnx.Param, ptr)
    nnx._lib.lib.nnx_array_release(ptr)
    view = v[...]
    assert not view.flags.writeable and np.shares_memory(view, a)
    v[0] = 10  # a read-only value is copied, then written
    assert list(v[...]) == [10, 1, 2] and list(a) == [0, 1, 2]


def test_a_variable_keeps_what_it_read_while_only_other_variables_change():
    """Another variable's change (which moves the library's change count)
    leaves what this one kept: the same value and metadata objects, one
    revision check instead of a new read; a state's flatten checks all its
    variables in one call (``_var_reads.refresh``)."""
    import jax

    from nnx_state import _var_reads

    v = nnx.Param(np.arange(3, dtype=np.float32), tag="t")
    value, items = v.value, v._metadata_items()
    parts = v._pytree_parts()
    other = nnx.Param(np.zeros(2, np.float32))
    other.value = np.ones(2, np.float32)  # a change elsewhere
    assert v.value is value and v._metadata_items() is items and v._pytree_parts() is parts
    state = nnx.State({"a": v, "b": other})
    leaves = jax.tree.leaves(state)
    other.value = np.full(2, 5, np.float32)
    _var_reads.refresh([v, other])
    assert jax.tree.leaves(state)[0] is leaves[0]
    np.testing.assert_array_equal(jax.tree.leaves(state)[1], [5, 5])
    v.set_metadata("tag", "u")  # its own change is seen
    assert v._metadata_items() is not items and dict(v._metadata_items())["tag"] == "u"


def test_a_variable_keeps_what_it_read_until_a_variable_changes():
    """A read value comes back as the same object, as in Flax, until the
    variable changes, also through another handle (here the C library
    itself, as a C engine sharing the variable would)."""
    from nnx_state import _arrays as A
    from nnx_state._lib import lib
    import ctypes

    v = nnx.Param(np.arange(3, dtype=np.float32), tag="t")
    first = v.value
    assert v.value is first and v.get_value() is first
    items = v._metadata_items()
    assert v._metadata_items() is items
    replacement = A.to_native(np.full(2, 7, np.float32))
    try:
        assert lib.nnx_variable_set_value(v._ptr, replacement) == 0
    finally:
        lib.nnx_array_release(replacement)
    assert v.value is not first
    np.testing.assert_array_equal(v.value, [7, 7])
    assert lib.nnx_variable_set_metadata_int(v._ptr, b"n", ctypes.c_int64(3)) == 0
    assert dict(v._metadata_items())["n"] == 3 and v.get_metadata("n") == 3
    v.value = np.zeros(4, np.float32)
    assert v.value.shape == (4,)

"""Variables: Python classes over the native type registry, and objects over
native ``nnx_variable`` handles.

- Every class (``Variable``, ``Param``, ..., and every Python subclass)
  is a native type of its own; defining ``class QuantParam(nnx.Param)``
  registers ``QuantParam`` under ``Param`` in the native registry. Classes
  map to types by the class itself, not by name: two classes named ``Lora``
  (two modules', a class redefined, one made in a function called twice)
  are two native types, the second under a qualified native name (see
  ``_claim_type``). ``isinstance`` and type filters follow Python's own
  class relations.
- A variable object holds one reference to a native variable. The same
  native variable always comes back as the same Python object while that
  object lives (``state['a'] is state['a']``); its class is the class
  registered for its native type.
- A value comes back as what it was (``_values`` converts both ways): a
  numpy array as a numpy array over the native buffer (no copy), a jax
  array or a typed PRNG key as that very object (its buffer held through
  DLPack), anything else (tracers, ``ShapeDtypeStruct``, Python scalars,
  sharded arrays) as the object the library holds opaquely. Metadata
  entries are ``None``, ``bool``, ``int``, ``float``, ``str``, and lists,
  tuples and dicts (str keys, in order) of them, nested, and come back as
  what went in.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import functools
import itertools
import json
import math
import struct
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Mapping
from ctypes import byref, c_bool, c_double, c_int64, c_size_t, c_uint32, c_uint64, c_void_p
from itertools import repeat

import numpy as np

from . import _arrays as A
from . import _jax_meta
from . import _lib as L
from . import _values
from ._lib import check, lib
from .errors import NnxValueError

__all__ = [
    "Variable", "Param", "BatchStat", "Cache", "Intermediate", "Perturbation",
    "RngState", "RngKey", "RngCount", "OptState", "OptArray", "OptVariable",
    "variable_type", "class_for_type", "var_defaults", "VarDefaults", "use_eager_sharding",
    "using_eager_sharding",
]


class _Missing:
    def __repr__(self):
        return "MISSING"


MISSING = _Missing()

# Flax's required metadata: every Flax variable has these entries. They are
# stored natively only where they differ from these values (hijax and ref
# when true, eager_sharding when not True).
REQUIRED_METADATA = {"hijax": False, "ref": False, "eager_sharding": True}

# --------------------------------------------------------------------------
# Defaults for new variables: var_defaults, use_eager_sharding
# --------------------------------------------------------------------------


class _Default(threading.local):
    """A default for new variables, per thread: ``base`` unless set."""

    def __init__(self, base: bool):
        self.base = base
        self.stack: list = []

    def get(self) -> bool:
        return self.stack[-1] if self.stack else self.base

    def set(self, value: bool):
        """Sets the default; returns what ``restore`` needs to undo it."""
        if self.stack:
            previous, self.stack[-1] = self.stack[-1], value
            return previous
        self.stack.append(value)
        return MISSING

    def restore(self, previous) -> None:
        if previous is MISSING:
            self.stack.pop()
        else:
            self.stack[-1] = previous


_HIJAX, _REF, _EAGER = _Default(False), _Default(False), _Default(True)


class DefaultsContext:
    """What ``var_defaults(...)`` and ``use_eager_sharding(...)`` return: the
    new defaults hold from the call on; used as a context manager, the old
    ones come back at its end; used as a decorator, the new ones hold only
    while the decorated function runs."""

    def __init__(self, changes: list):
        self._changes = changes  # (default, new value)
        self._undo = [(d, d.set(v)) for d, v in changes]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for default, previous in reversed(self._undo):
            default.restore(previous)

    def __call__(self, f):
        self.__exit__(None, None, None)
        changes = self._changes

        @functools.wraps(f)
        def with_defaults(*args, **kwargs):
            with DefaultsContext(changes):
                return f(*args, **kwargs)

        return with_defaults


@dataclasses.dataclass(frozen=True)
class VarDefaults(Mapping):
    """The defaults of ``hijax`` and ``ref`` for new variables."""

    hijax: bool
    ref: bool

    def __getitem__(self, key: str):
        return getattr(self, key)

    def __iter__(self):
        return iter(("hijax", "ref"))

    def __len__(self) -> int:
        return 2


def var_defaults(*, hijax: bool | None = None, ref: bool | None = None):
    """As ``flax.nnx.var_defaults``: without arguments, the current defaults
    (a ``VarDefaults``); with them, sets the defaults of ``hijax`` / ``ref``
    for new variables (recorded flags here, see ``Variable``) and returns a
    ``DefaultsContext``."""
    if hijax is None and ref is None:
        return VarDefaults(hijax=_HIJAX.get(), ref=_REF.get())
    return DefaultsContext([(d, v) for d, v in ((_HIJAX, hijax), (_REF, ref)) if v is not None])


def use_eager_sharding(value: bool) -> DefaultsContext:
    """As ``flax.nnx.use_eager_sharding``: sets the ``eager_sharding`` default
    of new variables (recorded here: ``to_flax`` places values by it)."""
    return DefaultsContext([(_EAGER, bool(value))])


def using_eager_sharding() -> bool:
    """The ``eager_sharding`` default of new variables."""
    return _EAGER.get()


# --------------------------------------------------------------------------
# The type registry, seen from Python
# --------------------------------------------------------------------------

_classes: dict[int, type] = {}  # native type id -> class used for new objects
_parents: dict[int, int] = {}
_names: dict[int, str] = {}


def type_name(type_id: int) -> str:
    name = _names.get(type_id)
    if name is None:
        out = L.c_char_p()
        check(lib.nnx_type_name(type_id, byref(out)))
        name = _names[type_id] = out.value.decode("utf-8")
    return name


def type_parent(type_id: int) -> int | None:
    parent = _parents.get(type_id)
    if parent is None:
        out = c_uint32()
        check(lib.nnx_type_parent(type_id, byref(out)))
        parent = _parents[type_id] = out.value
    return None if parent == L.NNX_TYPE_NONE else parent


def is_subtype(type_id: int, ancestor: int) -> bool:
    t: int | None = type_id
    while t is not None:
        if t == ancestor:
            return True
        t = type_parent(t)
    return False


def register_type(name: str, parent_id: int) -> int:
    out = c_uint32()
    check(lib.nnx_type_register(_meta_name(name), parent_id, byref(out)), what=f"variable type {name!r}")
    return out.value


def lookup_type(name: str) -> int | None:
    out = c_uint32()
    status = lib.nnx_type_lookup(_meta_name(name), byref(out))
    if status == L.NNX_ERR_KEY_NOT_FOUND:
        return None
    check(status)
    return out.value


# Which Python class stands for which native type. Every class is its own
# native type (SPEC §3): the registry is keyed by name, so each class gets a
# native name of its own, chosen under `_type_lock` by `_claim_type`:
#
# - its `__name__`, when no other class holds that native name;
# - else `module.QualName` (`__module__` and `__qualname__`);
# - else `module.QualName#2`, `#3`, ... (the first that is free).
#
# A native name is free for a class when it is not registered, or registered
# under the same parent with no class standing for it yet, or only a
# placeholder (the class `class_for_type` makes for a type registered by
# other code: a checkpoint loader, a C caller); the new class then takes over
# that type, so a state loaded before the class was defined filters by it.
# Classes are never dropped: a native type lives as long as the process.
_type_lock = threading.RLock()
_placeholders: set[type] = set()
# Called with every new variable class (the pytree registration adds itself).
class_hooks: list = []


def candidate_names(name: str, module: str | None, qualname: str):
    """The native names a class named ``name`` may take, best first."""
    yield name
    qualified = f"{module}.{qualname}" if module else qualname
    if qualified != name:
        yield qualified
    for n in itertools.count(2):
        yield f"{qualified}#{n}"


def _free_for(type_id: int) -> bool:
    """Whether a new class may stand for the native type ``type_id``."""
    holder = _classes.get(type_id)
    return holder is None or holder in _placeholders


def _claim_type(name: str, module: str | None, qualname: str, parent_id: int, explicit: str | None) -> int:
    """The native type id for a new class (see the comment above); with an
    ``explicit`` name, that name or a ``ValueError``. Call under _type_lock."""
    names = (explicit,) if explicit is not None else candidate_names(name, module, qualname)
    for native in names:
        try:
            type_id = register_type(native, parent_id)
        except NnxValueError as e:
            if explicit is not None or e.status != L.NNX_ERR_TYPE_CONFLICT:
                raise
            continue  # the name is taken under another parent
        if _free_for(type_id):
            return type_id
        if explicit is not None:
            raise ValueError(
                f"the variable type name {explicit!r} is already held by {_classes[type_id]!r}"
            )
    raise AssertionError("unreachable")  # pragma: no cover - the names never run out


def _variable_parent(cls: type) -> type:
    """The one variable class ``cls`` derives from: the registry is a tree,
    so every variable base must lie on one line of descent."""
    bases = [b for b in cls.__mro__[1:] if isinstance(b, VariableMeta)]
    parent = bases[0]
    for base in bases[1:]:
        if not issubclass(parent, base):
            raise TypeError(
                f"{cls.__qualname__} derives from both {parent.__name__} and {base.__name__}; "
                "a variable class has one line of variable types"
            )
    return parent


def class_for_type(type_id: int) -> type:
    """The class standing for a native type id, made on first use (a
    placeholder) for types registered by other code (C callers, checkpoint
    loaders). Its ``__name__`` is the native name."""
    cls = _classes.get(type_id)
    if cls is not None:
        return cls
    with _type_lock:
        cls = _classes.get(type_id)
        if cls is None:
            parent = type_parent(type_id)
            parent_cls = Variable if parent is None else class_for_type(parent)
            name = type_name(type_id)
            cls = VariableMeta(name, (parent_cls,), {"_type_id": type_id, "__module__": __name__, "__qualname__": name})
            _placeholders.add(cls)
        return cls


def variable_type(name: str, parent: type = None) -> type:
    """Registers the native variable type ``name`` under ``parent`` (default
    ``Variable``) and returns the class standing for it: a new class whose
    ``__name__`` is ``name``, or the class that already holds that native
    name. Asking again for the same name and parent returns the same class;
    the name under another parent fails (``ValueError``)."""
    if parent is None:
        parent = Variable
    if not (isinstance(parent, VariableMeta)):
        raise TypeError(f"parent must be a Variable class, got {parent!r}")
    with _type_lock:
        type_id = register_type(name, parent._type_id)
        cls = _classes.get(type_id)
        if cls is None:
            cls = VariableMeta(name, (parent,), {"_type_id": type_id, "__module__": __name__, "__qualname__": name})
        _placeholders.discard(cls)  # asked for by name: no class statement takes it over
        return cls


class VariableMeta(type):
    """Metaclass of the variable classes: ``isinstance`` follows the native
    registry (every class is a type of its own, so this is Python's own
    relation, plus a placeholder's instances counting as instances of the
    class that took over its type); subclasses get ``__slots__ = ()``
    unless they say otherwise."""

    def __new__(mcls, name, bases, namespace, **kwargs):
        if "__slots__" not in namespace:
            namespace["__slots__"] = ()
        return super().__new__(mcls, name, bases, namespace, **kwargs)

    def __instancecheck__(cls, instance):
        if type.__instancecheck__(cls, instance):
            return True
        own = type(instance)
        if not isinstance(own, VariableMeta):
            return False
        return is_subtype(own._type_id, cls._type_id)

    def __subclasscheck__(cls, subclass):
        if type.__subclasscheck__(cls, subclass):
            return True
        if not isinstance(subclass, VariableMeta):
            return False
        return is_subtype(subclass._type_id, cls._type_id)


# --------------------------------------------------------------------------
# Live objects: native pointer -> the one Python object for it
# --------------------------------------------------------------------------


class _LiveRef(weakref.ref):
    __slots__ = ("ptr",)


_live: dict[int, _LiveRef] = {}
_set_ref_ptr = _LiveRef.ptr.__set__


def _on_dead(
    ref: _LiveRef, _release=lib.nnx_variable_release, _shutting_down=L.shutting_down
) -> None:
    # Runs when a variable object is gone: its weak reference is already
    # cleared, so no lookup can return it any more; give back its reference.
    if _shutting_down():
        return
    ptr = ref.ptr
    try:
        if _live.get(ptr) is ref:
            del _live[ptr]
        _release(ptr)
    except Exception:  # pragma: no cover - interpreter shutdown
        pass


def _change_counter() -> c_uint64:
    """The library's count of variable changes (any value or metadata, any
    thread), read in place: a variable object keeps what it last read while
    the count stays the same."""
    address = c_void_p()
    check(lib.nnx_variable_change_counter(byref(address)))
    return c_uint64.from_address(address.value)


_changes = _change_counter()


def _adopt(obj: "Variable", ptr: int) -> None:
    object.__setattr__(obj, "_ptr", ptr)
    ref = _LiveRef(obj, _on_dead)
    ref.ptr = ptr
    _live[ptr] = ref


def wrap_variable(ptr: int, *, owned: bool) -> "Variable":
    """The Python object for a native variable. ``owned``: the caller hands
    over one reference; otherwise ``ptr`` is borrowed."""
    ref = _live.get(ptr)
    if ref is not None:
        obj = ref()
        if obj is not None:
            if owned:
                lib.nnx_variable_release(ptr)
            return obj
    if not owned:
        check(lib.nnx_variable_retain(ptr))
    tid = c_uint32()
    status = lib.nnx_variable_type(ptr, byref(tid))
    if status:
        lib.nnx_variable_release(ptr)
        L.fail(status)
    cls = class_for_type(tid.value)
    obj = object.__new__(cls)
    _adopt(obj, ptr)
    return obj


def wrap_variables(ptrs: list, type_ids: list, retain) -> list:
    """The Python objects for many borrowed native variables at once, as
    ``[wrap_variable(p, owned=False) for p in ptrs]`` gives them, with the
    per-object work done by C-level loops.

    ``type_ids[i]`` is the native type of ``ptrs[i]``. ``retain(a, b)`` must
    take one new native reference for each of ``ptrs[a:b]`` (one call for a
    run of variables that get new objects)."""
    n = len(ptrs)
    if not n:
        return []
    refs = list(map(_live.get, ptrs))
    if any(refs):
        objs = [None if r is None else r() for r in refs]
    else:
        objs = None
    unique = n == len(set(ptrs))
    if objs is None and unique:
        need = None  # every one gets a new object: one run
        retain(0, n)
    else:
        # New objects for the first occurrence of each variable without one;
        # later occurrences get the same object.
        if objs is None:
            objs = [None] * n
        firsts: dict = {}
        need = []
        for i, (p, o) in enumerate(zip(ptrs, objs)):
            if o is None and firsts.setdefault(p, i) == i:
                need.append(i)
        run_start = prev = None
        for i in need:
            if run_start is None:
                run_start = i
            elif i != prev + 1:
                retain(run_start, prev + 1)
                run_start = i
            prev = i
        if run_start is not None:
            retain(run_start, prev + 1)
    if need is None:
        new_ptrs, new_types = ptrs, type_ids
    else:
        new_ptrs = [ptrs[i] for i in need]
        new_types = [type_ids[i] for i in need]
    for tid in set(new_types):
        if tid not in _classes:
            class_for_type(tid)
    new_objs = list(map(object.__new__, map(_classes.__getitem__, new_types)))
    new_refs = list(map(_LiveRef, new_objs, repeat(_on_dead, len(new_objs))))
    deque(map(_set_ptr, new_objs, new_ptrs), maxlen=0)
    deque(map(_set_ref_ptr, new_refs, new_ptrs), maxlen=0)
    _live.update(zip(new_ptrs, new_refs))
    if need is None:
        return new_objs
    for i, o in zip(need, new_objs):
        objs[i] = o
    if not unique:
        for i, p in enumerate(ptrs):
            if objs[i] is None:
                objs[i] = objs[firsts[p]]
    return objs


def store_value(value, *, type_id: int | None = None, ptr: int | None = None, copy: bool | None = None) -> int | None:
    """Stores the Python value ``value`` natively: as the value of a new
    native variable of type ``type_id`` (returns its owned handle), or as the
    new value of the native variable ``ptr`` (returns None).

    The one place where a Python value becomes a variable's native value:
    ``Variable(...)``, ``set_value``, ``copy(value)``, ``from_flax`` and the
    pytree unflatten all come here. None is no value; a numpy array (or
    numpy scalar) is a native array (``copy`` as for
    ``_arrays.to_native``); a jax array on one CPU device is a native array
    over its buffer and a typed PRNG key a native key, both given back as
    themselves; anything else (a tracer under ``jax.jit``, a
    ``ShapeDtypeStruct``, a ``PartitionSpec``, a Python scalar, a sharded or
    device array, any other object) is held opaquely (see ``_values``)."""
    return _values.store(value, type_id=type_id, ptr=ptr, copy=copy)


def rebuild_variable(cls: type, value, metadata: dict, *, copy: bool | None = None) -> "Variable":
    """A new variable of class ``cls`` holding ``value`` with ``metadata``
    (Flax's required entries may be among them), made without running
    ``__init__``, as Flax's ``Variable._new`` does (the pytree unflatten,
    ``from_flax``)."""
    obj = object.__new__(cls)
    _adopt(obj, store_value(value, type_id=cls._type_id, copy=copy))
    ptr = obj._ptr
    for name, entry in metadata.items():
        required = REQUIRED_METADATA.get(name, _NOT_REQUIRED)
        if required is _NOT_REQUIRED:
            _set_meta(ptr, name, entry)
        elif not _is_default(name, entry):  # a new variable has no entries to remove
            _set_required(ptr, name, entry)
    return obj


_NOT_REQUIRED = object()


def new_variable(cls: type, array: int | None) -> "Variable":
    """A new variable object of class ``cls`` over a new native variable
    holding the native array ``array`` (borrowed; the variable takes its own
    reference), with no metadata."""
    obj = object.__new__(cls)
    out = c_void_p()
    check(lib.nnx_variable_new(cls._type_id, array, byref(out)))
    _adopt(obj, out.value)
    return obj


def live_count() -> int:
    """How many variable objects are alive (for tests)."""
    return len(_live)


# --------------------------------------------------------------------------
# Metadata, natively
# --------------------------------------------------------------------------


def _meta_name(name) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"metadata names are str, got {type(name).__name__}")
    if "\0" in name:
        raise ValueError("a metadata name cannot contain NUL")
    return name.encode("utf-8")


# The JSON text of a form: compact, UTF-8 as is, and never NaN (the form
# tags floats JSON cannot write).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_BITS = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")


def _not_representable(name: str, value, why: str) -> TypeError:
    return TypeError(
        f"metadata {name!r}: {why}; nnx_state stores None, bool, int, float, str, and "
        f"lists, tuples and dicts (with str keys) of them, got {type(value).__name__}: {value!r}"
    )


def _int_value(name: str, value) -> int:
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"metadata {name!r}: {number} is outside the signed 64-bit range")
    return number


def _json_form(name: str, value, depth: int = 0, *, jax_form: bool = False):
    """The JSON form of a metadata value (what ``nnx_meta_from_json`` reads:
    tagged lists for tuples, lists, dicts and floats JSON cannot write), or
    TypeError / ValueError naming the entry ``name``. Subclasses (an
    ``IntEnum``, a ``namedtuple``, an ``OrderedDict``) are stored as their
    base kind, numpy scalars as Python ones; a jax ``Mesh``,
    ``AbstractMesh`` or ``PartitionSpec`` as the map ``_jax_meta`` makes of
    it (``jax_form``: ``value`` is such a map or a part of one)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return _int_value(name, value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isfinite(number):
            return number
        return ["float", f"0x{_BITS.unpack(_DOUBLE.pack(number))[0]:016x}"]
    if type(value) not in (list, tuple, dict):  # first: a PartitionSpec was once a tuple
        try:
            form = _jax_meta.encode(value)
        except TypeError as e:
            raise _not_representable(name, value, str(e)) from None
        if form is not None:
            return _json_form(name, form, depth, jax_form=True)
    if isinstance(value, (list, tuple, dict)):
        if depth >= L.NNX_MAX_DEPTH:
            raise ValueError(
                f"metadata {name!r} is nested deeper than {L.NNX_MAX_DEPTH} levels (NNX_MAX_DEPTH)"
            )
        if isinstance(value, dict):
            if not jax_form and next(iter(value), None) == _jax_meta.MARK:
                raise ValueError(
                    f"metadata {name!r}: a dict whose first key is {_jax_meta.MARK!r} stands for a jax "
                    "object (a Mesh, a PartitionSpec) and cannot be stored as it is"
                )
            out = ["map"]
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _not_representable(name, value, f"dict key {key!r} is not a str")
                out.append(key)
                out.append(_json_form(name, item, depth + 1, jax_form=jax_form))
            return out
        out = ["tuple" if isinstance(value, tuple) else "list"]
        out.extend(_json_form(name, item, depth + 1, jax_form=jax_form) for item in value)
        return out
    raise _not_representable(name, value, "not a metadata value")


def _from_json_form(form):
    """The Python value of a JSON form (the inverse of ``_json_form``)."""
    if not isinstance(form, list):
        return form
    tag = form[0]
    if tag == "tuple":
        return tuple(_from_json_form(item) for item in form[1:])
    if tag == "list":
        return [_from_json_form(item) for item in form[1:]]
    if tag == "map":
        items = iter(form[1:])
        out = {key: _from_json_form(item) for key, item in zip(items, items)}
        if next(iter(out), None) == _jax_meta.MARK:
            return _jax_meta.decode(out)
        return out
    if tag == "float":
        return _DOUBLE.unpack(_BITS.pack(int(form[1], 16)))[0]
    raise ValueError(f"unknown metadata JSON tag {tag!r}")  # pragma: no cover - the library writes the form


def _utf8(name: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"metadata {name!r}: a string is not valid Unicode ({e})") from e


def _meta_setter(name: str, value):
    """Checks a metadata entry and returns a function that stores it on a
    native variable (so that several entries can be checked before any is
    stored). Scalars go in with their typed setters; None, lists, tuples and
    dicts (and strings holding NUL) as their JSON form
    (``nnx_variable_set_metadata_json``); both are one call."""
    key = _meta_name(name)
    if isinstance(value, (bool, np.bool_)):
        fn, arg = lib.nnx_variable_set_metadata_bool, bool(value)
    elif isinstance(value, (int, np.integer)):
        fn, arg = lib.nnx_variable_set_metadata_int, _int_value(name, value)
    elif isinstance(value, (float, np.floating)):
        fn, arg = lib.nnx_variable_set_metadata_float, float(value)
    elif isinstance(value, str) and "\0" not in value:
        fn, arg = lib.nnx_variable_set_metadata_str, _utf8(name, value)
    else:
        fn = lib.nnx_variable_set_metadata_json
        text = _utf8(name, _JSON.encode(_json_form(name, value)))

        def store_structured(ptr: int) -> None:
            check(fn(ptr, key, text, len(text)), what=f"metadata {name!r}")

        return store_structured

    def store(ptr: int) -> None:
        check(fn(ptr, key, arg), what=f"metadata {name!r}")

    return store


def _set_meta(ptr: int, name: str, value) -> None:
    _meta_setter(name, value)(ptr)


def _json_text(ptr: int, key: bytes) -> str:
    text = c_void_p()
    check(lib.nnx_variable_get_metadata_json(ptr, key, byref(text)))
    return L.take_string(text.value)


def _get_structured(ptr: int, key: bytes):
    """Any entry, through its JSON form."""
    return _from_json_form(json.loads(_json_text(ptr, key)))


def _get_meta_kind(ptr: int, key: bytes, kind: int):
    if kind == L.NNX_META_STR:
        out = c_void_p()
        status = lib.nnx_variable_get_metadata_str(ptr, key, byref(out))
        if status == L.NNX_ERR_INVALID_ARGUMENT:  # holds NUL: not a C string
            return _get_structured(ptr, key)
        check(status)
        return L.take_string(out.value)
    if kind == L.NNX_META_INT:
        out = c_int64()
        check(lib.nnx_variable_get_metadata_int(ptr, key, byref(out)))
        return out.value
    if kind == L.NNX_META_FLOAT:
        out = c_double()
        check(lib.nnx_variable_get_metadata_float(ptr, key, byref(out)))
        return out.value
    if kind == L.NNX_META_BOOL:
        out = c_bool()
        check(lib.nnx_variable_get_metadata_bool(ptr, key, byref(out)))
        return out.value
    if kind == L.NNX_META_NULL:
        return None
    return _get_structured(ptr, key)


def _get_meta(ptr: int, name: str, default=MISSING):
    key = _meta_name(name)
    kind = c_uint32()
    status = lib.nnx_variable_metadata_kind(ptr, key, byref(kind))
    if status == L.NNX_ERR_KEY_NOT_FOUND and default is not MISSING:
        return default
    check(status, what=f"metadata {name!r}")
    return _get_meta_kind(ptr, key, kind.value)


def _meta_entries(ptr: int):
    """(name, kind) of every native entry, in order."""
    count = c_size_t()
    check(lib.nnx_variable_metadata_count(ptr, byref(count)))
    for i in range(count.value):
        name_ptr = c_void_p()
        kind = c_uint32()
        check(lib.nnx_variable_metadata_at(ptr, i, byref(name_ptr), byref(kind)))
        yield L.take_string(name_ptr.value), kind.value


def _meta_dict(ptr: int) -> dict:
    return {name: _get_meta_kind(ptr, name.encode("utf-8"), kind) for name, kind in _meta_entries(ptr)}


def _meta_forms(ptr: int) -> dict[str, str]:
    """Every native entry as its stored JSON form (jax objects stay data:
    what a pickle and a copy carry)."""
    return {name: _json_text(ptr, name.encode("utf-8")) for name, _ in _meta_entries(ptr)}


def _set_meta_forms(ptr: int, forms: dict[str, str]) -> None:
    for name, text in forms.items():
        data = text.encode("utf-8")
        check(lib.nnx_variable_set_metadata_json(ptr, _meta_name(name), data, len(data)), what=f"metadata {name!r}")


def _has_meta(ptr: int, name: str) -> bool:
    kind = c_uint32()
    status = lib.nnx_variable_metadata_kind(ptr, _meta_name(name), byref(kind))
    if status == L.NNX_ERR_KEY_NOT_FOUND:
        return False
    check(status)
    return True


def _del_meta(ptr: int, name: str) -> None:
    check(lib.nnx_variable_remove_metadata(ptr, _meta_name(name)), what=f"metadata {name!r}")


# hijax and ref: recorded when a variable is made (from Flax, by a pytree
# unflatten, or given to the constructor), never changed afterwards, as in
# Flax. They change nothing here: a native variable is already a shared,
# mutable cell. They let to_flax give back hijax and ref variables.
_FLAGS = ("hijax", "ref")


def _is_default(name: str, value) -> bool:
    """Whether a required entry has Flax's default (hijax and ref false,
    eager_sharding True): then it is not stored natively."""
    if name in _FLAGS:
        return bool(value) is False
    return value is True or value is np.True_


def _set_required(ptr: int, name: str, value) -> None:
    """Flax's required entries, stored natively only when they differ from
    Flax's defaults (see `_is_default`)."""
    if _is_default(name, value):
        if _has_meta(ptr, name):
            _del_meta(ptr, name)
    else:
        _set_meta(ptr, name, bool(value) if name in _FLAGS else value)


def _set_entry(ptr: int, name: str, value) -> None:
    """Sets one entry of a variable being made (any entry, the flags too)."""
    if name in REQUIRED_METADATA:
        _set_required(ptr, name, value)
    else:
        _set_meta(ptr, name, value)


def _remap_sharding(metadata: dict) -> dict:
    """Flax's deprecated names of ``out_sharding`` (``sharding_names``,
    ``sharding``) renamed, with Flax's DeprecationWarning."""
    for old in ("sharding", "sharding_names"):
        if old in metadata:
            warnings.warn(f"'{old}' is deprecated, use 'out_sharding' instead.", DeprecationWarning, stacklevel=3)
            metadata["out_sharding"] = metadata.pop(old)
    return metadata


# --------------------------------------------------------------------------
# repr helpers (Flax's style)
# --------------------------------------------------------------------------


def _bytes_repr(num_bytes: int) -> str:
    if num_bytes > 1e9:
        return f"{num_bytes / 1e9:,.1f} GB"
    if num_bytes > 1e6:
        return f"{num_bytes / 1e6:,.1f} MB"
    if num_bytes > 1e3:
        return f"{num_bytes / 1e3:,.1f} KB"
    return f"{num_bytes:,} B"


def indent_lines(text: str, indent: str) -> str:
    return text.replace("\n", "\n" + indent)


def _size_bytes(value) -> tuple[int, int]:
    """(elements, bytes) of a value with a shape and a dtype (an array, a
    typed key, a ``ShapeDtypeStruct``), as Flax counts them; (0, 0) else."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return 0, 0
    try:
        size = int(np.prod(shape, dtype=np.int64))
        return size, size * dtype.itemsize
    except (TypeError, AttributeError, ValueError):
        return 0, 0


def variable_repr(var: "Variable", indent: str = "") -> str:
    try:
        value = var.get_value()
        text = repr(value)
    except TypeError as e:  # a typed key where jax cannot be imported
        value, text = None, f"<{e}>"
    size, nbytes = _size_bytes(value)
    comment = f" # {size:,} ({_bytes_repr(nbytes)})" if size else ""
    inner = indent + "  "
    lines = [f"value={indent_lines(text, inner)}"]
    for name, meta in _meta_dict(var._ptr).items():
        lines.append(f"{name}={indent_lines(repr(meta), inner)}")
    body = ",\n".join(inner + line for line in lines)
    return f"{type(var).__name__}({comment}\n{body}\n{indent})"


# --------------------------------------------------------------------------
# The classes
# --------------------------------------------------------------------------


def _is_jax_array(value) -> bool:
    """``isinstance(value, jax.Array)`` (tracers and keys included), without
    importing jax."""
    return A.jax_kind(value) != A.NOT_JAX


def _binary(name: str):
    def method(self, other):
        value = self.get_value()
        if isinstance(other, Variable):
            other = other.get_value()
        return getattr(value, name)(other)

    method.__name__ = name
    return method


def _unary(name: str):
    def method(self):
        return getattr(self.get_value(), name)()

    method.__name__ = name
    return method


def _no_inplace(name: str, hint: str):
    def method(self, other):
        raise NotImplementedError(
            "In-place operations are no longer supported for Variable.\n"
            f"Use `variable[...] {hint} x` instead."
        )

    method.__name__ = name
    return method


class Variable(metaclass=VariableMeta):
    """The base of all variable types: a native variable with a value and
    metadata.

    ``Variable(value, **metadata)``. The value comes back as what it was,
    as in Flax: a C-contiguous writable numpy array is shared with the
    library, not copied, as Flax keeps the very array it is given; a jax
    array or typed key comes back as itself (its CPU buffer held through
    DLPack); any other object (a tracer, a ``ShapeDtypeStruct``, a Python
    scalar, None) is held as it is.
    """

    # `_seen`, `_seen_metadata`: (change count, what was read), see
    # `_changes`.
    __slots__ = ("_ptr", "_seen", "_seen_metadata", "__weakref__")
    _type_id = 0  # NNX_TYPE_VARIABLE

    def __init_subclass__(cls, *, type_name: str | None = None, **kwargs):
        """Gives the new class a native type of its own: ``type_name`` when
        given (taken by another class: ``ValueError``), else its
        ``__name__``, qualified where that is taken (see ``_claim_type``)."""
        super().__init_subclass__(**kwargs)
        with _type_lock:
            if "_type_id" in cls.__dict__:  # made for a native type id
                tid = cls.__dict__["_type_id"]
            else:
                parent = _variable_parent(cls)
                tid = _claim_type(cls.__name__, cls.__module__, cls.__qualname__, parent._type_id, type_name)
                cls._type_id = tid
            _classes[tid] = cls
        for hook in class_hooks:
            hook(cls)

    def __init__(
        self,
        value=None,
        *,
        hijax: bool | None = None,
        ref: bool | None = None,
        eager_sharding: bool | None = None,
        **metadata,
    ):
        if getattr(self, "_ptr", None) is not None:
            raise RuntimeError("this variable is already initialised")
        # Every entry checked before anything is made.
        setters = [_meta_setter(name, entry) for name, entry in _remap_sharding(metadata).items()]
        _adopt(self, store_value(value, type_id=type(self)._type_id))
        for store in setters:
            store(self._ptr)
        if hijax is None:
            hijax = _HIJAX.get()
        if ref is None:
            ref = _REF.get()
        if eager_sharding is None:
            eager_sharding = _EAGER.get()
        for name, flag in (("hijax", hijax), ("ref", ref), ("eager_sharding", eager_sharding)):
            _set_required(self._ptr, name, flag)

    # -- construction helpers ------------------------------------------------

    @classmethod
    def from_metadata(cls, value, attributes: dict):
        return cls(value, **dict(attributes))

    def copy(self, value=MISSING, **updates):
        """A new variable of the same type, with the same (shared) value unless
        ``value`` is given, and this one's metadata updated with ``updates``."""
        if value is MISSING and "value" in updates:
            value = updates.pop("value")
        obj = object.__new__(type(self))
        out = c_void_p()
        check(lib.nnx_variable_copy(self._ptr, byref(out)))  # value shared, metadata copied
        _adopt(obj, out.value)
        if value is not MISSING:
            store_value(value, ptr=obj._ptr)
        for name, entry in updates.items():
            _set_entry(obj._ptr, name, entry)
        return obj

    replace = copy
    to_state = copy

    def copy_from(self, other: "Variable") -> None:
        """Takes ``other``'s value (shared) and metadata."""
        if type(self)._type_id != type(other)._type_id:
            raise ValueError(
                f"Cannot copy from incompatible container, expected {type(self).__name__}, "
                f"got {type(other).__name__}"
            )
        if self is other:
            return
        self.update_from_state(other)

    def update_from_state(self, variable_state: "Variable") -> None:
        """Takes ``variable_state``'s value (shared) and metadata, keeping its
        own hijax and ref flags."""
        _values.put(_values.read(variable_state._ptr), ptr=self._ptr)
        if _meta_dict(self._ptr) != _meta_dict(variable_state._ptr):
            metadata = variable_state.get_metadata()
            for key in _FLAGS:
                metadata[key] = getattr(self, key)
            self._replace_metadata(metadata)

    def _replace_metadata(self, metadata: dict) -> None:
        """All metadata becomes ``metadata`` (checked before anything
        changes; the required entries as in ``_set_required``)."""
        setters = {
            name: _meta_setter(name, entry) for name, entry in metadata.items() if name not in REQUIRED_METADATA
        }
        for name, _ in list(_meta_entries(self._ptr)):
            _del_meta(self._ptr, name)
        for name, entry in metadata.items():
            if name in REQUIRED_METADATA:
                _set_required(self._ptr, name, entry)
            else:
                setters[name](self._ptr)

    # -- identity and type -----------------------------------------------------

    @property
    def type(self) -> type:
        return type(self)

    @property
    def var_type(self) -> type:
        return type(self)

    @property
    def type_name(self) -> str:
        """The native type name (``"Param"``, ...)."""
        return type_name(type(self)._type_id)

    @property
    def hijax(self) -> bool:
        """Whether the variable stands for a Flax hijax variable (recorded;
        nothing changes here)."""
        return _get_meta(self._ptr, "hijax", False)

    @property
    def ref(self) -> bool:
        """Whether the variable stands for a Flax variable over a ``jax.Ref``
        (recorded; nothing changes here)."""
        return _get_meta(self._ptr, "ref", False)

    @property
    def sharding_names(self):
        """Flax's deprecated name of the ``out_sharding`` entry."""
        warnings.warn("'sharding_names' is deprecated, use 'out_sharding' instead.", DeprecationWarning, stacklevel=2)
        return self.get_metadata("out_sharding", None)

    # -- value -----------------------------------------------------------------

    def get_value(self, *, index=MISSING):
        """The value, as it was given: a numpy array over the native buffer
        (no copy), the jax array or typed key itself, the object held
        (a tracer, a ``ShapeDtypeStruct``, a Python scalar...), or None.
        With ``index``, ``value[index]`` (a jax array's ``[...]`` is the
        array itself, as in Flax)."""
        count = _changes.value  # before reading: a change meanwhile is seen next time
        try:
            seen = _seen_of(self)  # the slot itself: never __getattr__
        except AttributeError:
            seen = None
        if seen is not None and seen[0] == count:
            value = seen[1]
        else:
            value = _values.load(self._ptr)
            _set_seen(self, (count, value))
        if index is MISSING or (index is Ellipsis and _is_jax_array(value)):
            return value
        return value[index]

    def set_value(self, value, *, index=MISSING) -> None:
        """Without ``index``: replaces the value (every state holding this
        variable sees the new one). With ``index``, as Flax: a numpy value
        takes ``value`` at ``index`` in place (a read-only one is copied
        first); a jax value is replaced by ``value`` itself when ``index``
        is ``...`` and ``value`` is a jax array of the same shape, dtype
        and sharding, else by ``current.at[index].set(value)``; any other
        value is written with ``current[index] = value``."""
        if index is MISSING:
            _set_seen(self, None)  # let go of the old value now
            store_value(value, ptr=self._ptr)
            return
        current = self.get_value()
        if current is None:
            if index is Ellipsis:
                self.set_value(value)
                return
            raise TypeError("this variable has no value to index")
        if isinstance(current, np.ndarray):
            if current.flags.writeable:
                current[index] = value
            else:
                fresh = np.array(current)
                fresh[index] = value
                self.set_value(fresh)
        elif _is_jax_array(current):
            if (
                index is Ellipsis
                and _is_jax_array(value)
                and value.shape == current.shape
                and value.dtype == current.dtype
                and getattr(value, "sharding", None) == getattr(current, "sharding", None)
            ):
                self.set_value(value)
            else:
                self.set_value(current.at[index].set(value))
        else:
            current[index] = value  # in place, on the object held

    def get_raw_value(self):
        return self.get_value()

    def set_raw_value(self, value, **_):
        self.set_value(value)

    @property
    def value(self):
        return self.get_value()

    @value.setter
    def value(self, value):
        self.set_value(value)

    @property
    def raw_value(self):
        return self.get_value()

    @raw_value.setter
    def raw_value(self, value):
        self.set_value(value)

    def create_value(self, value):
        return value

    @property
    def shape(self):
        return self.get_value().shape

    @property
    def dtype(self):
        return self.get_value().dtype

    # -- metadata --------------------------------------------------------------

    @property
    def tag(self) -> str | None:
        """The ``tag`` metadata (what ``WithTag`` and ``str`` filters read), or
        None."""
        out = c_void_p()
        check(lib.nnx_variable_tag(self._ptr, byref(out)))
        return L.take_string(out.value)

    @property
    def eager_sharding(self) -> bool:
        return self.get_metadata("eager_sharding")

    def get_metadata(self, name: str | None = None, default=MISSING, *, exclude_required: bool | None = None):
        """All metadata as a dict, or the entry ``name`` (``default`` when it is
        missing; without a default, a missing entry raises ``KeyError``).
        Flax's required entries (``hijax``, ``ref``, ``eager_sharding``) are
        included unless ``exclude_required``."""
        if name is not None and exclude_required is not None:
            raise TypeError("Cannot specify both 'name' and 'exclude_required' arguments.")
        if name is None:
            if default is not MISSING:
                raise TypeError(
                    f"Cannot provide a default value when 'name' is not provided. Got default={default}"
                )
            metadata = _meta_dict(self._ptr)
            # The required entries last, in the order Flax's constructor
            # adds them.
            required = {key: metadata.pop(key, entry) for key, entry in REQUIRED_METADATA.items()}
            if not exclude_required:
                metadata.update(required)
            return metadata
        if name in REQUIRED_METADATA:
            return _get_meta(self._ptr, name, REQUIRED_METADATA[name])
        return _get_meta(self._ptr, name, default)

    def _pytree_parts(self) -> tuple:
        """``((value,), metadata items)``: the pytree children and aux data,
        kept with the metadata while no variable changes (unless a subclass
        reads its value its own way)."""
        count = _changes.value
        try:
            seen = _seen_metadata_of(self)
        except AttributeError:
            seen = None
        if seen is not None and seen[0] == count and len(seen) == 3:
            return seen[2]
        parts = ((self.get_value(),), self._metadata_items())
        if type(self).get_value is Variable.get_value:
            _set_seen_metadata(self, (count, parts[1], parts))
        return parts

    def _metadata_items(self) -> tuple:
        """``get_metadata()``'s entries sorted by name, as a tuple (the aux
        data of the pytree), kept while no variable changes."""
        count = _changes.value
        try:
            seen = _seen_metadata_of(self)
        except AttributeError:
            seen = None
        if seen is not None and seen[0] == count:
            return seen[1]
        items = tuple(sorted(self.get_metadata().items()))
        _set_seen_metadata(self, (count, items))
        return items

    def set_metadata(self, *args, **kwargs) -> None:
        """``set_metadata(dict)`` replaces all metadata; ``set_metadata(name,
        value)`` sets one entry; ``set_metadata(**entries)`` updates."""
        if args and kwargs:
            raise TypeError("Cannot mix positional and keyword arguments in set_metadata")
        if len(args) == 1:
            metadata = _remap_sharding(dict(args[0]))
            for key in REQUIRED_METADATA:  # missing: as they are; given: unchanged
                current = getattr(self, key)
                if metadata.setdefault(key, current) != current:
                    raise ValueError(f"Cannot change `{key}` metadata, expected {current}, got {metadata[key]}")
            self._replace_metadata(metadata)
        elif len(args) == 2:
            self._set_entries(_remap_sharding({args[0]: args[1]}))
        elif kwargs:
            self._set_entries(_remap_sharding(kwargs))
        else:
            raise TypeError(
                "set_metadata takes either 1 or 2 arguments, or at least 1 keyword argument, "
                f"got args={args}, kwargs={kwargs}"
            )

    def _set_entries(self, entries: dict) -> None:
        for key in _FLAGS:
            if key in entries and bool(entries[key]) != getattr(self, key):
                raise ValueError(f"Cannot change `{key}` metadata, expected {getattr(self, key)}, got {entries[key]}")
        for name, entry in entries.items():
            if name not in _FLAGS:
                _set_entry(self._ptr, name, entry)

    def has_metadata(self, name: str) -> bool:
        return name in REQUIRED_METADATA or _has_meta(self._ptr, name)

    def del_metadata(self, name: str) -> None:
        if name in ("hijax", "ref"):
            raise ValueError(f"Cannot delete `{name}` metadata")
        _del_meta(self._ptr, name)

    # -- attribute proxying ----------------------------------------------------

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "_ptr":
            raise AttributeError(name)
        ptr = object.__getattribute__(self, "_ptr")
        if "\0" in name:
            raise AttributeError(name)
        key = _meta_name(name)
        kind = c_uint32()
        if lib.nnx_variable_metadata_kind(ptr, key, byref(kind)) == L.NNX_OK:
            return _get_meta_kind(ptr, key, kind.value)
        if name in REQUIRED_METADATA:
            return REQUIRED_METADATA[name]
        value = self.get_value()
        try:
            return getattr(value, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute or metadata {name!r}"
            ) from None

    def __setattr__(self, name: str, value) -> None:
        try:
            object.__setattr__(self, name, value)
        except AttributeError as e:
            raise AttributeError(
                f"Cannot set attribute {name}. To set Variable metadata use either:\n\n"
                f"  variable.set_metadata({name}=value)\n\nor\n\n"
                f"  variable.set_metadata('{name}', value)"
            ) from e

    def __delattr__(self, name: str) -> None:
        try:
            object.__delattr__(self, name)
        except AttributeError as e:
            raise AttributeError(
                f"Cannot delete attribute {name}. To delete Variable metadata use:\n\n"
                f"  variable.del_metadata('{name}')"
            ) from e

    # -- protocols -------------------------------------------------------------

    def __repr__(self) -> str:
        return variable_repr(self)

    def __getitem__(self, key):
        return self.get_value(index=key)

    def __setitem__(self, key, value) -> None:
        self.set_value(value, index=key)

    def __delitem__(self, key) -> None:
        value = self.get_value()
        del value[key]

    def __call__(self, *args, **kwargs):
        return self.get_value()(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.get_value())

    def __iter__(self):
        return iter(self.get_value())

    def __contains__(self, item) -> bool:
        return item in self.get_value()

    def __array__(self, dtype=None, copy=None):
        value = self.get_value()
        if copy:
            return np.array(value, dtype=dtype, copy=True)
        return np.asarray(value, dtype=dtype)

    def __jax_array__(self):
        return self.get_value()

    def __eq__(self, other):
        if isinstance(other, Variable):
            other = other.get_value()
        return self.get_value().__eq__(other)

    __hash__ = None  # as in Flax: == is elementwise

    __ne__ = _binary("__ne__")
    __lt__ = _binary("__lt__")
    __le__ = _binary("__le__")
    __gt__ = _binary("__gt__")
    __ge__ = _binary("__ge__")

    __add__ = _binary("__add__")
    __sub__ = _binary("__sub__")
    __mul__ = _binary("__mul__")
    __matmul__ = _binary("__matmul__")
    __truediv__ = _binary("__truediv__")
    __floordiv__ = _binary("__floordiv__")
    __mod__ = _binary("__mod__")
    __divmod__ = _binary("__divmod__")
    __pow__ = _binary("__pow__")
    __lshift__ = _binary("__lshift__")
    __rshift__ = _binary("__rshift__")
    __and__ = _binary("__and__")
    __xor__ = _binary("__xor__")
    __or__ = _binary("__or__")
    __radd__ = _binary("__radd__")
    __rsub__ = _binary("__rsub__")
    __rmul__ = _binary("__rmul__")
    __rmatmul__ = _binary("__rmatmul__")
    __rtruediv__ = _binary("__rtruediv__")
    __rfloordiv__ = _binary("__rfloordiv__")
    __rmod__ = _binary("__rmod__")
    __rdivmod__ = _binary("__rdivmod__")
    __rpow__ = _binary("__rpow__")
    __rlshift__ = _binary("__rlshift__")
    __rrshift__ = _binary("__rrshift__")
    __rand__ = _binary("__rand__")
    __rxor__ = _binary("__rxor__")
    __ror__ = _binary("__ror__")

    __iadd__ = _no_inplace("__iadd__", "+=")
    __isub__ = _no_inplace("__isub__", "-=")
    __imul__ = _no_inplace("__imul__", "*=")
    __imatmul__ = _no_inplace("__imatmul__", "@=")
    __itruediv__ = _no_inplace("__itruediv__", "/=")
    __ifloordiv__ = _no_inplace("__ifloordiv__", "//=")
    __imod__ = _no_inplace("__imod__", "%=")
    __ipow__ = _no_inplace("__ipow__", "**=")
    __ilshift__ = _no_inplace("__ilshift__", "<<=")
    __irshift__ = _no_inplace("__irshift__", ">>=")
    __iand__ = _no_inplace("__iand__", "&=")
    __ixor__ = _no_inplace("__ixor__", "^=")
    __ior__ = _no_inplace("__ior__", "|=")

    __neg__ = _unary("__neg__")
    __pos__ = _unary("__pos__")
    __abs__ = _unary("__abs__")
    __invert__ = _unary("__invert__")
    __complex__ = _unary("__complex__")
    __int__ = _unary("__int__")
    __float__ = _unary("__float__")
    __index__ = _unary("__index__")
    __trunc__ = _unary("__trunc__")
    __floor__ = _unary("__floor__")
    __ceil__ = _unary("__ceil__")

    def __round__(self, ndigits: int = 0):
        return self.get_value().__round__(ndigits)

    # -- copying and pickling --------------------------------------------------

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        # As copy.deepcopy of a Flax variable: the value deep-copied as
        # Python copies it (a numpy array into new memory, a jax array or
        # key into a new buffer, any other object by its own rules).
        value = self.get_value()
        if isinstance(value, np.ndarray):
            value = np.array(value, copy=True)
        else:
            value = _copy.deepcopy(value, memo)
        return self.copy(value)

    def __reduce__(self):
        # The value is pickled as what it is (a numpy array by its bytes, a
        # jax array or key by jax's pickling, any other object by its own;
        # a tracer or a foreign opaque value refuses), as Flax pickles its
        # variables' values.
        value = self.get_value()
        if isinstance(value, np.ndarray):
            value = np.array(value, copy=True)
        return (_unpickle_variable, (type_chain(type(self)), value, {}, _meta_forms(self._ptr)))


def type_chain(cls: type) -> tuple[str, ...]:
    """The native names of a variable class's line of types below
    ``Variable``, outermost first (``('RngState', 'RngKey')``): what a
    pickle or a checkpoint records to register the type again."""
    chain = []
    tid: int | None = cls._type_id
    while tid is not None and tid != Variable._type_id:
        chain.append(type_name(tid))
        tid = type_parent(tid)
    return tuple(reversed(chain))


def _unpickle_variable(chain, value, metadata, forms=None):
    """A pickled variable again: its metadata as stored JSON forms (``forms``),
    or, from pickles of before, as Python values (``metadata``)."""
    tid = Variable._type_id
    for name in chain:
        tid = register_type(name, tid)
    cls = class_for_type(tid)
    obj = object.__new__(cls)
    _adopt(obj, store_value(value, type_id=tid))
    for name, entry in metadata.items():
        _set_meta(obj._ptr, name, entry)
    _set_meta_forms(obj._ptr, forms or {})
    return obj


_classes[Variable._type_id] = Variable


# Writes the `_ptr` slot directly (what `_adopt` does through
# `object.__setattr__`), for the bulk path of `wrap_variables`.
_set_ptr = Variable.__dict__["_ptr"].__set__
_seen_of = Variable.__dict__["_seen"].__get__
_set_seen = Variable.__dict__["_seen"].__set__
_seen_metadata_of = Variable.__dict__["_seen_metadata"].__get__
_set_seen_metadata = Variable.__dict__["_seen_metadata"].__set__


class Param(Variable):
    """The canonical learnable parameter."""


class BatchStat(Variable):
    """Batch statistics (mean and variance) of a normalisation layer."""


class Cache(Variable):
    """Cached values, such as an attention key/value cache."""


class Intermediate(Variable):
    """Intermediate values a model sows."""


class Perturbation(Intermediate):
    """Perturbations of intermediate values."""


class RngState(Variable):
    """The state of a random number stream."""


class RngKey(RngState):
    """A random key."""


class RngCount(RngState):
    """A random stream's counter."""


class OptState(Variable):
    """Optimiser state."""


class OptArray(OptState):
    """An array of optimiser state."""


class OptVariable(OptState):
    """A variable of optimiser state."""


# The built-in types have fixed ids in the C API (NNX_TYPE_*).
_BUILTIN_IDS = {
    Variable: 0, Param: 1, BatchStat: 2, Cache: 3, Intermediate: 4, Perturbation: 5,
    RngState: 6, RngKey: 7, RngCount: 8, OptState: 9, OptArray: 10, OptVariable: 11,
}
for _cls, _tid in _BUILTIN_IDS.items():
    if _cls._type_id != _tid or lookup_type(_cls.__name__) != _tid:  # pragma: no cover
        raise ImportError(f"libnnx_state disagrees about the id of {_cls.__name__}")

"""Live variable objects: the one Python object for each native variable
while it lives (``state['a'] is state['a']``), made in bulk for flat reads,
and where a Python value becomes a variable's native value."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from ctypes import byref, c_uint32, c_uint64, c_void_p
from itertools import repeat

from . import _lib as L
from . import _values
from ._lib import check, lib
from ._var_metadata import REQUIRED_METADATA, _is_default, _set_meta, _set_required
from ._var_types import _classes, class_for_type


class NativeHandle:
    """The part of a variable object that holds its native variable: the
    pointer (one reference, given back when the object goes), the weak
    reference ``_live`` keeps, and what the object kept of its last reads
    (``_seen``, ``_seen_metadata``: see ``_var_reads``). ``Variable``
    derives from it.

    A variable the pytree unflatten makes has no native variable yet: it
    holds its value and metadata in ``_pending`` until something needs
    ``_ptr`` (see ``pending_variable``)."""

    __slots__ = ("_ptr", "__weakref__", "_seen", "_seen_metadata", "_pending")


# Writes the `_ptr` slot directly (what `_adopt` does through
# `object.__setattr__`), for the bulk path of `wrap_variables`.
_set_ptr = NativeHandle._ptr.__set__
# The slots read and written directly: a missing slot raises AttributeError
# here, without the fallback to `Variable.__getattr__`.
_ptr_slot = NativeHandle._ptr.__get__
pending_of = NativeHandle._pending.__get__
_set_pending = NativeHandle._pending.__set__
_drop_pending = NativeHandle._pending.__delete__
# One native variable per pending object, whichever thread asks first; the
# lock is reentrant because storing a value can run Python code that reads
# other variables.
pending_lock = threading.RLock()


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
    ``__init__``, as Flax's ``Variable._new`` does (``from_flax``, and the
    pytree unflatten for values that ``pending_variable`` cannot hold)."""
    obj = object.__new__(cls)
    _adopt(obj, _new_native(cls, value, metadata.items(), copy))
    return obj


def _new_native(cls: type, value, metadata, copy: bool | None = None) -> int:
    """An owned handle to a new native variable of ``cls``'s type holding
    ``value`` and the ``(name, entry)`` pairs of ``metadata``."""
    ptr = store_value(value, type_id=cls._type_id, copy=copy)
    try:
        for name, entry in metadata:
            required = REQUIRED_METADATA.get(name, _NOT_REQUIRED)
            if required is _NOT_REQUIRED:
                _set_meta(ptr, name, entry)
            elif not _is_default(name, entry):  # a new variable has no entries to remove
                _set_required(ptr, name, entry)
    except BaseException:
        lib.nnx_variable_release(ptr)
        raise
    return ptr


def pending_variable(cls: type, value, metadata: tuple) -> "Variable":
    """A variable object of class ``cls`` for ``value`` and ``metadata`` (its
    ``get_metadata()`` entries sorted by name: the pytree aux data) with no
    native variable yet: what the pytree unflatten gives, so that a
    ``jax.tree.map`` whose result jax flattens again, or drops, makes
    nothing native. ``get_value()`` and the pytree flatten answer from
    what it holds; anything else that needs the native variable makes it
    first (``materialize``), as ``rebuild_variable`` would have.

    Only for values that the library gives back as themselves (a jax array
    or typed key, an object held opaquely, None): a numpy value would come
    back as a view of its native copy, so it is stored at once instead."""
    obj = object.__new__(cls)
    _set_pending(obj, (value, metadata))
    return obj


def materialize(obj: "Variable") -> int:
    """``obj``'s native variable (borrowed), made now if ``obj`` is pending;
    AttributeError if it has none and is not pending."""
    with pending_lock:
        try:
            return _ptr_slot(obj)  # made meanwhile by another thread
        except AttributeError:
            pass
        try:
            value, metadata = pending_of(obj)
        except AttributeError:
            raise AttributeError("_ptr") from None
        ptr = _new_native(type(obj), value, metadata)
        _adopt(obj, ptr)
        _drop_pending(obj)
        return ptr


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

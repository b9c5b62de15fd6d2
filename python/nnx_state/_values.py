"""What a variable holds: Python values to native values and back (private).

The one conversion point between a Python value and a variable's native
value (``nnx_variable_value_kind``). What goes in comes back as what it was:

============================================  ==========================  =============================
Python value                                  native value                comes back as
============================================  ==========================  =============================
numpy array (a numpy scalar: a 0-d array)     array (lent or copied)      a numpy array over the buffer
jax array on one CPU device                   array over jax's buffer     that jax array
typed PRNG key on one CPU device              typed key (data, impl)      that key
``None``                                      no value                    ``None``
anything else: jax arrays sharded or on a     opaque: the ``PyObject *``  that very object
device, tracers, ``ShapeDtypeStruct``,        with a reference, type
``PartitionSpec``, Python scalars, lists...   name ``python:<type>``
============================================  ==========================  =============================

Opaque values are held with a real reference (``Py_IncRef``); the release
callback gives it back (``Py_DecRef``) when the library drops the last
holder, on whichever thread that is (ctypes takes the GIL for it). The
library hands out an opaque value's pointer borrowed, valid only while the
variable still holds it, so replacing a value and reading an opaque pointer
(with the new reference taken) happen under one lock. Opaque values that
other code put in a variable (a type name not starting with ``python:``)
come back as :class:`ForeignValue`, a description that never touches the
pointer.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import typing as tp
from ctypes import byref, c_void_p, py_object

import numpy as np

from . import _arrays as A
from . import _lib as L
from ._lib import check, lib

NONE = L.NNX_VALUE_NONE
ARRAY = L.NNX_VALUE_ARRAY
KEY = L.NNX_VALUE_KEY
OPAQUE = L.NNX_VALUE_OPAQUE

PREFIX = b"python:"

# Replacing a variable's value, and reading an opaque value's borrowed
# pointer until a reference of our own is taken. Reentrant: dropping an old
# value may run an object's __del__ on this thread, which may read values.
lock = threading.RLock()

_api = ctypes.pythonapi
_incref = _api.Py_IncRef
_incref.argtypes = [py_object]
_incref.restype = None
_decref = _api.Py_DecRef
_decref.argtypes = [c_void_p]
_decref.restype = None
try:  # a new reference to the object at an address (Python 3.10+)
    _new_ref = _api.Py_NewRef
    _new_ref.argtypes = [c_void_p]
    _new_ref.restype = py_object
except AttributeError:  # pragma: no cover - Python 3.9

    def _new_ref(address, _cast=ctypes.cast):
        return _cast(address, py_object).value


@L.release_fn
def _release_object(address):
    # The library let go of the last holder of an opaque value we made.
    # ctypes holds the GIL for the callback; Py_DecRef never raises.
    _decref(address)


class KeyData(tp.NamedTuple):
    """A typed PRNG key read where jax cannot be imported: its key data (a
    numpy ``uint32`` array over the native buffer, key shape last) and the
    name of its implementation (``'threefry2x32'``). Put into a variable it
    is a typed key again, so a state loaded and saved without jax keeps its
    keys."""

    data: np.ndarray
    impl: str


class ForeignValue:
    """An opaque value that other code (C, C++) put into a variable: its
    type name and address. The library holds it; Python only describes it.
    The state operations (filter, split, merge, flatten, ``deep_copy``)
    carry it as any value; it cannot be stored from Python, copied into
    another variable (``Variable.copy``) or pickled: Python has no
    reference of its own to give."""

    __slots__ = ("type_name", "address")

    def __init__(self, type_name: str, address: int):
        self.type_name = type_name
        self.address = address

    def __repr__(self) -> str:
        return f"ForeignValue({self.type_name!r}, {self.address:#x})"

    def __eq__(self, other):
        if not isinstance(other, ForeignValue):
            return NotImplemented
        return (self.type_name, self.address) == (other.type_name, other.address)

    def __hash__(self):
        return hash((self.type_name, self.address))

    def __reduce__(self):
        raise TypeError(f"an opaque value of another library ({self.type_name}) cannot be pickled")


# --------------------------------------------------------------------------
# Python -> native
# --------------------------------------------------------------------------

_tags: dict[type, bytes] = {}


def type_tag(cls: type) -> bytes:
    """The opaque type name for objects of ``cls``: ``python:module.QualName``."""
    tag = _tags.get(cls)
    if tag is None:
        name = f"python:{cls.__module__}.{cls.__qualname__}"
        tag = _tags[cls] = name.encode("utf-8", "backslashreplace").replace(b"\0", b"\\0")
    return tag


_impl_names: dict = {}  # key dtype -> implementation name (bytes)


def _key_native(key) -> tuple | None:
    """(KEY, data handle, impl name) for a typed key whose data can be held
    as a native array; None otherwise (it is then held opaquely)."""
    jax = sys.modules["jax"]
    impl = _impl_names.get(key.dtype)
    if impl is None:
        impl = _impl_names[key.dtype] = str(jax.random.key_impl(key)).encode("utf-8")
    data = getattr(key, "_base_array", None)  # jax.random.key_data, without its dispatch cost
    if data is None or A.jax_kind(data) != A.JAX_ARRAY:
        data = jax.random.key_data(key)
    handle = A.jax_to_native(data, stands_for=key)
    return None if handle is None else (KEY, handle, impl)


_NO_VALUE = (NONE, None)


def native_of(value, copy: bool | None = None) -> tuple:
    """The native value for ``value``: (NONE, None), (ARRAY, handle),
    (KEY, data handle, impl name) or (OPAQUE, object). Handles are owned:
    give them to :func:`put`."""
    if type(value) is np.ndarray:
        return (ARRAY, A.to_native(value, copy=copy))
    if value is None:
        return _NO_VALUE
    if isinstance(value, (np.ndarray, np.generic)):
        return (ARRAY, A.to_native(value, copy=copy))
    kind = A.jax_kind(value)
    if kind == A.JAX_ARRAY:
        handle = A.jax_to_native(value)
        if handle is not None:
            return (ARRAY, handle)
    elif kind == A.JAX_KEY:
        native = _key_native(value)
        if native is not None:
            return native
    elif isinstance(value, KeyData):
        return (KEY, A.to_native(np.asarray(value.data, dtype=np.uint32), copy=copy), value.impl.encode("utf-8"))
    elif isinstance(value, ForeignValue):
        raise TypeError(
            f"{value!r} belongs to another library and cannot be stored from Python; "
            "put the variable that holds it into states instead"
        )
    return (OPAQUE, value)


def comes_back_as_itself(value) -> bool:
    """Whether the library gives ``value`` back as this very object once
    stored (see ``store`` and ``load``): all but numpy values (read back as
    views of the native array) and the stand-ins for native values made in
    Python (``KeyData``, ``ForeignValue``)."""
    return not isinstance(value, (np.ndarray, np.generic, KeyData, ForeignValue))


def put(native: tuple, *, type_id: int | None = None, ptr: int | None = None) -> int | None:
    """Stores a native value (from :func:`native_of` or :func:`read`, whose
    handles it takes over): as the value of a new variable of type
    ``type_id`` (returns its owned handle), or as the new value of the
    variable ``ptr`` (returns None)."""
    kind = native[0]
    out = c_void_p()
    if kind == OPAQUE:
        obj = native[1]
        _incref(obj)  # the library's reference, given back by _release_object
        address = id(obj)
        if ptr is None:
            status = lib.nnx_variable_new_opaque(type_id, type_tag(type(obj)), address, _release_object, address, byref(out))
        else:
            with lock:
                status = lib.nnx_variable_set_opaque(ptr, type_tag(type(obj)), address, _release_object, address)
        if status:  # the library keeps nothing
            _decref(address)
            L.fail(status)
        return out.value
    handle = native[1]
    try:
        if kind == KEY:
            if ptr is None:
                check(lib.nnx_variable_new_key(type_id, handle, native[2], byref(out)))
                return out.value
            with lock:
                check(lib.nnx_variable_set_key(ptr, handle, native[2]))
            return None
        if ptr is None:
            check(lib.nnx_variable_new(type_id, handle, byref(out)))
            return out.value
        with lock:
            check(lib.nnx_variable_set_value(ptr, handle))
        return None
    finally:
        if handle:
            lib.nnx_array_release(handle)


def store(value, *, type_id: int | None = None, ptr: int | None = None, copy: bool | None = None) -> int | None:
    """``put(native_of(value, copy), ...)``."""
    return put(native_of(value, copy), type_id=type_id, ptr=ptr)


# --------------------------------------------------------------------------
# native -> Python
# --------------------------------------------------------------------------

_python_names: dict[int, bool] = {}  # interned type name address -> starts with python:


def _is_python(name: int) -> bool:
    ours = _python_names.get(name)
    if ours is None:
        ours = _python_names[name] = ctypes.string_at(name).startswith(PREFIX)
    return ours


_NOT_OPAQUE = object()


def _opaque(ptr: int, *, share: bool):
    """The opaque value of variable ``ptr`` as a Python object (a new
    reference), or ``_NOT_OPAQUE``. Call under ``lock``."""
    obj = c_void_p()
    name = c_void_p()
    status = lib.nnx_variable_get_opaque(ptr, byref(obj), byref(name))
    if status == L.NNX_ERR_WRONG_KIND:
        return _NOT_OPAQUE
    check(status)
    if obj.value and _is_python(name.value):
        return _new_ref(obj.value)
    type_name = ctypes.string_at(name.value).decode("utf-8", "replace")
    if share:
        raise TypeError(f"the opaque value {type_name} of another library cannot be shared from Python")
    return ForeignValue(type_name, obj.value or 0)


def _key_of(data: int, impl: bytes):
    """The typed key for key data ``data`` (an owned handle) and the name of
    its implementation: the key it was made from, else a new one."""
    origin = A.origins.get(data)
    if origin is not None and origin[1]:
        lib.nnx_array_release(data)
        return origin[0]
    name = impl.decode("utf-8")
    value = A.value_of(data)
    jax = sys.modules.get("jax")
    if jax is None:
        try:
            import jax
        except ImportError:
            return KeyData(value, name)
    return jax.random.wrap_key_data(value, impl=name)


def read(ptr: int, *, share: bool = True) -> tuple:
    """The native value of variable ``ptr``, as :func:`native_of` gives
    them, with owned handles: to :func:`put` into another variable (the
    value is shared: the same array, key data or object), or to make a
    Python value of (``share=False``: a foreign opaque value is then a
    :class:`ForeignValue` instead of an error)."""
    out = c_void_p()
    status = lib.nnx_variable_get_value(ptr, byref(out))
    if not status:
        return (ARRAY, out.value) if out.value else _NO_VALUE
    if status != L.NNX_ERR_WRONG_KIND:
        L.fail(status)
    with lock:
        value = _opaque(ptr, share=share)
    if value is not _NOT_OPAQUE:
        return (OPAQUE, value)
    data = c_void_p()
    name = c_void_p()
    status = lib.nnx_variable_get_key(ptr, byref(data), byref(name))
    if not status:
        return (KEY, data.value, ctypes.string_at(name.value))
    if status != L.NNX_ERR_WRONG_KIND:
        L.fail(status)
    return read(ptr, share=share)  # replaced by another thread meanwhile: read again


def load(ptr: int):
    """The Python value of variable ``ptr``: None, the jax array or typed key
    it was given, a numpy array over the native buffer, or the object it
    holds opaquely."""
    native = read(ptr, share=False)
    kind = native[0]
    if kind == ARRAY:
        return A.value_of(native[1])
    if kind == KEY:
        return _key_of(native[1], native[2])
    return native[1]

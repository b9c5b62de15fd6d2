"""A native variable's metadata entries, read and written from Python.

Entries are ``None``, ``bool``, ``int``, ``float``, ``str``, and lists,
tuples and dicts (str keys, in order) of them, nested; a jax ``Mesh``,
``AbstractMesh`` or ``PartitionSpec`` is kept as data (``_jax_meta``). Each
comes back as what went in. Flax's required entries (``hijax``, ``ref``,
``eager_sharding``) are stored only where they differ from their defaults.
Every function here takes a native variable's pointer; ``variablelib``
builds the ``Variable`` methods on them.
"""

from __future__ import annotations

import json
import math
import struct
import warnings
from ctypes import byref, c_bool, c_double, c_int64, c_size_t, c_uint32, c_void_p

import numpy as np

from . import _jax_meta
from . import _lib as L
from ._lib import check, lib


class _Missing:
    def __repr__(self):
        return "MISSING"


MISSING = _Missing()

# Flax's required metadata: every Flax variable has these entries. They are
# stored natively only where they differ from these values (hijax and ref
# when true, eager_sharding when not True).
REQUIRED_METADATA = {"hijax": False, "ref": False, "eager_sharding": True}


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

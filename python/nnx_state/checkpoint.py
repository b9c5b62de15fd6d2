"""Checkpoints and zero-copy exchange: safetensors files and DLPack.

safetensors::

    state = nnx.load_safetensors("model.safetensors")          # memory-mapped, zero-copy
    state = nnx.load_safetensors("ckpt/")                       # model.safetensors or its index
    nnx.save_safetensors(state, "out.safetensors")              # atomic
    nnx.save_safetensors(state, "ckpt/", max_shard_size="5GB")  # sharded, as huggingface_hub

A file written by anyone loads with dotted names split into paths and
decimal components as int keys (``encoder.layer.0.weight`` ->
``state['encoder']['layer'][0]['weight']``), each tensor a ``Param`` (or the
``variable_type`` given, or a bare array with ``variable_type=None``). A file
written here round-trips exactly: variable types, metadata, int and str keys.
Loading reads the header only; arrays are parts of a private memory map of
the file (writable: writes go to private pages, never to the file).

DLPack::

    np.from_dlpack(nnx.dlpack(var))       # any dtype, bfloat16 included
    jax.dlpack.from_dlpack(nnx.dlpack(var))
    nnx.Param(nnx.from_dlpack(torch_tensor))   # no copy into the state

``var.value`` is a numpy array over the native memory, so numpy's own
``__dlpack__`` already exports it without a copy where numpy supports the
dtype; :func:`dlpack` does it for every dtype and for arrays numpy cannot
show. :func:`from_dlpack` takes anything with ``__dlpack__`` (numpy, jax,
torch, cupy on the CPU) or a DLPack capsule, and gives a numpy view of a
native array over the producer's memory: put into a variable or a state, it
is that native array, not a copy.

Filters from text: :func:`parse_filter` (``"Param & ~path:0 | tag:dropout"``),
the syntax of the ``nnx-state`` tool.
"""

from __future__ import annotations

import os
import re
import typing as tp
from ctypes import POINTER, byref, c_char_p, c_int32, c_uint32, c_uint64, c_void_p

import numpy as np

from . import _arrays as A
from . import _dlpack as D
from . import _lib as L
from ._lib import check, lib
from .errors import NnxFormatError, NnxIOError
from .filterlib import _Native
from .statelib import State
from .variablelib import Param, Variable, VariableMeta

__all__ = [
    "load_safetensors", "save_safetensors", "parse_filter", "dlpack", "from_dlpack",
    "DLPackArray", "NnxFormatError", "NnxIOError",
]

# --------------------------------------------------------------------------
# Constants and declarations (include/nnx_state.h)
# --------------------------------------------------------------------------

NNX_LOAD_COPY = 1
NNX_LOAD_STR_KEYS = 2
NNX_TYPE_NONE = 0xFFFFFFFF

_S = c_int32
_H = c_void_p
_PH = POINTER(c_void_p)

L._decl("nnx_safetensors_load", _S, c_char_p, c_uint32, c_uint32, _PH)
L._decl("nnx_safetensors_save", _S, _H, c_char_p, c_uint32)
L._decl("nnx_safetensors_save_sharded", _S, _H, c_char_p, c_char_p, c_uint64, c_uint32)
L._decl("nnx_filter_parse", _S, c_char_p, _PH)


def _path_arg(path) -> bytes:
    return os.fsencode(os.fspath(path))


# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------


def _type_id(variable_type) -> int:
    if variable_type is None:
        return NNX_TYPE_NONE
    if isinstance(variable_type, VariableMeta):
        return variable_type._type_id
    raise TypeError(f"variable_type must be a Variable class or None, not {variable_type!r}")


def load_safetensors(path, *, variable_type: type | None = Param, copy: bool = False, int_keys: bool = True) -> State:
    """Loads a safetensors checkpoint: a ``.safetensors`` file, a sharded
    checkpoint's ``*.index.json``, or a directory holding ``model.safetensors``
    or ``model.safetensors.index.json``.

    The file is memory-mapped: only its header is read now, and every array
    is a part of the mapping (``copy=True`` reads the tensors into memory of
    the library instead, so the file may change afterwards).

    A file written by :func:`save_safetensors` loads as the state that was
    saved. Any other file loads with dotted names split into paths, decimal
    components as int keys (``int_keys=False`` keeps them strings), each
    tensor a variable of ``variable_type`` (default ``Param``), or a bare
    array when ``variable_type`` is None.

    Raises :class:`NnxFormatError` (a ``ValueError``) for a malformed file,
    :class:`NnxIOError` (an ``OSError``) when the file cannot be read.
    """
    flags = (NNX_LOAD_COPY if copy else 0) | (0 if int_keys else NNX_LOAD_STR_KEYS)
    out = c_void_p()
    check(lib.nnx_safetensors_load(_path_arg(path), _type_id(variable_type), flags, byref(out)), f"loading {os.fspath(path)!r}")
    return State._from_handle(out.value)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _size(value) -> int:
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        unit = match.group(2).upper() if match else None
        if unit not in _UNITS:
            raise ValueError(f"max_shard_size must be a number of bytes or like '5GB', not {value!r}")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise ValueError(f"max_shard_size must be at least 1 byte, got {value!r}")
    return size


def save_safetensors(state, path, *, max_shard_size: int | str | None = None, name: str = "model") -> None:
    """Saves a state (or a mapping, made into a state) as safetensors.

    Without ``max_shard_size``, ``path`` is the file: written atomically (a
    temporary file in the same directory, flushed, renamed over ``path``),
    so a failed or interrupted save leaves what was there intact. With it,
    ``path`` is a directory that receives a sharded checkpoint as
    huggingface_hub writes one (``model-00001-of-0000N.safetensors`` shards
    of at most ``max_shard_size`` bytes, an int or a string like ``"5GB"``,
    and ``model.safetensors.index.json``; a single ``model.safetensors``
    when everything fits in one shard); ``name`` replaces ``model``.

    Any safetensors reader reads the file; :func:`load_safetensors` gives
    back the same state. Raises ``ValueError`` for arrays not in CPU memory
    and :class:`NnxIOError` when writing fails.
    """
    if not isinstance(state, State):
        state = State(state)
    if max_shard_size is None:
        check(lib.nnx_safetensors_save(state._h, _path_arg(path), 0), f"saving {os.fspath(path)!r}")
    else:
        check(
            lib.nnx_safetensors_save_sharded(state._h, _path_arg(path), name.encode("utf-8"), _size(max_shard_size), 0),
            f"saving into {os.fspath(path)!r}",
        )


# --------------------------------------------------------------------------
# Filters from text
# --------------------------------------------------------------------------


class Parsed(_Native):
    """A filter written in the text syntax of the ``nnx-state`` tool (see
    :func:`parse_filter`). Parsed once when made, so errors show at once."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text
        lib.nnx_filter_free(self._build())

    def _build(self) -> int:
        out = c_void_p()
        check(lib.nnx_filter_parse(self.text.encode("utf-8"), byref(out)), f"filter {self.text!r}")
        return out.value

    def __call__(self, path, x) -> bool:
        # Evaluated by the library on a one-leaf state.
        one = State()
        sub = one
        for key in tuple(path)[:-1]:
            sub[key] = {}
            sub = sub[key]
        sub[tuple(path)[-1]] = x
        from .statelib import filter_state

        return len(filter_state(one, self).flat_state()) == 1

    def __repr__(self):
        return f"parse_filter({self.text!r})"

    def __eq__(self, other):
        return isinstance(other, Parsed) and other.text == self.text

    def __hash__(self):
        return hash(("Parsed", self.text))


def parse_filter(text: str) -> Parsed:
    """A filter from text: ``Param``, ``BatchStat``, any registered type name
    (or ``type:NAME``); ``tag:NAME``; ``path:KEY`` (an element equals KEY; a
    bare decimal KEY is an int key, ``path:"0"`` a str key); ``path~:TEXT``
    (an element contains TEXT); ``at:a/0/b`` (that path); ``...`` or ``*``
    (everything, last in a filter list); ``none``; ``~`` (not), ``&`` (and),
    ``|`` (or), parentheses. Raises ``ValueError`` naming the column of a
    syntax error, ``TypeError`` for an unknown type name.
    """
    return Parsed(text)


# --------------------------------------------------------------------------
# DLPack
# --------------------------------------------------------------------------


class DLPackArray:
    """A native array as a DLPack producer: ``__dlpack__`` and
    ``__dlpack_device__``, without copies. Holds one reference to the native
    array; each capsule holds its own."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self, value):
        if isinstance(value, Variable):
            value = value.get_value()
        if isinstance(value, DLPackArray):
            check(lib.nnx_array_retain(value._ptr))
            self._ptr = value._ptr
            return
        self._ptr = A.to_native(value, copy=False)

    def __del__(self, _release=lib.nnx_array_release, _shutting_down=L.shutting_down):
        ptr = getattr(self, "_ptr", None)
        if ptr and not _shutting_down():
            self._ptr = None
            try:
                _release(ptr)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __dlpack_device__(self) -> tuple[int, int]:
        return D.device_of(self._ptr)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        device = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError(f"this array lives on device {device}, not {tuple(dl_device)}")
        if stream is not None and stream != -1 and device[0] == 1:
            raise ValueError(f"stream must be None or -1 for CPU arrays, got {stream!r}")
        ptr = self._ptr
        copied = None
        if copy:
            copied = A.to_native(np.array(A.view_of(_retained(ptr)), copy=True), copy=True)
            ptr = copied
        try:
            out = c_void_p()
            if max_version is not None and tuple(max_version)[0] >= 1:
                check(lib.nnx_array_to_dlpack(ptr, byref(out)))
                if tuple(max_version) < (1, 1):
                    # Same layout; say the version the consumer asked for.
                    D.DLManagedTensorVersioned.from_address(out.value).minor = max_version[1]
                if copy:
                    D.DLManagedTensorVersioned.from_address(out.value).flags |= 2  # IS_COPIED
                name = D.VERSIONED
            else:
                check(lib.nnx_array_to_dlpack_legacy(ptr, byref(out)))
                name = D.LEGACY
        finally:
            if copied is not None:
                lib.nnx_array_release(copied)
        return D.new_capsule(out.value, name)

    @property
    def shape(self) -> tuple[int, ...]:
        return A.array_info(self._ptr)[1]

    @property
    def dtype(self):
        return A.dtype_of_code(A.array_info(self._ptr)[0])

    def __repr__(self):
        code, shape, _, _ = A.array_info(self._ptr)
        return f"DLPackArray(dtype code {code}, shape {shape}, device {self.__dlpack_device__()})"


def _retained(ptr: int) -> int:
    check(lib.nnx_array_retain(ptr))
    return ptr


def dlpack(value) -> DLPackArray:
    """A DLPack producer for a variable's value, a native array view, or
    anything numpy takes (lent to the library without a copy where its
    layout allows): ``np.from_dlpack(nnx.dlpack(var))``,
    ``jax.dlpack.from_dlpack(nnx.dlpack(var))``, ``torch.from_dlpack(...)``."""
    return DLPackArray(value)


def from_dlpack(obj) -> np.ndarray:
    """Imports a DLPack tensor without copying: ``obj`` has ``__dlpack__``
    (numpy, jax, torch, ...) or is a DLPack capsule. Returns a numpy array
    over a native array that holds the producer's memory (read-only when the
    producer says so); put into a variable or a state, that native array is
    used as it is. Only CPU tensors: others raise ``BufferError``. Raises
    :class:`NnxFormatError` for a tensor the library cannot hold (a dtype it
    has no arrays for, strides that are not C order)."""
    if D.is_capsule(obj):
        capsule = obj
    else:
        device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
        if tuple(device)[0] != 1:
            raise BufferError(f"from_dlpack takes CPU tensors, this one is on device {tuple(device)}")
        try:
            capsule = obj.__dlpack__(max_version=(1, 1))
        except TypeError:  # a producer that predates the max_version keyword
            capsule = obj.__dlpack__()
    ptr = D.take_capsule(capsule)
    try:
        device = D.device_of(ptr)
    except BaseException:
        lib.nnx_array_release(ptr)
        raise
    if device[0] != D.KDL_CPU:
        lib.nnx_array_release(ptr)
        raise BufferError(f"from_dlpack takes CPU tensors, this one is on device {device}")
    return A.view_of(ptr)

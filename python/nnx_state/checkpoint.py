"""Checkpoints and zero-copy exchange: safetensors files and DLPack.

safetensors::

    state = nnx.load_safetensors("model.safetensors")          # memory-mapped, zero-copy
    state = nnx.load_safetensors("ckpt/")                       # model.safetensors or its index
    nnx.save_safetensors(state, "out.safetensors")              # atomic
    nnx.save_safetensors(state, "ckpt/", max_shard_size="5GB")  # sharded, as huggingface_hub
    nnx.safetensors_metadata(state)                             # the file's {"format": "pt"}

A file written by anyone loads with dotted names split into paths and
decimal components as int keys (``encoder.layer.0.weight`` ->
``state['encoder']['layer'][0]['weight']``), each tensor a ``Param`` (or the
``variable_type`` given, or a bare array with ``variable_type=None``). A file
written here round-trips exactly: variable types, metadata, int and str keys.
Loading reads the header only; arrays are parts of a private memory map of
the file (writable: writes go to private pages, never to the file).

A loaded state carries the file's own ``__metadata__`` (a Hugging Face
file's ``{"format": "pt"}``): :func:`safetensors_metadata` reads it,
:func:`set_safetensors_metadata` replaces it, and :func:`save_safetensors`
writes it back unless given ``metadata=``.

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
from ctypes import byref, c_size_t, c_void_p

from . import _lib as L
from ._lib import check, lib
from .errors import NnxFormatError, NnxIOError
from .statelib import State
from .variablelib import Param, VariableMeta

__all__ = [
    "load_safetensors", "save_safetensors", "safetensors_metadata", "set_safetensors_metadata",
    "parse_filter", "Parsed", "dlpack", "from_dlpack",
    "DLPackArray", "NnxFormatError", "NnxIOError",
]

def _path_arg(path) -> bytes:
    return os.fsencode(os.fspath(path))


# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------


def _type_id(variable_type) -> int:
    if variable_type is None:
        return L.NNX_TYPE_NONE
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
    saved. The state carries the file's own ``__metadata__`` entries
    (:func:`safetensors_metadata`), which :func:`save_safetensors` writes
    back. Any other file loads with dotted names split into paths, decimal
    components as int keys (``int_keys=False`` keeps them strings), each
    tensor a variable of ``variable_type`` (default ``Param``), or a bare
    array when ``variable_type`` is None.

    Raises :class:`NnxFormatError` (a ``ValueError``) for a malformed file,
    :class:`NnxIOError` (an ``OSError``) when the file cannot be read.
    """
    flags = (L.NNX_LOAD_COPY if copy else 0) | (0 if int_keys else L.NNX_LOAD_STR_KEYS)
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


def safetensors_metadata(state: State) -> dict[str, str]:
    """The safetensors ``__metadata__`` entries ``state`` carries, as a new
    dict sorted by name: those of the file :func:`load_safetensors` read (a
    Hugging Face file's ``{"format": "pt"}``), without nnx-state's own
    ``nnx_state.v1`` record, as :func:`set_safetensors_metadata` changed
    them. Empty for a state not loaded from a file (a ``State(...)`` copy of
    a loaded state carries them too; the results of ``filter``, ``split``
    and the other operations do not)."""
    n = c_size_t()
    check(lib.nnx_safetensors_metadata_len(state._h, byref(n)))
    entries = {}
    for i in range(n.value):
        name, value = c_void_p(), c_void_p()
        check(lib.nnx_safetensors_metadata_at(state._h, i, byref(name), byref(value)))
        key = L.take_string(name.value)
        entries[key] = L.take_string(value.value)
    return entries


def set_safetensors_metadata(state: State, metadata) -> None:
    """Replaces the ``__metadata__`` entries ``state`` carries to its next
    :func:`save_safetensors` with ``metadata`` (a mapping of str to str).
    Names starting with ``nnx_state.v`` are nnx-state's own records: a
    ``ValueError``, raised before anything changes."""
    entries = []
    for key, value in dict(metadata).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata maps str to str, not {key!r}: {value!r}")
        if key.startswith("nnx_state.v"):
            raise ValueError(f"metadata name {key!r} is reserved for nnx-state's own record")
        entries.append((key.encode("utf-8"), value.encode("utf-8")))
    check(lib.nnx_safetensors_metadata_clear(state._h))
    for key, value in entries:
        check(lib.nnx_safetensors_metadata_set(state._h, key, value), f"metadata {key!r}")


def save_safetensors(state, path, *, max_shard_size: int | str | None = None, name: str = "model",
                     metadata=None) -> None:
    """Saves a state (or a mapping, made into a state) as safetensors.

    Without ``max_shard_size``, ``path`` is the file: written atomically (a
    temporary file in the same directory, flushed, renamed over ``path``),
    so a failed or interrupted save leaves what was there intact. With it,
    ``path`` is a directory that receives a sharded checkpoint as
    huggingface_hub writes one (``model-00001-of-0000N.safetensors`` shards
    of at most ``max_shard_size`` bytes, an int or a string like ``"5GB"``,
    and ``model.safetensors.index.json``; a single ``model.safetensors``
    when everything fits in one shard); ``name`` replaces ``model``.

    The file's ``__metadata__`` holds the entries the state carries (those
    of the file it was loaded from, :func:`safetensors_metadata`), or
    ``metadata`` (a mapping of str to str) instead when given; the state is
    left as it is. Every shard carries them.

    Any safetensors reader reads the file; :func:`load_safetensors` gives
    back the same state. Raises ``ValueError`` for arrays not in CPU memory
    and :class:`NnxIOError` when writing fails.
    """
    if not isinstance(state, State):
        state = State(state)
    if metadata is not None:
        state = State(state)  # an O(1) copy, so that the caller's keeps its own
        set_safetensors_metadata(state, metadata)
    if max_shard_size is None:
        check(lib.nnx_safetensors_save(state._h, _path_arg(path), 0), f"saving {os.fspath(path)!r}")
    else:
        check(
            lib.nnx_safetensors_save_sharded(state._h, _path_arg(path), name.encode("utf-8"), _size(max_shard_size), 0),
            f"saving into {os.fspath(path)!r}",
        )


# Filters from text and DLPack live in modules of their own; these names
# stay importable from here.
from ._dlpack_api import DLPackArray, dlpack, from_dlpack  # noqa: E402
from .filter_text import Parsed, parse_filter  # noqa: E402, F401

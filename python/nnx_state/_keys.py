"""Python keys and paths to and from ``nnx_key`` arrays.

A key is a ``str`` (UTF-8, any characters) or an ``int`` in the signed
64-bit range. ``"0"`` and ``0`` are different keys, as in Python.
"""

from __future__ import annotations

import ctypes
import operator

from ._lib import NNX_KEY_INT, NNX_KEY_STR, nnx_key, nnx_path

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1

# str -> (utf-8 bytes, address of the bytes); the bytes object keeps the
# address valid. Bounded, since keys are few and repeat in practice.
_encoded: dict[str, tuple[bytes, int]] = {}
_ENCODED_MAX = 65536


def _encode(key: str) -> tuple[bytes, int]:
    hit = _encoded.get(key)
    if hit is None:
        data = key.encode("utf-8")
        hit = (data, ctypes.cast(data, ctypes.c_void_p).value)
        if len(_encoded) >= _ENCODED_MAX:
            _encoded.clear()
        _encoded[key] = hit
    return hit


def check_key(key):
    """The key itself when it is a valid key; TypeError/OverflowError else."""
    if type(key) is str:
        return key
    if type(key) is int:
        if not _I64_MIN <= key <= _I64_MAX:
            raise OverflowError(f"int key {key} is outside the signed 64-bit range")
        return key
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        raise TypeError(f"nnx_state keys are str or int, got the bool {key!r}")
    try:
        value = operator.index(key)
    except TypeError:
        raise TypeError(f"nnx_state keys are str or int, got {type(key).__name__}: {key!r}") from None
    return check_key(value)


def fill_key(slot: nnx_key, key, keep: list) -> None:
    key = check_key(key)
    if type(key) is str:
        data, addr = _encode(key)
        keep.append(data)
        slot.kind = NNX_KEY_STR
        slot.str = addr
        slot.str_len = len(data)
        slot.int_value = 0
    else:
        slot.kind = NNX_KEY_INT
        slot.str = None
        slot.str_len = 0
        slot.int_value = key


def path_arg(path) -> tuple[ctypes.Array, int, list]:
    """(nnx_key array, length, objects to keep alive for the call)."""
    n = len(path)
    keys = (nnx_key * max(n, 1))()
    keep: list = []
    for i, key in enumerate(path):
        fill_key(keys[i], key, keep)
    return keys, n, keep


def paths_arg(paths) -> tuple[ctypes.Array, int, list]:
    """An nnx_path array for several paths."""
    paths = [tuple(p) for p in paths]
    out = (nnx_path * max(len(paths), 1))()
    keep: list = []
    for i, path in enumerate(paths):
        keys, n, k = path_arg(path)
        keep.append(keys)
        keep.extend(k)
        out[i].keys = keys
        out[i].len = n
    return out, len(paths), keep


def read_key(key: nnx_key):
    if key.kind == NNX_KEY_INT:
        return key.int_value
    if key.str_len == 0:
        return ""
    return ctypes.string_at(key.str, key.str_len).decode("utf-8")


def read_path(keys, n: int) -> tuple:
    return tuple(read_key(keys[i]) for i in range(n))

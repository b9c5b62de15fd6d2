"""Python keys and paths to and from ``nnx_key`` arrays.

A key is a ``str`` (UTF-8, any characters) or an ``int`` in the signed
64-bit range. ``"0"`` and ``0`` are different keys, as in Python.
"""

from __future__ import annotations

import ctypes
import operator

import numpy as np

from ._lib import NNX_KEY_INT, NNX_KEY_STR, NNX_MAX_DEPTH, check, lib, nnx_key, nnx_path

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


def parse_path(text: str) -> tuple:
    """A path from text, as the library and the ``nnx-state`` tool read one:
    ``"layers/0/kernel"`` is ``('layers', 0, 'kernel')``. A component that
    is a canonical decimal integer (``0``, ``12``, ``-3``; not ``007`` or
    ``-0``) is an int key. ``""`` is the empty path; an empty component
    (``a//b``) raises ``ValueError``."""
    data = text.encode("utf-8")
    n = ctypes.c_size_t()
    keys = (nnx_key * NNX_MAX_DEPTH)()
    if lib.nnx_path_parse(data, len(data), keys, NNX_MAX_DEPTH, ctypes.byref(n)) != 0:
        # An error, or more keys than any state nests: count, then parse.
        check(lib.nnx_path_parse(data, len(data), None, 0, ctypes.byref(n)), f"path {text!r}")
        keys = (nnx_key * n.value)()
        check(lib.nnx_path_parse(data, len(data), keys, n.value, ctypes.byref(n)), f"path {text!r}")
    return read_path(keys, n.value)


# --------------------------------------------------------------------------
# Many paths at once: one buffer of nnx_key with offsets (nnx_flat_paths,
# nnx_flat_push_many), read and written with numpy, without a Python loop
# over the keys where it can be helped.
# --------------------------------------------------------------------------

KEY_DTYPE = np.dtype(
    {
        "names": ["kind", "str", "str_len", "int_value"],
        "formats": [np.uint32, np.uintp, np.uintp, np.int64],
        "offsets": [nnx_key.kind.offset, nnx_key.str.offset, nnx_key.str_len.offset, nnx_key.int_value.offset],
        "itemsize": ctypes.sizeof(nnx_key),
    }
)

class _Texts:
    """Addresses of interned key texts (handed out by the library, valid and
    unchanged for the life of the process) and their str, as a sorted
    address array and an object array beside it, so that many addresses
    are looked up at once (np.searchsorted) rather than one by one."""

    MAX = 1 << 20

    def __init__(self):
        self.addrs = np.zeros(0, np.uintp)
        self.objs = np.zeros(0, dtype=object)

    def lookup(self, addrs: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """An object array: the str at each address."""
        if not len(addrs):
            return np.zeros(0, dtype=object)
        at = np.searchsorted(self.addrs, addrs)
        np.minimum(at, len(self.addrs) - 1, out=at)
        if not len(self.addrs) or not (self.addrs[at] == addrs).all():
            self._add(addrs, lens)
            at = np.searchsorted(self.addrs, addrs)
        return self.objs[at]

    def _add(self, addrs: np.ndarray, lens: np.ndarray) -> None:
        new, first = np.unique(addrs, return_index=True)
        known = dict(zip(self.addrs.tolist(), self.objs.tolist())) if len(self.addrs) < self.MAX else {}
        for addr, n in zip(new.tolist(), lens[first].tolist()):
            if addr not in known:
                known[addr] = ctypes.string_at(addr, n).decode("utf-8") if n else ""
        order = sorted(known)
        objs = np.empty(len(order), dtype=object)
        objs[:] = [known[a] for a in order]
        self.addrs, self.objs = np.array(order, dtype=np.uintp), objs


_texts = _Texts()


def paths_from_buffer(keys: np.ndarray, offsets: np.ndarray) -> list:
    """The path tuples of ``keys`` (an array of KEY_DTYPE) cut at
    ``offsets`` (n + 1 running totals, starting at 0)."""
    n = len(offsets) - 1
    if n <= 0:
        return []
    is_str = keys["kind"] == NNX_KEY_STR
    if is_str.all():
        objs = _texts.lookup(keys["str"], keys["str_len"]).tolist()
    else:
        mixed = keys["int_value"].astype(object)
        if is_str.any():
            mixed[is_str] = _texts.lookup(keys["str"][is_str], keys["str_len"][is_str])
        objs = mixed.tolist()
    lengths = np.diff(offsets)
    first = int(lengths[0])
    if (lengths == first).all():
        # Every path has the same length: column j is every first-th key.
        return list(zip(*[objs[j::first] for j in range(first)]))
    by_index = np.empty(len(objs), dtype=object)
    by_index[:] = objs
    out: list = [None] * n
    starts = offsets[:-1]
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        cols = [by_index[starts[rows] + j].tolist() for j in range(length)]
        for i, path in zip(rows.tolist(), zip(*cols)):
            out[i] = path
    return out


class _KeyTable:
    """Every distinct key encoded once, as a row of an nnx_key array; the
    encoded bytes are kept alive with the table."""

    MAX = 1 << 20

    def __init__(self):
        self.index: dict = {}  # key (exactly a str or an int) -> row
        self.keep: list = []
        self.rows: list = []
        self.array = np.zeros(0, KEY_DTYPE)
        self.size = 0  # rows in self.array

    def add(self, key) -> None:
        """Adds a str or int key; UnicodeEncodeError / OverflowError as
        fill_key would raise them."""
        if type(key) is str:
            data = key.encode("utf-8")
            addr = ctypes.cast(data, ctypes.c_void_p).value or 0
            self.keep.append(data)
            row = (NNX_KEY_STR, addr, len(data), 0)
        else:
            if not _I64_MIN <= key <= _I64_MAX:
                raise OverflowError(f"int key {key} is outside the signed 64-bit range")
            row = (NNX_KEY_INT, 0, 0, key)
        self.index[key] = len(self.rows)
        self.rows.append(row)

    def encoded(self) -> np.ndarray:
        if self.size != len(self.rows):
            self.array = np.array(self.rows, dtype=KEY_DTYPE)
            self.size = len(self.rows)
        return self.array


_table = _KeyTable()


def encode_flat_keys(flat_keys: list):
    """(nnx_key array, table to keep alive for the call) for a list of keys
    that are all exactly ``str`` or ``int``; None when one cannot be encoded
    (the caller then goes key by key, raising the usual error)."""
    global _table
    table = _table
    if len(table.rows) >= _KeyTable.MAX:
        table = _table = _KeyTable()
    try:
        rows = list(map(table.index.__getitem__, flat_keys))
    except KeyError:
        try:
            for key in set(flat_keys).difference(table.index):
                table.add(key)
        except (OverflowError, UnicodeError):
            return None
        rows = list(map(table.index.__getitem__, flat_keys))
    # np.take copies whole records, much faster than fancy indexing here.
    return np.take(table.encoded(), np.array(rows, dtype=np.intp)), table

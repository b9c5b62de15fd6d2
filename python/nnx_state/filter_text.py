"""Filters written as text, in the syntax of the ``nnx-state`` tool, parsed
by the library (``nnx_filter_parse``)."""

from __future__ import annotations

from ctypes import byref, c_bool, c_void_p

from ._lib import check, lib
from .filterlib import _Native
from .flax_interop import from_flax_variable, is_flax_variable

__all__ = ["Parsed", "parse_filter"]


class Parsed(_Native):
    """A filter written in the text syntax of the ``nnx-state`` tool (see
    :func:`parse_filter`). Parsed once when made, so errors show at once."""

    __slots__ = ("text", "_native")

    def __init__(self, text: str):
        self.text = text
        self._native = _OwnedFilter(self._build())

    def _build(self) -> int:
        out = c_void_p()
        check(lib.nnx_filter_parse(self.text.encode("utf-8"), byref(out)), f"filter {self.text!r}")
        return out.value

    def __call__(self, path, x) -> bool:
        # Asked of the library for this one leaf (nnx_filter_matches_*). A
        # Flax variable is asked about as its nnx_state twin; anything else
        # stands as a bare array, whose contents no text filter looks at.
        from . import _keys as K
        from .variablelib import Variable

        keys, n, keep = K.path_arg(tuple(path))
        if not isinstance(x, Variable) and is_flax_variable(x):
            x = from_flax_variable(x, tuple(path))
        out = c_bool()
        handle = self._handle()
        if isinstance(x, Variable):
            status = lib.nnx_filter_matches_variable(handle, keys, n, x._ptr, byref(out))
        else:
            status = lib.nnx_filter_matches_array(handle, keys, n, _stand_in_array(), byref(out))
        check(status, f"filter {self.text!r}")
        return out.value

    def _handle(self) -> int:
        # Built on first use and kept: a parsed filter is immutable.
        handle = self._native
        if handle is None:
            handle = self._native = _OwnedFilter(self._build())
        return handle.ptr

    def __repr__(self):
        return f"parse_filter({self.text!r})"

    def __eq__(self, other):
        return isinstance(other, Parsed) and other.text == self.text

    def __hash__(self):
        return hash(("Parsed", self.text))

    def __reduce__(self):
        # The text alone: the native filter is this process's.
        return (Parsed, (self.text,))


class _OwnedFilter:
    """An ``nnx_filter*`` freed with its last reference."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __del__(self):
        lib.nnx_filter_free(self.ptr)


_stand_in = None


def _stand_in_array() -> int:
    """One empty native array, kept for the process, asked about in place of
    a bare leaf (text filters look at paths, types and tags only)."""
    global _stand_in
    if _stand_in is None:
        from . import _arrays as A
        import numpy as np

        _stand_in = A.to_native(np.zeros((0,), np.float32))
    return _stand_in


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



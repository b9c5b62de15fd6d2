"""Filters written as text, in the syntax of the ``nnx-state`` tool, parsed
by the library (``nnx_filter_parse``)."""

from __future__ import annotations

from ctypes import byref, c_void_p

from ._lib import check, lib
from .filterlib import _Native

__all__ = ["Parsed", "parse_filter"]


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
        from .statelib import State, filter_state

        one = State()
        sub = one
        for key in tuple(path)[:-1]:
            sub[key] = {}
            sub = sub[key]
        sub[tuple(path)[-1]] = x
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



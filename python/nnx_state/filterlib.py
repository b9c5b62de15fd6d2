"""Filters, as in ``flax.nnx.filterlib``, evaluated by the native library.

A filter is one of the classes below or a literal:

- a ``str`` (a tag), a variable class (its type and subtypes), a list or
  tuple (any of its parts), ``...`` and ``True`` (everything), ``None`` and
  ``False`` (nothing), or any callable ``f(path, leaf) -> bool``.

Each filter object is also a Python predicate, ``f(path, leaf)``, with
Flax's semantics. When a filter is used by an operation it is turned into a
native ``nnx_filter``; a Python callable becomes a callback filter, and an
exception it raises fails the operation and is re-raised to its caller.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing as tp
from operator import is_
from ctypes import byref, c_void_p

from . import _arrays as A
from . import _keys as K
from . import _lib as L
from ._lib import check, lib
from .variablelib import Variable, VariableMeta, wrap_variable

__all__ = [
    "OfType", "WithTag", "PathContains", "PathIn", "Any", "All", "Not",
    "Everything", "Nothing", "to_predicate", "filters_to_predicates",
]

Filter = tp.Any  # a filter object or literal, as described above


class _Native:
    """A filter class the library can evaluate: ``_build`` returns a new
    owned ``nnx_filter*``."""

    __slots__ = ()

    def _build(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


def _out(fn, *args) -> int:
    out = c_void_p()
    check(fn(*args, byref(out)))
    return out.value


def _is_native_key(key) -> bool:
    return (type(key) is str) or (type(key) is int and -(2**63) <= key < 2**63)


@dataclasses.dataclass(frozen=True)
class WithTag(_Native):
    """Variables whose ``tag`` metadata equals ``tag``."""

    tag: str

    def __call__(self, path, x) -> bool:
        tag = x.get_metadata("tag", None) if isinstance(x, Variable) else getattr(x, "tag", None)
        return tag is not None and tag == self.tag

    def __repr__(self):
        return f"WithTag({self.tag!r})"

    def _build(self) -> int:
        if isinstance(self.tag, str) and "\0" not in self.tag:
            return _out(lib.nnx_filter_with_tag, self.tag.encode("utf-8"))
        return callback_filter(self)


@dataclasses.dataclass(frozen=True)
class PathContains(_Native):
    """Leaves whose path contains ``key`` (``exact``), or a part whose
    ``str`` contains ``str(key)`` (not ``exact``)."""

    key: tp.Any
    exact: bool = True

    def __call__(self, path, x) -> bool:
        if self.exact:
            return self.key in path
        return any(str(self.key) in str(part) for part in path)

    def __repr__(self):
        return f"PathContains({self.key!r}, exact={self.exact})"

    def _build(self) -> int:
        if not _is_native_key(self.key):
            return callback_filter(self)
        keys, _, keep = K.path_arg((self.key,))
        return _out(lib.nnx_filter_path_contains, keys, bool(self.exact))


class PathIn(_Native):
    """Leaves whose path is one of ``paths``."""

    def __init__(self, *paths):
        self.paths = frozenset(tuple(p) for p in paths)

    def __call__(self, path, x) -> bool:
        return tuple(path) in self.paths

    def __repr__(self):
        return f"PathIn({','.join(map(repr, self.paths))})"

    def __eq__(self, other):
        return isinstance(other, PathIn) and self.paths == other.paths

    def __hash__(self):
        return hash(self.paths)

    def _build(self) -> int:
        if not all(_is_native_key(k) for p in self.paths for k in p):
            return callback_filter(self)
        paths, n, keep = K.paths_arg(self.paths)
        return _out(lib.nnx_filter_path_in, paths, n)


@dataclasses.dataclass(frozen=True)
class OfType(_Native):
    """Variables of type ``type`` or a subtype (for a variable class), or
    leaves that are instances of ``type`` (for any other class)."""

    type: type

    def __call__(self, path, x) -> bool:
        return isinstance(x, self.type)

    def __repr__(self):
        return f"OfType({self.type!r})"

    def _build(self) -> int:
        if isinstance(self.type, VariableMeta):
            return _out(lib.nnx_filter_of_type, self.type._type_id)
        return callback_filter(self)


def _build_list(fn, filters) -> int:
    parts: list[int] = []
    try:
        for f in filters:
            parts.append(build_filter(f))
        array = (c_void_p * max(len(parts), 1))(*parts)
        return _out(fn, array, len(parts))
    finally:
        for p in parts:
            lib.nnx_filter_free(p)


class Any(_Native):
    """Leaves that any of the filters matches (none: nothing)."""

    def __init__(self, *filters):
        self.predicates = tuple(to_predicate(f) for f in filters)

    def __call__(self, path, x) -> bool:
        return any(p(path, x) for p in self.predicates)

    def __repr__(self):
        return f"Any({', '.join(map(repr, self.predicates))})"

    def __eq__(self, other):
        return isinstance(other, Any) and self.predicates == other.predicates

    def __hash__(self):
        return hash(self.predicates)

    def _build(self) -> int:
        return _build_list(lib.nnx_filter_any, self.predicates)


class All(_Native):
    """Leaves that all of the filters match (none: everything)."""

    def __init__(self, *filters):
        self.predicates = tuple(to_predicate(f) for f in filters)

    def __call__(self, path, x) -> bool:
        return all(p(path, x) for p in self.predicates)

    def __repr__(self):
        return f"All({', '.join(map(repr, self.predicates))})"

    def __eq__(self, other):
        return isinstance(other, All) and self.predicates == other.predicates

    def __hash__(self):
        return hash(self.predicates)

    def _build(self) -> int:
        return _build_list(lib.nnx_filter_all, self.predicates)


class Not(_Native):
    """Leaves that the filter does not match."""

    def __init__(self, collection_filter, /):
        self.predicate = to_predicate(collection_filter)

    def __call__(self, path, x) -> bool:
        return not self.predicate(path, x)

    def __repr__(self):
        return f"Not({self.predicate!r})"

    def __eq__(self, other):
        return isinstance(other, Not) and self.predicate == other.predicate

    def __hash__(self):
        return hash(self.predicate)

    def _build(self) -> int:
        inner = build_filter(self.predicate)
        try:
            return _out(lib.nnx_filter_not, inner)
        finally:
            lib.nnx_filter_free(inner)


class Everything(_Native):
    """Every leaf. Unlike the literals ``...`` and ``True``, an instance may
    stand anywhere in a filter list, as in NNX."""

    def __call__(self, path, x) -> bool:
        return True

    def __repr__(self):
        return "Everything()"

    def __eq__(self, other):
        return isinstance(other, Everything)

    def __hash__(self):
        return hash(Everything)

    def _build(self) -> int:
        # Any(everything): matches every leaf, but is not the literal that
        # the "last filters" rule checks.
        inner = _out(lib.nnx_filter_everything)
        try:
            return _out(lib.nnx_filter_any, (c_void_p * 1)(inner), 1)
        finally:
            lib.nnx_filter_free(inner)


class Nothing(_Native):
    """No leaf."""

    def __call__(self, path, x) -> bool:
        return False

    def __repr__(self):
        return "Nothing()"

    def __eq__(self, other):
        return isinstance(other, Nothing)

    def __hash__(self):
        return hash(Nothing)

    def _build(self) -> int:
        return _out(lib.nnx_filter_nothing)


def to_predicate(filter) -> tp.Callable:
    """The predicate a filter literal stands for (Flax's ``to_predicate``)."""
    if isinstance(filter, str):
        return WithTag(filter)
    if isinstance(filter, type):
        return OfType(filter)
    if isinstance(filter, bool):
        return Everything() if filter else Nothing()
    if filter is Ellipsis:
        return Everything()
    if filter is None:
        return Nothing()
    if callable(filter):
        return filter
    if isinstance(filter, (list, tuple)):
        return Any(*filter)
    raise TypeError(f"Invalid collection filter: {filter!r}.")


def filters_to_predicates(filters) -> tuple:
    """Flax's check of a filter list, then the predicates."""
    for i, filter_ in enumerate(filters):
        if _is_everything_literal(filter_) and i != len(filters) - 1:
            if not all(_is_everything_literal(f) for f in filters[i + 1:]):
                raise ValueError(
                    f"`...` or `True` can only be used as the last filters, got {filter_} it at index {i}."
                )
    return tuple(map(to_predicate, filters))


def _is_everything_literal(f) -> bool:
    return f is Ellipsis or f is True


# --------------------------------------------------------------------------
# Native filters
# --------------------------------------------------------------------------

# Python predicates lent to the library, by token, until it releases them.
_callbacks: dict[int, tp.Callable] = {}
_tokens = itertools.count(1)


@L.filter_fn
def _trampoline(token, keys, n, kind, variable, array):
    try:
        if getattr(L.pending, "exc", None) is not None:
            return -1  # an earlier call of this operation failed already
        predicate = _callbacks[token]
        path = K.read_path(keys, n)
        if kind == L.NNX_KIND_VARIABLE:
            leaf = wrap_variable(variable, owned=False)
        else:
            leaf = A.borrowed_value(array)
        return 1 if predicate(path, leaf) else 0
    except BaseException as e:  # re-raised by the caller of the operation
        L.pending.exc = e
        return -1


@L.release_fn
def _release_callback(token):
    try:
        _callbacks.pop(token, None)
    except Exception:  # pragma: no cover - interpreter shutdown
        pass


def callback_filter(predicate: tp.Callable) -> int:
    token = next(_tokens)
    _callbacks[token] = predicate
    out = c_void_p()
    status = lib.nnx_filter_callback(_trampoline, token, _release_callback, byref(out))
    if status:
        _callbacks.pop(token, None)
        L.fail(status)
    return out.value


def build_filter(f) -> int:
    """A new native filter (owned) for a filter object or literal."""
    if f is Ellipsis or f is True:
        return _out(lib.nnx_filter_everything)
    if f is None or f is False:
        return _out(lib.nnx_filter_nothing)
    if isinstance(f, _Native):
        return f._build()
    if isinstance(f, str):
        return WithTag(f)._build()
    if isinstance(f, type):
        return OfType(f)._build()
    if isinstance(f, (list, tuple)):
        return _build_list(lib.nnx_filter_any, f)
    if callable(f):
        return callback_filter(f)
    raise TypeError(f"Invalid collection filter: {f!r}.")


def _literal_cacheable(f) -> bool:
    """Whether the native filter for ``f`` can be built once and kept: a
    variable class, a tag, ``...`` or ``None``. Each equals only itself (or
    an equal ``str``), so a list of them looked up by equality finds the
    filters it stands for."""
    return f is Ellipsis or f is None or type(f) is str or isinstance(f, VariableMeta)


# Native filter lists built from literals only, kept for the process: a
# training loop splits by the same classes every step. Handles are shared
# by concurrent calls (filters are read-only) and never freed, so the
# table stops growing at `_KEPT_LISTS` entries.
_kept: dict[tuple, tuple] = {}
_KEPT_LISTS = 256


def kept_filters(filters: tuple):
    """The kept native array for this list of filters, if it was built
    before and may be kept (see `_literal_cacheable`); else None."""
    try:
        kept = _kept.get(filters)
    except TypeError:  # an unhashable filter: never kept
        return None
    if kept is None:
        return None
    # Equal to a kept list: the very same filters (the usual case), or
    # filters that must be literals themselves to stand for it.
    if all(map(is_, kept[2], filters)) or all(map(_literal_cacheable, filters)):
        return kept[1]
    return None


class NativeFilters:
    """A list of native filters for one operation (a context manager that
    frees them)."""

    __slots__ = ("handles", "array", "kept")

    def __init__(self, filters):
        filters = tuple(filters)
        cacheable = all(map(_literal_cacheable, filters))
        kept = _kept.get(filters) if cacheable else None
        if kept is not None:
            self.handles, self.array = kept[0], kept[1]
            self.kept = True
            return
        self.handles: list[int] = []
        self.kept = False
        try:
            for f in filters:
                self.handles.append(build_filter(f))
        except BaseException:
            self.free()
            raise
        self.array = (c_void_p * max(len(self.handles), 1))(*self.handles)
        if cacheable and len(_kept) < _KEPT_LISTS:
            _kept[filters] = (self.handles, self.array, filters)
            self.kept = True

    def __len__(self):
        return len(self.handles)

    def free(self):
        if self.kept:
            return
        for h in self.handles:
            lib.nnx_filter_free(h)
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

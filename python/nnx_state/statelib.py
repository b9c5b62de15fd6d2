"""``State``: a native ``nnx_state`` tree as a Python ``MutableMapping``, and
the free functions of ``flax.nnx.statelib``.

Nested access gives live views: ``state['b']`` is a ``State`` over the same
tree, so ``state['b']['c'] = x`` changes ``state``. Putting a ``State`` or a
mapping into a state copies its structure (not its leaves), so later
changes to the mapping are not seen through the state.

Outputs of filter, split and diff are built from the sorted flat list (keys
sorted at every level, empty nested states gone); merge and from_flat keep
the order in which paths first appear, as NNX does.
"""

from __future__ import annotations

import gc
import sys
import weakref
import typing as tp
from collections.abc import Mapping, MutableMapping, Sequence
from itertools import chain
from operator import attrgetter, is_
from ctypes import byref, c_bool, c_size_t, c_uint32, c_uint64, c_void_p, POINTER

import numpy as np

from . import _arrays as A
from . import _keys as K
from . import _lib as L
from . import _var_reads as _reads
from ._lib import check, lib
from ._compare import _mapping_eq, _node_repr
from ._flat_native import (
    _built_from_leaves, _built_from_pairs, _flat_len, _gc_paused, _read_flat_leaves, _read_flat_paths,
    built_with_leaves, replace_natively,
)
from ._pure_dicts import _try_int, flatten_mapping, restore_int_paths, unflatten_mapping  # noqa: F401
from .filterlib import NativeFilters, kept_filters
from ._var_live import pending_lock
from .variablelib import (
    Variable,
    VariableMeta,
    indent_lines,
    variable_repr,
    wrap_variable,
    wrap_variables,
)

__all__ = [
    "State", "FlatState", "to_flat_state", "from_flat_state", "filter_state",
    "split_state", "merge_state", "map_state", "diff", "to_pure_dict",
    "replace_by_pure_dict", "restore_int_paths",
]


def _new_state() -> int:
    out = c_void_p()
    check(lib.nnx_state_new(byref(out)))
    return out.value


def _leaf_from(kind: int, ptr: int):
    """A Python leaf for an owned native leaf handle."""
    if kind == L.NNX_KIND_VARIABLE:
        return wrap_variable(ptr, owned=True)
    return A.value_of(ptr)


# Called with every new State subclass (the pytree registration adds itself).
state_class_hooks: list = []


class State(MutableMapping):
    """A nested, ordered mapping from keys (``str`` or ``int``) to variables,
    bare arrays and nested states, held by the native library."""

    # `_flat`: (version, paths, leaves) of the last flat state read in full,
    # see `to_flat_state`; `_tree`: (version, keys, children), its pytree
    # children (see `pytrees`); `_pending`: (build, pytree children or None)
    # while the native tree is not made yet (see `_pending_state`).
    __slots__ = ("_h", "_flat", "_tree", "_pending", "__weakref__")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for hook in state_class_hooks:
            hook(cls)

    def __init__(self, mapping: tp.Mapping | tp.Iterable | None = None, /):
        if isinstance(mapping, State):
            out = c_void_p()
            check(lib.nnx_state_clone(mapping._h, byref(out)))
            object.__setattr__(self, "_h", out.value)
            return
        if isinstance(mapping, Mapping):
            pairs = _leaf_pairs(mapping)
            if pairs is not None:  # built natively in one go
                _set_handle(self, _built_from_pairs(pairs))
                return
        object.__setattr__(self, "_h", _new_state())
        if mapping is None:
            return
        items = mapping.items() if isinstance(mapping, Mapping) else mapping
        for key, value in items:
            self._put(key, value)

    @classmethod
    def _from_handle(cls, h: int, _new=object.__new__) -> "State":
        obj = _new(cls)
        _set_handle(obj, h)
        return obj

    # Bound now: module globals may be gone at exit.
    def __del__(self, _free=lib.nnx_state_free, _shutting_down=L.shutting_down, _get=object.__getattribute__):
        try:
            h = _get(self, "_h")  # not `self._h`: a pending state is not built to be freed
        except AttributeError:
            return
        if h and not _shutting_down():
            _set_handle(self, None)
            try:
                _free(h)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    # -- building ------------------------------------------------------------

    def _put(self, key, value) -> None:
        keys, n, keep = K.path_arg((key,))
        h = self._h
        _forget_kept(self)
        if isinstance(value, Variable):
            check(lib.nnx_state_set_variable(h, keys, n, value._ptr), what=f"key {key!r}")
        elif isinstance(value, State):
            check(lib.nnx_state_set_state(h, keys, n, value._h), what=f"key {key!r}")
        elif isinstance(value, Mapping):
            sub = State(value)
            check(lib.nnx_state_set_state(h, keys, n, sub._h), what=f"key {key!r}")
        else:
            array = A.to_native(value)
            try:
                check(lib.nnx_state_set_array(h, keys, n, array), what=f"key {key!r}")
            finally:
                lib.nnx_array_release(array)

    def _put_native_array(self, key, array: int) -> None:
        """Puts a native array (borrowed; the state takes its own reference)."""
        keys, n, keep = K.path_arg((key,))
        check(lib.nnx_state_set_array(self._h, keys, n, array), what=f"key {key!r}")

    # -- mapping protocol ----------------------------------------------------

    def _path(self, key):
        try:
            return K.path_arg((key,))
        except (TypeError, OverflowError) as e:
            raise KeyError(key) from e

    def __getitem__(self, key):
        keys, n, keep = self._path(key)
        h = self._h
        kind = c_uint32()
        check(lib.nnx_state_get_kind(h, keys, n, byref(kind)), what=f"key {key!r}")
        out = c_void_p()
        if kind.value == L.NNX_KIND_VARIABLE:
            check(lib.nnx_state_get_variable(h, keys, n, byref(out)), what=f"key {key!r}")
            return wrap_variable(out.value, owned=True)
        if kind.value == L.NNX_KIND_ARRAY:
            check(lib.nnx_state_get_array(h, keys, n, byref(out)), what=f"key {key!r}")
            return A.value_of(out.value)
        check(lib.nnx_state_get_state(h, keys, n, byref(out)), what=f"key {key!r}")
        return State._from_handle(out.value)

    def __setitem__(self, key, value) -> None:
        self._put(key, value)

    def __delitem__(self, key) -> None:
        keys, n, keep = self._path(key)
        _forget_kept(self)  # let go of the removed leaf's objects now
        check(lib.nnx_state_remove(self._h, keys, n), what=f"key {key!r}")

    def __contains__(self, key) -> bool:
        try:
            keys, n, keep = K.path_arg((key,))
        except (TypeError, OverflowError):
            return False
        out = c_bool()
        check(lib.nnx_state_contains(self._h, keys, n, byref(out)))
        return out.value

    def __len__(self) -> int:
        out = c_size_t()
        check(lib.nnx_state_len(self._h, byref(out)))
        return out.value

    def _keys(self) -> list:
        h = self._h
        n = len(self)
        key = L.nnx_key()
        out = []
        for i in range(n):
            check(lib.nnx_state_key_at(h, i, byref(key)))
            out.append(K.read_key(key))
        return out

    def __iter__(self):
        return iter(self._keys())

    def num_leaves(self) -> int:
        """The number of leaves (variables and bare arrays) at any depth."""
        out = c_size_t()
        check(lib.nnx_state_num_leaves(self._h, byref(out)))
        return out.value

    # -- attribute access ----------------------------------------------------

    def __getattr__(self, key):
        if key == "_h":  # not made yet: a pending state builds it now
            return _materialize(self)
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"No attribute '{key}' in State") from None

    def __setattr__(self, key, value) -> None:
        if key == "_h":
            object.__setattr__(self, key, value)
        else:
            self[key] = value

    def __delattr__(self, key) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(f"No attribute '{key}' in State") from None

    # -- comparison and display ----------------------------------------------

    def __eq__(self, other) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return _mapping_eq(self, other)

    __hash__ = None  # a mutable mapping

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_node_repr(self, '')})"

    def to_string(self) -> str:
        """The native library's listing of the tree (``nnx_state_to_string``)."""
        out = c_void_p()
        check(lib.nnx_state_to_string(self._h, byref(out)))
        return L.take_string(out.value)

    # -- copies --------------------------------------------------------------

    def copy(self) -> "State":
        """An independent tree holding the same leaves."""
        return State(self)

    def __copy__(self) -> "State":
        return self.copy()

    def deep_copy(self) -> "State":
        """An independent tree with new variables and copies of every array."""
        out = c_void_p()
        check(lib.nnx_state_deep_copy(self._h, byref(out)))
        return State._from_handle(out.value)

    def __deepcopy__(self, memo) -> "State":
        return self.deep_copy()

    def update_leaves(self, other: tp.Mapping) -> None:
        """In place: ``other``'s leaves overwrite this state's at their paths
        (``nnx_state_update``), creating nested states as needed."""
        other = _as_state(other)
        _forget_kept(self)
        check(lib.nnx_state_update(self._h, other._h))

    # -- NNX's methods (no deprecation warnings here) --------------------------

    def flat_state(self) -> "FlatState":
        return to_flat_state(self)

    @classmethod
    def from_flat_path(cls, flat_state, /) -> "State":
        return from_flat_state(flat_state)

    def map(self, f: tp.Callable[[tuple, tp.Any], tp.Any]) -> "State":
        return map_state(f, self)

    def to_pure_dict(self, extract_fn=None) -> dict:
        return to_pure_dict(self, extract_fn)

    def replace_by_pure_dict(self, pure_dict, replace_fn=None) -> None:
        return replace_by_pure_dict(self, pure_dict, replace_fn)

    def split(self, first, /, *filters):
        return split_state(self, first, *filters)

    def filter(self, first, /, *filters):
        return filter_state(self, first, *filters)

    @classmethod
    def merge(cls, state, /, *states) -> "State":
        return merge_state(state, *states)

    def __or__(self, other) -> "State":
        if not other:
            return self
        return merge_state(self, other)

    def __sub__(self, other) -> "State":
        return diff(self, other)

    def __reduce__(self):
        return (_unpickle_state, (to_flat_state(self)._items_for_pickle(),))


# Write a State's slots directly (State.__setattr__ sets keys).
_set_handle = State._h.__set__
_set_flat = State._flat.__set__
_flat_of = State._flat.__get__
_set_tree = State._tree.__set__
_tree_of = State._tree.__get__
_handle_of = State._h.__get__  # AttributeError while pending, without building
pending_of = State._pending.__get__
_set_pending = State._pending.__set__
_drop_pending = State._pending.__delete__


def _pending_state(cls: type, build, children: tuple | None = None) -> State:
    """A state of class ``cls`` whose native tree ``build()`` makes (an owned
    handle) when something first needs it: a state jax unflattens, which
    keeps its pytree ``children`` (``(keys, children)``) to be flattened
    again without building anything."""
    obj = object.__new__(cls)
    _set_pending(obj, (build, children))
    return obj


def _materialize(state: State) -> int:
    """``state``'s native tree, built now if it is pending; AttributeError if
    it has none and is not pending."""
    with pending_lock:
        try:
            return _handle_of(state)  # built meanwhile by another thread
        except AttributeError:
            pass
        try:
            build = pending_of(state)[0]
        except AttributeError:
            raise AttributeError("_h") from None
        h = build()
        _set_handle(state, h)
        _drop_pending(state)
        return h


def _handle_for_items(items) -> int:
    """A new native tree (owned handle) with ``items``, put one by one."""
    built = State._from_handle(_new_state())
    for key, value in items:
        built._put(key, value)
    h = built._h
    _set_handle(built, None)  # handed over, not freed with `built`
    return h


def _version(h: int) -> int:
    version = c_uint64()
    check(lib.nnx_state_version(h, byref(version)))
    return version.value


def state_version(state: State) -> int:
    """A number that stays the same while ``state``'s tree does not change
    (``nnx_state_version``): what was read of it at that number holds."""
    return _version(state._h)


def _forget_kept(state: State) -> None:
    """Lets go of the objects ``state`` kept from reading it, after a change
    through this object (a change elsewhere is seen by the version)."""
    _set_flat(state, None)
    _set_tree(state, None)


def _unpickle_state(items):
    return from_flat_state(items)


def _as_state(x) -> State:
    if isinstance(x, State):
        return x
    if isinstance(x, Mapping):
        return State(x)
    raise TypeError(f"expected a State or a mapping, got {type(x).__name__}")


# --------------------------------------------------------------------------
# Equality and repr
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Flat states
# --------------------------------------------------------------------------


def _path_sort_key(path) -> tuple:
    # ints before strings, ints numerically, strings by code point (= UTF-8
    # byte order), a shorter prefix first: the library's order.
    return tuple((1, k) if isinstance(k, str) else (0, k) for k in path)


class FlatState(Sequence):
    """A sequence of ``(path, leaf)`` pairs, as ``flax.nnx.statelib.FlatState``.

    One that :func:`to_flat_state` made is backed by the library's own flat
    list: its path tuples and leaf objects are made when first read, and
    :func:`from_flat_state` builds a state from it in one native call while
    its leaves are the ones it gave out."""

    # `_origin`: (weak reference to the State, its version when flattened),
    # to give the State what was read once all of it is.
    __slots__ = ("_paths", "_leaves", "_native", "_handed", "_origin", "__weakref__")

    def __init__(self, items, /, *, sort: bool = True):
        items = [(tuple(path), leaf) for path, leaf in items]
        if sort:
            items.sort(key=lambda item: _path_sort_key(item[0]))
        self._native = None
        self._paths = tuple(path for path, _ in items)
        self._leaves = [leaf for _, leaf in items]

    @staticmethod
    def from_sorted_keys_values(keys, values, /) -> "FlatState":
        flat = object.__new__(FlatState)
        flat._native = None
        flat._paths = tuple(keys)
        flat._leaves = list(values)
        return flat

    @staticmethod
    def _backed_by(native: int, n: int, origin=None) -> "FlatState":
        """A flat state over an owned native flat list of ``n`` entries."""
        flat = object.__new__(FlatState)
        flat._origin = origin
        flat._native = native
        flat._paths = None if n else ()
        flat._leaves = None if n else []
        flat._handed = ()
        return flat

    def __del__(self, _free=lib.nnx_flat_free, _shutting_down=L.shutting_down):
        native = getattr(self, "_native", None)
        if native and not _shutting_down():
            self._native = None
            try:
                _free(native)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    @property
    def _keys(self) -> tuple:
        paths = self._paths
        if paths is None:
            with _gc_paused():
                paths = self._paths = tuple(_read_flat_paths(self._native))
            _note_paths(self)
            self._read_in_full()
        return paths

    @property
    def _values(self) -> list:
        leaves = self._leaves
        if leaves is None:
            with _gc_paused():
                leaves = _read_flat_leaves(self._native)
                self._handed = tuple(leaves)
            self._leaves = leaves
            self._read_in_full()
        return leaves

    def _read_in_full(self) -> None:
        """Once paths and leaves are both read: the state they came from
        keeps them for its next flat state, while it does not change."""
        origin = getattr(self, "_origin", None)
        if origin is None or self._paths is None or self._leaves is None:
            return
        self._origin = None
        state = origin[0]()
        if state is not None:
            _set_flat(state, (origin[1], self._paths, self._handed))

    def __iter__(self):
        if self._paths is None and self._leaves is None:
            with _gc_paused():  # one pause for both
                return iter(zip(self._keys, self._values))
        return iter(zip(self._keys, self._values))

    def _native_if_unchanged(self) -> int | None:
        """The backing native flat list, while the leaves hold what it does."""
        native = self._native
        if native is None or self._leaves is None:
            return native
        leaves, handed = self._leaves, self._handed
        if len(leaves) == len(handed) and all(map(is_, leaves, handed)):
            return native
        return None

    @property
    def paths(self) -> tuple:
        return self._keys

    @property
    def leaves(self) -> list:
        return self._values

    def __getitem__(self, index):
        if isinstance(index, slice):
            return FlatState.from_sorted_keys_values(self._keys[index], self._values[index])
        return self._keys[index], self._values[index]

    def __len__(self) -> int:
        if self._paths is not None:
            return len(self._paths)
        if self._leaves is not None:
            return len(self._leaves)
        return _flat_len(self._native)

    def __repr__(self) -> str:
        if not self._keys:
            return "FlatState([])"
        parts = []
        for path, leaf in self:
            if isinstance(leaf, Variable):
                text = variable_repr(leaf, "  ")
            else:
                text = indent_lines(repr(leaf), "  ")
            parts.append(f"  ({path!r}, {text})")
        return "FlatState([\n" + ",\n".join(parts) + "\n])"

    def _items_for_pickle(self) -> list:
        return list(zip(self._keys, self._values))

    def to_nested_state(self) -> State:
        return from_flat_state(self)

    def filter(self, first, /, *filters):
        parts = filter_state(self.to_nested_state(), first, *filters)
        if isinstance(parts, tuple):
            return tuple(to_flat_state(p) for p in parts)
        return to_flat_state(parts)

    def split(self, first, /, *filters):
        parts = split_state(self.to_nested_state(), first, *filters)
        if isinstance(parts, tuple):
            return tuple(to_flat_state(p) for p in parts)
        return to_flat_state(parts)

    @staticmethod
    def merge(flat_state, /, *flat_states) -> "FlatState":
        if not flat_states and isinstance(flat_state, FlatState):
            return flat_state
        return FlatState((item for fs in (flat_state, *flat_states) for item in fs), sort=True)


_addr = A.address_of


def to_flat_state(state) -> FlatState:
    """The ``(path, leaf)`` pairs of a state, sorted by path; empty nested
    states give nothing."""
    state = _as_state(state)
    # The version before the flatten: a change meanwhile is seen next time.
    version = _version(state._h)
    kept = _kept_flat(state, version)
    flat = c_void_p()
    check(lib.nnx_state_flatten(state._h, byref(flat)))
    try:
        size = c_size_t()
        check(lib.nnx_flat_len(flat, byref(size)))
    except BaseException:
        lib.nnx_flat_free(flat)
        raise
    if kept is not None:
        out = FlatState._backed_by(flat.value, size.value)
        out._paths, out._handed = kept
        out._leaves = list(kept[1])
        _note_paths(out)
        return out
    return FlatState._backed_by(flat.value, size.value, (weakref.ref(state), version))


def _kept_flat(state: State, version: int) -> tuple | None:
    """(paths, leaves) that ``state`` kept from a flat state read in full at
    this version."""
    try:
        kept = _flat_of(state)
    except AttributeError:
        return None
    if kept is None or kept[0] != version:
        return None
    return kept[1], kept[2]


def flat_lists(state: State) -> tuple[tuple, tuple]:
    """The paths and leaves of ``state``'s flat state, kept by the state
    while it does not change (read-only: the leaves are a tuple)."""
    kept = _kept_flat(state, _version(state._h))
    if kept is not None:
        return kept
    flat = to_flat_state(state)
    paths = flat._keys
    flat._values  # noqa: B018 - read in full, so the state keeps both
    return paths, flat._handed


def _split_items(flat_state) -> tuple[list, list]:
    """(paths as tuples, leaves) of ``(path, leaf)`` pairs or a mapping."""
    if isinstance(flat_state, FlatState):
        paths, leaves = flat_state._keys, flat_state._values
        n = min(len(paths), len(leaves))  # its pairs, as zip makes them
        return list(paths[:n]), leaves[:n]
    if isinstance(flat_state, Mapping):
        return list(map(tuple, flat_state.keys())), list(flat_state.values())
    paths, leaves = [], []
    add_path, add_leaf = paths.append, leaves.append
    for path, leaf in flat_state:
        add_path(path)
        add_leaf(leaf)
    return list(map(tuple, paths)), leaves


def from_flat_state(flat_state, *, cls=State) -> State:
    """A state from ``(path, leaf)`` pairs (or a ``{path: leaf}`` mapping), in
    order; a repeated path keeps its first position and its last leaf."""
    native = flat_state._native_if_unchanged() if type(flat_state) is FlatState else None
    if native is not None:
        out = c_void_p()
        check(lib.nnx_state_from_flat(native, byref(out)))
        return _as_class(State._from_handle(out.value), cls)
    paths, leaves = _split_items(flat_state)
    backing = _flat_with_paths(flat_state, paths)
    if backing is not None and len(leaves) == len(paths):  # the paths are encoded already
        return _as_class(State._from_handle(built_with_leaves(backing._native, leaves)), cls)
    return _as_class(State._from_handle(_built_from_leaves(paths, leaves)), cls)


# The live flat states backed by a native list whose paths were given out:
# pairs made from one (`list(flat)`, a comprehension over it) hold those
# very path objects, which its native list has encoded already.
_flats_with_paths: weakref.WeakSet = weakref.WeakSet()


def _note_paths(flat: FlatState) -> None:
    _flats_with_paths.add(flat)


def _flat_with_paths(flat_state, paths: list) -> FlatState | None:
    """A live flat state backed by a native list whose paths are ``paths``
    (the very objects, in order): ``flat_state`` itself, or one whose paths
    were given out."""
    if type(flat_state) is FlatState:
        flat = flat_state
        if flat._native is None or len(flat._paths) != len(paths):
            return None
        return flat
    if not paths:
        return None
    first, n = paths[0], len(paths)
    for flat in list(_flats_with_paths):
        known = flat._paths
        if known[0] is first and len(known) == n and flat._native is not None and all(map(is_, paths, known)):
            return flat
    return None


def _leaf_pairs(mapping: Mapping) -> list | None:
    """The (path, leaf) pairs of nested plain mappings, in order; None when
    a level needs building key by key (a State to share, an empty mapping
    to keep, nesting past the library's limit)."""
    pairs: list = []
    add = pairs.append

    def walk(prefix: tuple, level: Mapping) -> bool:
        if len(prefix) >= L.NNX_MAX_DEPTH:
            return False
        for key, value in level.items():
            if isinstance(value, Mapping):
                if not value or isinstance(value, State) or not walk(prefix + (key,), value):
                    return False
            else:
                add((prefix + (key,), value))
        return True

    return pairs if mapping and walk((), mapping) else None


def _as_class(state: State, cls) -> State:
    """``state`` as an instance of the State subclass ``cls``."""
    if cls is not State and issubclass(cls, State):
        state = cls(state)
    return state


# --------------------------------------------------------------------------
# filter / split / merge / diff
# --------------------------------------------------------------------------


def _partition(fn, state, filters: tuple) -> list[State]:
    if not isinstance(state, State):
        state = _as_state(state)
    n = len(filters)
    outs = (c_void_p * n)()
    kept = kept_filters(filters)
    if kept is not None:
        check(fn(state._h, kept, n, outs))
    else:
        with NativeFilters(filters) as native:
            check(fn(state._h, native.array, n, outs))
    return _wrap_all(outs)


def _wrap_all(handles, _new=object.__new__) -> list[State]:
    """States for owned native handles."""
    states = []
    for h in handles:
        state = _new(State)
        _set_handle(state, h)
        states.append(state)
    return states


def _one_or_tuple(states: list[State]):
    return states[0] if len(states) == 1 else tuple(states)


def filter_state(state, first, /, *filters):
    """One state per filter: each leaf goes to the first filter that matches
    it, or nowhere. One filter gives a state, several a tuple."""
    return _one_or_tuple(_partition(lib.nnx_state_filter, state, (first, *filters)))


def split_state(state, first, /, *filters):
    """As :func:`filter_state`, but every leaf must match some filter
    (``ValueError: Non-exhaustive filters, ...`` otherwise)."""
    return _one_or_tuple(_partition(lib.nnx_state_split, state, (first, *filters)))


def merge_state(state, /, *states, cls=State) -> State:
    """The union of the states' leaves; at the same path the later state
    wins. One state merges to an equal copy."""
    inputs = [_as_state(s) for s in (state, *states)]
    handles = (c_void_p * len(inputs))(*(s._h for s in inputs))
    out = c_void_p()
    check(lib.nnx_state_merge(handles, len(inputs), byref(out)))
    return _as_class(State._from_handle(out.value), cls)


def diff(state, other) -> State:
    """The leaves of ``state`` whose path is not a leaf path of ``other``
    (a copy of ``state`` when ``other`` has no keys)."""
    a, b = _as_state(state), _as_state(other)
    out = c_void_p()
    check(lib.nnx_state_diff(a._h, b._h, byref(out)))
    return State._from_handle(out.value)


def map_state(f: tp.Callable[[tuple, tp.Any], tp.Any], state) -> State:
    """``f(path, leaf)`` over the flat state, unflattened again."""
    flat = to_flat_state(state)  # always backed by a native list
    leaves = list(map(f, flat._keys, flat._values))
    # The paths stay the state's own: only the leaves cross again.
    return State._from_handle(built_with_leaves(flat._native, leaves))


# --------------------------------------------------------------------------
# Pure dicts
# --------------------------------------------------------------------------


def to_pure_dict(state, extract_fn=None) -> dict:
    """Nested dicts of plain values: each variable's value (a numpy array over
    the native buffer), each bare array as is."""
    flat = to_flat_state(state)
    leaves = flat._values
    if extract_fn is None:
        # (A variable class's metaclass is VariableMeta: a quicker test than
        # isinstance, which VariableMeta answers itself.)
        variables = [leaf for leaf in leaves if isinstance(type(leaf), VariableMeta)]
        # What each variable kept of its value holds if it did not change
        # itself: checked for all in one call, not one call per value.
        _reads.refresh(variables)
        if len(variables) == len(leaves):
            values = [leaf.get_value() for leaf in leaves]
        else:
            values = [leaf.get_value() if isinstance(type(leaf), VariableMeta) else leaf for leaf in leaves]
    else:
        values = list(map(extract_fn, leaves))
    return unflatten_mapping(dict(zip(flat._keys, values)))


def replace_by_pure_dict(state: State, pure_dict: Mapping, replace_fn=None) -> None:
    """Replaces the values of ``state`` by those of ``pure_dict``, matching each
    path as given, then with int-looking parts as ints. Variables are replaced
    by copies holding the new values (``x.replace(v)``), as Flax does."""
    replacements = flatten_mapping(pure_dict)
    if replace_fn is None:
        if isinstance(state, State):
            h = state._h
            if replace_natively(h, _kept_flat(state, _version(h)), replacements, _try_int):
                _forget_kept(state)
                return
        replace_fn = lambda x, v: x.replace(v) if hasattr(x, "replace") else v  # noqa: E731
    current = dict(to_flat_state(state))
    for path, value in replacements.items():
        if path in current:
            matched = path
        else:
            int_path = tuple(map(_try_int, path))
            if int_path in current:
                matched = int_path
            else:
                raise ValueError(f"key in pure_dict not available in state: {path}")
        current[matched] = replace_fn(current[matched], value)
    # As ``state.update(unflatten_mapping(current))``, each top-level subtree
    # built natively in one go.
    rebuilt = from_flat_state(list(current.items()))
    for key in rebuilt:
        state[key] = rebuilt[key]

"""JAX pytrees: ``State``, every ``Variable`` class and ``FlatState``,
registered as Flax registers its own (flax/nnx/statelib.py, variablelib.py),
so that ``jax.tree.map``, ``jax.tree.leaves`` and
``jax.tree_util.tree_flatten_with_path`` see the same leaves, in the same
order, under the same keys as for the equivalent ``flax.nnx.State``:

- a ``State``: its entries in the library's sorted key order, each under
  ``DictKey(key)``; nested states are dicts (as in a Flax State), or, where
  one level mixes int and str keys (which jax cannot sort), a node of their
  own with the same keys; the aux data is the tuple of keys;
- a ``Variable``: one child, its value, under ``GetAttrKey('value')``; the
  aux data is ``tuple(sorted(v.get_metadata().items()))``;
- a ``FlatState``: its leaves, the aux data its paths (no keys: jax gives
  ``FlattenedIndexKey(i)``, as for Flax's).

Unflattening builds ``nnx_state`` objects again: a variable of the same
class with the same metadata through ``variablelib.rebuild_variable`` (whose
``store_value`` is the one place a Python value becomes a native value),
states through the library.

The package never imports jax itself: when jax is already imported, the
registration happens at once; otherwise a watcher on ``sys.meta_path``
registers right after ``import jax`` finishes, and ``nnx_state`` keeps
working without jax.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from collections.abc import Mapping
from ctypes import byref, c_size_t, c_void_p
from functools import partial

from . import _keys as K
from . import _lib as L
from . import _var_reads as _reads
from . import statelib, variablelib
from ._lib import check, lib
from .statelib import FlatState, State, _path_sort_key, flat_lists, from_flat_state, to_flat_state
from .statelib import _handle_for_items, _pending_state, _set_tree, _tree_of, pending_of, state_version
from ._flat_native import _built_from_leaves
from ._values import comes_back_as_itself
from ._var_live import _changes, pending_variable
from .variablelib import Variable, rebuild_variable

__all__ = ["install", "is_registered"]

_lock = threading.RLock()
_registered: set[type] = set()
_tree_util = None  # jax.tree_util once registered


def is_registered() -> bool:
    """Whether the pytree registration has happened (jax has been imported)."""
    return _tree_util is not None


# --------------------------------------------------------------------------
# Variable
# --------------------------------------------------------------------------


_VALUE_KEY = None  # GetAttrKey("value"), once jax is there


def _variable_flatten_with_keys(v: Variable, _kept=_reads._seen_metadata_of):
    try:  # unchanged since the last flatten: what it gave then
        seen = _kept(v)
        if seen is not None and seen[0] == _changes.value and seen[4] is not None:
            return seen[4]
    except AttributeError:  # never read
        pass
    return _reads.keyed_parts(v, v._pytree_parts(), _VALUE_KEY)


_itself_by_type: dict[type, bool] = {}  # comes_back_as_itself, by the value's class


def _variable_unflatten(cls: type, metadata: tuple, children) -> Variable:
    value = children[0]
    itself = _itself_by_type.get(type(value))
    if itself is None:
        itself = _itself_by_type[type(value)] = comes_back_as_itself(value)
    if itself:
        return pending_variable(cls, value, metadata)
    return rebuild_variable(cls, value, dict(metadata))


def _register_variable_class(cls: type) -> None:
    with _lock:
        if cls in _registered or _tree_util is None:
            return
        _tree_util.register_pytree_with_keys(
            cls,
            _variable_flatten_with_keys,
            partial(_variable_unflatten, cls),
            cls._pytree_parts,  # the flatten itself: no call in between
        )
        _registered.add(cls)


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


class MixedKeys(Mapping):
    """A nested level of a state whose keys mix int and str (ints first, as
    the library orders them): a pytree node with the keys of a dict, for
    the levels jax cannot hold as a dict (it sorts dict keys). A read-only
    mapping, so that the unflatten keeps it as it is."""

    __slots__ = ("keys", "children", "_index")

    def __init__(self, keys: tuple, children: list):
        self.keys = keys
        self.children = children
        self._index = None

    def __getitem__(self, key):
        if self._index is None:
            self._index = dict(zip(self.keys, self.children))
        return self._index[key]

    def items(self):
        return zip(self.keys, self.children)

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"MixedKeys({dict(zip(self.keys, self.children))!r})"


def _as_node(level: dict):
    """A nested level as the pytree node that stands for it."""
    kinds = {type(k) for k in level}
    if len(kinds) > 1:
        return MixedKeys(tuple(level), list(level.values()))
    return level


def _complete_level(h: int, level: dict) -> None:
    """Adds to ``level`` (the part of the native state ``h`` that the flat
    list shows) the nested states that hold no leaf, which the flat list
    leaves out, so that the structure is the state's own (as in Flax, an
    empty nested state stays). Three native calls per nested state."""
    size = c_size_t()
    check(lib.nnx_state_len(h, byref(size)))
    if size.value != len(level):
        key = L.nnx_key()
        for i in range(size.value):
            check(lib.nnx_state_key_at(h, i, byref(key)))
            level.setdefault(K.read_key(key), {})  # a nested state without leaves
        ordered = sorted(level.items(), key=lambda item: _path_sort_key(item[:1]))
        level.clear()
        level.update(ordered)
    for key, value in level.items():
        if isinstance(value, dict):
            keys, n, keep = K.path_arg((key,))
            sub = c_void_p()
            check(lib.nnx_state_get_state(h, keys, n, byref(sub)))
            try:
                _complete_level(sub.value, value)
            finally:
                lib.nnx_state_free(sub.value)


def _nodes(level: dict) -> list:
    """The children of a level, nested levels made pytree nodes."""
    return [_as_node(dict(zip(v, _nodes(v)))) if isinstance(v, dict) else v for v in level.values()]


def _state_children(state: State) -> tuple[tuple, list]:
    """(keys, children) of a state's top level, in the library's order;
    kept by the state while its tree does not change (jax only reads them).
    When other variables changed since, its variables are checked in one
    call, so that each keeps what it read if it did not change itself."""
    try:  # not built yet: the children it was unflattened from
        children = pending_of(state)[1]
        if children is not None:
            return children
    except AttributeError:
        pass
    version = state_version(state)
    try:
        kept = _tree_of(state)
    except AttributeError:
        kept = None
    if kept is not None and kept[0] == version:
        _, keys, children, checked_at, variables = kept
        count = _changes.value
        if checked_at != count:
            _reads.refresh(variables)
            _set_tree(state, (version, keys, children, count, variables))
        return keys, children
    count = _changes.value
    keys, children, variables = _read_children(state)
    _set_tree(state, (version, keys, children, count, variables))
    return keys, children


def _read_children(state: State) -> tuple[tuple, list, list]:
    """(keys, children, the variables among the leaves)."""
    paths, leaves = flat_lists(state)
    root: dict = {}
    for path, leaf in zip(paths, leaves):
        node = root
        for key in path[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
        node[path[-1]] = leaf
    _complete_level(state._h, root)
    return tuple(root), _nodes(root), [leaf for leaf in leaves if isinstance(leaf, Variable)]


def _state_flatten_with_keys(state: State):
    keys, children = _state_children(state)
    dict_key = _tree_util.DictKey
    return [(dict_key(k), c) for k, c in zip(keys, children)], keys


def _state_flatten(state: State):
    keys, children = _state_children(state)
    return children, keys


def _collect(prefix: tuple, value, paths: list, leaves: list) -> bool:
    """Appends the (path, leaf) pairs under ``value``; False when it holds an
    empty mapping (which a flat list cannot carry)."""
    if isinstance(value, Mapping):
        if not value:
            return False
        for k, v in value.items():
            if not _collect(prefix + (k,), v, paths, leaves):
                return False
        return True
    paths.append(prefix)
    leaves.append(value)
    return True


def _state_unflatten(cls: type, keys: tuple, children) -> State:
    # Nothing native until the state is used: jax often flattens the result
    # again at once (a chain of tree maps, a jitted function's output).
    children = list(children)
    return _pending_state(cls, partial(_unflattened_handle, keys, children), (keys, children))


def _unflattened_handle(keys: tuple, children: list) -> int:
    """The native tree of a state jax unflattened (owned handle)."""
    paths: list = []
    leaves: list = []
    if keys and all(_collect((k,), c, paths, leaves) for k, c in zip(keys, children)):
        return _built_from_leaves(paths, leaves)
    return _handle_for_items(zip(keys, children))  # empty nested states: level by level


def _mixed_flatten_with_keys(node: MixedKeys):
    dict_key = _tree_util.DictKey
    return [(dict_key(k), c) for k, c in zip(node.keys, node.children)], node.keys


def _mixed_unflatten(keys: tuple, children) -> MixedKeys:
    return MixedKeys(keys, list(children))


def _register_state_class(cls: type) -> None:
    with _lock:
        if cls in _registered or _tree_util is None:
            return
        _tree_util.register_pytree_with_keys(
            cls, _state_flatten_with_keys, partial(_state_unflatten, cls), _state_flatten
        )
        _registered.add(cls)


# --------------------------------------------------------------------------
# FlatState
# --------------------------------------------------------------------------


def _flat_state_flatten(flat: FlatState):
    return flat._values, flat._keys


def _flat_state_unflatten(keys: tuple, values) -> FlatState:
    return FlatState.from_sorted_keys_values(keys, values)


# --------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def _register(tree_util) -> None:
    global _tree_util, _VALUE_KEY
    with _lock:
        if _tree_util is not None:
            return
        _tree_util = tree_util
        _VALUE_KEY = tree_util.GetAttrKey("value")
        tree_util.register_pytree_node(FlatState, _flat_state_flatten, _flat_state_unflatten)
        tree_util.register_pytree_with_keys(
            MixedKeys, _mixed_flatten_with_keys, _mixed_unflatten
        )
        # Classes made from now on register themselves; then the ones there are.
        variablelib.class_hooks.append(_register_variable_class)
        statelib.state_class_hooks.append(_register_state_class)
        for cls in _subclasses(Variable):
            _register_variable_class(cls)
        for cls in _subclasses(State):
            _register_state_class(cls)


def _on_jax_imported() -> None:
    _remove_watcher()
    try:
        _register(importlib.import_module("jax.tree_util"))
    except Exception as e:  # never break `import jax`
        warnings.warn(f"nnx_state could not register its pytrees with jax: {e!r}", RuntimeWarning, stacklevel=2)


class _JaxWatcher:
    """A ``sys.meta_path`` finder that finds nothing itself: for ``jax`` it
    asks the finders after it and has the module's loader call
    ``_on_jax_imported`` once the module has run."""

    _busy = threading.local()

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "jax" or getattr(self._busy, "on", False):
            return None
        self._busy.on = True  # a finder that asks importlib again finds us out of the way
        try:
            for finder in list(sys.meta_path):
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.on = False
        loader = spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:  # pragma: no cover - jax is a plain package
            return spec

        def exec_module(module):
            run(module)
            del loader.exec_module  # back to the loader's own method
            _on_jax_imported()

        try:
            loader.exec_module = exec_module
        except AttributeError:  # pragma: no cover - a loader without __dict__
            pass
        return spec


_watcher = _JaxWatcher()


def _remove_watcher() -> None:
    try:
        sys.meta_path.remove(_watcher)
    except ValueError:
        pass


def install() -> None:
    """Registers the pytrees now if jax is imported, else when it is."""
    if sys.modules.get("jax") is not None:
        _on_jax_imported()
    elif _watcher not in sys.meta_path:
        sys.meta_path.insert(0, _watcher)

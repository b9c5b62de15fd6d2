"""From the nested trees that other checkpoint formats hold (an Orbax item,
a flax msgpack file) to a State: where each leaf goes, what it becomes, and
which leaves are read at all.

A source tree is nested dicts (str keys) and lists of leaves. Each leaf is
planned before any array is read (:func:`plan`):

- its **path** in the State: the source path without the ``value`` level
  that Flax's pytree flattening puts under each Variable (a dict whose only
  entry is a leaf named ``value``), keys as ``like`` or the checkpoint's own
  record spell them, else decimal strings as int keys (``int_keys``);
- what it **becomes**, the first of: the variable at that path in ``like``
  (its class and metadata), the variable the checkpoint records (files
  written by ``save_orbax``), the first ``types`` rule whose filter matches
  the path, else a bare array (a typed PRNG key, which the library
  holds only in a variable, becomes an ``RngKey``);
- whether it is **selected** by ``filter``: asked with the leaf's path and
  the variable it becomes (value not yet read), so a type, tag or path
  filter reads only what it selects (an untyped leaf is asked about as a
  bare array, a key among them too: which leaves are keys shows only once
  read).

``like`` must cover the source: a leaf that ``like`` lacks, or a leaf of
``like`` the source lacks, is an error unless ``filter`` leaves it out.
"""

from __future__ import annotations

import difflib
import re
import typing as tp
from collections.abc import Mapping
from ctypes import byref, c_size_t

import numpy as np

from . import _lib as L
from .filterlib import to_predicate
from .flax_interop import loaded_flax_nnx
from .statelib import State, from_flat_state, to_flat_state
from .variablelib import (
    RngKey,
    Variable,
    VariableMeta,
    _unpickle_variable,
    class_for_type,
    lookup_type,
    type_name,
)

# The key of the records ``save_orbax`` writes into an item's custom metadata.
RECORD_KEY = "nnx_state.v1"

_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)")


def canonical_key(key: str, int_keys: bool):
    """A source key as a State key: canonical decimals (``0``, ``12``,
    ``-3``; not ``007`` or ``-0``) as ints when ``int_keys``."""
    if int_keys and isinstance(key, str) and _DECIMAL.fullmatch(key) and key != "-0":
        return int(key)
    return key


def text_path(path: tuple) -> tuple:
    """A path with every key as text: how Orbax and msgpack spell keys."""
    return tuple(str(k) for k in path)


def walk(tree, prefix: tuple = ()) -> tp.Iterator[tuple[tuple, tp.Any]]:
    """(path, leaf) of a tree of dicts and lists, in order, no deeper than
    ``NNX_MAX_DEPTH``. Empty dicts and lists hold no leaf."""
    if len(prefix) > L.NNX_MAX_DEPTH:
        raise ValueError(f"{'/'.join(map(str, prefix[:8]))}/...: nested deeper than {L.NNX_MAX_DEPTH} levels")
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from walk(value, (*prefix, key))
    elif isinstance(tree, (list, tuple)) and not _is_namedtuple(tree):
        for i, value in enumerate(tree):
            yield from walk(value, (*prefix, i))
    elif prefix:
        yield prefix, tree


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def get_at(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


# --------------------------------------------------------------------------
# types rules
# --------------------------------------------------------------------------


def registered_type_names() -> list[str]:
    count = c_size_t()
    L.check(L.lib.nnx_type_count(byref(count)))
    return [type_name(i) for i in range(count.value)]


def type_by_name(name: str) -> type:
    """The variable class of a registered type name; an unknown name is a
    ``TypeError`` suggesting the closest names."""
    type_id = lookup_type(name)
    if type_id is None:
        close = difflib.get_close_matches(name, registered_type_names(), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise TypeError(f"unknown variable type {name!r}{hint}")
    return class_for_type(type_id)


def _as_filter(f):
    """A filter argument: text in the filter syntax, or a filter object."""
    if isinstance(f, str):
        from .filter_text import parse_filter

        return parse_filter(f)
    return to_predicate(f)


def as_predicate(filter):
    """``filter`` (text, a filter object, or a list of either, any of which
    selects) as a predicate, or None for everything."""
    if filter is None:
        return None
    if isinstance(filter, (list, tuple)):
        parts = [_as_filter(f) for f in filter]
        return lambda path, leaf: any(p(path, leaf) for p in parts)
    return _as_filter(filter)


def parse_types(types) -> list[tuple[tp.Callable, type]]:
    """``types``, a mapping (or pairs) of filter -> type (a name or a
    variable class), as (predicate, class) rules in order."""
    if types is None:
        return []
    items = types.items() if isinstance(types, Mapping) else types
    rules = []
    for f, t in items:
        cls = type_by_name(t) if isinstance(t, str) else t
        if not isinstance(cls, VariableMeta):
            raise TypeError(f"types: {f!r} maps to {t!r}, not a variable type name or class")
        rules.append((_as_filter(f), cls))
    return rules


_PROBE = np.zeros((0,), np.float32)


def rule_type(rules, path: tuple):
    """The class of the first rule matching a bare leaf at ``path``."""
    for predicate, cls in rules:
        if predicate(path, _PROBE):
            return cls
    return None


# --------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------


class Leaf(tp.NamedTuple):
    raw: tuple | None  # the path in the source tree (None: a variable without a value)
    path: tuple  # the path in the State
    target: Variable | None  # the variable to receive the value (None: a bare leaf)
    like_value: tp.Any  # the value ``like`` has there, to check shape and dtype


def _like_index(like) -> dict[tuple, tuple]:
    """``like`` (a State, a Flax state or a mapping) flattened: text path ->
    (path, leaf)."""
    if like is None:
        return {}
    return {text_path(p): (p, leaf) for p, leaf in to_flat_state(as_state(like))}


def as_state(tree) -> State:
    """``tree`` as an nnx_state State: itself, converted from Flax (a
    ``flax.nnx.State`` or a mapping holding Flax variables), or built from
    a mapping."""
    if isinstance(tree, State):
        return tree
    flax_nnx = loaded_flax_nnx()
    if flax_nnx is not None and (
        isinstance(tree, flax_nnx.State)
        or (isinstance(tree, Mapping) and any(isinstance(leaf, flax_nnx.Variable) for _, leaf in walk(tree)))
    ):
        from .flax_interop import from_flax

        return from_flax(tree)
    return State(tree)


def _variable_levels(raws: list[tuple]) -> set[tuple]:
    """The raw paths that end in a Variable's ``value`` level: a leaf named
    ``value`` that is the only entry of its dict."""
    children: dict[tuple, set] = {}
    for raw in raws:
        children.setdefault(raw[:-1], set()).add(raw[-1])
    return {raw for raw in raws if len(raw) >= 2 and raw[-1] == "value" and children[raw[:-1]] == {"value"}}


def _where(path: tuple) -> str:
    return "/".join(map(str, path))


def plan(raws: list[tuple], *, like=None, types=None, filter=None, records=None,
         int_keys: bool = True, source: str = "the checkpoint"):
    """The leaves to read, in source order, and the aliases (path, path of
    the leaf it is) that records name. See the module's docstring."""
    index = _like_index(like)
    rules = parse_types(types)
    predicate = as_predicate(filter)
    by_raw, aliases, empties = _records(records)
    levels = _variable_levels(raws) if not by_raw else set()
    leaves: list[Leaf] = []
    seen_like: set[tuple] = set()
    for raw in raws:
        record = by_raw.get(raw)
        if record is not None:
            path = tuple(record["path"])
        else:
            path = raw[:-1] if raw in levels else raw
            path = tuple(canonical_key(k, int_keys) for k in path)
        like_value = None
        if index:
            hit = index.get(text_path(path))
            if hit is None:
                if predicate is None or predicate(path, _PROBE):
                    raise ValueError(
                        f"{source} holds {_where(path)!r}, which `like` has not "
                        "(pass a filter that leaves it out)"
                    )
                continue
            seen_like.add(text_path(path))
            path, model = hit
            if isinstance(model, Variable):
                target = _empty_like(model)
                like_value = model.get_value()
            else:
                target, like_value = None, model
        elif record is not None and "type" in record:
            target = _unpickle_variable(tuple(record["type"]), None, {}, record.get("metadata") or {})
        else:
            cls = rule_type(rules, path)
            target = None if cls is None else cls(None)  # None: a bare array (a key: an RngKey, in build)
        if predicate is not None and not predicate(path, _PROBE if target is None else target):
            continue
        leaves.append(Leaf(raw, path, target, like_value))
    for text, (path, model) in index.items():
        if text not in seen_like and (predicate is None or predicate(path, model)):
            if isinstance(model, Variable) and model.get_value() is None:  # nothing to read
                leaves.append(Leaf(None, path, _empty_like(model), None))
                continue
            raise ValueError(f"`like` has {_where(path)!r}, which {source} does not hold")
    if not index:
        for record in empties:  # variables saved without a value
            path = tuple(record["path"])
            target = _unpickle_variable(tuple(record["type"]), None, {}, record.get("metadata") or {})
            if predicate is None or predicate(path, target):
                leaves.append(Leaf(None, path, target, None))
    kept = {leaf.path for leaf in leaves}
    aliases = [(path, first) for path, first in aliases if first in kept]
    return leaves, aliases


def _empty_like(model: Variable) -> Variable:
    """A new variable of ``model``'s class and metadata, without a value."""
    from .variablelib import rebuild_variable

    return rebuild_variable(type(model), None, model.get_metadata())


def _records(records):
    """The records ``save_orbax`` wrote: raw path -> record, and aliases."""
    by_raw: dict[tuple, dict] = {}
    aliases: list[tuple[tuple, tuple]] = []
    empties: list[dict] = []
    if not isinstance(records, Mapping):
        return by_raw, aliases, empties
    for record in records.get("leaves", ()):
        path = tuple(record["path"])
        if "same_as" in record:
            aliases.append((path, tuple(record["same_as"])))
        elif record.get("empty"):
            empties.append(record)
        else:
            raw = text_path(path) + (("value",) if "type" in record else ())
            by_raw[raw] = record
    return by_raw, aliases, empties


# --------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------


def _is_typed_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None or isinstance(x, np.ndarray):
        return False
    import jax

    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _check_like(leaf: Leaf, value, source: str):
    """``value`` has the shape and dtype ``like`` expects there; key data
    read where ``like`` holds a typed key becomes a key of its impl."""
    expected = leaf.like_value
    if expected is None or not hasattr(expected, "shape") or not hasattr(expected, "dtype"):
        return value
    if _is_typed_key(expected) and not _is_typed_key(value):
        import jax

        value = jax.random.wrap_key_data(np.asarray(value), impl=_key_impl(expected))
    if _is_typed_key(expected) or _is_typed_key(value):
        return value
    shape, dtype = tuple(getattr(value, "shape", ())), getattr(value, "dtype", None)
    if shape != tuple(expected.shape) or (dtype is not None and not _same_dtype(dtype, expected)):
        raise ValueError(
            f"{source}: {_where(leaf.path)!r} is {np.dtype(dtype) if dtype is not None else type(value).__name__}"
            f"{list(shape)} where `like` has {np.dtype(expected.dtype)}{list(expected.shape)}"
        )
    return value


def _key_impl(key):
    """The implementation of a typed key, or of an abstract one (a
    ``ShapeDtypeStruct`` of a key dtype, which ``key_impl`` does not take:
    its dtype carries the implementation)."""
    import jax

    if isinstance(key, jax.Array):
        return jax.random.key_impl(key)
    return key.dtype._impl


def _same_dtype(dtype, expected) -> bool:
    """``dtype`` is what ``expected`` has; an abstract value (from
    ``nnx.eval_shape``) has the dtype jax would give, 64-bit ones narrowed
    unless ``jax_enable_x64``: the checkpoint's wider dtype matches it."""
    if np.dtype(dtype) == np.dtype(expected.dtype):
        return True
    if type(expected).__name__ != "ShapeDtypeStruct":
        return False
    import jax

    return jax.dtypes.canonicalize_dtype(dtype) == np.dtype(expected.dtype)


def build(leaves: list[Leaf], values: tp.Callable[[tuple], tp.Any], aliases, source: str) -> State:
    """The State of planned leaves, each value given by ``values(raw)``."""
    pairs = []
    for leaf in leaves:
        if leaf.raw is None:  # a variable without a value
            pairs.append((leaf.path, leaf.target))
            continue
        value = _check_like(leaf, values(leaf.raw), source)
        if leaf.target is None:
            if not _array_like(value):
                where = _where(leaf.path)
                raise ValueError(
                    f"{source}: {where!r} holds a {type(value).__name__} ({value!r:.40}), not an array: "
                    f"leave it out (filter '~at:{where}') or give it a variable type"
                )
            if _is_typed_key(value):
                target = RngKey(None)
                target.set_value(value)
                value = target
            pairs.append((leaf.path, value))
        else:
            leaf.target.set_value(value)
            pairs.append((leaf.path, leaf.target))
    if aliases:
        at = dict(pairs)
        pairs.extend((path, at[first]) for path, first in aliases)
    return from_flat_state(pairs)


def _array_like(value) -> bool:
    """What a State holds as a bare leaf: an array or a number (as a 0-d
    array), not a string or another object."""
    return hasattr(value, "shape") and hasattr(value, "dtype") or isinstance(value, (bool, int, float, complex))


def nbytes(value) -> int:
    """Bytes of an array or a typed key's data (0 for anything else)."""
    if _is_typed_key(value):
        import jax

        value = jax.random.key_data(value)
    return int(getattr(value, "nbytes", 0) or 0)

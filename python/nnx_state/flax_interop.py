"""Conversion to and from a live ``flax.nnx.State`` (when flax is installed).

Variable types travel by name: a Flax class ``QuantParam(nnx.Param)``
becomes the nnx_state type ``QuantParam`` under ``Param`` (registered on the
fly), and back. A variable held at several paths stays one variable.

Arrays are not copied where memory allows: a C-contiguous writable numpy
array is lent to the library; a read-only buffer (a jax array on the CPU
seen through ``numpy.asarray``) is copied unless ``copy=False``, so that the
values stay writable in place (``v[...] += 1``). Going back, Flax variables
receive numpy arrays over the native buffers (``array_fn`` can convert them,
for example ``jax.numpy.asarray``).
"""

from __future__ import annotations

import typing as tp
from collections.abc import Mapping

import numpy as np

from . import _arrays as A
from .statelib import State
from .variablelib import (
    REQUIRED_METADATA,
    Variable,
    variable_type,
    new_variable,
    type_name,
    type_parent,
)

__all__ = ["from_flax", "to_flax"]


def _flax():
    try:
        from flax import nnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("from_flax / to_flax need flax (pip install flax)") from e
    return nnx


def _flax_builtins(nnx) -> dict[str, type]:
    from flax.nnx.training import optimizer

    return {
        "Variable": nnx.Variable,
        "Param": nnx.Param,
        "BatchStat": nnx.BatchStat,
        "Cache": nnx.Cache,
        "Intermediate": nnx.Intermediate,
        "Perturbation": nnx.Perturbation,
        "RngState": nnx.RngState,
        "RngKey": nnx.RngKey,
        "RngCount": nnx.RngCount,
        "OptState": optimizer.OptState,
        "OptArray": optimizer.OptArray,
        "OptVariable": optimizer.OptVariable,
    }


# --------------------------------------------------------------------------
# Flax -> nnx_state
# --------------------------------------------------------------------------


def _our_class(flax_cls: type, nnx) -> type:
    if flax_cls is nnx.Variable:
        return Variable
    parent = next(b for b in flax_cls.__mro__[1:] if issubclass(b, nnx.Variable))
    return variable_type(flax_cls.__name__, _our_class(parent, nnx))


def _metadata_from_flax(var, nnx) -> dict:
    """A Flax variable's metadata as data: every entry (``out_sharding``
    tuples, ``mesh=None``, ...) but the hooks (``on_get_value``, ...), which
    are code. An entry that is not data (a ``jax.sharding.Mesh``, a
    ``PartitionSpec``) fails in ``set_metadata`` with a TypeError naming it."""
    out = {}
    for name, value in var.get_metadata(exclude_required=True).items():
        if name in _HOOKS and callable(value):
            continue
        out[name] = value
    eager = var.get_metadata("eager_sharding", True)
    if eager is not True:
        out["eager_sharding"] = eager
    return out


# Flax's variable hooks (deprecated in Flax): functions kept in the metadata.
_HOOKS = ("on_get_value", "on_set_value", "on_create_value", "on_add_axis", "on_remove_axis")


def from_flax(state, *, copy: bool | None = None) -> State:
    """An nnx_state ``State`` holding the leaves of a ``flax.nnx.State`` (or a
    nested mapping of Flax variables and arrays)."""
    nnx = _flax()
    memo: dict[int, Variable] = {}

    def leaf(value):
        if isinstance(value, nnx.Variable):
            known = memo.get(id(value))
            if known is not None:
                return known
            cls = _our_class(type(value), nnx)
            raw = value.get_value()
            array = None if raw is None else A.to_native(np.asarray(raw), copy=copy)
            try:
                obj = new_variable(cls, array)
            finally:
                if array:
                    A.lib.nnx_array_release(array)
            metadata = _metadata_from_flax(value, nnx)
            if metadata:
                obj.set_metadata(**metadata)
            memo[id(value)] = obj
            return obj
        return value

    def convert(mapping) -> State:
        out = State()
        for key, value in mapping.items():
            if isinstance(value, (Mapping, nnx.State)):
                out[key] = convert(value)
            elif isinstance(value, nnx.Variable):
                out[key] = leaf(value)
            else:
                array = A.to_native(np.asarray(value), copy=copy)
                try:
                    out._put_native_array(key, array)
                finally:
                    A.lib.nnx_array_release(array)
        return out

    mapping = state.raw_mapping if isinstance(state, nnx.State) else state
    return convert(mapping)


# --------------------------------------------------------------------------
# nnx_state -> Flax
# --------------------------------------------------------------------------

_made: dict[tuple[str, type], type] = {}


def _flax_class(type_id: int, nnx, builtins) -> type:
    name = type_name(type_id)
    parent = type_parent(type_id)
    if parent is None:
        return nnx.Variable
    if name in builtins and type_name(parent) == builtins[name].__mro__[1].__name__:
        return builtins[name]
    flax_parent = _flax_class(parent, nnx, builtins)
    for sub in flax_parent.__subclasses__():
        if sub.__name__ == name:
            return sub
    made = _made.get((name, flax_parent))
    if made is None:
        made = _made[(name, flax_parent)] = type(name, (flax_parent,), {"__module__": __name__})
    return made


def _metadata_to_flax(var: Variable, cls: type) -> dict:
    """The metadata of the Flax variable standing for ``var``, as Flax's own
    constructor lays it out: the entries, then ``hijax``, ``ref`` and
    ``eager_sharding``, and the hooks its class defines. Given to
    ``from_metadata``, as Flax does when it rebuilds a variable from a
    pytree, so that nothing runs again: values already sharded are not
    sharded anew (which needs a mesh), ``on_create_value`` hooks stay
    unrun."""
    metadata = var.get_metadata(exclude_required=True)
    metadata["hijax"] = REQUIRED_METADATA["hijax"]
    metadata["ref"] = REQUIRED_METADATA["ref"]
    metadata["eager_sharding"] = var.get_metadata("eager_sharding")
    for hook in _HOOKS:
        if hasattr(cls, hook):
            metadata[hook] = getattr(cls, hook)
    return metadata


def to_flax(state, *, array_fn: tp.Callable | None = None):
    """A ``flax.nnx.State`` holding Flax variables of the same types (by name),
    metadata and values (numpy arrays over the native buffers, or
    ``array_fn(value)``)."""
    nnx = _flax()
    builtins = _flax_builtins(nnx)
    convert_array = array_fn or (lambda x: x)
    memo: dict[int, object] = {}

    def leaf(value):
        if isinstance(value, Variable):
            known = memo.get(value._ptr)
            if known is not None:
                return known
            cls = _flax_class(type(value)._type_id, nnx, builtins)
            raw = value.get_value()
            out = cls.from_metadata(None if raw is None else convert_array(raw), _metadata_to_flax(value, cls))
            memo[value._ptr] = out
            return out
        return convert_array(value)

    def convert(node) -> dict:
        out = {}
        for key, value in node.items():
            if isinstance(value, Mapping):
                out[key] = convert(value)
            else:
                out[key] = leaf(value)
        return out

    if not isinstance(state, State):
        state = State(state)
    return nnx.State(convert(state))

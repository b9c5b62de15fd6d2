"""Conversion to and from a live ``flax.nnx.State`` (when flax is installed).

Variable types travel by class, not by name: each Flax class is paired with
one nnx_state class and back, so a Flax ``class Lora(nnx.Param)`` becomes an
nnx_state class ``Lora`` under ``Param`` and ``to_flax`` gives back that very
Flax class; a second Flax class named ``Lora`` is a second type here too.
A pair is made on first sight:

- Flax's built-in types pair with ours (``Param`` with ``Param``, ...).
- ``from_flax`` of an unpaired Flax class ``F``: the native type named like
  ``F`` (``F.__name__``, else its qualified names, as a class statement
  would be named) under our class for ``F``'s parent that no other Flax
  class has, such as a type loaded from a checkpoint or made with
  ``variable_type``; else a new class standing for ``F``.
- ``to_flax`` of a type that never came from Flax: the unpaired Flax
  subclass of our parent's Flax class with the same ``__name__`` (or the
  qualified name the native name records), the one defined last when
  several match (a class redefined in a notebook); else a new Flax class.

A variable held at several paths stays one variable.

Values travel as what they are, both ways and without copies: a jax array
on the CPU is held through DLPack over its own buffer and goes back to Flax
as that very jax array; a typed PRNG key (an ``RngKey``'s value) is a
native key and goes back as that key; a C-contiguous writable numpy array
is lent to the library (``copy=True`` copies numpy arrays, ``copy=False``
lends read-only ones too); anything else (sharded or device arrays,
``ShapeDtypeStruct``, Python scalars) is held as the object itself. Going
back, values read from the library as numpy arrays (a loaded checkpoint,
say) can be converted with ``array_fn``, for example ``jax.numpy.asarray``;
jax arrays, keys and other objects are given as they are.
"""

from __future__ import annotations

import threading
import typing as tp
from collections.abc import Mapping

import numpy as np

from . import _arrays as A
from .statelib import State
from .variablelib import (
    REQUIRED_METADATA,
    Variable,
    VariableMeta,
    candidate_names,
    class_for_type,
    lookup_type,
    rebuild_variable,
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


_BUILTIN_NAMES = (
    "Variable", "Param", "BatchStat", "Cache", "Intermediate", "Perturbation",
    "RngState", "RngKey", "RngCount",
)
_OPTIMIZER_NAMES = ("OptState", "OptArray", "OptVariable")

# The pairs: native type id <-> Flax class, one to one.
_flax_by_id: dict[int, type] = {}
_id_by_flax: dict[type, int] = {}
_pair_lock = threading.RLock()


def _pair(type_id: int, flax_cls: type) -> None:
    _flax_by_id[type_id] = flax_cls
    _id_by_flax[flax_cls] = type_id


def _pair_builtins(nnx) -> None:
    if _flax_by_id:
        return
    from flax.nnx.training import optimizer

    for name in _BUILTIN_NAMES:
        _pair(lookup_type(name), getattr(nnx, name))
    for name in _OPTIMIZER_NAMES:
        _pair(lookup_type(name), getattr(optimizer, name))


def _flax_parent(flax_cls: type, nnx) -> type:
    return next(b for b in flax_cls.__mro__[1:] if issubclass(b, nnx.Variable))


def _our_class(flax_cls: type, nnx) -> type:
    """Our class paired with the Flax variable class ``flax_cls``."""
    with _pair_lock:
        _pair_builtins(nnx)
        type_id = _id_by_flax.get(flax_cls)
        if type_id is not None:
            return class_for_type(type_id)
        parent = _our_class(_flax_parent(flax_cls, nnx), nnx)
        for name in candidate_names(flax_cls.__name__, flax_cls.__module__, flax_cls.__qualname__):
            type_id = lookup_type(name)
            if type_id is None:  # free: a new class standing for flax_cls
                namespace = {"__module__": flax_cls.__module__, "__qualname__": flax_cls.__qualname__}
                cls = VariableMeta(flax_cls.__name__, (parent,), namespace, type_name=name)
                _pair(cls._type_id, flax_cls)
                return cls
            if type_parent(type_id) == parent._type_id and type_id not in _flax_by_id:
                _pair(type_id, flax_cls)
                return class_for_type(type_id)
    raise AssertionError("unreachable")  # pragma: no cover - the names never run out


def _base_name(native: str) -> str:
    """A native name without its ``#n`` suffix."""
    head, sep, tail = native.rpartition("#")
    return head if sep and tail.isdigit() else native


def _flax_class(type_id: int, nnx) -> type:
    """The Flax class paired with the native type ``type_id``."""
    with _pair_lock:
        _pair_builtins(nnx)
        flax_cls = _flax_by_id.get(type_id)
        if flax_cls is not None:
            return flax_cls
        flax_parent = _flax_class(type_parent(type_id), nnx)
        ours = class_for_type(type_id)
        native = _base_name(type_name(type_id))
        matches = [
            sub for sub in flax_parent.__subclasses__()
            if sub not in _id_by_flax
            and (sub.__name__ == ours.__name__ or f"{sub.__module__}.{sub.__qualname__}" == native)
        ]
        if matches:
            flax_cls = matches[-1]  # __subclasses__ lists them in definition order
        else:
            flax_cls = type(ours.__name__, (flax_parent,), {"__module__": __name__})
        _pair(type_id, flax_cls)
        return flax_cls


# --------------------------------------------------------------------------
# Flax -> nnx_state
# --------------------------------------------------------------------------


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
            obj = rebuild_variable(cls, value.get_value(), _metadata_from_flax(value, nnx), copy=copy)
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
                array = A.to_native(value, copy=copy)
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
    """A ``flax.nnx.State`` holding Flax variables of the paired types,
    metadata and values: each value as it comes back from the library (the
    jax array, key or object it was given), numpy arrays over the native
    buffers passed through ``array_fn`` when given."""
    nnx = _flax()

    def convert_array(x):
        return array_fn(x) if array_fn is not None and isinstance(x, np.ndarray) else x
    memo: dict[int, object] = {}

    def leaf(value):
        if isinstance(value, Variable):
            known = memo.get(value._ptr)
            if known is not None:
                return known
            cls = _flax_class(type(value)._type_id, nnx)
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

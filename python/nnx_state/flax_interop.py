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

A variable held at several paths stays one variable. A Flax
``HijaxVariable`` stands for its ``var_type`` and comes back as a hijax
variable; one over a ``jax.Ref`` comes back over a new ``jax.Ref``.

Metadata travels entry by entry, Flax's required entries included (see
``variablelib``: ``Mesh``, ``AbstractMesh`` and ``PartitionSpec`` are kept
as data). Hooks (``on_get_value``, ...) that the Flax class defines stay
with the class; a hook given to one variable, and any other entry that is
code or an object, is refused with an error naming its path: nothing is
dropped.

Values travel as what they are, both ways and without copies: a jax array
on the CPU is held through DLPack over its own buffer and goes back to Flax
as that very jax array; a typed PRNG key (an ``RngKey``'s value) is a
native key and goes back as that key; a C-contiguous writable numpy array
is lent to the library (``copy=True`` copies numpy arrays, ``copy=False``
lends read-only ones too); anything else (sharded or device arrays,
``ShapeDtypeStruct``, Python scalars) is held as the object itself. Going
back, values read from the library as numpy arrays (a loaded checkpoint,
say) can be converted with ``array_fn``, for example ``jax.numpy.asarray``,
and are placed by their ``out_sharding`` when a mesh is known (their
``mesh`` entry or ``jax.set_mesh``), as Flax places the value of a new
variable; jax arrays, keys and other objects are given as they are.
Values are read raw: a class's ``on_get_value`` runs in Flax, not here.
"""

from __future__ import annotations

import sys
import threading
import typing as tp
from collections.abc import Mapping

import numpy as np

from . import _arrays as A
from .statelib import State
from .variablelib import (
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


def loaded_flax_nnx():
    """``flax.nnx`` if it is imported already, else None: a check that
    never imports flax (and jax) itself."""
    return sys.modules.get("flax.nnx")


def is_flax_variable(x) -> bool:
    """Whether ``x`` is a ``flax.nnx.Variable`` (never imports flax)."""
    flax_nnx = loaded_flax_nnx()
    return flax_nnx is not None and isinstance(x, flax_nnx.Variable)


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


# Flax's variable hooks (deprecated in Flax): functions kept in the metadata.
_HOOKS = ("on_get_value", "on_set_value", "on_create_value", "on_add_axis", "on_remove_axis")


def _path_text(path: tuple) -> str:
    return "/".join(str(k) for k in path)


def _metadata_from_flax(var, flax_cls: type, where: str) -> dict:
    """A Flax variable's metadata as data: every entry, Flax's required ones
    included (``eager_sharding``, and ``hijax`` / ``ref``, recorded). Hooks
    that the class defines are left out (``to_flax`` gives them back with the
    class); a hook given to this one variable is code and is refused, naming
    the path ``where``."""
    out = {}
    for name, value in var.get_metadata().items():
        if name in _HOOKS:
            if value is getattr(flax_cls, name, None):
                continue
            raise TypeError(
                f"from_flax: {where!r}: metadata {name!r} is a hook given to this variable ({value!r}); "
                "nnx_state keeps data only: define the hook as a method of a Variable subclass"
            )
        out[name] = value
    return out


def _raw_value(var):
    """What a Flax variable holds, without running ``on_get_value`` hooks
    (``to_flax`` gives the class back, which runs them again); the array in
    a ``jax.Ref``."""
    raw = var.get_raw_value()
    if var.get_metadata("ref", False):
        raw = raw[...]
    return raw


def _variable_from_flax(value, path: tuple, nnx, copy: bool | None) -> Variable:
    flax_cls = value.var_type  # a HijaxVariable stands for its var_type
    where = _path_text(path)
    metadata = _metadata_from_flax(value, flax_cls, where)
    try:
        return rebuild_variable(_our_class(flax_cls, nnx), _raw_value(value), metadata, copy=copy)
    except TypeError as e:
        raise TypeError(f"from_flax: {where!r}: {e}") from e
    except ValueError as e:
        raise ValueError(f"from_flax: {where!r}: {e}") from e


def from_flax_variable(value, path: tuple = ()) -> Variable:
    """The nnx_state twin of one Flax variable (``path`` names it in
    errors), its value shared where it can be, as :func:`from_flax` does."""
    return _variable_from_flax(value, path, _flax(), None)


def from_flax(state, *, copy: bool | None = None) -> State:
    """An nnx_state ``State`` holding the leaves of a ``flax.nnx.State`` (or a
    nested mapping of Flax variables and arrays). A metadata entry that
    cannot be stored (code, an object that is not data) fails with a
    ``TypeError`` or ``ValueError`` naming its path."""
    nnx = _flax()
    memo: dict[int, Variable] = {}

    def leaf(value, path: tuple):
        known = memo.get(id(value))
        if known is None:
            known = memo[id(value)] = _variable_from_flax(value, path, nnx, copy)
        return known

    def convert(mapping, prefix: tuple) -> State:
        out = State()
        for key, value in mapping.items():
            if isinstance(value, (Mapping, nnx.State)):
                out[key] = convert(value, (*prefix, key))
            elif isinstance(value, nnx.Variable):
                out[key] = leaf(value, (*prefix, key))
            else:
                array = A.to_native(value, copy=copy)
                try:
                    out._put_native_array(key, array)
                finally:
                    A.lib.nnx_array_release(array)
        return out

    mapping = state.raw_mapping if isinstance(state, nnx.State) else state
    return convert(mapping, ())


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
    metadata = var.get_metadata()
    for hook in _HOOKS:
        if hasattr(cls, hook):
            metadata[hook] = getattr(cls, hook)
    return metadata


def _placed(value, metadata: dict):
    """A value that is not yet a placed jax array, placed as Flax's own
    constructor places the value of a new variable: by its ``out_sharding``
    (with its ``sharding_rules``) over its ``mesh`` or the mesh of
    ``jax.set_mesh``, when ``eager_sharding`` is on. Without a mesh, or
    without an annotation, the value stays as it is."""
    sharding = metadata.get("out_sharding")
    if not sharding or not metadata.get("eager_sharding", True):
        return value
    from flax.core import meta, spmd

    if metadata.get("mesh") is None and meta.get_global_mesh() is None:
        return value
    return spmd.shard_value(value, sharding, metadata.get("sharding_rules"), metadata.get("mesh"))


def to_flax(state, *, array_fn: tp.Callable | None = None):
    """A ``flax.nnx.State`` holding Flax variables of the paired types,
    metadata and values: each value as it comes back from the library (the
    jax array, key or object it was given); numpy arrays over the native
    buffers (what a loaded file holds) passed through ``array_fn`` when
    given, and placed by their sharding annotations when a mesh is known
    (see ``_placed``)."""
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
            metadata = _metadata_to_flax(value, cls)
            raw = value.get_value()
            if isinstance(raw, np.ndarray):  # read from a file, or numpy all along
                raw = _placed(convert_array(raw), metadata)
            if metadata["ref"]:  # a Flax variable over a jax.Ref, as Flax's copy() makes one
                import jax

                raw = jax.new_ref(raw)
            out = cls.from_metadata(raw, metadata)
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

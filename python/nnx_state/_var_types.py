"""The native type registry seen from Python: which class stands for which
native variable type, and ``VariableMeta``, whose ``isinstance`` follows the
registry."""

from __future__ import annotations

import itertools
import threading
from ctypes import byref, c_uint32

from . import _lib as L
from ._lib import check, lib
from ._var_metadata import _meta_name
from .errors import NnxValueError


# The module the classes made here say they are from: the one users import
# them from.
_MODULE = "nnx_state.variablelib"


def _root_class() -> type:
    """``Variable``, the class of the registry's root type (imported late:
    ``variablelib`` defines it over this module)."""
    from .variablelib import Variable

    return Variable


_classes: dict[int, type] = {}  # native type id -> class used for new objects
_parents: dict[int, int] = {}
_names: dict[int, str] = {}


def type_name(type_id: int) -> str:
    name = _names.get(type_id)
    if name is None:
        out = L.c_char_p()
        check(lib.nnx_type_name(type_id, byref(out)))
        name = _names[type_id] = out.value.decode("utf-8")
    return name


def type_parent(type_id: int) -> int | None:
    parent = _parents.get(type_id)
    if parent is None:
        out = c_uint32()
        check(lib.nnx_type_parent(type_id, byref(out)))
        parent = _parents[type_id] = out.value
    return None if parent == L.NNX_TYPE_NONE else parent


def is_subtype(type_id: int, ancestor: int) -> bool:
    t: int | None = type_id
    while t is not None:
        if t == ancestor:
            return True
        t = type_parent(t)
    return False


def register_type(name: str, parent_id: int) -> int:
    out = c_uint32()
    check(lib.nnx_type_register(_meta_name(name), parent_id, byref(out)), what=f"variable type {name!r}")
    return out.value


def lookup_type(name: str) -> int | None:
    out = c_uint32()
    status = lib.nnx_type_lookup(_meta_name(name), byref(out))
    if status == L.NNX_ERR_KEY_NOT_FOUND:
        return None
    check(status)
    return out.value


# Which Python class stands for which native type. Every class is its own
# native type (SPEC §3): the registry is keyed by name, so each class gets a
# native name of its own, chosen under `_type_lock` by `_claim_type`:
#
# - its `__name__`, when no other class holds that native name;
# - else `module.QualName` (`__module__` and `__qualname__`);
# - else `module.QualName#2`, `#3`, ... (the first that is free).
#
# A native name is free for a class when it is not registered, or registered
# under the same parent with no class standing for it yet, or only a
# placeholder (the class `class_for_type` makes for a type registered by
# other code: a checkpoint loader, a C caller); the new class then takes over
# that type, so a state loaded before the class was defined filters by it.
# Classes are never dropped: a native type lives as long as the process.
_type_lock = threading.RLock()
_placeholders: set[type] = set()
# Called with every new variable class (the pytree registration adds itself).
class_hooks: list = []


def candidate_names(name: str, module: str | None, qualname: str):
    """The native names a class named ``name`` may take, best first."""
    yield name
    qualified = f"{module}.{qualname}" if module else qualname
    if qualified != name:
        yield qualified
    for n in itertools.count(2):
        yield f"{qualified}#{n}"


def _free_for(type_id: int) -> bool:
    """Whether a new class may stand for the native type ``type_id``."""
    holder = _classes.get(type_id)
    return holder is None or holder in _placeholders


def _claim_type(name: str, module: str | None, qualname: str, parent_id: int, explicit: str | None) -> int:
    """The native type id for a new class (see the comment above); with an
    ``explicit`` name, that name or a ``ValueError``. Call under _type_lock."""
    names = (explicit,) if explicit is not None else candidate_names(name, module, qualname)
    for native in names:
        try:
            type_id = register_type(native, parent_id)
        except NnxValueError as e:
            if explicit is not None or e.status != L.NNX_ERR_TYPE_CONFLICT:
                raise
            continue  # the name is taken under another parent
        if _free_for(type_id):
            return type_id
        if explicit is not None:
            raise ValueError(
                f"the variable type name {explicit!r} is already held by {_classes[type_id]!r}"
            )
    raise AssertionError("unreachable")  # pragma: no cover - the names never run out


def _variable_parent(cls: type) -> type:
    """The one variable class ``cls`` derives from: the registry is a tree,
    so every variable base must lie on one line of descent."""
    bases = [b for b in cls.__mro__[1:] if isinstance(b, VariableMeta)]
    parent = bases[0]
    for base in bases[1:]:
        if not issubclass(parent, base):
            raise TypeError(
                f"{cls.__qualname__} derives from both {parent.__name__} and {base.__name__}; "
                "a variable class has one line of variable types"
            )
    return parent


def class_for_type(type_id: int) -> type:
    """The class standing for a native type id, made on first use (a
    placeholder) for types registered by other code (C callers, checkpoint
    loaders). Its ``__name__`` is the native name."""
    cls = _classes.get(type_id)
    if cls is not None:
        return cls
    with _type_lock:
        cls = _classes.get(type_id)
        if cls is None:
            parent = type_parent(type_id)
            parent_cls = _root_class() if parent is None else class_for_type(parent)
            name = type_name(type_id)
            cls = VariableMeta(name, (parent_cls,), {"_type_id": type_id, "__module__": _MODULE, "__qualname__": name})
            _placeholders.add(cls)
        return cls


def variable_type(name: str, parent: type = None) -> type:
    """Registers the native variable type ``name`` under ``parent`` (default
    ``Variable``) and returns the class standing for it: a new class whose
    ``__name__`` is ``name``, or the class that already holds that native
    name. Asking again for the same name and parent returns the same class;
    the name under another parent fails (``ValueError``)."""
    if parent is None:
        parent = _root_class()
    if not (isinstance(parent, VariableMeta)):
        raise TypeError(f"parent must be a Variable class, got {parent!r}")
    with _type_lock:
        type_id = register_type(name, parent._type_id)
        cls = _classes.get(type_id)
        if cls is None:
            cls = VariableMeta(name, (parent,), {"_type_id": type_id, "__module__": _MODULE, "__qualname__": name})
        _placeholders.discard(cls)  # asked for by name: no class statement takes it over
        return cls


class VariableMeta(type):
    """Metaclass of the variable classes: ``isinstance`` follows the native
    registry (every class is a type of its own, so this is Python's own
    relation, plus a placeholder's instances counting as instances of the
    class that took over its type); subclasses get ``__slots__ = ()``
    unless they say otherwise."""

    def __new__(mcls, name, bases, namespace, **kwargs):
        if "__slots__" not in namespace:
            namespace["__slots__"] = ()
        return super().__new__(mcls, name, bases, namespace, **kwargs)

    def __instancecheck__(cls, instance):
        if type.__instancecheck__(cls, instance):
            return True
        own = type(instance)
        if not isinstance(own, VariableMeta):
            return False
        return is_subtype(own._type_id, cls._type_id)

    def __subclasscheck__(cls, subclass):
        if type.__subclasscheck__(cls, subclass):
            return True
        if not isinstance(subclass, VariableMeta):
            return False
        return is_subtype(subclass._type_id, cls._type_id)

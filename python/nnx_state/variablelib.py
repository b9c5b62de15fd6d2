"""Variables: Python classes over the native type registry, and objects over
native ``nnx_variable`` handles.

- Every class (``Variable``, ``Param``, ..., and every Python subclass)
  is a native type of its own; defining ``class QuantParam(nnx.Param)``
  registers ``QuantParam`` under ``Param`` in the native registry. Classes
  map to types by the class itself, not by name: two classes named ``Lora``
  (two modules', a class redefined, one made in a function called twice)
  are two native types, the second under a qualified native name (see
  ``_claim_type``). ``isinstance`` and type filters follow Python's own
  class relations.
- A variable object holds one reference to a native variable. The same
  native variable always comes back as the same Python object while that
  object lives (``state['a'] is state['a']``); its class is the class
  registered for its native type.
- A value comes back as what it was (``_values`` converts both ways): a
  numpy array as a numpy array over the native buffer (no copy), a jax
  array or a typed PRNG key as that very object (its buffer held through
  DLPack), anything else (tracers, ``ShapeDtypeStruct``, Python scalars,
  sharded arrays) as the object the library holds opaquely. Metadata
  entries are ``None``, ``bool``, ``int``, ``float``, ``str``, and lists,
  tuples and dicts (str keys, in order) of them, nested, and come back as
  what went in.
"""

from __future__ import annotations

import copy as _copy
import warnings
from ctypes import byref, c_size_t, c_uint32, c_void_p

import numpy as np

from . import _arrays as A
from . import _lib as L
from . import _values
from . import _var_reads as _reads
from ._var_reads import _seen_metadata_of
from ._lib import check, lib
from ._var_defaults import (  # noqa: F401 - the package's names for them
    _EAGER, _HIJAX, _REF, DefaultsContext, VarDefaults, use_eager_sharding, using_eager_sharding, var_defaults,
)
from ._var_live import (  # noqa: F401
    NativeHandle, _adopt, _changes, live_count, materialize, new_variable, pending_of, rebuild_variable, store_value,
    wrap_variable, wrap_variables,
)
from ._var_metadata import (  # noqa: F401
    MISSING, REQUIRED_METADATA, _FLAGS, _del_meta, _get_meta, _get_meta_kind, _has_meta, _meta_dict,
    _meta_entries, _meta_forms, _meta_name, _meta_setter, _remap_sharding, _set_entry, _set_meta,
    _set_meta_forms, _set_required,
)
from ._var_types import (  # noqa: F401
    VariableMeta, _claim_type, _classes, _type_lock, _variable_parent, candidate_names, class_for_type,
    class_hooks, is_subtype, lookup_type, register_type, type_name, type_parent, variable_type,
)

__all__ = [
    "Variable", "Param", "BatchStat", "Cache", "Intermediate", "Perturbation",
    "RngState", "RngKey", "RngCount", "OptState", "OptArray", "OptVariable",
    "variable_type", "class_for_type", "var_defaults", "VarDefaults", "use_eager_sharding",
    "using_eager_sharding",
]


# --------------------------------------------------------------------------
# repr helpers (Flax's style)
# --------------------------------------------------------------------------


def _bytes_repr(num_bytes: int) -> str:
    if num_bytes > 1e9:
        return f"{num_bytes / 1e9:,.1f} GB"
    if num_bytes > 1e6:
        return f"{num_bytes / 1e6:,.1f} MB"
    if num_bytes > 1e3:
        return f"{num_bytes / 1e3:,.1f} KB"
    return f"{num_bytes:,} B"


def indent_lines(text: str, indent: str) -> str:
    return text.replace("\n", "\n" + indent)


def _size_bytes(value) -> tuple[int, int]:
    """(elements, bytes) of a value with a shape and a dtype (an array, a
    typed key, a ``ShapeDtypeStruct``), as Flax counts them; (0, 0) else."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return 0, 0
    try:
        size = int(np.prod(shape, dtype=np.int64))
        return size, size * dtype.itemsize
    except (TypeError, AttributeError, ValueError):
        return 0, 0


def variable_repr(var: "Variable", indent: str = "") -> str:
    try:
        value = var.get_value()
        text = repr(value)
    except TypeError as e:  # a typed key where jax cannot be imported
        value, text = None, f"<{e}>"
    size, nbytes = _size_bytes(value)
    comment = f" # {size:,} ({_bytes_repr(nbytes)})" if size else ""
    inner = indent + "  "
    lines = [f"value={indent_lines(text, inner)}"]
    for name, meta in _meta_dict(var._ptr).items():
        lines.append(f"{name}={indent_lines(repr(meta), inner)}")
    body = ",\n".join(inner + line for line in lines)
    return f"{type(var).__name__}({comment}\n{body}\n{indent})"


# --------------------------------------------------------------------------
# The classes
# --------------------------------------------------------------------------


def _is_jax_array(value) -> bool:
    """``isinstance(value, jax.Array)`` (tracers and keys included), without
    importing jax."""
    return A.jax_kind(value) != A.NOT_JAX


def _binary(name: str):
    def method(self, other):
        value = self.get_value()
        if isinstance(other, Variable):
            other = other.get_value()
        return getattr(value, name)(other)

    method.__name__ = name
    return method


def _unary(name: str):
    def method(self):
        return getattr(self.get_value(), name)()

    method.__name__ = name
    return method


def _no_inplace(name: str, hint: str):
    def method(self, other):
        raise NotImplementedError(
            "In-place operations are no longer supported for Variable.\n"
            f"Use `variable[...] {hint} x` instead."
        )

    method.__name__ = name
    return method


class Variable(NativeHandle, metaclass=VariableMeta):
    """The base of all variable types: a native variable with a value and
    metadata.

    ``Variable(value, **metadata)``. The value comes back as what it was,
    as in Flax: a C-contiguous writable numpy array is shared with the
    library, not copied, as Flax keeps the very array it is given; a jax
    array or typed key comes back as itself (its CPU buffer held through
    DLPack); any other object (a tracer, a ``ShapeDtypeStruct``, a Python
    scalar, None) is held as it is.
    """

    __slots__ = ()  # what it keeps of its reads: `_var_reads`
    _type_id = 0  # NNX_TYPE_VARIABLE

    def __init_subclass__(cls, *, type_name: str | None = None, **kwargs):
        """Gives the new class a native type of its own: ``type_name`` when
        given (taken by another class: ``ValueError``), else its
        ``__name__``, qualified where that is taken (see ``_claim_type``)."""
        super().__init_subclass__(**kwargs)
        with _type_lock:
            if "_type_id" in cls.__dict__:  # made for a native type id
                tid = cls.__dict__["_type_id"]
            else:
                parent = _variable_parent(cls)
                tid = _claim_type(cls.__name__, cls.__module__, cls.__qualname__, parent._type_id, type_name)
                cls._type_id = tid
            _classes[tid] = cls
        for hook in class_hooks:
            hook(cls)

    def __init__(
        self,
        value=None,
        *,
        hijax: bool | None = None,
        ref: bool | None = None,
        eager_sharding: bool | None = None,
        **metadata,
    ):
        if getattr(self, "_ptr", None) is not None:
            raise RuntimeError("this variable is already initialised")
        # Every entry checked before anything is made.
        setters = [_meta_setter(name, entry) for name, entry in _remap_sharding(metadata).items()]
        _adopt(self, store_value(value, type_id=type(self)._type_id))
        for store in setters:
            store(self._ptr)
        if hijax is None:
            hijax = _HIJAX.get()
        if ref is None:
            ref = _REF.get()
        if eager_sharding is None:
            eager_sharding = _EAGER.get()
        for name, flag in (("hijax", hijax), ("ref", ref), ("eager_sharding", eager_sharding)):
            _set_required(self._ptr, name, flag)

    # -- construction helpers ------------------------------------------------

    @classmethod
    def from_metadata(cls, value, attributes: dict):
        return cls(value, **dict(attributes))

    def copy(self, value=MISSING, **updates):
        """A new variable of the same type, with the same (shared) value unless
        ``value`` is given, and this one's metadata updated with ``updates``."""
        if value is MISSING and "value" in updates:
            value = updates.pop("value")
        obj = object.__new__(type(self))
        out = c_void_p()
        check(lib.nnx_variable_copy(self._ptr, byref(out)))  # value shared, metadata copied
        _adopt(obj, out.value)
        if value is not MISSING:
            store_value(value, ptr=obj._ptr)
        for name, entry in updates.items():
            _set_entry(obj._ptr, name, entry)
        return obj

    replace = copy
    to_state = copy

    def copy_from(self, other: "Variable") -> None:
        """Takes ``other``'s value (shared) and metadata."""
        if type(self)._type_id != type(other)._type_id:
            raise ValueError(
                f"Cannot copy from incompatible container, expected {type(self).__name__}, "
                f"got {type(other).__name__}"
            )
        if self is other:
            return
        self.update_from_state(other)

    def update_from_state(self, variable_state: "Variable") -> None:
        """Takes ``variable_state``'s value (shared) and metadata, keeping its
        own hijax and ref flags."""
        _values.put(_values.read(variable_state._ptr), ptr=self._ptr)
        if _meta_dict(self._ptr) != _meta_dict(variable_state._ptr):
            metadata = variable_state.get_metadata()
            for key in _FLAGS:
                metadata[key] = getattr(self, key)
            self._replace_metadata(metadata)

    def _replace_metadata(self, metadata: dict) -> None:
        """All metadata becomes ``metadata`` (checked before anything
        changes; the required entries as in ``_set_required``)."""
        setters = {
            name: _meta_setter(name, entry) for name, entry in metadata.items() if name not in REQUIRED_METADATA
        }
        for name, _ in list(_meta_entries(self._ptr)):
            _del_meta(self._ptr, name)
        for name, entry in metadata.items():
            if name in REQUIRED_METADATA:
                _set_required(self._ptr, name, entry)
            else:
                setters[name](self._ptr)

    # -- identity and type -----------------------------------------------------

    @property
    def type(self) -> type:
        return type(self)

    @property
    def var_type(self) -> type:
        return type(self)

    @property
    def type_name(self) -> str:
        """The native type name (``"Param"``, ...)."""
        return type_name(type(self)._type_id)

    @property
    def hijax(self) -> bool:
        """Whether the variable stands for a Flax hijax variable (recorded;
        nothing changes here)."""
        return _get_meta(self._ptr, "hijax", False)

    @property
    def ref(self) -> bool:
        """Whether the variable stands for a Flax variable over a ``jax.Ref``
        (recorded; nothing changes here)."""
        return _get_meta(self._ptr, "ref", False)

    @property
    def sharding_names(self):
        """Flax's deprecated name of the ``out_sharding`` entry."""
        warnings.warn("'sharding_names' is deprecated, use 'out_sharding' instead.", DeprecationWarning, stacklevel=2)
        return self.get_metadata("out_sharding", None)

    # -- value -----------------------------------------------------------------

    def get_value(self, *, index=MISSING):
        """The value, as it was given: a numpy array over the native buffer
        (no copy), the jax array or typed key itself, the object held
        (a tracer, a ``ShapeDtypeStruct``, a Python scalar...), or None.
        With ``index``, ``value[index]`` (a jax array's ``[...]`` is the
        array itself, as in Flax)."""
        value = _reads.value(self, _values.load)
        if index is MISSING or (index is Ellipsis and _is_jax_array(value)):
            return value
        return value[index]

    def set_value(self, value, *, index=MISSING) -> None:
        """Without ``index``: replaces the value (every state holding this
        variable sees the new one). With ``index``, as Flax: a numpy value
        takes ``value`` at ``index`` in place (a read-only one is copied
        first); a jax value is replaced by ``value`` itself when ``index``
        is ``...`` and ``value`` is a jax array of the same shape, dtype
        and sharding, else by ``current.at[index].set(value)``; any other
        value is written with ``current[index] = value``."""
        if index is MISSING:
            _reads.forget_value(self)  # let go of the old value now
            store_value(value, ptr=self._ptr)
            return
        current = self.get_value()
        if current is None:
            if index is Ellipsis:
                self.set_value(value)
                return
            raise TypeError("this variable has no value to index")
        if isinstance(current, np.ndarray):
            if current.flags.writeable:
                current[index] = value
            else:
                fresh = np.array(current)
                fresh[index] = value
                self.set_value(fresh)
        elif _is_jax_array(current):
            if (
                index is Ellipsis
                and _is_jax_array(value)
                and value.shape == current.shape
                and value.dtype == current.dtype
                and getattr(value, "sharding", None) == getattr(current, "sharding", None)
            ):
                self.set_value(value)
            else:
                self.set_value(current.at[index].set(value))
        else:
            current[index] = value  # in place, on the object held

    def get_raw_value(self):
        return self.get_value()

    def set_raw_value(self, value, **_):
        self.set_value(value)

    @property
    def value(self):
        return self.get_value()

    @value.setter
    def value(self, value):
        self.set_value(value)

    @property
    def raw_value(self):
        return self.get_value()

    @raw_value.setter
    def raw_value(self, value):
        self.set_value(value)

    def create_value(self, value):
        return value

    @property
    def shape(self):
        return self.get_value().shape

    @property
    def dtype(self):
        return self.get_value().dtype

    # -- metadata --------------------------------------------------------------

    @property
    def tag(self) -> str | None:
        """The ``tag`` metadata (what ``WithTag`` and ``str`` filters read), or
        None."""
        out = c_void_p()
        check(lib.nnx_variable_tag(self._ptr, byref(out)))
        return L.take_string(out.value)

    @property
    def eager_sharding(self) -> bool:
        return self.get_metadata("eager_sharding")

    def get_metadata(self, name: str | None = None, default=MISSING, *, exclude_required: bool | None = None):
        """All metadata as a dict, or the entry ``name`` (``default`` when it is
        missing; without a default, a missing entry raises ``KeyError``).
        Flax's required entries (``hijax``, ``ref``, ``eager_sharding``) are
        included unless ``exclude_required``."""
        if name is not None and exclude_required is not None:
            raise TypeError("Cannot specify both 'name' and 'exclude_required' arguments.")
        if name is None:
            if default is not MISSING:
                raise TypeError(
                    f"Cannot provide a default value when 'name' is not provided. Got default={default}"
                )
            metadata = _meta_dict(self._ptr)
            # The required entries last, in the order Flax's constructor
            # adds them.
            required = {key: metadata.pop(key, entry) for key, entry in REQUIRED_METADATA.items()}
            if not exclude_required:
                metadata.update(required)
            return metadata
        if name in REQUIRED_METADATA:
            return _get_meta(self._ptr, name, REQUIRED_METADATA[name])
        return _get_meta(self._ptr, name, default)

    def _pytree_parts(self) -> tuple:
        """``((value,), metadata items)``: the pytree children and aux data,
        kept with the metadata while they hold (unless a subclass reads its
        value its own way)."""
        try:  # the common case first, without a call
            seen = _seen_metadata_of(self)
            if seen is not None and seen[0] == _changes.value and seen[3] is not None:
                return seen[3]
        except AttributeError:  # never read: maybe pending
            try:
                value, metadata = pending_of(self)
                return (value,), metadata
            except AttributeError:
                pass
        return _reads.pytree_parts(
            self, self._read_metadata_items, self.get_value, type(self).get_value is Variable.get_value
        )

    def _metadata_items(self) -> tuple:
        """``get_metadata()``'s entries sorted by name, as a tuple (the aux
        data of the pytree), kept while they hold."""
        return _reads.metadata_items(self, self._read_metadata_items)

    def _read_metadata_items(self) -> tuple:
        return tuple(sorted(self.get_metadata().items()))

    def set_metadata(self, *args, **kwargs) -> None:
        """``set_metadata(dict)`` replaces all metadata; ``set_metadata(name,
        value)`` sets one entry; ``set_metadata(**entries)`` updates."""
        if args and kwargs:
            raise TypeError("Cannot mix positional and keyword arguments in set_metadata")
        if len(args) == 1:
            metadata = _remap_sharding(dict(args[0]))
            for key in REQUIRED_METADATA:  # missing: as they are; given: unchanged
                current = getattr(self, key)
                if metadata.setdefault(key, current) != current:
                    raise ValueError(f"Cannot change `{key}` metadata, expected {current}, got {metadata[key]}")
            self._replace_metadata(metadata)
        elif len(args) == 2:
            self._set_entries(_remap_sharding({args[0]: args[1]}))
        elif kwargs:
            self._set_entries(_remap_sharding(kwargs))
        else:
            raise TypeError(
                "set_metadata takes either 1 or 2 arguments, or at least 1 keyword argument, "
                f"got args={args}, kwargs={kwargs}"
            )

    def _set_entries(self, entries: dict) -> None:
        for key in _FLAGS:
            if key in entries and bool(entries[key]) != getattr(self, key):
                raise ValueError(f"Cannot change `{key}` metadata, expected {getattr(self, key)}, got {entries[key]}")
        for name, entry in entries.items():
            if name not in _FLAGS:
                _set_entry(self._ptr, name, entry)

    def has_metadata(self, name: str) -> bool:
        return name in REQUIRED_METADATA or _has_meta(self._ptr, name)

    def del_metadata(self, name: str) -> None:
        if name in ("hijax", "ref"):
            raise ValueError(f"Cannot delete `{name}` metadata")
        _del_meta(self._ptr, name)

    # -- attribute proxying ----------------------------------------------------

    def __getattr__(self, name: str):
        if name == "_ptr":  # not made yet: a pending variable makes it now
            return materialize(self)
        if name.startswith("__"):
            raise AttributeError(name)
        ptr = self._ptr
        if "\0" in name:
            raise AttributeError(name)
        key = _meta_name(name)
        kind = c_uint32()
        if lib.nnx_variable_metadata_kind(ptr, key, byref(kind)) == L.NNX_OK:
            return _get_meta_kind(ptr, key, kind.value)
        if name in REQUIRED_METADATA:
            return REQUIRED_METADATA[name]
        value = self.get_value()
        try:
            return getattr(value, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute or metadata {name!r}"
            ) from None

    def __setattr__(self, name: str, value) -> None:
        try:
            object.__setattr__(self, name, value)
        except AttributeError as e:
            raise AttributeError(
                f"Cannot set attribute {name}. To set Variable metadata use either:\n\n"
                f"  variable.set_metadata({name}=value)\n\nor\n\n"
                f"  variable.set_metadata('{name}', value)"
            ) from e

    def __delattr__(self, name: str) -> None:
        try:
            object.__delattr__(self, name)
        except AttributeError as e:
            raise AttributeError(
                f"Cannot delete attribute {name}. To delete Variable metadata use:\n\n"
                f"  variable.del_metadata('{name}')"
            ) from e

    # -- protocols -------------------------------------------------------------

    def __repr__(self) -> str:
        return variable_repr(self)

    def __getitem__(self, key):
        return self.get_value(index=key)

    def __setitem__(self, key, value) -> None:
        self.set_value(value, index=key)

    def __delitem__(self, key) -> None:
        value = self.get_value()
        del value[key]

    def __call__(self, *args, **kwargs):
        return self.get_value()(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.get_value())

    def __iter__(self):
        return iter(self.get_value())

    def __contains__(self, item) -> bool:
        return item in self.get_value()

    def __array__(self, dtype=None, copy=None):
        value = self.get_value()
        if copy:
            return np.array(value, dtype=dtype, copy=True)
        return np.asarray(value, dtype=dtype)

    def __jax_array__(self):
        return self.get_value()

    def __eq__(self, other):
        if isinstance(other, Variable):
            other = other.get_value()
        return self.get_value().__eq__(other)

    __hash__ = None  # as in Flax: == is elementwise

    __ne__ = _binary("__ne__")
    __lt__ = _binary("__lt__")
    __le__ = _binary("__le__")
    __gt__ = _binary("__gt__")
    __ge__ = _binary("__ge__")

    __add__ = _binary("__add__")
    __sub__ = _binary("__sub__")
    __mul__ = _binary("__mul__")
    __matmul__ = _binary("__matmul__")
    __truediv__ = _binary("__truediv__")
    __floordiv__ = _binary("__floordiv__")
    __mod__ = _binary("__mod__")
    __divmod__ = _binary("__divmod__")
    __pow__ = _binary("__pow__")
    __lshift__ = _binary("__lshift__")
    __rshift__ = _binary("__rshift__")
    __and__ = _binary("__and__")
    __xor__ = _binary("__xor__")
    __or__ = _binary("__or__")
    __radd__ = _binary("__radd__")
    __rsub__ = _binary("__rsub__")
    __rmul__ = _binary("__rmul__")
    __rmatmul__ = _binary("__rmatmul__")
    __rtruediv__ = _binary("__rtruediv__")
    __rfloordiv__ = _binary("__rfloordiv__")
    __rmod__ = _binary("__rmod__")
    __rdivmod__ = _binary("__rdivmod__")
    __rpow__ = _binary("__rpow__")
    __rlshift__ = _binary("__rlshift__")
    __rrshift__ = _binary("__rrshift__")
    __rand__ = _binary("__rand__")
    __rxor__ = _binary("__rxor__")
    __ror__ = _binary("__ror__")

    __iadd__ = _no_inplace("__iadd__", "+=")
    __isub__ = _no_inplace("__isub__", "-=")
    __imul__ = _no_inplace("__imul__", "*=")
    __imatmul__ = _no_inplace("__imatmul__", "@=")
    __itruediv__ = _no_inplace("__itruediv__", "/=")
    __ifloordiv__ = _no_inplace("__ifloordiv__", "//=")
    __imod__ = _no_inplace("__imod__", "%=")
    __ipow__ = _no_inplace("__ipow__", "**=")
    __ilshift__ = _no_inplace("__ilshift__", "<<=")
    __irshift__ = _no_inplace("__irshift__", ">>=")
    __iand__ = _no_inplace("__iand__", "&=")
    __ixor__ = _no_inplace("__ixor__", "^=")
    __ior__ = _no_inplace("__ior__", "|=")

    __neg__ = _unary("__neg__")
    __pos__ = _unary("__pos__")
    __abs__ = _unary("__abs__")
    __invert__ = _unary("__invert__")
    __complex__ = _unary("__complex__")
    __int__ = _unary("__int__")
    __float__ = _unary("__float__")
    __index__ = _unary("__index__")
    __trunc__ = _unary("__trunc__")
    __floor__ = _unary("__floor__")
    __ceil__ = _unary("__ceil__")

    def __round__(self, ndigits: int = 0):
        return self.get_value().__round__(ndigits)

    # -- copying and pickling --------------------------------------------------

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        # As copy.deepcopy of a Flax variable: the value deep-copied as
        # Python copies it (a numpy array into new memory, a jax array or
        # key into a new buffer, any other object by its own rules).
        value = self.get_value()
        if isinstance(value, np.ndarray):
            value = np.array(value, copy=True)
        else:
            value = _copy.deepcopy(value, memo)
        return self.copy(value)

    def __reduce__(self):
        # The value is pickled as what it is (a numpy array by its bytes, a
        # jax array or key by jax's pickling, any other object by its own;
        # a tracer or a foreign opaque value refuses), as Flax pickles its
        # variables' values.
        value = self.get_value()
        if isinstance(value, np.ndarray):
            value = np.array(value, copy=True)
        return (_unpickle_variable, (type_chain(type(self)), value, {}, _meta_forms(self._ptr)))


def type_chain(cls: type) -> tuple[str, ...]:
    """The native names of a variable class's line of types below
    ``Variable``, outermost first (``('RngState', 'RngKey')``): what a
    pickle or a checkpoint records to register the type again."""
    chain = []
    tid: int | None = cls._type_id
    while tid is not None and tid != Variable._type_id:
        chain.append(type_name(tid))
        tid = type_parent(tid)
    return tuple(reversed(chain))


def _unpickle_variable(chain, value, metadata, forms=None):
    """A pickled variable again: its metadata as stored JSON forms (``forms``),
    or, from pickles of before, as Python values (``metadata``)."""
    tid = Variable._type_id
    for name in chain:
        tid = register_type(name, tid)
    cls = class_for_type(tid)
    obj = object.__new__(cls)
    _adopt(obj, store_value(value, type_id=tid))
    for name, entry in metadata.items():
        _set_meta(obj._ptr, name, entry)
    _set_meta_forms(obj._ptr, forms or {})
    return obj


_classes[Variable._type_id] = Variable


class Param(Variable):
    """The canonical learnable parameter."""


class BatchStat(Variable):
    """Batch statistics (mean and variance) of a normalisation layer."""


class Cache(Variable):
    """Cached values, such as an attention key/value cache."""


class Intermediate(Variable):
    """Intermediate values a model sows."""


class Perturbation(Intermediate):
    """Perturbations of intermediate values."""


class RngState(Variable):
    """The state of a random number stream."""


class RngKey(RngState):
    """A random key."""


class RngCount(RngState):
    """A random stream's counter."""


class OptState(Variable):
    """Optimiser state."""


class OptArray(OptState):
    """An array of optimiser state."""


class OptVariable(OptState):
    """A variable of optimiser state."""


# The built-in types have fixed ids in the C API (NNX_TYPE_*).
_BUILTIN_IDS = {
    Variable: 0, Param: 1, BatchStat: 2, Cache: 3, Intermediate: 4, Perturbation: 5,
    RngState: 6, RngKey: 7, RngCount: 8, OptState: 9, OptArray: 10, OptVariable: 11,
}
for _cls, _tid in _BUILTIN_IDS.items():
    if _cls._type_id != _tid or lookup_type(_cls.__name__) != _tid:  # pragma: no cover
        raise ImportError(f"libnnx_state disagrees about the id of {_cls.__name__}")

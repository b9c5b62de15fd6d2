"""numpy and jax arrays to and from native ``nnx_array`` handles, without
copies where memory allows.

Into the library: a C-contiguous, aligned, writable numpy array in a dtype
the library knows is lent to it (``nnx_array_wrap``) with a release callback
that drops the Python reference; anything else is copied (``nnx_array_new``).
A numpy array that is exactly a view of a native array already (what
``v[...]`` returns) is not wrapped again: the native array itself is reused.
A jax array on one CPU device is taken through DLPack (its buffer, no copy,
read-only) and the native array remembers it (``origins``), so that it comes
back as that very jax array.

Out of the library (``value_of``): the jax array a native array was made
from, or a numpy array over the native buffer, whose base is an owner
object holding one reference to the native array, given back when the last
numpy view of it goes.
"""

from __future__ import annotations

import ctypes
import itertools
import sys
import weakref
from ctypes import POINTER, byref, c_bool, c_int64, c_size_t, c_uint32, c_void_p

import numpy as np

from . import _dlpack as D
from . import _lib as L
from ._lib import check, lib

# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------

CODE_TO_DTYPE: dict[int, np.dtype] = {
    1: np.dtype(np.bool_),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.uint8),
    7: np.dtype(np.uint16),
    8: np.dtype(np.uint32),
    9: np.dtype(np.uint64),
    10: np.dtype(np.float16),
    12: np.dtype(np.float32),
    13: np.dtype(np.float64),
}
# dtypes numpy cannot describe in __array_interface__: read as unsigned
# integers of the same size, then viewed.
_VIEWED: dict[int, np.dtype] = {}

try:  # bfloat16 and float8 come from ml_dtypes (a dependency of jax)
    import ml_dtypes

    for _code, _name in ((11, "bfloat16"), (14, "float8_e4m3fn"), (15, "float8_e5m2")):
        _dt = np.dtype(getattr(ml_dtypes, _name))
        CODE_TO_DTYPE[_code] = _dt
        _VIEWED[_code] = _dt
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None

DTYPE_TO_CODE: dict[np.dtype, int] = {dt: code for code, dt in CODE_TO_DTYPE.items()}

_NATIVE_NAMES = {
    11: "bfloat16 (install ml_dtypes)",
    14: "float8_e4m3fn (install ml_dtypes)",
    15: "float8_e5m2 (install ml_dtypes)",
}


def dtype_code(dtype) -> int:
    dt = np.dtype(dtype)
    if not dt.isnative:
        dt = dt.newbyteorder("=")
    try:
        return DTYPE_TO_CODE[dt]
    except KeyError:
        known = ", ".join(str(d) for d in DTYPE_TO_CODE)
        raise TypeError(f"nnx_state arrays cannot hold dtype {dt} (supported: {known})") from None


def dtype_of_code(code: int) -> np.dtype:
    try:
        return CODE_TO_DTYPE[code]
    except KeyError:
        raise TypeError(
            f"this native array has dtype {_NATIVE_NAMES.get(code, code)}, which numpy cannot show"
        ) from None


# --------------------------------------------------------------------------
# Out of the library: numpy views
# --------------------------------------------------------------------------


# Native array -> the numpy view last made of it, while that view lives: a
# variable read again gives the same array object, as Flax's does, without
# asking the library about the array again. Sound because the view's owner
# holds a reference to the native array, so no other array can have its
# address while the entry's view is alive.
_views: dict[int, weakref.ref] = {}


class ArrayOwner:
    """Holds one reference to a native array for the numpy views of it."""

    __slots__ = ("ptr", "__array_interface__", "dtype", "data", "__weakref__")

    def __del__(self, _release=lib.nnx_array_release, _shutting_down=L.shutting_down, _views=_views):
        ptr = self.ptr
        if ptr and not _shutting_down():
            self.ptr = None
            try:
                ref = _views.get(ptr)
                if ref is not None and ref() is None:
                    del _views[ptr]
                _release(ptr)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass


def array_info(ptr: int) -> tuple[int, tuple[int, ...], int, bool]:
    """(dtype code, shape, data pointer, writable) of a native array."""
    code = c_uint32()
    ndim = c_size_t()
    shape = POINTER(c_int64)()
    writable = c_bool()
    data = c_void_p()
    check(lib.nnx_array_dtype(ptr, byref(code)))
    check(lib.nnx_array_ndim(ptr, byref(ndim)))
    check(lib.nnx_array_shape(ptr, byref(shape)))
    check(lib.nnx_array_is_writable(ptr, byref(writable)))
    if writable.value:
        check(lib.nnx_array_data_mut(ptr, byref(data)))
    else:
        check(lib.nnx_array_data(ptr, byref(data)))
    dims = tuple(shape[i] for i in range(ndim.value)) if ndim.value else ()
    return code.value, dims, data.value or 0, writable.value


def view_of(ptr: int) -> np.ndarray:
    """A numpy array over a native array's buffer; takes over one reference
    of ``ptr`` (the caller's), which the view gives back when it dies."""
    try:
        code, shape, data, writable = array_info(ptr)
        dtype = dtype_of_code(code)
    except BaseException:
        lib.nnx_array_release(ptr)
        raise
    size = 1
    for d in shape:
        size *= d
    if size == 0 or not data:
        lib.nnx_array_release(ptr)
        return np.zeros(shape, dtype)
    owner = ArrayOwner()
    owner.ptr = ptr
    owner.dtype = dtype
    owner.data = data
    viewed = code in _VIEWED
    typestr = f"<u{dtype.itemsize}" if viewed else dtype.str
    owner.__array_interface__ = {
        "shape": shape,
        "typestr": typestr,
        "data": (data, not writable),
        "version": 3,
    }
    arr = np.asarray(owner)
    if viewed:
        arr = arr.view(dtype)
    return arr


def borrowed_view(ptr: int) -> np.ndarray:
    """As :func:`view_of` for a borrowed handle (takes its own reference)."""
    check(lib.nnx_array_retain(ptr))
    return view_of(ptr)


def value_of(ptr: int):
    """The Python value of a native array; takes over one reference of
    ``ptr``: the jax array it was made from (see ``jax_to_native``), else a
    numpy view (:func:`view_of`)."""
    origin = origins.get(ptr)
    if origin is None:
        ref = _views.get(ptr)
        arr = None if ref is None else ref()
        if arr is not None:
            lib.nnx_array_release(ptr)
            return arr
        arr = view_of(ptr)
        if arr.base is not None:  # a view of the buffer, not a fresh empty array
            _views[ptr] = weakref.ref(arr)
        return arr
    lib.nnx_array_release(ptr)
    obj, is_key = origin
    if is_key:  # key data read as an array (only C code can get there)
        return obj._base_array if hasattr(obj, "_base_array") else sys.modules["jax"].random.key_data(obj)
    return obj


def borrowed_value(ptr: int):
    """As :func:`value_of` for a borrowed handle."""
    origin = origins.get(ptr)
    if origin is not None and not origin[1]:
        return origin[0]
    check(lib.nnx_array_retain(ptr))
    return value_of(ptr)


def owner_of(arr: np.ndarray) -> ArrayOwner | None:
    base = arr.base
    while base is not None:
        if type(base) is ArrayOwner:
            return base
        base = getattr(base, "base", None)
    return None


def native_of_view(arr: np.ndarray) -> int | None:
    """The native array ``arr`` is exactly a view of (same memory, dtype and
    shape), with a new reference taken; None when it is not one."""
    owner = owner_of(arr)
    if owner is None or not owner.ptr:
        return None
    ref = _views.get(owner.ptr)
    if ref is not None and ref() is arr:
        # The very view value_of made (its data pointer cannot change): only
        # what assignments to its attributes may have changed is checked.
        if arr.shape == owner.__array_interface__["shape"] and arr.dtype == owner.dtype and arr.flags.c_contiguous:
            check(lib.nnx_array_retain(owner.ptr))
            return owner.ptr
        return None
    if (
        arr.dtype == owner.dtype
        and arr.shape == owner.__array_interface__["shape"]
        and arr.flags.c_contiguous
        and address_of(arr) == owner.data
    ):
        check(lib.nnx_array_retain(owner.ptr))
        return owner.ptr
    return None


# --------------------------------------------------------------------------
# Into the library
# --------------------------------------------------------------------------

# Python objects lent to the library, by token, until it calls release.
_lent: dict[int, object] = {}
_tokens = itertools.count(1)


class _JaxHold:
    """What a native array over a jax buffer keeps on the Python side until
    the library lets go of jax's tensor: the object it stands for (the jax
    array, or the typed key whose data it is) and its own handle."""

    __slots__ = ("obj", "ptr")


# Native arrays made by `jax_to_native`, by handle -> (the object they stand
# for, whether it is a typed key). An entry lives exactly as long as its
# native array: the release callback removes it before the library frees
# the array, so a handle found here is never a reused address.
origins: dict[int, tuple] = {}


@L.release_fn
def _release_lent(token):
    # May run on any thread that drops the last reference (ctypes takes
    # the GIL); never raises into C.
    try:
        held = _lent.pop(token, None)
        if type(held) is _JaxHold:
            origins.pop(held.ptr, None)
    except Exception:  # pragma: no cover - interpreter shutdown
        pass


def lent_count() -> int:
    """How many Python buffers the library currently borrows (for tests)."""
    return len(_lent)


_char_over = ctypes.c_char.from_buffer


def address_of(arr: np.ndarray) -> int:
    """Where a numpy array's first byte is: ``arr.ctypes.data``, in a quarter
    of its time for the writable non-empty arrays most calls pass (0.45
    against 2 us; it is on every bulk call's path)."""
    try:
        return ctypes.addressof(_char_over(arr))
    except (TypeError, ValueError, BufferError):  # read-only, empty or not contiguous
        return arr.ctypes.data


def _shape_arg(shape: tuple[int, ...]):
    if not shape:
        return None
    return (c_int64 * len(shape))(*shape)


def as_numpy(value) -> np.ndarray:
    """``numpy.asarray(value)`` in a dtype the library knows."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        arr = np.asarray(value)
    if arr.dtype.kind in "OUSVMmc" and arr.dtype not in DTYPE_TO_CODE:
        raise TypeError(
            f"nnx_state values must be numeric or boolean arrays, got {type(value).__name__} "
            f"of dtype {arr.dtype}"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


# --------------------------------------------------------------------------
# jax arrays
# --------------------------------------------------------------------------

NOT_JAX = 0
JAX_ARRAY = 1  # a concrete jax array (or a typed key of one, by its dtype)
JAX_KEY = 2  # a typed PRNG key array
JAX_TRACER = 3  # a tracer (under jit, grad, vmap, ...)

_jax_kinds: dict[type, int] = {}


def jax_kind(value) -> int:
    """Which kind of jax object ``value`` is (``NOT_JAX`` when jax is not
    imported: nothing here imports it). Decided once per type."""
    kind = _jax_kinds.get(type(value))
    if kind is not None:
        return kind
    jax = sys.modules.get("jax")
    if jax is None:
        return NOT_JAX
    try:
        if isinstance(value, jax.core.Tracer):
            kind = JAX_TRACER
        elif isinstance(value, jax.Array):
            kind = JAX_KEY if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key) else JAX_ARRAY
        else:
            kind = NOT_JAX
    except AttributeError:  # jax half imported
        return NOT_JAX
    _jax_kinds[type(value)] = kind
    return kind


# Shardings seen, by object -> whether an array under it lives on exactly one
# CPU device (jax shares one sharding object among the arrays put on a
# device, so this is decided once, not per array).
_one_cpu_shardings: dict = {}


def _on_one_cpu(x) -> bool:
    try:
        sharding = x.sharding
        one_cpu = _one_cpu_shardings.get(sharding)
        if one_cpu is None:
            devices = sharding.device_set
            one_cpu = len(devices) == 1 and next(iter(devices)).platform == "cpu"
            if len(_one_cpu_shardings) < 1024:
                _one_cpu_shardings[sharding] = one_cpu
        return one_cpu and not x.is_deleted()
    except Exception:  # no sharding: not a concrete array
        return False


def _jax_exporter(x):
    """The fastest way to a DLPack capsule of a single-device jax array, and
    whether it gives legacy capsules: jaxlib's own export, as
    ``jax.Array.__dlpack__`` ends in it, without the four Python layers
    before it (3.8 -> 0.8 us an array), when this jaxlib has it; else
    ``__dlpack__`` itself. Decided once, on the first array ``x`` (whose
    probe capsule is dropped unconsumed, which frees it)."""
    global _export, _export_legacy
    try:
        from jax._src.lib import _jax as jaxlib

        direct = jaxlib.buffer_to_dlpack_managed_tensor

        def export(x):
            return direct(x, stream=None)

        legacy = D.is_legacy_capsule(export(x))
    except Exception:  # another jaxlib: the public protocol
        export, legacy = (lambda x: x.__dlpack__()), None
    _export, _export_legacy = export, legacy
    return export, legacy


_export = None
_export_legacy = None


def jax_to_native(x, stands_for=None) -> int | None:
    """A new native array over the buffer of the jax array ``x``, taken
    through DLPack (no copy; read-only, as jax buffers are), that comes back
    from :func:`value_of` as ``stands_for`` (default ``x``; a typed key for
    its data, marked so). None when ``x`` cannot be held that way: on
    several devices or off the CPU, deleted, of a dtype the library has no
    arrays for, or not exportable."""
    code = DTYPE_TO_CODE.get(x.dtype)
    if code is None or not _on_one_cpu(x):
        return None
    export, legacy = (_export, _export_legacy) if _export is not None else _jax_exporter(x)
    hold = _JaxHold()
    hold.obj = x if stands_for is None else stands_for
    token = next(_tokens)
    _lent[token] = hold
    try:
        ptr = D.take_capsule(export(x), legacy, _release_lent, token)
    except Exception:  # a layout DLPack or the library's arrays cannot carry
        _lent.pop(token, None)  # the library keeps nothing
        return None
    hold.ptr = ptr
    origins[ptr] = (hold.obj, stands_for is not None)
    return ptr


def to_native(value, *, copy: bool | None = None) -> int:
    """A new native array (an owned handle) holding ``value``.

    A jax array on one CPU device is held without a copy (see
    :func:`jax_to_native`); a tracer is refused (``TypeError``); other jax
    arrays are copied through numpy. For the rest, copy=None: lend the
    memory of a C-contiguous, aligned, writable numpy array; copy anything
    else. copy=True: always copy. copy=False: lend whenever the layout
    allows, read-only memory included (the native array is then read-only).
    """
    if type(value) is not np.ndarray:
        kind = jax_kind(value)
        if kind == JAX_ARRAY:
            native = jax_to_native(value)
            if native is not None:
                return native
        elif kind == JAX_TRACER:
            raise TypeError(
                f"a jax tracer ({type(value).__name__}) is not a concrete array: the library holds it "
                "only as the value of a Variable, never as a bare leaf"
            )
        elif kind == JAX_KEY:
            raise TypeError(
                "a typed PRNG key is not an array (its data is jax.random.key_data(key)): the library "
                "holds it only as the value of a Variable, never as a bare leaf"
            )
    arr = as_numpy(value)
    code = dtype_code(arr.dtype)
    if copy is not True:
        reused = native_of_view(arr)
        if reused is not None:
            return reused
    out = c_void_p()
    shape = arr.shape
    nbytes = arr.nbytes
    lendable = (
        copy is not True
        and nbytes > 0
        and arr.flags.c_contiguous
        and arr.flags.aligned
        and (arr.flags.writeable or copy is False)
    )
    if lendable:
        token = next(_tokens)
        _lent[token] = arr
        status = lib.nnx_array_wrap(
            code, _shape_arg(shape), len(shape), address_of(arr), nbytes,
            bool(arr.flags.writeable), _release_lent, token, byref(out),
        )
        if status:
            _lent.pop(token, None)  # on failure the library keeps nothing
            L.fail(status)
        return out.value
    arr = np.ascontiguousarray(arr)
    data = address_of(arr) if nbytes else None
    check(lib.nnx_array_new(code, _shape_arg(shape), len(shape), data, nbytes, byref(out)))
    return out.value


def to_native_many(values: list) -> list[int]:
    """``[to_native(v) for v in values]`` (owned handles), the numpy arrays
    that own memory the library can borrow as it is (C-contiguous, aligned,
    writable, not empty, of a native dtype) lent in one native call
    (``nnx_array_wrap_many``); the rest one by one. On an error nothing is
    kept."""
    handles: list[int] = []
    lent: list[int] = []  # positions of the arrays lent in bulk
    try:
        for i, value in enumerate(values):
            if (
                type(value) is np.ndarray
                and value.base is None  # owns its memory: no view of a native array
                and value.flags.c_contiguous
                and value.flags.aligned
                and value.flags.writeable
                and value.nbytes
                and value.dtype.isnative
                and value.dtype in DTYPE_TO_CODE
            ):
                lent.append(i)
                handles.append(0)
            else:
                handles.append(to_native(value))
        if lent:
            arrays = [values[i] for i in lent]
            for i, handle in zip(lent, _wrap_many(arrays)):
                handles[i] = handle
    except BaseException:
        for handle in handles:
            if handle:
                lib.nnx_array_release(handle)
        raise
    return handles


def _wrap_many(arrays: list) -> list[int]:
    """Native arrays lending the memory of ``arrays`` (checked lendable),
    in one call."""
    n = len(arrays)
    codes = np.fromiter((DTYPE_TO_CODE[a.dtype] for a in arrays), np.uint32, n)
    ndims = np.fromiter((a.ndim for a in arrays), np.uintp, n)
    shapes = np.fromiter(itertools.chain.from_iterable(a.shape for a in arrays), np.int64)
    data = np.fromiter(map(address_of, arrays), np.uintp, n)
    nbytes = np.fromiter((a.nbytes for a in arrays), np.uintp, n)
    writable = np.ones(n, np.bool_)
    tokens = list(itertools.islice(_tokens, n))
    _lent.update(zip(tokens, arrays))
    user_data = np.array(tokens, np.uintp)
    out = np.empty(n, np.uintp)
    status = lib.nnx_array_wrap_many(
        n, address_of(codes), address_of(shapes) if len(shapes) else None, address_of(ndims),
        address_of(data), address_of(nbytes), address_of(writable), _release_lent, address_of(user_data),
        address_of(out),
    )
    if status:
        for token in tokens:  # on failure the library keeps nothing
            _lent.pop(token, None)
        L.fail(status)
    return out.tolist()

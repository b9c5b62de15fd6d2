"""DLPack in and out of the library: native arrays as DLPack producers, and
DLPack tensors from numpy, jax or torch imported without a copy (the
capsule mechanics are in ``_dlpack``)."""

from __future__ import annotations

from ctypes import byref, c_void_p

import numpy as np

from . import _arrays as A
from . import _dlpack as D
from . import _lib as L
from ._lib import check, lib
from .variablelib import Variable

__all__ = ["DLPackArray", "dlpack", "from_dlpack"]


class DLPackArray:
    """A native array as a DLPack producer: ``__dlpack__`` and
    ``__dlpack_device__``, without copies. Holds one reference to the native
    array; each capsule holds its own."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self, value):
        if isinstance(value, Variable):
            value = value.get_value()
        if isinstance(value, DLPackArray):
            check(lib.nnx_array_retain(value._ptr))
            self._ptr = value._ptr
            return
        self._ptr = A.to_native(value, copy=False)

    def __del__(self, _release=lib.nnx_array_release, _shutting_down=L.shutting_down):
        ptr = getattr(self, "_ptr", None)
        if ptr and not _shutting_down():
            self._ptr = None
            try:
                _release(ptr)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __dlpack_device__(self) -> tuple[int, int]:
        return D.device_of(self._ptr)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        device = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError(f"this array lives on device {device}, not {tuple(dl_device)}")
        if stream is not None and stream != -1 and device[0] == 1:
            raise ValueError(f"stream must be None or -1 for CPU arrays, got {stream!r}")
        ptr = self._ptr
        copied = None
        if copy:
            copied = A.to_native(np.array(A.view_of(_retained(ptr)), copy=True), copy=True)
            ptr = copied
        try:
            out = c_void_p()
            if max_version is not None and tuple(max_version)[0] >= 1:
                check(lib.nnx_array_to_dlpack(ptr, byref(out)))
                if tuple(max_version) < (1, 1):
                    # Same layout; say the version the consumer asked for.
                    D.DLManagedTensorVersioned.from_address(out.value).minor = max_version[1]
                if copy:
                    D.DLManagedTensorVersioned.from_address(out.value).flags |= 2  # IS_COPIED
                name = D.VERSIONED
            else:
                check(lib.nnx_array_to_dlpack_legacy(ptr, byref(out)))
                name = D.LEGACY
        finally:
            if copied is not None:
                lib.nnx_array_release(copied)
        return D.new_capsule(out.value, name)

    @property
    def shape(self) -> tuple[int, ...]:
        return A.array_info(self._ptr)[1]

    @property
    def dtype(self):
        return A.dtype_of_code(A.array_info(self._ptr)[0])

    def __repr__(self):
        code, shape, _, _ = A.array_info(self._ptr)
        return f"DLPackArray(dtype code {code}, shape {shape}, device {self.__dlpack_device__()})"


def _retained(ptr: int) -> int:
    check(lib.nnx_array_retain(ptr))
    return ptr


def dlpack(value) -> DLPackArray:
    """A DLPack producer for a variable's value, a native array view, or
    anything numpy takes (lent to the library without a copy where its
    layout allows): ``np.from_dlpack(nnx.dlpack(var))``,
    ``jax.dlpack.from_dlpack(nnx.dlpack(var))``, ``torch.from_dlpack(...)``."""
    return DLPackArray(value)


def from_dlpack(obj) -> np.ndarray:
    """Imports a DLPack tensor without copying: ``obj`` has ``__dlpack__``
    (numpy, jax, torch, ...) or is a DLPack capsule. Returns a numpy array
    over a native array that holds the producer's memory (read-only when the
    producer says so); put into a variable or a state, that native array is
    used as it is. Only CPU tensors: others raise ``BufferError``. Raises
    :class:`NnxFormatError` for a tensor the library cannot hold (a dtype it
    has no arrays for, strides that are not C order)."""
    if D.is_capsule(obj):
        capsule = obj
    else:
        device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
        if tuple(device)[0] != 1:
            raise BufferError(f"from_dlpack takes CPU tensors, this one is on device {tuple(device)}")
        try:
            capsule = obj.__dlpack__(max_version=(1, 1))
        except TypeError:  # a producer that predates the max_version keyword
            capsule = obj.__dlpack__()
    ptr = D.take_capsule(capsule)
    try:
        device = D.device_of(ptr)
    except BaseException:
        lib.nnx_array_release(ptr)
        raise
    if device[0] != D.KDL_CPU:
        lib.nnx_array_release(ptr)
        raise BufferError(f"from_dlpack takes CPU tensors, this one is on device {device}")
    return A.view_of(ptr)

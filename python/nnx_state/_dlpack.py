"""DLPack capsules, in and out of the library (private).

The tensor structures of dlpack.h (version 1.1 and the legacy one), the
capsule calls of the Python C API, and the two moves every DLPack user
needs: taking a producer's capsule into a native array
(:func:`take_capsule`) and wrapping a native array's export in a capsule
(:func:`new_capsule`). ``checkpoint`` builds ``dlpack``/``from_dlpack`` on
them; ``_arrays`` holds jax arrays through them without a copy.
"""

from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

from ._lib import check, lib

KDL_CPU = 1


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [
        ("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
        ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64),
    ]


deleter_fn = CFUNCTYPE(None, c_void_p)


class DLManagedTensorVersioned(Structure):
    _fields_ = [
        ("major", c_uint32), ("minor", c_uint32), ("manager_ctx", c_void_p),
        ("deleter", deleter_fn), ("flags", c_uint64), ("dl_tensor", DLTensor),
    ]


class DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", deleter_fn)]


# Capsule names: static strings, alive as long as this module.
VERSIONED = b"dltensor_versioned"
USED_VERSIONED = b"used_dltensor_versioned"
LEGACY = b"dltensor"
USED_LEGACY = b"used_dltensor"

_api = ctypes.pythonapi
_capsule_destructor = CFUNCTYPE(None, c_void_p)
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [c_void_p, c_char_p, _capsule_destructor]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_GetPointer.restype = c_void_p
_api.PyCapsule_GetPointer.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_GetName.restype = c_char_p
_api.PyCapsule_GetName.argtypes = [c_void_p]


@_capsule_destructor
def _destroy_capsule(capsule):
    # Runs when a capsule we made dies. A consumer that took the tensor has
    # renamed the capsule ("used_..."); otherwise nobody will call the
    # deleter, so we do. The capsule is passed as a raw pointer: no
    # reference counting on an object being destroyed.
    try:
        for name, struct in ((VERSIONED, DLManagedTensorVersioned), (LEGACY, DLManagedTensor)):
            if _api.PyCapsule_IsValid(capsule, name):
                ptr = _api.PyCapsule_GetPointer(capsule, name)
                if ptr:
                    deleter = struct.from_address(ptr).deleter
                    if deleter:
                        deleter(ptr)
                return
    except Exception:  # pragma: no cover - never raise into the interpreter
        pass


def new_capsule(tensor: int, name: bytes):
    """A capsule owning the exported tensor ``tensor`` (its deleter runs when
    the capsule dies unconsumed)."""
    return _api.PyCapsule_New(tensor, name, _destroy_capsule)


def is_capsule(obj) -> bool:
    return type(obj).__name__ == "PyCapsule"


def is_legacy_capsule(capsule) -> bool:
    return bool(_api.PyCapsule_IsValid(id(capsule), LEGACY))


def take_capsule(capsule, legacy: bool | None = None, notify=None, token: int | None = None) -> int:
    """Takes the tensor out of a DLPack capsule: a new native array handle.
    The capsule is renamed as consumed first, since the library owns the
    tensor from then on, on failure too. ``legacy``: whether the producer
    is known to make legacy capsules (True skips a name check; a capsule
    of another name is then refused with ``ValueError``), None to look.
    ``notify``: a release callback the library calls with ``token`` once it
    has let go of the tensor (never when this fails)."""
    raw = id(capsule)  # the PyObject* of a live object (CPython)
    if legacy is None:
        if _api.PyCapsule_IsValid(raw, VERSIONED):
            legacy = False
        elif _api.PyCapsule_IsValid(raw, LEGACY):
            legacy = True
        else:
            raise TypeError("expected an object with __dlpack__ or an unconsumed DLPack capsule")
    name, used = (LEGACY, USED_LEGACY) if legacy else (VERSIONED, USED_VERSIONED)
    ptr = _api.PyCapsule_GetPointer(raw, name)  # ValueError for another name
    if _api.PyCapsule_SetName(raw, used):
        raise RuntimeError("cannot mark the DLPack capsule as consumed")
    out = c_void_p()
    if notify is None:
        status = (lib.nnx_array_from_dlpack_legacy if legacy else lib.nnx_array_from_dlpack)(ptr, byref(out))
    else:
        take = lib.nnx_array_from_dlpack_legacy_notify if legacy else lib.nnx_array_from_dlpack_notify
        status = take(ptr, notify, token, byref(out))
    check(status, "importing a DLPack tensor")
    return out.value


def device_of(ptr: int) -> tuple[int, int]:
    """The DLPack device (type, id) of a native array."""
    t, i = c_int32(), c_int32()
    check(lib.nnx_array_device(ptr, byref(t), byref(i)))
    return (t.value, i.value)

"""Loading ``libnnx_state`` and declaring its C functions for ctypes.

Everything here is private. The library is found, in this order:

1. the path in the ``NNX_STATE_LIB`` environment variable;
2. a copy packaged inside this package directory (``nnx_state/libnnx_state.so``);
3. the cargo target directory of the source tree this package sits in
   (``<repo>/target/release``, then ``<repo>/target/debug``);
4. the cargo target directory of the source tree the package was installed
   from (recorded by ``setup.py`` at build time), release then debug.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_double,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

from .errors import error_for_status

# --------------------------------------------------------------------------
# Constants of include/nnx_state.h
# --------------------------------------------------------------------------

NNX_OK = 0
NNX_ERR_NULL_ARGUMENT = 1
NNX_ERR_INVALID_ARGUMENT = 2
NNX_ERR_INVALID_UTF8 = 3
NNX_ERR_KEY_NOT_FOUND = 4
NNX_ERR_WRONG_KIND = 5
NNX_ERR_PATH_THROUGH_LEAF = 6
NNX_ERR_SHAPE_MISMATCH = 7
NNX_ERR_UNKNOWN_TYPE = 8
NNX_ERR_TYPE_CONFLICT = 9
NNX_ERR_NON_EXHAUSTIVE = 10
NNX_ERR_FILTER_ORDER = 11
NNX_ERR_INDEX_OUT_OF_RANGE = 12
NNX_ERR_CALLBACK = 13
NNX_ERR_READ_ONLY = 14
NNX_ERR_OUT_OF_MEMORY = 15
NNX_ERR_FORMAT = 16
NNX_ERR_IO = 17
NNX_ERR_TOO_DEEP = 18

# Paths of at most this many keys; filters and metadata nested at most this deep.
NNX_MAX_DEPTH = 64
NNX_ERR_PANIC = 100

NNX_KEY_STR = 0
NNX_KEY_INT = 1

NNX_KIND_STATE = 0
NNX_KIND_VARIABLE = 1
NNX_KIND_ARRAY = 2

NNX_META_STR = 0
NNX_META_INT = 1
NNX_META_FLOAT = 2
NNX_META_BOOL = 3
NNX_META_NULL = 4
NNX_META_LIST = 5
NNX_META_TUPLE = 6
NNX_META_MAP = 7

# What a variable's value is (nnx_value_kind)
NNX_VALUE_NONE = 0
NNX_VALUE_ARRAY = 1
NNX_VALUE_KEY = 2
NNX_VALUE_OPAQUE = 3

NNX_TYPE_NONE = 0xFFFFFFFF

# Flags of nnx_safetensors_load.
NNX_LOAD_COPY = 1
NNX_LOAD_STR_KEYS = 2

# --------------------------------------------------------------------------
# Structures and callback types
# --------------------------------------------------------------------------


class nnx_key(Structure):
    _fields_ = [
        ("kind", c_uint32),
        ("str", c_void_p),
        ("str_len", c_size_t),
        ("int_value", c_int64),
    ]


class nnx_path(Structure):
    _fields_ = [("keys", POINTER(nnx_key)), ("len", c_size_t)]


release_fn = CFUNCTYPE(None, c_void_p)
filter_fn = CFUNCTYPE(c_int, c_void_p, POINTER(nnx_key), c_size_t, c_uint32, c_void_p, c_void_p)

# --------------------------------------------------------------------------
# Finding the library
# --------------------------------------------------------------------------

if sys.platform == "darwin":
    LIB_NAMES = ("libnnx_state.dylib",)
elif sys.platform == "win32":
    LIB_NAMES = ("nnx_state.dll",)
else:
    LIB_NAMES = ("libnnx_state.so",)

PACKAGE_DIR = Path(__file__).resolve().parent


def _source_roots() -> list[Path]:
    roots = [PACKAGE_DIR.parent.parent]  # <repo>/python/nnx_state -> <repo>
    try:
        from ._build_config import SOURCE_ROOT  # written by setup.py at install time
    except ImportError:
        SOURCE_ROOT = None
    if SOURCE_ROOT:
        roots.append(Path(SOURCE_ROOT))
    return roots


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order (without NNX_STATE_LIB)."""
    out = [PACKAGE_DIR / name for name in LIB_NAMES]
    for root in _source_roots():
        for profile in ("release", "debug"):
            out += [root / "target" / profile / name for name in LIB_NAMES]
    return out


def find_library() -> Path:
    env = os.environ.get("NNX_STATE_LIB")
    if env:
        path = Path(env)
        if not path.is_file():
            raise OSError(f"NNX_STATE_LIB is set to {env!r}, which is not a file")
        return path
    tried = candidate_paths()
    for path in tried:
        if path.is_file():
            return path
    listing = "\n  ".join(str(p) for p in tried)
    raise OSError(
        "nnx_state: cannot find the native library libnnx_state. Build it with "
        "`cargo build --release` in the nnx-state repository, or set NNX_STATE_LIB "
        f"to its path. Looked in:\n  {listing}"
    )


LIB_PATH = find_library()
lib = ctypes.CDLL(str(LIB_PATH))

# --------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------

H = c_void_p  # every opaque handle
PH = POINTER(c_void_p)
S = c_int32  # nnx_status


def _decl(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


# errors, version, strings
_decl("nnx_last_error_message", c_char_p)
_decl("nnx_status_name", c_char_p, c_int32)
_decl("nnx_version", c_char_p)
_decl("nnx_string_free", None, c_void_p)

# arrays
_decl("nnx_array_new", S, c_uint32, POINTER(c_int64), c_size_t, c_void_p, c_size_t, PH)
_decl("nnx_array_zeros", S, c_uint32, POINTER(c_int64), c_size_t, PH)
_decl(
    "nnx_array_wrap", S,
    c_uint32, POINTER(c_int64), c_size_t, c_void_p, c_size_t, c_bool, release_fn, c_void_p, PH,
)
_decl(
    "nnx_array_wrap_many", S,
    c_size_t, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, release_fn, c_void_p, c_void_p,
)
_decl("nnx_array_dtype", S, H, POINTER(c_uint32))
_decl("nnx_array_ndim", S, H, POINTER(c_size_t))
_decl("nnx_array_shape", S, H, POINTER(POINTER(c_int64)))
_decl("nnx_array_nbytes", S, H, POINTER(c_size_t))
_decl("nnx_array_data", S, H, PH)
_decl("nnx_array_data_mut", S, H, PH)
_decl("nnx_array_is_writable", S, H, POINTER(c_bool))
_decl("nnx_array_retain", S, H)
_decl("nnx_array_release", None, H)

# types
_decl("nnx_type_register", S, c_char_p, c_uint32, POINTER(c_uint32))
_decl("nnx_type_lookup", S, c_char_p, POINTER(c_uint32))
_decl("nnx_type_name", S, c_uint32, POINTER(c_char_p))
_decl("nnx_type_parent", S, c_uint32, POINTER(c_uint32))
_decl("nnx_type_is_subtype", S, c_uint32, c_uint32, POINTER(c_bool))
_decl("nnx_type_count", S, POINTER(c_size_t))

# variables
_decl("nnx_variable_new", S, c_uint32, H, PH)
_decl("nnx_variable_copy", S, H, PH)
_decl("nnx_variable_type", S, H, POINTER(c_uint32))
_decl("nnx_variable_change_counter", S, POINTER(c_void_p))
_decl("nnx_variable_revision", S, H, POINTER(c_uint32))
_decl("nnx_variable_revisions", S, c_void_p, c_size_t, c_void_p)
_decl("nnx_variable_get_value", S, H, PH)
_decl("nnx_variable_set_value", S, H, H)
_decl("nnx_variable_value_kind", S, H, POINTER(c_uint32))
_decl("nnx_variable_new_key", S, c_uint32, H, c_char_p, PH)
_decl("nnx_variable_set_key", S, H, H, c_char_p)
_decl("nnx_variable_get_key", S, H, PH, PH)
_decl("nnx_variable_new_opaque", S, c_uint32, c_char_p, c_void_p, release_fn, c_void_p, PH)
_decl("nnx_variable_set_opaque", S, H, c_char_p, c_void_p, release_fn, c_void_p)
_decl("nnx_variable_get_opaque", S, H, PH, PH)
_decl("nnx_variable_set_metadata_str", S, H, c_char_p, c_char_p)
_decl("nnx_variable_set_metadata_int", S, H, c_char_p, c_int64)
_decl("nnx_variable_set_metadata_float", S, H, c_char_p, c_double)
_decl("nnx_variable_set_metadata_bool", S, H, c_char_p, c_bool)
_decl("nnx_variable_get_metadata_str", S, H, c_char_p, PH)
_decl("nnx_variable_get_metadata_int", S, H, c_char_p, POINTER(c_int64))
_decl("nnx_variable_get_metadata_float", S, H, c_char_p, POINTER(c_double))
_decl("nnx_variable_get_metadata_bool", S, H, c_char_p, POINTER(c_bool))
_decl("nnx_variable_metadata_kind", S, H, c_char_p, POINTER(c_uint32))
_decl("nnx_variable_tag", S, H, PH)
_decl("nnx_variable_metadata_count", S, H, POINTER(c_size_t))
_decl("nnx_variable_metadata_at", S, H, c_size_t, PH, POINTER(c_uint32))
_decl("nnx_variable_remove_metadata", S, H, c_char_p)
_decl("nnx_variable_set_metadata_json", S, H, c_char_p, c_char_p, c_size_t)
_decl("nnx_variable_get_metadata_json", S, H, c_char_p, PH)
_decl("nnx_variable_retain", S, H)
_decl("nnx_variable_release", None, H)

# filters
_decl("nnx_filter_of_type", S, c_uint32, PH)
_decl("nnx_filter_with_tag", S, c_char_p, PH)
_decl("nnx_filter_path_contains", S, POINTER(nnx_key), c_bool, PH)
_decl("nnx_filter_path_in", S, POINTER(nnx_path), c_size_t, PH)
_decl("nnx_filter_any", S, POINTER(c_void_p), c_size_t, PH)
_decl("nnx_filter_all", S, POINTER(c_void_p), c_size_t, PH)
_decl("nnx_filter_not", S, H, PH)
_decl("nnx_filter_everything", S, PH)
_decl("nnx_filter_nothing", S, PH)
_decl("nnx_filter_callback", S, filter_fn, c_void_p, release_fn, PH)
_decl("nnx_filter_matches_variable", S, H, POINTER(nnx_key), c_size_t, H, POINTER(c_bool))
_decl("nnx_filter_matches_array", S, H, POINTER(nnx_key), c_size_t, H, POINTER(c_bool))
_decl("nnx_filter_free", None, H)

# flat lists
_decl("nnx_state_flatten", S, H, PH)
_decl("nnx_flat_new", S, PH)
_decl("nnx_flat_push_variable", S, H, POINTER(nnx_key), c_size_t, H)
_decl("nnx_flat_push_array", S, H, POINTER(nnx_key), c_size_t, H)
_decl("nnx_flat_len", S, H, POINTER(c_size_t))
_decl("nnx_flat_path", S, H, c_size_t, POINTER(POINTER(nnx_key)), POINTER(c_size_t))
_decl("nnx_flat_kind", S, H, c_size_t, POINTER(c_uint32))
_decl("nnx_flat_variable", S, H, c_size_t, PH)
_decl("nnx_flat_array", S, H, c_size_t, PH)
_decl("nnx_state_from_flat", S, H, PH)
# bulk: caller arrays are passed as addresses (numpy's `arr.ctypes.data`)
_decl("nnx_flat_leaves", S, H, c_size_t, c_size_t, c_bool, c_void_p, c_void_p, c_void_p, c_void_p)
_decl("nnx_flat_paths", S, H, c_size_t, c_size_t, c_void_p, c_void_p, c_size_t)
_decl("nnx_flat_push_many", S, H, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p)
_decl("nnx_state_from_flat_leaves", S, H, c_size_t, c_void_p, c_void_p, PH)
_decl("nnx_flat_free", None, H)

# states
_decl("nnx_state_new", S, PH)
_decl("nnx_state_free", None, H)
_decl("nnx_state_clone", S, H, PH)
_decl("nnx_state_deep_copy", S, H, PH)
_decl("nnx_state_set_variable", S, H, POINTER(nnx_key), c_size_t, H)
_decl("nnx_state_set_array", S, H, POINTER(nnx_key), c_size_t, H)
_decl("nnx_state_replace_values", S, H, c_size_t, c_void_p, c_void_p, c_void_p)
_decl("nnx_state_set_state", S, H, POINTER(nnx_key), c_size_t, H)
_decl("nnx_state_get_kind", S, H, POINTER(nnx_key), c_size_t, POINTER(c_uint32))
_decl("nnx_state_contains", S, H, POINTER(nnx_key), c_size_t, POINTER(c_bool))
_decl("nnx_state_get_variable", S, H, POINTER(nnx_key), c_size_t, PH)
_decl("nnx_state_get_array", S, H, POINTER(nnx_key), c_size_t, PH)
_decl("nnx_state_get_state", S, H, POINTER(nnx_key), c_size_t, PH)
_decl("nnx_state_remove", S, H, POINTER(nnx_key), c_size_t)
_decl("nnx_state_len", S, H, POINTER(c_size_t))
_decl("nnx_state_key_at", S, H, c_size_t, POINTER(nnx_key))
_decl("nnx_state_num_leaves", S, H, POINTER(c_size_t))
_decl("nnx_state_version", S, H, POINTER(ctypes.c_uint64))
# The filter and output arrays as plain addresses (ctypes arrays of
# c_void_p): converting them as pointers costs a third of an empty split.
_decl("nnx_state_filter", S, H, c_void_p, c_size_t, c_void_p)
_decl("nnx_state_split", S, H, c_void_p, c_size_t, c_void_p)
_decl("nnx_state_merge", S, POINTER(c_void_p), c_size_t, PH)
_decl("nnx_state_diff", S, H, H, PH)
_decl("nnx_state_update", S, H, H)
_decl("nnx_state_to_string", S, H, PH)

# Checkpoints and exchange: safetensors, the filter parser, DLPack.
_decl("nnx_safetensors_load", S, c_char_p, c_uint32, c_uint32, PH)
_decl("nnx_safetensors_save", S, H, c_char_p, c_uint32)
_decl("nnx_safetensors_save_sharded", S, H, c_char_p, c_char_p, c_uint64, c_uint32)
_decl("nnx_safetensors_metadata_len", S, H, POINTER(c_size_t))
_decl("nnx_safetensors_metadata_at", S, H, c_size_t, PH, PH)
_decl("nnx_safetensors_metadata_get", S, H, c_char_p, PH)
_decl("nnx_safetensors_metadata_set", S, H, c_char_p, c_char_p)
_decl("nnx_safetensors_metadata_remove", S, H, c_char_p)
_decl("nnx_safetensors_metadata_clear", S, H)
_decl("nnx_filter_parse", S, c_char_p, PH)
_decl("nnx_path_parse", S, c_char_p, c_size_t, POINTER(nnx_key), c_size_t, POINTER(c_size_t))
_decl("nnx_array_to_dlpack", S, H, PH)
_decl("nnx_array_to_dlpack_legacy", S, H, PH)
_decl("nnx_array_from_dlpack", S, H, PH)
_decl("nnx_array_from_dlpack_legacy", S, H, PH)
_decl("nnx_array_from_dlpack_notify", S, H, release_fn, c_void_p, PH)
_decl("nnx_array_from_dlpack_legacy_notify", S, H, release_fn, c_void_p, PH)
_decl("nnx_array_device", S, H, POINTER(c_int32), POINTER(c_int32))

VERSION = lib.nnx_version().decode()

# --------------------------------------------------------------------------
# Status checking
# --------------------------------------------------------------------------

# A Python exception raised inside a callback (a filter predicate) on this
# thread, to re-raise once the C call that ran the callback has returned.
pending = threading.local()


def status_name(status: int) -> str:
    return lib.nnx_status_name(status).decode()


def last_message() -> str:
    return lib.nnx_last_error_message().decode("utf-8", "replace")


def fail(status: int, *, what: str = "", kind_hint: str | None = None):
    """Raises the Python exception for a failed call (see errors.py)."""
    exc = getattr(pending, "exc", None)
    if exc is not None:
        pending.exc = None
        if status == NNX_ERR_CALLBACK:
            raise exc
    raise error_for_status(status, status_name(status), last_message(), what=what, kind_hint=kind_hint)


def check(status: int, what: str = "", kind_hint: str | None = None) -> None:
    if status:
        fail(status, what=what, kind_hint=kind_hint)


def take_string(ptr: int | None) -> str | None:
    """Copies and frees a string the library returned as owned."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib.nnx_string_free(ptr)


# Whether the interpreter is finalizing. Then native handles are left to the
# operating system: freeing them could run release callbacks into a Python
# that is being torn down. (The function itself: a finalizer calls it.)
shutting_down = sys.is_finalizing

"""Exceptions raised when a call into libnnx_state fails.

Every one of them is an :class:`NnxError` and also a built-in exception that
Python code expects in its place (``ValueError`` for NNX's filter errors,
``KeyError`` for a missing key, ...). The C status and message are never
lost: ``e.status`` (the number), ``e.status_name`` (``"NNX_ERR_..."``) and
``e.c_message`` (the library's message). ``str(e)`` starts with the library's
message, which for NNX's own errors starts with NNX's wording, such as
``"Non-exhaustive filters, got a non-empty remainder"``.
"""

from __future__ import annotations


class NnxError(Exception):
    """A failed call into libnnx_state."""

    status: int
    status_name: str
    c_message: str

    def __init__(self, message: str, *, status: int, status_name: str, c_message: str):
        super().__init__(message)
        self.status = status
        self.status_name = status_name
        self.c_message = c_message

    def __str__(self) -> str:  # KeyError would otherwise show the repr
        return str(self.args[0]) if self.args else ""


class NnxValueError(NnxError, ValueError):
    pass


class NnxKeyError(NnxError, KeyError):
    pass


class NnxTypeError(NnxError, TypeError):
    pass


class NnxIndexError(NnxError, IndexError):
    pass


class NnxRuntimeError(NnxError, RuntimeError):
    pass


class NnxMemoryError(NnxError, MemoryError):
    pass


class NnxFormatError(NnxError, ValueError):
    """A malformed file (``NNX_ERR_FORMAT``): the message names the problem."""


class NnxIOError(NnxError, OSError):
    """A failed file operation (``NNX_ERR_IO``): the message names the file."""


# status number -> exception class (the numbers of include/nnx_state.h)
_CLASSES = {
    1: NnxRuntimeError,  # NULL_ARGUMENT: a bug of these bindings
    2: NnxValueError,  # INVALID_ARGUMENT
    3: NnxValueError,  # INVALID_UTF8
    4: NnxKeyError,  # KEY_NOT_FOUND
    5: NnxTypeError,  # WRONG_KIND
    6: NnxKeyError,  # PATH_THROUGH_LEAF
    7: NnxValueError,  # SHAPE_MISMATCH
    8: NnxTypeError,  # UNKNOWN_TYPE
    9: NnxValueError,  # TYPE_CONFLICT
    10: NnxValueError,  # NON_EXHAUSTIVE ("Non-exhaustive filters, ...")
    11: NnxValueError,  # FILTER_ORDER ("`...` or `True` can only be used ...")
    12: NnxIndexError,  # INDEX_OUT_OF_RANGE
    13: NnxRuntimeError,  # CALLBACK (without a Python exception to re-raise)
    14: NnxValueError,  # READ_ONLY
    15: NnxMemoryError,  # OUT_OF_MEMORY
    16: NnxFormatError,  # FORMAT
    17: NnxIOError,  # IO
    18: NnxValueError,  # TOO_DEEP (nesting past NNX_MAX_DEPTH)
    100: NnxRuntimeError,  # PANIC
}


def error_for_status(
    status: int, status_name: str, message: str, *, what: str = "", kind_hint: str | None = None
) -> NnxError:
    cls = _CLASSES.get(status, NnxRuntimeError)
    if kind_hint == "key" and status == 5:
        cls = NnxKeyError
    text = f"{message} [{status_name}]"
    if what:
        text = f"{text} ({what})"
    return cls(text, status=status, status_name=status_name, c_message=message)

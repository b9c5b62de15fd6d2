"""What a variable object keeps of its last reads (its value, its metadata,
its pytree parts), and when that still holds.

Reading a value back from the library makes a new Python object (a numpy
view, a jax array through DLPack: microseconds each), so each object keeps
what it read, stamped with two numbers read before the read itself: the
library's count of all variable changes (``_changes``, read in place, no
call) and the variable's own revision (``nnx_variable_revision``, a count
of its changes in 32 bits). While the count stays, nothing changed
anywhere; once it moved (by less than 2^32, so that the revision cannot
have come round again), what was kept still holds if this variable's
revision did not: one call instead of a new object. ``refresh`` does that check for many variables in one call, as a
state's flatten does before jax reads each of its variables.

Both numbers are read before the data, so a change made meanwhile moves
them past the stamp and is seen at the next read: a stamp can only be too
old, never too new.
"""

from __future__ import annotations

from ctypes import byref, c_uint32
from operator import attrgetter

import numpy as np

from . import _arrays as A
from ._lib import check, lib
from ._var_live import NativeHandle, _changes, pending_of

_seen_of = NativeHandle._seen.__get__
_set_seen = NativeHandle._seen.__set__
_seen_metadata_of = NativeHandle._seen_metadata.__get__
_set_seen_metadata = NativeHandle._seen_metadata.__set__
_ptr_of = attrgetter("_ptr")


# A revision counts one variable's changes in 32 bits: equal revisions mean
# no change only while fewer changes than that happened anywhere between.
_WRAP = 1 << 32


def revision(ptr: int) -> int:
    out = c_uint32()
    check(lib.nnx_variable_revision(ptr, byref(out)))
    return out.value


def _stamp(obj, read_of, set_read, count: int):
    """What ``obj`` kept in one of its slots (``(count, revision, *data)``)
    if it still holds, restamped with ``count``; else None and the
    revision just read (for the new stamp), or None if none was read."""
    try:
        seen = read_of(obj)
    except AttributeError:  # never read
        return None, None
    if seen is None:
        return None, None
    if seen[0] == count:
        return seen, None
    now = revision(obj._ptr)
    if seen[1] != now or count - seen[0] >= _WRAP:
        return None, now
    seen = (count, *seen[1:])
    set_read(obj, seen)
    return seen, None


def _kept(obj, read_of, set_read, read, args: tuple, rest: tuple) -> tuple:
    """The stamp in one of ``obj``'s slots if it still holds; else a new
    one, ``(count, revision, read(*args), *rest)``, both numbers read
    before ``read`` runs, kept in the slot."""
    count = _changes.value
    seen, now = _stamp(obj, read_of, set_read, count)
    if seen is not None:
        return seen
    if now is None:
        now = revision(obj._ptr)
    seen = (count, now, read(*args), *rest)
    set_read(obj, seen)
    return seen


def value(obj, load):
    """``obj``'s value: the one kept if it still holds, else ``load(ptr)``,
    kept."""
    try:  # nothing changed anywhere since: no call at all (the hot path)
        seen = _seen_of(obj)
        if seen is not None and seen[0] == _changes.value:
            return seen[2]
    except AttributeError:  # never read: maybe pending (no native variable yet)
        try:
            return pending_of(obj)[0]
        except AttributeError:
            pass
    return _kept(obj, _seen_of, _set_seen, load, (obj._ptr,), ())[2]


def forget_value(obj) -> None:
    """Lets go of the kept value now (it is about to be replaced)."""
    _set_seen(obj, None)


def _metadata_stamp(obj, read) -> tuple:
    # The metadata slot: (count, revision, items, pytree parts or None,
    # pytree parts with keys or None).
    return _kept(obj, _seen_metadata_of, _set_seen_metadata, read, (), (None, None))


def metadata_items(obj, read):
    """``read()`` (the metadata entries as a tuple), kept while they hold."""
    return _metadata_stamp(obj, read)[2]


def pytree_parts(obj, read_items, read_value, keep: bool):
    """``((value,), metadata items)``, kept with the metadata when ``keep``
    (a subclass that reads its value its own way keeps nothing)."""
    stamp = _metadata_stamp(obj, read_items)
    if stamp[3] is not None:
        return stamp[3]
    # The stamp's numbers were read before the value below: never too new.
    parts = ((read_value(),), stamp[2])
    if keep:
        _set_seen_metadata(obj, (stamp[0], stamp[1], stamp[2], parts, None))
    return parts


def keyed_parts(obj, parts: tuple, key) -> tuple:
    """``(((key, value),), metadata items)`` for ``obj``'s pytree ``parts``,
    kept beside them while they are the ones kept."""
    keyed = (((key, parts[0][0]),), parts[1])
    try:
        seen = _seen_metadata_of(obj)
    except AttributeError:  # never read natively (pending)
        return keyed
    if seen is not None and seen[3] is parts:
        _set_seen_metadata(obj, (*seen[:4], keyed))
    return keyed


def refresh(variables) -> None:
    """Restamps what each of ``variables`` (variable objects) kept, where
    its own revision did not move, with one native call for them all: the
    reads that follow then take the kept objects without a call each."""
    count = _changes.value
    n = len(variables)
    if not n:
        return
    ptrs = np.fromiter(map(_ptr_of, variables), np.uintp, n)
    revisions = np.empty(n, np.uint32)
    check(lib.nnx_variable_revisions(A.address_of(ptrs), n, A.address_of(revisions)))
    seen_of, set_seen = _seen_of, _set_seen
    metadata_of, set_metadata = _seen_metadata_of, _set_seen_metadata
    # The two slots written out rather than looped over: this runs once per
    # leaf of every flatten after a change elsewhere.
    for obj, now in zip(variables, revisions.tolist()):
        try:
            seen = seen_of(obj)
            if seen is not None and seen[1] == now and 0 < count - seen[0] < _WRAP:
                set_seen(obj, (count, now, seen[2]))
        except AttributeError:
            pass
        try:
            seen = metadata_of(obj)
            if seen is not None and seen[1] == now and 0 < count - seen[0] < _WRAP:
                set_metadata(obj, (count, now, *seen[2:]))
        except AttributeError:
            pass

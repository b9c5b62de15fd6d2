"""Defaults for new variables, per thread: ``var_defaults`` (``hijax``,
``ref``) and ``use_eager_sharding``, as Flax has them."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Mapping

from ._var_metadata import MISSING


class _Default(threading.local):
    """A default for new variables, per thread: ``base`` unless set."""

    def __init__(self, base: bool):
        self.base = base
        self.stack: list = []

    def get(self) -> bool:
        return self.stack[-1] if self.stack else self.base

    def set(self, value: bool):
        """Sets the default; returns what ``restore`` needs to undo it."""
        if self.stack:
            previous, self.stack[-1] = self.stack[-1], value
            return previous
        self.stack.append(value)
        return MISSING

    def restore(self, previous) -> None:
        if previous is MISSING:
            self.stack.pop()
        else:
            self.stack[-1] = previous


_HIJAX, _REF, _EAGER = _Default(False), _Default(False), _Default(True)


class DefaultsContext:
    """What ``var_defaults(...)`` and ``use_eager_sharding(...)`` return: the
    new defaults hold from the call on; used as a context manager, the old
    ones come back at its end; used as a decorator, the new ones hold only
    while the decorated function runs."""

    def __init__(self, changes: list):
        self._changes = changes  # (default, new value)
        self._undo = [(d, d.set(v)) for d, v in changes]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for default, previous in reversed(self._undo):
            default.restore(previous)

    def __call__(self, f):
        self.__exit__(None, None, None)
        changes = self._changes

        @functools.wraps(f)
        def with_defaults(*args, **kwargs):
            with DefaultsContext(changes):
                return f(*args, **kwargs)

        return with_defaults


@dataclasses.dataclass(frozen=True)
class VarDefaults(Mapping):
    """The defaults of ``hijax`` and ``ref`` for new variables."""

    hijax: bool
    ref: bool

    def __getitem__(self, key: str):
        return getattr(self, key)

    def __iter__(self):
        return iter(("hijax", "ref"))

    def __len__(self) -> int:
        return 2


def var_defaults(*, hijax: bool | None = None, ref: bool | None = None):
    """As ``flax.nnx.var_defaults``: without arguments, the current defaults
    (a ``VarDefaults``); with them, sets the defaults of ``hijax`` / ``ref``
    for new variables (recorded flags here, see ``Variable``) and returns a
    ``DefaultsContext``."""
    if hijax is None and ref is None:
        return VarDefaults(hijax=_HIJAX.get(), ref=_REF.get())
    return DefaultsContext([(d, v) for d, v in ((_HIJAX, hijax), (_REF, ref)) if v is not None])


def use_eager_sharding(value: bool) -> DefaultsContext:
    """As ``flax.nnx.use_eager_sharding``: sets the ``eager_sharding`` default
    of new variables (recorded here: ``to_flax`` places values by it)."""
    return DefaultsContext([(_EAGER, bool(value))])


def using_eager_sharding() -> bool:
    """The ``eager_sharding`` default of new variables."""
    return _EAGER.get()

"""flax msgpack checkpoints in, through ``flax.serialization``.

::

    state = nnx.load_msgpack("params.msgpack", types={"...": "Param"})
    state = nnx.load_msgpack(flax.serialization.to_bytes(tree), like=nnx.state(model))

The bytes are decoded by ``flax.serialization.msgpack_restore`` (numpy
arrays, Python scalars, nested dicts); leaves are typed, named and selected
as :func:`nnx_state.load_orbax` does (``like``, ``types``, ``filter``; see
``_tree_in``). msgpack is read whole, so ``filter`` selects what the State
keeps, not what is read. msgpack holds no typed PRNG keys (flax writes
their key data, ``jax.random.key_data``): where ``like`` holds a key, the
data read becomes a key of ``like``'s implementation again.
"""

from __future__ import annotations

import os

from . import _tree_in as T
from .statelib import State

__all__ = ["load_msgpack"]


def load_msgpack(path_or_bytes, *, like=None, types=None, filter=None, int_keys: bool = True) -> State:
    """Loads a ``flax.serialization.to_bytes`` / ``msgpack_serialize`` output
    (a file's path, or the bytes) as a State. ``like``, ``types``,
    ``filter`` and ``int_keys`` as for :func:`nnx_state.load_orbax`.
    Raises ``OSError`` naming the file when it cannot be read, ``ValueError``
    when it is not msgpack or does not match ``like``."""
    try:
        from flax import serialization
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_msgpack needs flax (pip install flax)") from e
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, source = bytes(path_or_bytes), "the msgpack bytes"
    else:
        source = f"the msgpack file {os.fspath(path_or_bytes)!r}"
        with open(path_or_bytes, "rb") as f:  # an OSError names the file
            data = f.read()
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack's own errors (ExtraData, FormatError, ValueError...)
        raise ValueError(f"{source} is not flax msgpack: {e}") from e
    if not isinstance(tree, dict):
        tree = {"value": tree} if tree is not None else {}
    pairs = list(T.walk(tree))
    values = dict(pairs)
    leaves, aliases = T.plan(
        [raw for raw, _ in pairs], like=like, types=types, filter=filter, int_keys=int_keys, source=source,
    )
    return T.build(leaves, values.__getitem__, aliases, source)

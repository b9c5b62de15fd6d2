"""How states and their leaves compare (``State.__eq__``) and print
(``State.__repr__``): variables by type, metadata and value, arrays by
shape, dtype and contents, typed keys by implementation and data, other
objects by their own ``==``."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from . import _arrays as A
from .variablelib import Variable, indent_lines, variable_repr


def _leaf_eq(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return isinstance(a, Mapping) and isinstance(b, Mapping) and _mapping_eq(a, b)
    if isinstance(a, Variable) or isinstance(b, Variable):
        if not (isinstance(a, Variable) and isinstance(b, Variable)):
            return False
        if type(a)._type_id != type(b)._type_id:
            return False
        if a.get_metadata() != b.get_metadata():
            return False
        return _values_eq(a.get_value(), b.get_value())
    return _values_eq(a, b)


def _values_eq(x, y) -> bool:
    if x is y:
        return True
    if x is None or y is None:
        return False
    keys = _key_data(x), _key_data(y)
    if keys != (None, None):  # typed keys: the same implementation and data
        if None in keys or keys[0][0] != keys[1][0]:
            return False
        x, y = keys[0][1], keys[1][1]
    if _is_array(x) and _is_array(y):
        x, y = np.asarray(x), np.asarray(y)
        return x.shape == y.shape and x.dtype == y.dtype and bool(np.array_equal(x, y))
    if _is_array(x) or _is_array(y):
        return False
    try:  # objects held as they are: their own ==
        return bool(x == y)
    except Exception:  # no truth value (a tracer, an array-like)
        return False


def _is_array(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) or A.jax_kind(x) == A.JAX_ARRAY


def _key_data(x):
    """(implementation, data) of a typed key; None for anything else."""
    if A.jax_kind(x) != A.JAX_KEY:
        return None
    jax = sys.modules["jax"]
    return str(jax.random.key_impl(x)), jax.random.key_data(x)


def _mapping_eq(a: Mapping, b: Mapping) -> bool:
    keys_a = list(a)
    if len(keys_a) != len(b):
        return False
    for key in keys_a:
        if key not in b:
            return False
        if not _leaf_eq(a[key], b[key]):
            return False
    return True


def _node_repr(state: Mapping, indent: str) -> str:
    keys = list(state)
    if not keys:
        return "{}"
    inner = indent + "  "
    parts = []
    for key in keys:
        value = state[key]
        if isinstance(value, Mapping):
            text = _node_repr(value, inner)
        elif isinstance(value, Variable):
            text = variable_repr(value, inner)
        else:
            text = indent_lines(repr(value), inner)
        parts.append(f"{inner}{key!r}: {text}")
    return "{\n" + ",\n".join(parts) + "\n" + indent + "}"

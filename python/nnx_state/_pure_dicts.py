"""Nested plain mappings and their ``{path: leaf}`` form, as
``flax.nnx.traversals`` has them."""

from __future__ import annotations

from collections.abc import Mapping


def flatten_mapping(xs: Mapping) -> dict:
    """``{path: leaf}`` of a nested mapping, depth-first; empty mappings give
    nothing (``flax.nnx.traversals.flatten_mapping``)."""
    out: dict = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, prefix + (key,))
            else:
                out[prefix + (key,)] = value

    walk(xs, ())
    return out


def unflatten_mapping(flat) -> dict:
    """Nested dicts from ``{path: leaf}`` (``flax.nnx.traversals.unflatten_mapping``)."""
    result: dict = {}
    items = flat.items() if isinstance(flat, Mapping) else flat
    for path, value in items:
        cursor = result
        for key in path[:-1]:
            if key not in cursor:
                cursor[key] = {}
            cursor = cursor[key]
        cursor[path[-1]] = value
    return result


def _try_int(x):
    try:
        return int(x)
    except ValueError:
        return x


def restore_int_paths(pure_dict: Mapping) -> dict:
    """The same nested dict with every int-looking key (``'0'``) turned into
    an int, as after a checkpoint that stringified them."""
    fixed = {tuple(map(_try_int, path)): value for path, value in flatten_mapping(pure_dict).items()}
    return unflatten_mapping(fixed)

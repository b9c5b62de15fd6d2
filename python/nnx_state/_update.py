"""``update`` and ``set_metadata``: states (or Flax objects) changed in
place from other states, as ``flax.nnx.update`` and
``flax.nnx.set_metadata``."""

from __future__ import annotations

import sys
import typing as tp
from collections.abc import Mapping, MutableMapping

from .statelib import FlatState, State, _as_state, filter_state, merge_state, to_flat_state
from .variablelib import Variable


def _flax_if_loaded():
    """``flax.nnx`` when something has imported it already (a Flax object can
    exist only then), else None: ``update`` never imports flax itself."""
    return sys.modules.get("flax.nnx")


def _is_flax_target(target, flax_nnx) -> bool:
    return isinstance(target, (flax_nnx.Pytree, flax_nnx.State, flax_nnx.Variable))


def _update_variable(variable: Variable, value) -> None:
    if isinstance(value, Variable):
        variable.update_from_state(value)  # its value (shared) and metadata
    elif isinstance(value, Mapping) and not value:
        pass  # an empty state leaves the variable alone, as in Flax
    else:
        variable.set_value(value)


def _update_node(node: tp.MutableMapping, state: tp.Mapping) -> None:
    for key, value in state.items():
        if key not in node:  # new: a variable is copied (its value shared)
            node[key] = value.copy() if isinstance(value, Variable) else value
            continue
        current = node[key]
        if isinstance(current, Mapping):  # a nested state: a live view
            if not isinstance(value, Mapping):
                raise ValueError(f"Expected a subgraph for {key!r}, but got: {value!r}")
            _update_node(current, value)
        elif isinstance(current, Variable):
            _update_variable(current, value)
        else:  # a bare array is replaced
            node[key] = value


def update(target, state, /, *states) -> None:
    """In place, as ``flax.nnx.update``: ``target`` (a ``State``, a mutable
    mapping or a ``Variable``) takes the leaves of ``state`` and ``states``
    (States or nested mappings of variables and values; with several, they
    are merged first and the later wins).

    At each path of the update: a variable of ``target`` keeps its identity
    (every state holding it sees the change) and takes the update's value
    (shared) and metadata when given a variable, or the raw value (an array,
    None) otherwise; a bare array of ``target`` is replaced; a nested state
    is updated key by key (a leaf for it is a ``ValueError``, ``Expected a
    subgraph ...``); a new key is added, a variable as a copy sharing its
    value. A ``Variable`` target takes exactly one non-empty state.

    A Flax target (a ``flax.nnx.Module`` or other Flax pytree, a
    ``flax.nnx.State``, a Flax variable) is handed to ``flax.nnx.update``,
    each nnx_state ``State`` given as ``to_flax(state,
    array_fn=jax.numpy.asarray)``. A ``flax.nnx.State`` update for an
    nnx_state target is read through ``from_flax``.
    """
    flax_nnx = _flax_if_loaded()
    sources = (state, *states)
    if flax_nnx is not None and _is_flax_target(target, flax_nnx):
        from jax import numpy as jnp

        from .flax_interop import to_flax

        converted = [to_flax(s, array_fn=jnp.asarray) if isinstance(s, State) else s for s in sources]
        flax_nnx.update(target, *converted)
        return
    if flax_nnx is not None and any(isinstance(s, flax_nnx.State) for s in sources):
        from .flax_interop import from_flax

        sources = tuple(from_flax(s) if isinstance(s, flax_nnx.State) else s for s in sources)
    if isinstance(target, Variable):
        non_empty = [s for s in sources if not isinstance(s, Mapping) or s]
        if len(sources) > 1 and len(non_empty) != 1:
            raise ValueError(f"Expected exactly one non-empty state, got: {sources!r}")
        _update_variable(target, non_empty[0] if non_empty else sources[0])
        return
    if not isinstance(target, MutableMapping):
        raise TypeError(f"update needs a State, a mutable mapping or a Variable to update, got {type(target).__name__}")
    for s in sources:
        if not isinstance(s, Mapping):
            raise TypeError(
                f"update takes States or nested mappings, got {type(s).__name__}"
                + (" (make it a State with from_flat_state)" if isinstance(s, FlatState) else "")
            )
    merged = sources[0] if len(sources) == 1 else merge_state(*sources)
    _update_node(target, merged)


def set_metadata(node, /, *, only=Variable, **metadata) -> None:
    """In place, as ``flax.nnx.set_metadata``: every variable of ``node`` (a
    ``State``, a nested mapping of variables, or a variable) that the filter
    ``only`` matches takes ``metadata`` (``set_metadata(**metadata)``); a
    variable held at several paths is set once."""
    if isinstance(node, Variable):
        node = State({"": node})
    done = set()
    for variable in to_flat_state(filter_state(_as_state(node), only)).leaves:
        if isinstance(variable, Variable) and variable._ptr not in done:
            done.add(variable._ptr)
            variable.set_metadata(**metadata)

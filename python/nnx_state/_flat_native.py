"""Native flat lists (``nnx_flat``) to and from Python lists of paths and
leaves, in bulk: a flat state's paths and leaf objects read in a few calls,
and a native state built from paths and leaves in one push where it can."""

from __future__ import annotations

import gc
from itertools import chain
from operator import attrgetter
from ctypes import byref, c_size_t, c_void_p

import numpy as np

from . import _arrays as A
from . import _keys as K
from . import _lib as L
from ._lib import check, lib
from ._var_types import class_for_type
from .variablelib import Variable, VariableMeta, wrap_variables

_addr = A.address_of


def _flat_len(flat: int) -> int:
    size = c_size_t()
    check(lib.nnx_flat_len(flat, byref(size)))
    return size.value


def _read_flat_paths(flat: int) -> list:
    """The path tuples of a native flat list, in its order."""
    n = _flat_len(flat)
    # The offsets first (they give the number of keys), then every key in
    # one buffer.
    offsets = np.empty(n + 1, np.uintp)
    check(lib.nnx_flat_paths(flat, 0, n, _addr(offsets), None, 0))
    keys = np.empty(int(offsets[n]), K.KEY_DTYPE)
    check(lib.nnx_flat_paths(flat, 0, n, _addr(offsets), _addr(keys), len(keys)))
    return K.paths_from_buffer(keys, offsets)


def _read_flat_leaves(flat: int) -> list:
    """The leaf objects of a native flat list, in its order."""
    n = _flat_len(flat)
    kinds = np.empty(n, np.uint32)
    types = np.empty(n, np.uint32)
    variables = np.empty(n, np.uintp)
    arrays = np.empty(n, np.uintp)
    # Borrowed: each new object takes its own reference (see `retain`).
    check(lib.nnx_flat_leaves(
        flat, 0, n, False, _addr(kinds), _addr(types), _addr(variables), _addr(arrays)
    ))
    return _leaf_objects(flat, n, kinds, types, variables, arrays)


class _gc_paused:
    """Making a Python object or two per entry would run the cyclic garbage
    collector every 700 of them, each run scanning what the earlier ones
    made: pause it while a flat state's objects are made (none of them is
    garbage), and leave the young generation to its next run. Nests."""

    __slots__ = ("was_enabled",)

    def __enter__(self):
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def _leaf_objects(flat, n, kinds, types, variables, arrays) -> list:
    """The leaf objects of what nnx_flat_leaves (borrowed) read from
    ``flat``."""
    is_var = kinds == L.NNX_KIND_VARIABLE
    if is_var.all():
        positions = None
        var_ptrs, var_types = variables.tolist(), types.tolist()
    else:
        positions = np.flatnonzero(is_var)
        var_ptrs, var_types = variables[positions].tolist(), types[positions].tolist()
        positions = positions.tolist()
    scratch = np.empty(n, np.uintp)

    def retain(a: int, b: int) -> None:
        # A new reference to each variable of entries a..b (as positions
        # in var_ptrs): the same handles again, now owned by us.
        start = a if positions is None else positions[a]
        stop = b if positions is None else positions[b - 1] + 1
        check(lib.nnx_flat_leaves(flat, start, stop - start, True, None, None, _addr(scratch), None))

    var_objs = wrap_variables(var_ptrs, var_types, retain)
    if positions is None:
        return var_objs
    leaves = [None] * n
    for i, obj in zip(positions, var_objs):
        leaves[i] = obj
    for i in np.flatnonzero(~is_var).tolist():
        leaves[i] = A.borrowed_value(int(arrays[i]))
    return leaves


def _push_one_by_one(flat, paths: list, leaves: list) -> None:
    """Pushes entry by entry, raising the error of the first bad entry (a
    bad key, an empty path, a value that is no array)."""
    for path, leaf in zip(paths, leaves):
        keys, n, keep = K.path_arg(path)
        if isinstance(leaf, Variable):
            check(lib.nnx_flat_push_variable(flat, keys, n, leaf._ptr), what=f"path {path!r}")
        else:
            array = A.to_native(leaf)
            try:
                check(lib.nnx_flat_push_array(flat, keys, n, array), what=f"path {path!r}")
            finally:
                lib.nnx_array_release(array)


def encoded_paths(paths: list) -> tuple | None:
    """``(offsets, keys, keep)``: the paths as one ``nnx_key`` array cut by
    offsets, as the bulk calls take them (``keep`` holds the key texts
    alive); None when some key or path needs the one-by-one route, which
    names it in its error (an empty path, a bool, a numpy int, a str
    subclass, a key the encoder cannot take)."""
    n = len(paths)
    lengths = np.fromiter(map(len, paths), np.uintp, n)
    if n and not lengths.all():
        return None
    flat_keys = list(chain.from_iterable(paths))
    if not set(map(type, flat_keys)) <= _PLAIN_KEY_TYPES:
        return None
    encoded = K.encode_flat_keys(flat_keys)
    if encoded is None:
        return None
    keys, keep = encoded
    offsets = np.zeros(n + 1, np.uintp)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, keys, keep


def _push_all(flat, paths: list, leaves: list) -> bool:
    """Pushes every entry with one call (nnx_flat_push_many); False, having
    pushed nothing, when some key or path needs the entry-by-entry route."""
    encoded = encoded_paths(paths)
    if encoded is None:
        return False
    offsets, keys, keep = encoded
    n = len(paths)
    with _leaf_arrays(leaves) as (variables, arrays):
        check(lib.nnx_flat_push_many(flat, n, _addr(offsets), _addr(keys), variables, arrays))
    return True


class _leaf_arrays:
    """The addresses of a bulk call's two leaf arrays for ``leaves``
    (``variables[i]`` or ``arrays[i]``; None for an array no entry needs),
    with the native arrays made for non-variable leaves given back on
    exit (the library takes its own references)."""

    __slots__ = ("leaves", "made", "keep")

    def __init__(self, leaves: list):
        self.leaves = leaves
        self.made: list = []

    def __enter__(self) -> tuple:
        leaves, n = self.leaves, len(self.leaves)
        if all(isinstance(t, VariableMeta) for t in set(map(type, leaves))):
            variables = np.fromiter(map(_ptr_of, leaves), np.uintp, n)
            self.keep = (variables,)
            return _addr(variables), None
        variables = np.zeros(n, np.uintp)
        arrays = np.zeros(n, np.uintp)
        self.keep = (variables, arrays)
        try:
            for i, leaf in enumerate(leaves):
                if isinstance(type(leaf), VariableMeta):
                    variables[i] = leaf._ptr
                else:
                    array = A.to_native(leaf)
                    self.made.append(array)
                    arrays[i] = array
        except BaseException:
            self.__exit__()
            raise
        return _addr(variables), _addr(arrays)

    def __exit__(self, *exc) -> None:
        made, self.made = self.made, []
        for array in made:
            lib.nnx_array_release(array)


def built_with_leaves(flat: int, leaves: list) -> int:
    """A new native state (owned handle) with the paths of the native flat
    list ``flat`` and ``leaves`` in their place
    (``nnx_state_from_flat_leaves``): no path encoded again."""
    out = c_void_p()
    with _leaf_arrays(leaves) as (variables, arrays):
        check(lib.nnx_state_from_flat_leaves(flat, len(leaves), variables, arrays, byref(out)))
    return out.value


_PLAIN_KEY_TYPES = {str, int}


_ptr_of = attrgetter("_ptr")


def _built_from_pairs(pairs: list) -> int:
    """A new native state (owned handle) from (path, leaf) pairs."""
    return _built_from_leaves([p for p, _ in pairs], [leaf for _, leaf in pairs])


def _built_from_leaves(paths: list, leaves: list) -> int:
    """A new native state (owned handle) from paths and their leaves."""
    flat = c_void_p()
    check(lib.nnx_flat_new(byref(flat)))
    try:
        if not _push_all(flat, paths, leaves):
            _push_one_by_one(flat, paths, leaves)
        out = c_void_p()
        check(lib.nnx_state_from_flat(flat, byref(out)))
    finally:
        lib.nnx_flat_free(flat)
    return out.value


def replace_natively(h: int, kept: tuple | None, replacements: dict, try_int) -> bool:
    """``replace_by_pure_dict`` with Flax's default replace function in one
    native call (``nnx_state_replace_values``), for the common case: every
    path of ``replacements`` (``{path: value}``) found in state ``h`` (as
    given, else with int-looking parts as ints), every value a numpy array
    or a jax array on one CPU device, every leaf replaced a variable whose
    class keeps ``Variable.replace`` (or a bare numpy array taking a numpy
    array). False, having changed nothing, for anything else: the caller
    takes the general route, which also raises the errors.

    ``kept``: the state's (paths, leaves) if it holds them; else the paths
    and the leaves' types are read natively, with no object made for a
    leaf."""
    if kept is not None:
        paths, leaves = kept
        plain_at = lambda i: _plain_for_class(type(leaves[i]))  # noqa: E731
    else:
        paths, plain_at = _paths_and_plainness(h)
    index = dict(zip(paths, range(len(paths))))
    matched: dict[int, object] = {}
    for path, value in replacements.items():
        i = index.get(path)
        if i is None:
            i = index.get(tuple(map(try_int, path)))
            if i is None:
                return False
        matched[i] = value  # a path given twice: the last value, as Flax
    for i, value in matched.items():
        plain = plain_at(i)
        if not plain or (plain == _BARE and type(value) is not np.ndarray):
            return False
    values = list(matched.values())
    if not all(type(value) is np.ndarray or A.jax_kind(value) == A.JAX_ARRAY for value in values):
        return False
    encoded = encoded_paths([paths[i] for i in matched])
    if encoded is None:
        return False
    offsets, keys, keep = encoded
    numpy_at = [i for i, value in enumerate(values) if type(value) is np.ndarray]
    handles = [0] * len(values)
    try:
        for i, handle in zip(numpy_at, A.to_native_many([values[i] for i in numpy_at])):
            handles[i] = handle
        for i, value in enumerate(values):
            if not handles[i]:
                handle = A.jax_to_native(value)
                if handle is None:  # held otherwise (opaquely) by Variable.replace
                    return False
                handles[i] = handle
        arrays = np.array(handles, np.uintp)
        check(lib.nnx_state_replace_values(h, len(handles), _addr(offsets), _addr(keys), _addr(arrays)))
        return True
    finally:
        for handle in handles:
            if handle:
                lib.nnx_array_release(handle)


def _paths_and_plainness(h: int):
    """State ``h``'s flat paths, and for entry ``i`` what
    ``_plain_for_class`` says of the class its leaf would be read as: read
    in three native calls, the leaves as kinds and type ids."""
    flat = c_void_p()
    check(lib.nnx_state_flatten(h, byref(flat)))
    try:
        paths = _read_flat_paths(flat.value)
        n = len(paths)
        types = np.empty(n, np.uint32)
        arrays = np.empty(n, np.uintp)
        check(lib.nnx_flat_leaves(flat, 0, n, False, None, _addr(types), None, _addr(arrays)))
        # A bare array is read as numpy unless jax's (see `_arrays.value_of`):
        # decided now, while the flat list holds the arrays.
        jax_bare = {i for i in np.flatnonzero(types == L.NNX_TYPE_NONE).tolist() if int(arrays[i]) in A.origins}
    finally:
        lib.nnx_flat_free(flat)
    types = types.tolist()

    def plain_at(i: int) -> int:
        tid = types[i]
        if tid == L.NNX_TYPE_NONE:
            return 0 if i in jax_bare else _BARE
        return _plain_for_class(class_for_type(tid))

    return paths, plain_at


def _plain_for_class(cls: type) -> int:
    plain = _plain_replace.get(cls)
    if plain is None:
        plain = _plain_replace[cls] = _replaces_plainly(cls)
    return plain


_VARIABLE, _BARE = 1, 2
_plain_replace: dict[type, int] = {}


def _replaces_plainly(cls: type) -> int:
    """_VARIABLE for a variable class whose ``replace`` is the library's,
    _BARE for a bare array (no ``replace``: the value itself), 0 else."""
    if isinstance(cls, VariableMeta):
        same = cls.replace is Variable.replace and cls.copy is Variable.copy
        return _VARIABLE if same else 0
    return _BARE if cls is np.ndarray else 0

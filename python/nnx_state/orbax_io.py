"""Orbax checkpoints in and out, through ``orbax-checkpoint`` itself.

::

    state = nnx.load_orbax("ckpt/")                        # a StandardCheckpointer item
    state = nnx.load_orbax("run/", step=1000, item="state")  # a CheckpointManager directory
    state = nnx.load_orbax("ckpt/", like=nnx.eval_shape(lambda: Model(...)))   # Flax's types
    state = nnx.load_orbax("ckpt/", types={"path:mean | path:var": "BatchStat", "...": "Param"})
    params = nnx.load_orbax("ckpt/", filter="Param", like=abstract)  # reads the Params only
    nnx.save_orbax(state, "out/")   # ocp.StandardCheckpointer().restore("out/", nnx.state(model))

Every array is read by Orbax (TensorStore, OCDBT or not) onto this
process's first CPU device, whatever topology wrote it: a checkpoint of
arrays sharded over many devices loads on one CPU, bit for bit. Shapes and
dtypes come from the checkpoint's own metadata. Arrays of 64-bit dtypes,
which jax keeps only with ``jax_enable_x64``, are read as numpy arrays, so
nothing is narrowed; the others are jax arrays on the CPU, held here over
their own buffers. Typed PRNG keys (Orbax records their implementation)
come back as keys.

How each leaf is typed, named and selected is the same for msgpack files
(see ``_tree_in``): from ``like``, else the records a checkpoint written
by :func:`save_orbax` holds, else ``types`` rules, else bare arrays.
"""

from __future__ import annotations

import os
import typing as tp

import numpy as np

from . import _tree_in as T
from .statelib import State, to_flat_state
from .variablelib import Variable, _meta_forms, type_chain

__all__ = ["load_orbax", "save_orbax"]


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_orbax / save_orbax need orbax-checkpoint (pip install orbax-checkpoint)") from e
    return ocp


# --------------------------------------------------------------------------
# Finding the item
# --------------------------------------------------------------------------


def _tree_metadata(ocp, directory: str):
    """Orbax's metadata of a PyTree item (a TreeMetadata), or None when
    ``directory`` is not one."""
    with ocp.PyTreeCheckpointer() as checkpointer:
        try:
            meta = checkpointer.metadata(directory)
        except FileNotFoundError:
            return None
    return getattr(meta, "item_metadata", meta)


def _item_names(step_dir: str) -> list[str]:
    return sorted(
        name for name in os.listdir(step_dir)
        if os.path.isdir(os.path.join(step_dir, name)) and _tree_metadata(_orbax(), os.path.join(step_dir, name))
    )


def find_item(path, *, item: str | None = None, step: int | None = None) -> str:
    """The directory of the PyTree item that ``path``, ``item`` and ``step``
    name: ``path`` itself when it is an item (what ``StandardCheckpointer``
    and ``PyTreeCheckpointer`` write); else a step of a ``CheckpointManager``
    directory (``step``, default the latest) or a step directory, and in it
    the item ``item`` (default: the only PyTree item there)."""
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such directory (an Orbax checkpoint is a directory)")
    if step is None and item is None and _tree_metadata(ocp, path) is not None:
        return path
    step_dir = path
    steps = sorted(ocp.path.step.checkpoint_steps(path)) if _tree_metadata(ocp, path) is None else []
    if step is not None or steps:
        if step is None:
            step = steps[-1]
        elif step not in steps:
            held = ", ".join(map(str, steps)) or "none"
            raise FileNotFoundError(f"{path}: no step {step} (steps: {held})")
        step_dir = os.fspath(ocp.path.step.find_step_path(path, ocp.path.step.standard_name_format(), step=step))
    if item is not None:
        item_dir = os.path.join(step_dir, item)
        if _tree_metadata(ocp, item_dir) is None:
            held = ", ".join(_item_names(step_dir)) or "none"
            raise FileNotFoundError(f"{step_dir}: no PyTree item {item!r} (items: {held})")
        return item_dir
    if _tree_metadata(ocp, step_dir) is not None:
        return step_dir
    names = _item_names(step_dir)
    if len(names) == 1:
        return os.path.join(step_dir, names[0])
    if not names:
        raise FileNotFoundError(f"{step_dir}: not an Orbax checkpoint (no PyTree item found)")
    raise ValueError(f"{step_dir}: holds the items {', '.join(names)}; name one with item=")


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _is_array_meta(meta) -> bool:
    return hasattr(meta, "shape") and hasattr(meta, "dtype") and meta.dtype is not None


def _restore_arg(ocp, meta, device):
    """How Orbax restores one leaf: onto ``device`` as a jax array (typed
    keys wrapped by Orbax), as numpy for dtypes jax would narrow, and as
    saved for anything that is not an array."""
    import jax

    if not _is_array_meta(meta):
        return ocp.RestoreArgs()
    dtype = np.dtype(meta.dtype)
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        return ocp.RestoreArgs(restore_type=np.ndarray, dtype=dtype)
    sharding = jax.sharding.SingleDeviceSharding(device)
    return ocp.ArrayRestoreArgs(sharding=sharding, global_shape=tuple(meta.shape), dtype=dtype)


def _map(tree, fn, prefix=()):
    """``tree`` with each leaf replaced by ``fn(path, leaf)``, dicts and
    lists kept."""
    if isinstance(tree, dict):
        return {k: _map(v, fn, (*prefix, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map(v, fn, (*prefix, i)) for i, v in enumerate(tree)]
    return fn(prefix, tree)


def _meta_nbytes(meta) -> int:
    if not _is_array_meta(meta):
        return 0
    return int(np.prod(meta.shape, dtype=np.int64)) * np.dtype(meta.dtype).itemsize


def _batches(raws: list[tuple], sizes: dict, limit: int | None):
    if limit is None:
        yield raws
        return
    batch, held = [], 0
    for raw in raws:
        if batch and held + sizes[raw] > limit:
            yield batch
            batch, held = [], 0
        batch.append(raw)
        held += sizes[raw]
    if batch:
        yield batch


def _read(ocp, item_dir: str, tree, raws: list[tuple], progress=None, batch_bytes: int = 64 << 20) -> dict:
    """raw path -> value of the leaves ``raws``, the others left on disk
    (Orbax's placeholders). With ``progress``, in batches of about
    ``batch_bytes``, calling ``progress(bytes read, bytes to read)`` after
    each."""
    import jax

    device = jax.devices("cpu")[0]
    sizes = {raw: _meta_nbytes(T.get_at(tree, raw)) for raw in raws}
    out: dict[tuple, tp.Any] = {}
    total, done = sum(sizes.values()), 0
    with ocp.PyTreeCheckpointer() as checkpointer:
        for batch in _batches(raws, sizes, batch_bytes if progress else None):
            wanted = set(batch)

            def arg(path, meta):
                return _restore_arg(ocp, meta, device) if path in wanted else ocp.PLACEHOLDER

            def keep(path, meta):
                return meta if path in wanted else ocp.PLACEHOLDER

            restored = checkpointer.restore(
                item_dir, args=ocp.args.PyTreeRestore(item=_map(tree, keep), restore_args=_map(tree, arg))
            )
            for raw in batch:
                out[raw] = T.get_at(restored, raw)
            if progress:
                done += sum(sizes[raw] for raw in batch)
                progress(done, total)
    return out


def load_orbax(path, *, like=None, types=None, filter=None, item: str | None = None, step: int | None = None,
               int_keys: bool = True, progress: tp.Callable[[int, int], None] | None = None) -> State:
    """Loads an Orbax checkpoint as a State, on this process's CPU.

    ``path`` is a PyTree item (what ``ocp.StandardCheckpointer().save`` or
    ``PyTreeCheckpointer`` writes), a ``CheckpointManager`` directory (the
    step ``step``, default the latest) or one step of it; ``item`` names the
    item in the step (default: the only PyTree item). OCDBT or not, and
    whatever topology wrote it.

    Each leaf is placed at its path with the ``value`` level that Flax's
    pytree flattening writes under each Variable removed, and becomes:

    - with ``like`` (an nnx_state State, a ``flax.nnx.State``, or an abstract
      state from ``nnx.eval_shape``): the variable ``like`` has at that path,
      its class and metadata, the value checked against ``like``'s shape
      and dtype; ``like`` and the checkpoint must hold the same paths (a
      ``filter`` may leave some out);
    - else, in a checkpoint written by :func:`save_orbax`, the variable it
      records (type, metadata, key kinds, shared variables);
    - else with ``types``, rules ``{filter: type}`` tried in order (filter
      text such as ``"path:mean | path:var"``, or a filter object; a type
      name such as ``"BatchStat"`` or a variable class): the type of the
      first rule that matches the path;
    - else a bare array (a typed PRNG key: an ``RngKey``).

    With ``filter`` (text, a filter object, or a list of them, any of which
    selects), only the leaves it selects are read from disk. Decimal keys
    become int keys unless ``int_keys=False`` (Orbax stores every key as
    text). ``progress(bytes read, bytes to read)``, when given, is called
    as arrays are read (then in batches of about 64 MiB).

    Raises ``FileNotFoundError`` when ``path`` does not hold the checkpoint
    named, ``ValueError`` when it names several items, does not match
    ``like`` or holds a leaf that is no array (a string) where no type is
    given, ``TypeError`` for an unknown type name; Orbax's own errors as
    they are.
    """
    ocp = _orbax()
    item_dir = find_item(path, item=item, step=step)
    meta = _tree_metadata(ocp, item_dir)
    tree = meta.tree
    custom = getattr(meta, "custom_metadata", None) or {}
    held = [raw for raw, leaf in T.walk(tree) if leaf is not None]
    source = f"the Orbax checkpoint {item_dir!r}"
    leaves, aliases = T.plan(
        held, like=like, types=types, filter=filter, records=custom.get(T.RECORD_KEY),
        int_keys=int_keys, source=source,
    )
    wanted = [leaf.raw for leaf in leaves if leaf.raw is not None]
    values = _read(ocp, item_dir, tree, wanted, progress) if wanted else {}
    return T.build(leaves, values.__getitem__, aliases, source)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _set_at(tree: dict, path: tuple, value) -> None:
    """Puts ``value`` at ``path``, every key as text, as Orbax stores keys
    (the records keep their kinds)."""
    for key in path[:-1]:
        tree = tree.setdefault(str(key), {})
    tree[str(path[-1])] = value


def _check_texts(texts: dict, path: tuple) -> None:
    """Two keys of one text under one parent (``0`` and ``"0"``) would be
    one key in Orbax: refused, naming them."""
    for i, key in enumerate(path):
        known = texts.setdefault((text_path := tuple(map(str, path[:i])), str(key)), key)
        if known != key or type(known) is not type(key):
            under = "/".join(text_path) or "the root"
            raise ValueError(
                f"save_orbax: under {under!r}, the keys {known!r} and {key!r} are one key in Orbax, "
                "which stores keys as text"
            )




def save_orbax(state, path, *, force: bool = False) -> None:
    """Saves a state as an Orbax checkpoint (a ``StandardCheckpointer``
    item, OCDBT, written by Orbax): each variable as the ``{"value": array}``
    that ``nnx.state(model)`` flattens to, each bare array as itself, so
    ``ocp.StandardCheckpointer().restore(path, nnx.state(model))`` restores
    it in Flax. Typed PRNG keys are saved as Orbax saves keys.

    Variable types, metadata, int keys and variables held at several paths
    (saved once) are recorded in the item's custom metadata, so
    :func:`load_orbax` gives back this state. ``path`` must not exist unless
    ``force``. Accepts an nnx_state State, a ``flax.nnx.State`` or a
    mapping."""
    ocp = _orbax()
    state = T.as_state(state)
    tree: dict = {}
    records = []
    first_path: dict[int, tuple] = {}
    texts: dict = {}
    for p, leaf in to_flat_state(state):
        _check_texts(texts, p)
        if isinstance(leaf, Variable):
            first = first_path.setdefault(leaf._ptr, p)
            if first != p:
                records.append({"path": list(p), "same_as": list(first)})
                continue
            record = {"path": list(p), "type": list(type_chain(type(leaf))), "metadata": _meta_forms(leaf._ptr)}
            value = leaf.get_value()
            if value is None:
                record["empty"] = True
            else:
                _set_at(tree, (*p, "value"), value)
            records.append(record)
        else:
            _set_at(tree, p, leaf)
            records.append({"path": list(p)})
    if not tree:
        raise ValueError("save_orbax: the state holds no value to save")
    target = os.path.abspath(os.fspath(path))
    args = ocp.args.StandardSave(tree, custom_metadata={T.RECORD_KEY: {"leaves": records}})
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
        checkpointer.save(target, args=args, force=force)

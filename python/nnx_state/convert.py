"""``python -m nnx_state convert SRC DST``: checkpoints from one format to
another, Orbax directories, flax msgpack files and safetensors.

::

    python -m nnx_state convert ckpt/ model.safetensors \\
        --type 'path:mean | path:var=BatchStat' --type Param
    python -m nnx_state convert model.safetensors out/          # back to Orbax
    python -m nnx_state convert params.msgpack shards/ --max-shard-size 2GB

The format of each side comes from its path (``--from`` / ``--to`` say it
outright): a name ending ``.msgpack`` is msgpack; ``.safetensors`` or
``.safetensors.index.json`` is safetensors; an existing directory holding
``model.safetensors`` or its index is safetensors; any other directory is
Orbax. A destination without those endings is an Orbax directory, or a
sharded safetensors directory with ``--max-shard-size``.

``--type FILTER=TYPE`` (repeated; the last ``=`` separates them; a bare
``TYPE`` is ``...=TYPE``) types the leaves the source leaves untyped, the
first rule that matches a leaf's path winning; ``--filter F`` (repeated, any
of them selects) keeps only what it selects, and for Orbax only that is
read. Exit status: 0 done, 1 the conversion failed, 2 the command line is
wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

FORMATS = ("orbax", "msgpack", "safetensors")

DESCRIPTION = """\
Converts a checkpoint between Orbax (a directory), flax msgpack (.msgpack)
and safetensors (.safetensors, a sharded checkpoint's .safetensors.index.json,
or a directory holding model.safetensors or its index)."""

EPILOG = """\
rules: --type 'FILTER=TYPE', the last '=' separating them, tried in order
(a bare TYPE is '...=TYPE'); FILTER in the filter syntax, on the leaf's
path: path:KEY, path~:TEXT, at:a/0/b, ..., none, ~ & | and parentheses.
Only leaves the source leaves untyped take a rule's type (Orbax and msgpack
leaves; safetensors tensors not written by nnx_state). --filter takes the
whole syntax (Param, tag:NAME, ... too), after the types are given.

example: python -m nnx_state convert ckpt/ model.safetensors \\
           --type 'path:mean | path:var=BatchStat' --type Param"""


class UsageError(Exception):
    """The command line is wrong (exit 2)."""


class Failure(Exception):
    """The conversion failed (exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and a hint, not the whole help
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m nnx_state convert", description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="the checkpoint to read")
    p.add_argument("dst", metavar="DST", help="where to write it")
    p.add_argument("--type", "-t", dest="types", action="append", default=[], metavar="RULE",
                   help="FILTER=TYPE: the type of the untyped leaves FILTER selects (repeatable, first match wins)")
    p.add_argument("--filter", "-f", dest="filters", action="append", default=[], metavar="F",
                   help="keep only the leaves F selects (repeatable: any of them)")
    p.add_argument("--max-shard-size", metavar="SIZE", help="write sharded safetensors (DST a directory), e.g. 2GB")
    p.add_argument("--from", dest="src_format", choices=FORMATS, help="the format of SRC (default: from its path)")
    p.add_argument("--to", dest="dst_format", choices=FORMATS, help="the format of DST (default: from its path)")
    p.add_argument("--item", help="the item of an Orbax CheckpointManager step (default: the only one)")
    p.add_argument("--step", type=int, help="the step of an Orbax CheckpointManager directory (default: the latest)")
    p.add_argument("--force", action="store_true", help="replace an existing Orbax directory DST")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    return p


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def parse_rule(text: str) -> tuple[str, str]:
    """``FILTER=TYPE`` (split at the last ``=``), or ``TYPE`` alone for
    ``...=TYPE``."""
    head, sep, tail = text.rpartition("=")
    if not sep:
        return "...", text.strip()
    if not head.strip() or not tail.strip():
        raise UsageError(f"--type {text!r}: write FILTER=TYPE, e.g. 'path:mean | path:var=BatchStat'")
    return head.strip(), tail.strip()


def _rules(texts: list[str]) -> dict[str, str] | None:
    from ._tree_in import parse_types

    rules: dict[str, str] = {}
    for text in texts:
        f, t = parse_rule(text)
        try:
            parse_types({f: t})  # the filter parses and the type exists
        except (TypeError, ValueError) as e:
            raise UsageError(f"--type {text!r}: {e}") from e
        rules.setdefault(f, t)
    return rules or None


def _filters(texts: list[str]):
    from .filter_text import parse_filter

    for text in texts:
        try:
            parse_filter(text)
        except (TypeError, ValueError) as e:
            raise UsageError(f"--filter {text!r}: {e}") from e
    return texts or None


def _is_safetensors_name(path: str) -> bool:
    return path.endswith(".safetensors") or path.endswith(".safetensors.index.json")


def source_format(path: str) -> str:
    if path.endswith(".msgpack"):
        return "msgpack"
    if _is_safetensors_name(path):
        return "safetensors"
    if os.path.isdir(path):
        names = ("model.safetensors", "model.safetensors.index.json")
        return "safetensors" if any(os.path.exists(os.path.join(path, n)) for n in names) else "orbax"
    if not os.path.exists(path):
        raise Failure(f"{path}: no such file or directory")
    raise UsageError(f"{path}: cannot tell its format from the name; say it with --from {{{','.join(FORMATS)}}}")


def destination_format(path: str, sharded: bool) -> str:
    if path.endswith(".msgpack"):
        return "msgpack"
    if _is_safetensors_name(path) or sharded:
        return "safetensors"
    return "orbax"


# --------------------------------------------------------------------------
# Progress (rich, when it is there and stderr is a terminal)
# --------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr that shows itself once the conversion has
    run for ``delay`` seconds; nothing without rich or a terminal."""

    def __init__(self, enabled: bool, delay: float = 1.0):
        self._lock = threading.Lock()
        self._bar = self._task = None
        self._what, self._done, self._total = "", 0, None
        self._timer = None
        if enabled and _terminal():
            self._timer = threading.Timer(delay, self._show)
            self._timer.daemon = True
            self._timer.start()

    def phase(self, what: str, total: int | None = None) -> None:
        with self._lock:
            self._what, self._done, self._total = what, 0, total
            if self._bar is not None:  # a new task: a bar without a total pulses
                self._bar.remove_task(self._task)
                self._task = self._bar.add_task(what, total=total)

    def advance(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total
            self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=self._what, completed=self._done, total=self._total)

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress as Bar, SpinnerColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(self._what, total=self._total, completed=self._done)
            self._bar.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


def _terminal() -> bool:
    try:
        from rich.console import Console
    except ImportError:
        return False
    return Console(stderr=True).is_terminal


# --------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------


def _retype_bare(state, rules):
    """``state`` with each bare array that a rule selects made a variable
    of the rule's type (the array shared)."""
    from ._tree_in import parse_types, rule_type
    from .statelib import from_flat_state, to_flat_state
    from .variablelib import Variable

    parsed = parse_types(rules)
    pairs = []
    for path, leaf in to_flat_state(state):
        cls = None if isinstance(leaf, Variable) else rule_type(parsed, path)
        pairs.append((path, leaf if cls is None else cls(leaf)))
    return from_flat_state(pairs)


def read(fmt: str, path: str, args, rules, filters, progress: Progress):
    from .checkpoint import load_safetensors
    from .msgpack_io import load_msgpack
    from .orbax_io import load_orbax

    if fmt == "orbax":
        return load_orbax(path, types=rules, filter=filters, item=args.item, step=args.step,
                          progress=progress.advance)
    if fmt == "msgpack":
        return load_msgpack(path, types=rules, filter=filters)
    state = load_safetensors(path, variable_type=None) if rules else load_safetensors(path)
    if rules:
        state = _retype_bare(state, rules)
    if filters:
        from ._tree_in import as_predicate
        from .statelib import filter_state

        state = filter_state(state, as_predicate(filters))
    return state


def _msgpack_tree(state) -> dict:
    """The state as the nested dict of numpy arrays that
    ``flax.serialization`` writes (str keys; keys as their key data)."""
    import numpy as np

    from ._tree_in import _is_typed_key
    from .statelib import to_flat_state
    from .variablelib import Variable

    tree: dict = {}
    for path, leaf in to_flat_state(state):
        value = leaf.get_value() if isinstance(leaf, Variable) else leaf
        if value is None:
            continue
        if _is_typed_key(value):
            import jax

            value = jax.random.key_data(value)
        node = tree
        for key in path[:-1]:
            node = node.setdefault(str(key), {})
        node[str(path[-1])] = np.asarray(value)
    return tree


def write(fmt: str, state, path: str, args) -> None:
    if fmt == "orbax":
        from .orbax_io import save_orbax

        save_orbax(state, path, force=args.force)
    elif fmt == "safetensors":
        from .checkpoint import save_safetensors

        if args.max_shard_size is not None:
            os.makedirs(path, exist_ok=True)
        save_safetensors(state, path, max_shard_size=args.max_shard_size)
    else:
        from flax import serialization

        data = serialization.msgpack_serialize(_msgpack_tree(state))
        temporary = f"{path}.tmp{os.getpid()}"
        try:
            with open(temporary, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        except OSError:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise


def _size_text(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def summary(state) -> tuple[int, int, int]:
    """(leaves, bare arrays among them, bytes)."""
    from ._tree_in import nbytes
    from .statelib import to_flat_state
    from .variablelib import Variable

    leaves = bare = total = 0
    for _, leaf in to_flat_state(state):
        leaves += 1
        if isinstance(leaf, Variable):
            leaf = leaf.get_value()
        else:
            bare += 1
        total += nbytes(leaf)
    return leaves, bare, total


def _failure_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def convert(args) -> None:
    rules = _rules(args.types)
    filters = _filters(args.filters)
    if args.max_shard_size is not None:
        from .checkpoint import _size

        try:
            _size(args.max_shard_size)
        except ValueError as e:
            raise UsageError(f"--max-shard-size: {e}") from e
    src_fmt = args.src_format or source_format(args.src)
    dst_fmt = args.dst_format or destination_format(args.dst, args.max_shard_size is not None)
    if args.max_shard_size is not None and dst_fmt != "safetensors":
        raise UsageError("--max-shard-size is for a safetensors destination")
    if (args.item is not None or args.step is not None) and src_fmt != "orbax":
        raise UsageError("--item and --step are for an Orbax source")
    if not os.path.exists(args.src):
        raise Failure(f"{args.src}: no such file or directory")
    if dst_fmt == "orbax" and os.path.exists(args.dst) and not args.force:
        raise Failure(f"{args.dst}: already exists (--force replaces it)")
    parent = os.path.dirname(os.path.abspath(args.dst))
    if not os.path.isdir(parent):
        raise Failure(f"{args.dst}: the directory {parent} does not exist")
    start = time.perf_counter()
    progress = Progress(not args.quiet)
    try:
        progress.phase(f"reading {args.src}")
        try:
            state = read(src_fmt, args.src, args, rules, filters, progress)
        except Exception as e:
            raise Failure(f"reading {args.src!r} ({src_fmt}): {_failure_text(e)}") from e
        if len(state) == 0:
            raise Failure(f"{args.src!r}: no leaf to convert" + (" (the filters select none)" if filters else ""))
        progress.phase(f"writing {args.dst}")
        try:
            write(dst_fmt, state, args.dst, args)
        except Exception as e:
            raise Failure(f"writing {args.dst!r} ({dst_fmt}): {_failure_text(e)}") from e
    finally:
        progress.close()
    if not args.quiet:
        leaves, bare, total = summary(state)
        elapsed = time.perf_counter() - start
        untyped = f" ({bare} bare arrays: --type rules make them variables)" if bare and dst_fmt != "msgpack" else ""
        print(f"{args.src} ({src_fmt}) -> {args.dst} ({dst_fmt}): {leaves} leaves, {_size_text(total)}, "
              f"{elapsed:.2f} s{untyped}")


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        convert(parser.parse_args(argv))
    except UsageError as e:
        print(f"{parser.prog}: error: {e}\n(see '{parser.prog} --help')", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0

#!/usr/bin/env python3
"""Generate nnx-state's conformance cases by running the real ``flax.nnx``.

Every case builds random inputs (states, filters, flat pairs), runs one Flax
NNX operation on them and records what Flax returned or raised.  The Rust test
suite replays each case against nnx-state and compares.  This docstring is the
contract between the two: it describes the output file completely.

Usage::

    python conformance/generate.py [--seed N] [--count N] [--out PATH]

The output is fully determined by ``--seed`` and ``--count`` (and the Flax
version).  ``conformance/generate.sh`` runs this script in a pinned virtualenv.

File format
===========

JSON Lines, UTF-8.  The first line is a header object::

    {"format": "nnx-state-conformance", "version": 1, "flax": "0.12.8",
     "seed": 1234,
     "types": [["QuantParam", "Param"], ["MyStat", "BatchStat"],
               ["Custom", "Variable"]]}

``types`` lists the user-defined variable types the cases use, as
``[name, parent name]``; register them before replaying.  Every other line is
one CASE.

Values
------

KEY
    A JSON string (a str key) or a JSON integer (an int key; any signed 64-bit
    value).  ``"0"`` and ``0`` are different keys.
PATH
    A JSON array of KEYs, never empty.
TREE
    A state: a JSON array of ``[KEY, CHILD]`` pairs, in the state's iteration
    order (for outputs: exactly the order in which Flax's result iterates).
CHILD
    One of:

    * ``{"state": TREE}``: a nested state (possibly empty, ``[]``).
    * ``{"var": ID, "type": TYPE, "tag": "x" | null}``: a Variable of type
      TYPE (a built-in type name, ``Variable``, ``Param``, ``BatchStat``,
      ``Cache``, ``Intermediate``, ``Perturbation``, ``RngState``, ``RngKey``,
      ``RngCount``, ``OptState``, ``OptArray``, ``OptVariable``, or one of the
      header's ``types``), with the metadata entry ``tag`` when it is not
      null.  (Flax's internal metadata, such as ``eager_sharding``, is not
      recorded.)
    * ``{"array": ID}``: a bare array.

    ID is an integer >= 1, unique per leaf object within a case.  The leaf's
    value is a float32 array of shape ``[1]`` holding ``float(ID)``.  The same
    object appearing twice (in two input states of a merge, at two paths, in
    two pairs) has the same ID and must be the same shared object when
    replayed.  Leaves in an ``expect`` are the input leaves with that ID: a
    replay should check identity (same shared variable / array), not only the
    type, tag and value.

FILTER
    * ``{"of_type": TYPE, "form": "class" | "OfType"}``: the variable class
      itself, or ``nnx.OfType(cls)``.
    * ``{"tag": S, "form": "str" | "WithTag"}``: the string ``S`` itself, or
      ``nnx.WithTag(S)``.
    * ``{"path_contains": KEY, "exact": true | false}``:
      ``nnx.PathContains(KEY, exact=...)``.
    * ``{"path_in": [PATH, ...]}``: ``nnx.PathIn(*paths)`` (zero or more).
    * ``{"any": [FILTER, ...], "form": "list" | "tuple" | "Any"}``: a Python
      list, a tuple, or ``nnx.Any(...)`` of the parts (possibly none).
    * ``{"all": [FILTER, ...]}``: ``nnx.All(...)`` (possibly no parts).
    * ``{"not": FILTER}``: ``nnx.Not(f)``.
    * ``{"everything": "ellipsis" | "true" | "instance"}``: ``...``, ``True``
      or ``nnx.filterlib.Everything()``.  Only the first two are checked by
      the "last filters" rule; an instance is not.
    * ``{"nothing": "none" | "false" | "instance"}``: ``None``, ``False`` or
      ``nnx.filterlib.Nothing()``.
    * ``{"callback": NAME}``: a plain Python function ``f(path, leaf)``:

      - ``"depth_even"``: ``len(path) % 2 == 0``
      - ``"last_key_int"``: the last key of the path is an int key
      - ``"is_variable"``: the leaf is a Variable (not a bare array)
      - ``"value_gt_50"``: the leaf's value[0] > 50, i.e. its ID > 50

CASE
----

::

    {"id": N,
     "op": "filter" | "split" | "merge" | "diff" | "from_flat",
     "inputs": [TREE, ...],        # filter/split: 1, merge: 1-4, diff: 2
                                   # (absent for from_flat)
     "pairs": [[PATH, CHILD], ...],  # from_flat only; CHILD is a leaf;
                                     # paths may repeat
     "filters": [FILTER, ...],     # filter/split only, 1 to 4
     "expect": EXPECT,
     "flax_error": {"type": NAME, "message": TEXT},  # optional, see below
     "extension": "leaf_then_subtree"}               # optional, see below

The operations, with ``s = nnx.State(...)`` built from the input trees:

* ``filter``: ``nnx.filter_state(s, *filters)``
* ``split``: ``nnx.split_state(s, *filters)``
* ``merge``: ``nnx.merge_state(*states)``
* ``diff``: ``nnx.statelib.diff(a, b)``
* ``from_flat``: ``nnx.from_flat_state(pairs)`` (pairs as a list, in order)

EXPECT is one of:

* ``{"states": [TREE, ...]}``: the result.  filter/split: one tree per
  filter (a list even for a single filter); merge/diff/from_flat: a list of
  one tree.
* ``{"error": "FILTER_ORDER"}``: filter/split raised ``ValueError`` starting
  ``"`...` or `True` can only be used as the last filters"``.
* ``{"error": "NON_EXHAUSTIVE", "path": PATH}``: split raised ``ValueError``
  starting ``"Non-exhaustive filters"``; PATH is the first (in sorted flat
  order) path of the leaves that no filter matched.

Notes on what Flax returns, all recorded as is:

* ``merge`` of a single state returns that very state, and ``diff(a, b)``
  returns ``a`` itself when ``b`` has no top-level keys; the expected tree is
  then the input tree unchanged (its order, its empty subtrees).
* Otherwise outputs are rebuilt from flat lists, so empty nested states
  vanish.  filter/split/diff outputs follow sorted path order; merge and
  from_flat outputs follow the first-appearance order of each path in a flat
  dict (see below), not sorted order.

Extension cases (``"extension": "leaf_then_subtree"``)
-------------------------------------------------------

merge and from_flat build a flat dict ``{path: leaf}`` and unflatten it:

* merge: for each state in order, flatten it depth-first in iteration order
  (empty nested states give nothing) and ``dict.update`` the flat dict with
  it, so a repeated path keeps its first position and takes its last value;
* from_flat: ``dict(pairs)``, with the same effect for repeated paths.

When a leaf path comes, in that dict order, before a longer path running
through it, Flax crashes while unflattening (an IndexError or ValueError from
indexing the leaf).  Such cases carry ``flax_error`` (the exception's class
name and ``str(e)``) and ``"extension": "leaf_then_subtree"``; their
``expect`` is not Flax's but the result of nnx-state's documented rule,
computed by ``reference_unflatten`` below: entries are applied in dict order,
each replacing whatever is at its path; a leaf replaces a subtree in place,
and a path that runs through an existing leaf replaces that leaf, at the same
position, with a new empty subtree and continues.  On every other merge and
from_flat case the script checks that this rule gives exactly Flax's result.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import flax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from flax.nnx import filterlib, statelib  # noqa: E402
from flax.nnx.training.optimizer import OptArray, OptState, OptVariable  # noqa: E402

FORMAT = "nnx-state-conformance"
FORMAT_VERSION = 1
DEFAULT_SEED = 20240611
DEFAULT_COUNT = 1200
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "data" / "conformance.jsonl"

# Share of each operation among the cases.
OP_WEIGHTS = {"filter": 450, "split": 350, "merge": 200, "diff": 100, "from_flat": 100}

FILTER_ORDER_PREFIX = "`...` or `True` can only be used as the last filters"
NON_EXHAUSTIVE_PREFIX = "Non-exhaustive filters"


# --------------------------------------------------------------------------
# Variable types and leaves
# --------------------------------------------------------------------------


class QuantParam(nnx.Param):
    """A user-defined subtype of Param."""


class MyStat(nnx.BatchStat):
    """A user-defined subtype of BatchStat."""


class Custom(nnx.Variable):
    """A user-defined direct subtype of Variable."""


BUILTIN_TYPES = (
    nnx.Variable, nnx.Param, nnx.BatchStat, nnx.Cache, nnx.Intermediate,
    nnx.Perturbation, nnx.RngState, nnx.RngKey, nnx.RngCount,
    OptState, OptArray, OptVariable,
)
CUSTOM_TYPES = (QuantParam, MyStat, Custom)
VARIABLE_TYPES = {cls.__name__: cls for cls in BUILTIN_TYPES + CUSTOM_TYPES}
TYPE_NAMES = tuple(VARIABLE_TYPES)

TAGS = ("dropout", "x", "stats")
ARRAY_SHARE = 0.10  # share of leaves that are bare arrays
UNTAGGED_SHARE = 0.4


def leaf_value(leaf) -> float:
    """value[0] of a leaf (a Variable or a bare array)."""
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    return float(np.asarray(value)[0])


class Leaves:
    """The leaf objects of one case, each with its integer ID.

    IDs are drawn at random from 1..100 first (so that ``value_gt_50`` splits
    the leaves), then 101, 102, ... when a case needs more.
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._free_ids = list(range(1, 101))
        rng.shuffle(self._free_ids)
        self._next_id = 101
        self._ids: dict[int, tuple[int, object]] = {}  # id(obj) -> (ID, obj)
        self.objects: list = []

    def _take_id(self) -> int:
        if self._free_ids:
            return self._free_ids.pop()
        self._next_id += 1
        return self._next_id - 1

    def new(self):
        """A fresh leaf: a bare array or a Variable of a random type and tag."""
        ident = self._take_id()
        value = np.array([float(ident)], np.float32)
        if self.rng.random() < ARRAY_SHARE:
            leaf = value
        else:
            cls = VARIABLE_TYPES[self.rng.choice(TYPE_NAMES)]
            if self.rng.random() < UNTAGGED_SHARE:
                leaf = cls(value)
            else:
                leaf = cls(value, tag=self.rng.choice(TAGS))
        self._ids[id(leaf)] = (ident, leaf)
        self.objects.append(leaf)
        return leaf

    def new_or_existing(self, reuse_share: float):
        """Usually a fresh leaf; with probability ``reuse_share`` one already made."""
        if self.objects and self.rng.random() < reuse_share:
            return self.rng.choice(self.objects)
        return self.new()

    def id_of(self, leaf) -> int:
        entry = self._ids.get(id(leaf))
        if entry is None or entry[1] is not leaf:
            raise AssertionError(f"output leaf is not an input object: {leaf!r}")
        return entry[0]

    def encode(self, leaf) -> dict:
        ident = self.id_of(leaf)
        if isinstance(leaf, nnx.Variable):
            metadata = leaf.get_metadata()
            return {"var": ident, "type": type(leaf).__name__, "tag": metadata.get("tag")}
        if isinstance(leaf, np.ndarray):
            return {"array": ident}
        raise AssertionError(f"unexpected leaf {leaf!r}")

    def check_unchanged(self):
        for ident, leaf in self._ids.values():
            assert leaf_value(leaf) == ident, f"leaf {ident} was mutated"


# --------------------------------------------------------------------------
# Keys and random trees (nested dicts; wrapped in nnx.State when used)
# --------------------------------------------------------------------------

STR_KEYS = (
    "kernel", "bias", "scale", "mean", "var", "layers", "linear", "conv", "bn",
    "a", "b", "c", "x", "a1", "b12", "0", "1", "12", "-1", "a.b", "layers.0",
    "ä", "名", "ünï_ç",
)
INT_KEYS = (0, 1, 2, 3, 4, 5, 7, 10, 12, 21, 100, -1, -3)
RARE_STR_KEYS = ("", " ")
RARE_INT_KEYS = (2**53 + 1, -(2**63), 2**63 - 1)
RARE_KEY_SHARE = 0.03
ABSENT_KEYS = ("nope", "KERNEL", "layers.0.kernel", 999, -42)
SUBSTRING_KEYS = (0, 1, 2, "1", "2", "a", "e", "", "-")


def is_int_key(key) -> bool:
    return type(key) is int


def twin_key(key):
    """The key of the other kind that prints the same (0 <-> "0"), or None."""
    if is_int_key(key):
        return str(key)
    try:
        value = int(key)
    except ValueError:
        return None
    return value if str(value) == key else None


class KeyPicker:
    """Fresh, distinct keys for one level of a tree.

    kind is "str", "int" or "mixed" (each key's kind drawn at random).
    """

    def __init__(self, rng: random.Random, kind: str, used=()):
        self.rng = rng
        self.kind = kind
        self.used = set((is_int_key(k), k) for k in used)

    def fresh(self):
        kind = self.kind
        if kind == "mixed":
            kind = self.rng.choice(("str", "int"))
        if kind == "str":
            common, rare = STR_KEYS, RARE_STR_KEYS
        else:
            common, rare = INT_KEYS, RARE_INT_KEYS
        pool = rare if self.rng.random() < RARE_KEY_SHARE else common
        choices = [k for k in pool if (kind == "int", k) not in self.used]
        if choices:
            key = self.rng.choice(choices)
        else:  # pool exhausted: make one up
            n = len(self.used)
            while (kind == "int", n if kind == "int" else f"k{n}") in self.used:
                n += 1
            key = 1000 + n if kind == "int" else f"k{n}"
        self.used.add((kind == "int", key))
        return key


def level_kind(rng: random.Random, mixed_levels: bool) -> str:
    if mixed_levels and rng.random() < 0.35:
        return "mixed"
    return "int" if rng.random() < 0.3 else "str"


def random_tree(
    rng: random.Random,
    leaves: Leaves,
    *,
    n_leaves: int,
    max_depth: int,
    mixed_levels: bool = False,
    reuse_share: float = 0.0,
) -> dict:
    """A random nested dict with n_leaves leaves, at most max_depth levels deep.

    Unless mixed_levels, all keys of one level are of one kind (all str or all
    int), as Flax's sorting operations require.  A quarter of the trees also
    get empty subtrees.
    """
    empty_share = 0.12 if rng.random() < 0.25 else 0.0

    def node(n: int, depth_left: int) -> dict:
        out = {}
        keys = KeyPicker(rng, level_kind(rng, mixed_levels))
        remaining = n
        while remaining:
            if depth_left > 1 and rng.random() < 0.4:
                share = rng.randint(1, remaining)
                out[keys.fresh()] = node(share, depth_left - 1)
                remaining -= share
            else:
                out[keys.fresh()] = leaves.new_or_existing(reuse_share)
                remaining -= 1
            if rng.random() < empty_share:
                empty = {}
                if depth_left > 2 and rng.random() < 0.3:
                    empty = {KeyPicker(rng, "str").fresh(): {}}
                out[keys.fresh()] = empty
        return out

    return node(n_leaves, max_depth)


def random_shape(rng: random.Random) -> tuple[int, int]:
    """(number of leaves, depth) for a random tree."""
    n_leaves = rng.choice((rng.randint(1, 6), rng.randint(1, 15), rng.randint(1, 30)))
    return n_leaves, rng.randint(1, 4)


def flatten(tree) -> list[tuple[tuple, object]]:
    """(path, leaf) pairs, depth-first in iteration order; empty subtrees give
    nothing.  The same walk as ``nnx.traversals.flatten_mapping``."""
    out = []

    def walk(node, prefix):
        for key, child in node.items():
            if isinstance(child, (dict, nnx.State)):
                walk(child, prefix + (key,))
            else:
                out.append((prefix + (key,), child))

    walk(tree, ())
    return out


def subtree_paths(tree) -> list[tuple]:
    """Paths of all nested dicts (empty or not), depth-first."""
    out = []

    def walk(node, prefix):
        for key, child in node.items():
            if isinstance(child, dict):
                out.append(prefix + (key,))
                walk(child, prefix + (key,))

    walk(tree, ())
    return out


def tree_keys(tree) -> list:
    """Every key used anywhere in the tree, without repeats, in walk order."""
    out = []

    def walk(node):
        for key, child in node.items():
            if (is_int_key(key), key) not in seen:
                seen.add((is_int_key(key), key))
                out.append(key)
            if isinstance(child, dict):
                walk(child)

    seen: set = set()
    walk(tree)
    return out


def try_insert(tree: dict, path: tuple, leaf, *, allow_mixed: bool) -> bool:
    """Put leaf at path unless the path is taken, runs through a leaf, or
    (unless allow_mixed) would mix int and str keys at a level.  Returns
    whether it did."""
    node = tree
    for i, key in enumerate(path):
        if not allow_mixed and node and is_int_key(key) != is_int_key(next(iter(node))):
            return False
        if key not in node:
            break
        if i == len(path) - 1 or not isinstance(node[key], dict):
            return False
        node = node[key]
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = leaf
    return True


def add_empty_subtrees(rng: random.Random, tree: dict, *, allow_mixed: bool):
    """Sometimes add an empty nested state somewhere in the tree."""
    if rng.random() >= 0.15:
        return
    node = rng.choice([tree, *_dict_nodes(tree)])
    if allow_mixed:
        kind = "mixed"
    elif node and is_int_key(next(iter(node))):
        kind = "int"
    else:
        kind = "str"
    node[KeyPicker(rng, kind, used=node).fresh()] = {}


def _dict_nodes(tree: dict):
    for child in tree.values():
        if isinstance(child, dict):
            yield child
            yield from _dict_nodes(child)


# --------------------------------------------------------------------------
# JSON encoding of trees and paths
# --------------------------------------------------------------------------


def check_key(key):
    assert type(key) in (int, str), f"bad key {key!r}"
    return key


def encode_path(path) -> list:
    return [check_key(k) for k in path]


def encode_tree(tree, leaves: Leaves) -> list:
    """TREE: [[KEY, CHILD], ...] in iteration order."""
    mapping = tree.raw_mapping if isinstance(tree, nnx.State) else tree
    out = []
    for key, child in mapping.items():
        if isinstance(child, (dict, nnx.State)):
            out.append([check_key(key), {"state": encode_tree(child, leaves)}])
        else:
            out.append([check_key(key), leaves.encode(child)])
    return out


# --------------------------------------------------------------------------
# Filters: random specs (the JSON) and the Python filters they stand for
# --------------------------------------------------------------------------


def depth_even(path, leaf) -> bool:
    return len(path) % 2 == 0


def last_key_int(path, leaf) -> bool:
    return isinstance(path[-1], int)


def is_variable(path, leaf) -> bool:
    return isinstance(leaf, nnx.Variable)


def value_gt_50(path, leaf) -> bool:
    return leaf_value(leaf) > 50


CALLBACKS = {f.__name__: f for f in (depth_even, last_key_int, is_variable, value_gt_50)}
EVERYTHING_FORMS = {"ellipsis": ..., "true": True, "instance": filterlib.Everything()}
NOTHING_FORMS = {"none": None, "false": False, "instance": filterlib.Nothing()}
CHECKED_EVERYTHING = ("ellipsis", "true")  # the literals the last-filters rule checks


def build_filter(spec: dict):
    """The Python filter a FILTER spec stands for."""
    if "of_type" in spec:
        cls = VARIABLE_TYPES[spec["of_type"]]
        return cls if spec["form"] == "class" else filterlib.OfType(cls)
    if "tag" in spec:
        return spec["tag"] if spec["form"] == "str" else filterlib.WithTag(spec["tag"])
    if "path_contains" in spec:
        return filterlib.PathContains(spec["path_contains"], exact=spec["exact"])
    if "path_in" in spec:
        return filterlib.PathIn(*(tuple(path) for path in spec["path_in"]))
    if "any" in spec:
        parts = [build_filter(part) for part in spec["any"]]
        if spec["form"] == "list":
            return parts
        if spec["form"] == "tuple":
            return tuple(parts)
        return filterlib.Any(*parts)
    if "all" in spec:
        return filterlib.All(*(build_filter(part) for part in spec["all"]))
    if "not" in spec:
        return filterlib.Not(build_filter(spec["not"]))
    if "everything" in spec:
        return EVERYTHING_FORMS[spec["everything"]]
    if "nothing" in spec:
        return NOTHING_FORMS[spec["nothing"]]
    if "callback" in spec:
        return CALLBACKS[spec["callback"]]
    raise AssertionError(f"bad filter spec {spec}")


class FilterMaker:
    """Random FILTER specs aimed at one input tree: its keys, paths and tags,
    plus keys and paths that do not occur and int/str look-alikes."""

    MAX_NESTING = 3
    KIND_WEIGHTS = {
        "of_type": 22, "tag": 12, "path_contains": 20, "path_in": 10, "callback": 10,
        "everything": 3, "nothing": 4, "any": 9, "all": 6, "not": 7,
    }
    COMPOSITES = ("any", "all", "not")

    def __init__(self, rng: random.Random, tree: dict):
        self.rng = rng
        self.keys = tree_keys(tree)
        self.leaf_paths = [path for path, _ in flatten(tree)]
        self.subtree_paths = subtree_paths(tree)

    def top_level(self, op: str) -> list[dict]:
        """1 to 4 filters for filter/split.  ~8% put `...`/`True` before a filter
        that is not one of them (Flax rejects that); otherwise those literals
        only end the list, as they often do for split."""
        rng = self.rng
        n = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
        if rng.random() < 0.08:
            n = max(n, 2)
            specs = [self.random(top_level=True) for _ in range(n)]
            specs[rng.randrange(n - 1)] = {"everything": rng.choice(CHECKED_EVERYTHING)}
            return specs
        specs = [self.random(top_level=True) for _ in range(n)]
        if rng.random() < (0.76 if op == "split" else 0.2):
            tail = 2 if n > 1 and rng.random() < 0.15 else 1
            for i in range(n - tail, n):
                specs[i] = {"everything": rng.choice(("ellipsis", "ellipsis", "true"))}
        return specs

    def random(self, nesting: int = 0, top_level: bool = False) -> dict:
        rng = self.rng
        kinds = [
            k for k in self.KIND_WEIGHTS
            if nesting < self.MAX_NESTING or k not in self.COMPOSITES
        ]
        kind = rng.choices(kinds, weights=[self.KIND_WEIGHTS[k] for k in kinds])[0]
        if kind == "of_type":
            form = rng.choice(("class", "class", "OfType"))
            return {"of_type": rng.choice(TYPE_NAMES), "form": form}
        if kind == "tag":
            return {"tag": rng.choice(TAGS + ("nope",)), "form": rng.choice(("str", "WithTag"))}
        if kind == "path_contains":
            return self.path_contains()
        if kind == "path_in":
            count = rng.choices((0, 1, 2, 3), weights=(1, 5, 3, 2))[0]
            return {"path_in": [encode_path(self.path()) for _ in range(count)]}
        if kind == "callback":
            return {"callback": rng.choice(tuple(CALLBACKS))}
        if kind == "everything":
            # At top level the checked literals are placed by top_level() only.
            return {"everything": "instance" if top_level else rng.choice(tuple(EVERYTHING_FORMS))}
        if kind == "nothing":
            return {"nothing": rng.choice(tuple(NOTHING_FORMS))}
        if kind == "not":
            return {"not": self.random(nesting + 1)}
        count = rng.choices((0, 1, 2, 3), weights=(1, 4, 4, 2))[0]
        parts = [self.random(nesting + 1) for _ in range(count)]
        if kind == "all":
            return {"all": parts}
        return {"any": parts, "form": rng.choice(("list", "tuple", "Any"))}

    def path_contains(self) -> dict:
        rng = self.rng
        exact = rng.random() < 0.65
        r = rng.random()
        key = None
        if r < 0.55:
            key = rng.choice(self.keys)
        elif r < 0.75:
            key = twin_key(rng.choice(self.keys))  # 0 vs "0": never equal
        elif r < 0.85:
            key = rng.choice(ABSENT_KEYS)
        if key is None:
            key = rng.choice(SUBSTRING_KEYS)  # substrings such as 1 in "a1" and 12
        return {"path_contains": check_key(key), "exact": exact}

    def path(self) -> tuple:
        """A leaf path of the tree, or a subtree path, a look-alike or an absent
        path (none of which PathIn matches)."""
        rng = self.rng
        r = rng.random()
        if r < 0.15 and self.subtree_paths:
            return rng.choice(self.subtree_paths)
        if r < 0.3:
            path = list(rng.choice(self.leaf_paths))
            twins = [i for i, key in enumerate(path) if twin_key(key) is not None]
            if twins:
                i = rng.choice(twins)
                path[i] = twin_key(path[i])
                return tuple(path)
        if r > 0.9:
            return tuple(rng.choice(ABSENT_KEYS) for _ in range(rng.randint(1, 3)))
        return rng.choice(self.leaf_paths)


# --------------------------------------------------------------------------
# The reference rule for merge / from_flat (see the module docstring)
# --------------------------------------------------------------------------


def merge_flat_dict(states) -> dict:
    """The flat dict merge_state builds: each state flattened in order, later
    values overwriting earlier ones at the earlier position."""
    flat: dict = {}
    for state in states:
        flat.update(flatten(state))
    return flat


def has_leaf_then_subtree(flat: dict) -> bool:
    """Whether a path of the flat dict runs through a path that came earlier
    (on which Flax's unflatten crashes)."""
    seen = set()
    for path in flat:
        if any(path[:i] in seen for i in range(1, len(path))):
            return True
        seen.add(path)
    return False


def reference_unflatten(flat: dict) -> dict:
    """nnx-state's rule: apply the entries in order, each replacing whatever is
    at its path; a path through a leaf turns that leaf into an empty subtree
    (at the leaf's position) and continues."""
    root: dict = {}
    for path, leaf in flat.items():
        node = root
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = leaf
    return root


def fresh_suffix(rng: random.Random) -> tuple:
    picker = KeyPicker(rng, "mixed")
    return tuple(picker.fresh() for _ in range(rng.randint(1, 2)))


# --------------------------------------------------------------------------
# Case generators
# --------------------------------------------------------------------------


def filter_or_split_case(rng: random.Random, op: str) -> dict:
    leaves = Leaves(rng)
    n_leaves, depth = random_shape(rng)
    tree = random_tree(rng, leaves, n_leaves=n_leaves, max_depth=depth, reuse_share=0.03)
    specs = FilterMaker(rng, tree).top_level(op)
    filters = [build_filter(spec) for spec in specs]
    state = nnx.State(tree)
    case = {"op": op, "inputs": [encode_tree(state, leaves)], "filters": specs}

    run = nnx.filter_state if op == "filter" else nnx.split_state
    try:
        result = run(state, *filters)
    except ValueError as e:
        message = str(e)
        if message.startswith(FILTER_ORDER_PREFIX):
            case["expect"] = {"error": "FILTER_ORDER"}
        elif op == "split" and message.startswith(NON_EXHAUSTIVE_PREFIX):
            # The remainder is what one more `...` at the end would catch.
            rest = nnx.filter_state(state, *filters, ...)[-1]
            first_path = nnx.to_flat_state(rest).paths[0]
            case["expect"] = {"error": "NON_EXHAUSTIVE", "path": encode_path(first_path)}
        else:
            raise
    else:
        outputs = result if isinstance(result, tuple) else (result,)
        assert len(outputs) == len(filters)
        case["expect"] = {"states": [encode_tree(s, leaves) for s in outputs]}

    assert encode_tree(state, leaves) == case["inputs"][0], "input was modified"
    leaves.check_unchanged()
    return case


def run_unflattening_op(case: dict, leaves: Leaves, flat: dict, run) -> dict:
    """Run merge or from_flat and fill in case["expect"] (and flax_error and
    extension for leaf-then-subtree cases), checking reference_unflatten
    against Flax wherever Flax succeeds."""
    reference = reference_unflatten(flat)
    conflict = has_leaf_then_subtree(flat)
    try:
        result = run()
    except (IndexError, ValueError, TypeError) as e:
        assert conflict, f"unexpected Flax error: {e!r}"
        case["expect"] = {"states": [encode_tree(reference, leaves)]}
        case["flax_error"] = {"type": type(e).__name__, "message": str(e)}
        case["extension"] = "leaf_then_subtree"
    else:
        assert not conflict, "Flax did not raise on a leaf-then-subtree case"
        encoded = encode_tree(result, leaves)
        assert encoded == encode_tree(reference, leaves), "reference rule differs from Flax"
        case["expect"] = {"states": [encoded]}
    leaves.check_unchanged()
    return case


def merge_case(rng: random.Random, want_conflict: bool) -> dict:
    """Input states drawn from a common universe of paths, so that they
    overlap: shared paths with new or the same leaf objects, leaves replacing
    subtrees, empty subtrees, and (when wanted) a later subtree under an
    earlier leaf."""
    while True:
        leaves = Leaves(rng)
        n_states = rng.choices((1, 2, 3, 4), weights=(10, 50, 25, 15))[0]
        if want_conflict:
            n_states = max(n_states, 2)
        n_leaves, depth = random_shape(rng)
        universe = random_tree(
            rng, leaves, n_leaves=max(n_leaves, 2), max_depth=depth,
            mixed_levels=rng.random() < 0.35,
        )
        universe_pairs = flatten(universe)
        universe_subtrees = [  # the non-empty ones
            p for p in subtree_paths(universe)
            if any(q[: len(p)] == p for q, _ in universe_pairs)
        ]

        state_pairs = []
        for k in range(n_states):
            keep = rng.uniform(0.3, 0.9)
            pairs = [
                (path, leaf if k == 0 or rng.random() < 0.35 else leaves.new_or_existing(0.1))
                for path, leaf in universe_pairs
                if rng.random() < keep
            ]
            if rng.random() < 0.3:
                rng.shuffle(pairs)
            if k > 0 and universe_subtrees and rng.random() < 0.3:
                # A leaf where the universe has a subtree.
                top = rng.choice(universe_subtrees)
                pairs = [(p, l) for p, l in pairs if p[: len(top)] != top]
                pairs.insert(rng.randint(0, len(pairs)), (top, leaves.new()))
            state_pairs.append(pairs)

        if want_conflict:
            # A later state puts a subtree under a leaf path of an earlier state.
            j = rng.randrange(n_states - 1)
            k = rng.randrange(j + 1, n_states)
            if not state_pairs[j]:
                continue
            path = rng.choice(state_pairs[j])[0]
            state_pairs[k] = [(p, l) for p, l in state_pairs[k] if p != path]
            state_pairs[k].append((path + fresh_suffix(rng), leaves.new()))

        states = []
        for pairs in state_pairs:
            tree = {}
            for path, leaf in pairs:
                # Paths under a leaf of the same state are dropped; the retry loop
                # catches a wanted conflict that got lost that way.
                try_insert(tree, path, leaf, allow_mixed=True)
            add_empty_subtrees(rng, tree, allow_mixed=True)
            states.append(tree)
        flat = merge_flat_dict(states)
        if has_leaf_then_subtree(flat) == want_conflict:
            break

    inputs = [nnx.State(tree) for tree in states]
    case = {"op": "merge", "inputs": [encode_tree(s, leaves) for s in inputs]}
    if n_states == 1:
        # merge_state(s) returns s itself: its order and empty subtrees included.
        result = nnx.merge_state(inputs[0])
        assert result is inputs[0]
        case["expect"] = {"states": [encode_tree(result, leaves)]}
        return case
    return run_unflattening_op(case, leaves, flat, lambda: nnx.merge_state(*inputs))


def from_flat_case(rng: random.Random, want_conflict: bool) -> dict:
    """Pairs from a random tree, reordered, with repeated paths, leaves at
    subtree paths and (when wanted) a path through an earlier leaf."""
    while True:
        leaves = Leaves(rng)
        n_leaves, depth = random_shape(rng)
        base = random_tree(
            rng, leaves, n_leaves=n_leaves, max_depth=depth, mixed_levels=rng.random() < 0.35
        )
        pairs = flatten(base)
        if rng.random() < 0.02 and not want_conflict:
            pairs = []
        if rng.random() < 0.5:
            rng.shuffle(pairs)
        if pairs and rng.random() < 0.25:
            for _ in range(rng.randint(1, 3)):
                path = rng.choice(pairs)[0]
                pairs.insert(rng.randint(0, len(pairs)), (path, leaves.new_or_existing(0.3)))
        subtrees = [p for p in subtree_paths(base) if any(q[: len(p)] == p for q, _ in pairs)]
        if subtrees and rng.random() < 0.2:
            pairs.insert(rng.randint(0, len(pairs)), (rng.choice(subtrees), leaves.new()))
        if want_conflict:
            if not pairs:
                continue
            i = rng.randrange(len(pairs))
            path = pairs[i][0] + fresh_suffix(rng)
            pairs.insert(rng.randint(i + 1, len(pairs)), (path, leaves.new()))
        flat = dict(pairs)
        if has_leaf_then_subtree(flat) == want_conflict:
            break

    case = {
        "op": "from_flat",
        "pairs": [[encode_path(path), leaves.encode(leaf)] for path, leaf in pairs],
    }
    return run_unflattening_op(case, leaves, flat, lambda: nnx.from_flat_state(list(pairs)))


def diff_case(rng: random.Random) -> dict:
    """a random; b empty, only empty subtrees, or some of a's paths plus
    leaves at a's subtree paths, subtrees under a's leaves, int/str
    look-alike paths and fresh paths."""
    leaves = Leaves(rng)
    n_leaves, depth = random_shape(rng)
    a = random_tree(rng, leaves, n_leaves=n_leaves, max_depth=depth)
    a_pairs = flatten(a)
    r = rng.random()
    if r < 0.1:
        b: dict = {}
    elif r < 0.15:
        b = {KeyPicker(rng, "str").fresh(): {}}
    else:
        b = {}
        keep = rng.uniform(0.2, 0.9)
        for path, leaf in a_pairs:
            if rng.random() < keep:
                try_insert(b, path, leaf if rng.random() < 0.3 else leaves.new(), allow_mixed=False)
        a_subtrees = subtree_paths(a)
        for _ in range(rng.randint(0, 3)):
            extra = rng.random()
            if extra < 0.25 and a_subtrees:
                path = rng.choice(a_subtrees)
            elif extra < 0.5:
                path = rng.choice(a_pairs)[0] + fresh_suffix(rng)
            elif extra < 0.75:
                path = list(rng.choice(a_pairs)[0])
                twins = [i for i, key in enumerate(path) if twin_key(key) is not None]
                if not twins:
                    continue
                i = rng.choice(twins)
                path[i] = twin_key(path[i])
                path = tuple(path)
            else:
                path = fresh_suffix(rng)
            try_insert(b, path, leaves.new(), allow_mixed=False)
        add_empty_subtrees(rng, b, allow_mixed=False)

    state_a, state_b = nnx.State(a), nnx.State(b)
    case = {"op": "diff", "inputs": [encode_tree(state_a, leaves), encode_tree(state_b, leaves)]}
    result = statelib.diff(state_a, state_b)
    if not b:
        assert result is state_a  # diff(a, b) returns a itself when b is empty
    case["expect"] = {"states": [encode_tree(result, leaves)]}
    leaves.check_unchanged()
    return case


CONFLICT_SHARE = 0.07  # of merge and from_flat cases


def make_case(seed: int, case_id: int, op: str) -> dict:
    # Each case has its own generator, so cases do not depend on each other.
    rng = random.Random(seed * 1_000_003 + case_id)
    if op in ("filter", "split"):
        body = filter_or_split_case(rng, op)
    elif op == "merge":
        body = merge_case(rng, want_conflict=rng.random() < CONFLICT_SHARE)
    elif op == "from_flat":
        body = from_flat_case(rng, want_conflict=rng.random() < CONFLICT_SHARE)
    else:
        body = diff_case(rng)
    return {"id": case_id, **body}


def op_schedule(seed: int, count: int) -> list[str]:
    """count ops in the proportions of OP_WEIGHTS, shuffled."""
    total = sum(OP_WEIGHTS.values())
    ops: list[str] = []
    for op, weight in OP_WEIGHTS.items():
        ops += [op] * (count * weight // total)
    ops += ["filter"] * (count - len(ops))
    random.Random(seed).shuffle(ops)
    return ops


def outcome(case: dict) -> str:
    if "extension" in case:
        return "extension:" + case["extension"]
    return case["expect"].get("error", "ok")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "flax": flax.__version__,
        "seed": args.seed,
        "types": [[cls.__name__, cls.__bases__[0].__name__] for cls in CUSTOM_TYPES],
    }
    tally: Counter = Counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for case_id, op in enumerate(op_schedule(args.seed, args.count)):
            case = make_case(args.seed, case_id, op)
            tally[op, outcome(case)] += 1
            f.write(json.dumps(case, ensure_ascii=False, separators=(",", ":")) + "\n")
    tmp.replace(args.out)

    print(f"wrote {args.count} cases to {args.out} (flax {flax.__version__})", file=sys.stderr)
    for (op, result), n in sorted(tally.items()):
        print(f"  {op:10} {result:28} {n:5}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

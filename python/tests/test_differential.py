"""A live differential test against real flax.nnx: random trees (str and int
keys, shared leaves, empty subtrees), random filters of every kind (nested
Any/All/Not, misplaced ``...``/``True``, callables, callables that raise),
and random filter/split/merge/diff/from_flat/to_flat/to_pure_dict calls,
run on both sides. Paths in order, leaf identity, types, tags, values and
errors must agree. Fixed seed: reproducible."""

from __future__ import annotations

import random
import warnings
from collections import Counter

import numpy as np
import pytest

import nnx_state as ours

flax_nnx = pytest.importorskip("flax.nnx")
from flax.nnx import filterlib as flax_filterlib  # noqa: E402
from flax.nnx import statelib as flax_statelib  # noqa: E402
from flax.nnx.training import optimizer as flax_optimizer  # noqa: E402

SEED = 90210
N_CASES = 2500

pytestmark = [pytest.mark.flax, pytest.mark.slow]

# --------------------------------------------------------------------------
# Variable types on both sides
# --------------------------------------------------------------------------


class DQuant(flax_nnx.Param):
    pass


class DStat(flax_nnx.BatchStat):
    pass


class DCustom(flax_nnx.Variable):
    pass


class DDeep(DQuant):
    pass


FLAX_TYPES = {
    "Variable": flax_nnx.Variable, "Param": flax_nnx.Param, "BatchStat": flax_nnx.BatchStat,
    "Cache": flax_nnx.Cache, "Intermediate": flax_nnx.Intermediate,
    "Perturbation": flax_nnx.Perturbation, "RngState": flax_nnx.RngState,
    "RngKey": flax_nnx.RngKey, "RngCount": flax_nnx.RngCount,
    "OptState": flax_optimizer.OptState, "OptArray": flax_optimizer.OptArray,
    "OptVariable": flax_optimizer.OptVariable,
    "DQuant": DQuant, "DStat": DStat, "DCustom": DCustom, "DDeep": DDeep,
}
OUR_TYPES = {name: getattr(ours, name) for name in list(FLAX_TYPES)[:12]}
OUR_TYPES["DQuant"] = ours.variable_type("DQuant", ours.Param)
OUR_TYPES["DStat"] = ours.variable_type("DStat", ours.BatchStat)
OUR_TYPES["DCustom"] = ours.variable_type("DCustom", ours.Variable)
OUR_TYPES["DDeep"] = ours.variable_type("DDeep", OUR_TYPES["DQuant"])
TYPE_NAMES = tuple(FLAX_TYPES)
TAGS = ("dropout", "x", "stats")

STR_KEYS = ("kernel", "bias", "mean", "layers", "linear", "a", "b", "c", "a1", "b12",
            "0", "1", "12", "-1", "a.b", "ä", "名", "", " ", "x y")
INT_KEYS = (0, 1, 2, 3, 5, 7, 10, 12, 100, -1, -3, 2**40, -(2**62))
ABSENT_KEYS = ("nope", "KERNEL", 999, -42)
SUBSTRINGS = (0, 1, 2, "1", "a", "e", "", "-", "ern")

# --------------------------------------------------------------------------
# Leaves: one Flax object and one of ours per ID
# --------------------------------------------------------------------------


class Leaves:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.next_id = 1
        self.flax: dict[int, object] = {}
        self.ours: dict[int, object] = {}
        self.flax_ids: dict[int, int] = {}  # id(flax object) -> ID
        self.our_ids: dict[int, int] = {}  # native pointer / data pointer -> ID
        self.all: list[int] = []

    def new(self) -> int:
        ident = self.next_id
        self.next_id += 1
        rng = self.rng
        if rng.random() < 0.1:
            f = np.array([float(ident)], np.float32)
            o = np.array([float(ident)], np.float32)
            self.our_ids[("array", o.__array_interface__["data"][0])] = ident
        else:
            name = rng.choice(TYPE_NAMES)
            tag = rng.choice(TAGS) if rng.random() < 0.6 else None
            kw = {} if tag is None else {"tag": tag}
            f = FLAX_TYPES[name](np.array([float(ident)], np.float32), **kw)
            o = OUR_TYPES[name](np.array([float(ident)], np.float32), **kw)
            self.our_ids[("var", o._ptr)] = ident
        self.flax[ident], self.ours[ident] = f, o
        self.flax_ids[id(f)] = ident
        self.all.append(ident)
        return ident

    def new_or_existing(self, reuse: float) -> int:
        if self.all and self.rng.random() < reuse:
            return self.rng.choice(self.all)
        return self.new()

    def describe_flax(self, leaf):
        ident = self.flax_ids.get(id(leaf))
        assert ident is not None and self.flax[ident] is leaf, f"Flax returned a foreign leaf {leaf!r}"
        if isinstance(leaf, flax_nnx.Variable):
            return ("var", ident, type(leaf).__name__, leaf.get_metadata().get("tag"))
        return ("array", ident)

    def describe_ours(self, leaf):
        if isinstance(leaf, ours.Variable):
            ident = self.our_ids.get(("var", leaf._ptr))
            assert ident is not None and self.ours[ident] is leaf, "not an input variable"
            assert float(leaf[...][0]) == ident, "value changed"
            return ("var", ident, type(leaf).__name__, leaf.tag)
        ident = self.our_ids.get(("array", leaf.__array_interface__["data"][0]))
        assert ident is not None, "not an input array"
        assert float(leaf[0]) == ident
        return ("array", ident)


# --------------------------------------------------------------------------
# Random trees (as nested dicts of IDs)
# --------------------------------------------------------------------------


def fresh_key(rng, used: set, kind: str):
    if kind == "mixed":
        kind = rng.choice(("str", "int"))
    pool = STR_KEYS if kind == "str" else INT_KEYS
    choices = [k for k in pool if (type(k), k) not in used]
    key = rng.choice(choices) if choices else (f"k{len(used)}" if kind == "str" else 5000 + len(used))
    used.add((type(key), key))
    return key


def random_tree(rng, leaves: Leaves, n_leaves: int, depth: int, *, mixed=False, reuse=0.0) -> dict:
    empty_share = 0.1 if rng.random() < 0.3 else 0.0

    def node(n, depth_left):
        out, used = {}, set()
        kind = "mixed" if mixed and rng.random() < 0.3 else ("int" if rng.random() < 0.3 else "str")
        while n:
            if depth_left > 1 and rng.random() < 0.4:
                share = rng.randint(1, n)
                out[fresh_key(rng, used, kind)] = node(share, depth_left - 1)
                n -= share
            else:
                out[fresh_key(rng, used, kind)] = leaves.new_or_existing(reuse)
                n -= 1
            if rng.random() < empty_share:
                out[fresh_key(rng, used, kind)] = {}
        return out

    return node(n_leaves, depth)


def flat_pairs(tree, prefix=()):
    for key, child in tree.items():
        if isinstance(child, dict):
            yield from flat_pairs(child, prefix + (key,))
        else:
            yield prefix + (key,), child


def all_keys(tree) -> list:
    out, seen = [], set()

    def walk(t):
        for k, c in t.items():
            if (type(k), k) not in seen:
                seen.add((type(k), k))
                out.append(k)
            if isinstance(c, dict):
                walk(c)

    walk(tree)
    return out


def twin(key):
    if isinstance(key, int):
        return str(key)
    try:
        value = int(key)
    except ValueError:
        return None
    return value if str(value) == key else None


def materialize(tree, leaves: Leaves, side: str):
    table = leaves.flax if side == "flax" else leaves.ours
    return {k: materialize(c, leaves, side) if isinstance(c, dict) else table[c] for k, c in tree.items()}


# --------------------------------------------------------------------------
# Random filters: a spec, built for each side
# --------------------------------------------------------------------------


def value_of(leaf) -> float:
    value = leaf.get_value() if hasattr(leaf, "get_value") else leaf
    return float(np.asarray(value)[0])


class Boom(Exception):
    pass


def cb_depth_even(path, leaf):
    return len(path) % 2 == 0


def cb_last_int(path, leaf):
    return isinstance(path[-1], int)


def cb_is_variable(path, leaf):
    return hasattr(leaf, "get_metadata")


def cb_value_big(path, leaf):
    return value_of(leaf) > 6


def cb_raises(path, leaf):
    if value_of(leaf) % 5 == 0:
        raise Boom(f"leaf at {path!r} is a multiple of five")
    return False


CALLBACKS = (cb_depth_even, cb_last_int, cb_is_variable, cb_value_big, cb_raises)


class FilterMaker:
    WEIGHTS = {"type": 20, "ndarray": 2, "tag": 10, "path_contains": 18, "path_in": 10,
               "callback": 10, "everything": 3, "nothing": 4, "any": 9, "all": 6, "not": 7}

    def __init__(self, rng, tree):
        self.rng = rng
        self.keys = all_keys(tree) or ["a"]
        self.paths = [p for p, _ in flat_pairs(tree)] or [("a",)]

    def top(self, op):
        rng = self.rng
        n = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
        specs = [self.one(0) for _ in range(n)]
        if rng.random() < 0.1 and n > 1:
            specs[rng.randrange(n - 1)] = ("everything", rng.choice(("ellipsis", "true")))
        elif rng.random() < (0.7 if op == "split" else 0.2):
            specs[-1] = ("everything", rng.choice(("ellipsis", "ellipsis", "true")))
            if n > 1 and rng.random() < 0.15:
                specs[-2] = ("everything", "ellipsis")
        return specs

    def one(self, depth):
        rng = self.rng
        kinds = [k for k in self.WEIGHTS if depth < 3 or k not in ("any", "all", "not")]
        kind = rng.choices(kinds, weights=[self.WEIGHTS[k] for k in kinds])[0]
        if kind == "type":
            return ("type", rng.choice(TYPE_NAMES), rng.choice(("class", "class", "OfType")))
        if kind == "ndarray":
            return ("ndarray",)
        if kind == "tag":
            return ("tag", rng.choice(TAGS + ("nope",)), rng.choice(("str", "WithTag")))
        if kind == "path_contains":
            r = rng.random()
            key = rng.choice(self.keys) if r < 0.5 else twin(rng.choice(self.keys)) if r < 0.7 else (
                rng.choice(ABSENT_KEYS) if r < 0.8 else rng.choice(SUBSTRINGS))
            if key is None:
                key = rng.choice(SUBSTRINGS)
            return ("path_contains", key, rng.random() < 0.6)
        if kind == "path_in":
            paths = []
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                p = list(rng.choice(self.paths))
                if rng.random() < 0.2:
                    p = p[:-1] or p
                elif rng.random() < 0.2:
                    i = rng.randrange(len(p))
                    p[i] = twin(p[i]) if twin(p[i]) is not None else p[i]
                paths.append(tuple(p))
            return ("path_in", tuple(paths))
        if kind == "callback":
            return ("callback", rng.randrange(len(CALLBACKS)))
        if kind == "everything":
            return ("everything", "instance" if depth == 0 else rng.choice(("ellipsis", "true", "instance")))
        if kind == "nothing":
            return ("nothing", rng.choice(("none", "false", "instance")))
        if kind == "not":
            return ("not", self.one(depth + 1))
        parts = tuple(self.one(depth + 1) for _ in range(rng.choice((0, 1, 1, 2, 2, 3))))
        if kind == "all":
            return ("all", parts)
        return ("any", parts, rng.choice(("list", "tuple", "Any")))


def build(spec, side: str):
    lib = flax_filterlib if side == "flax" else ours.filterlib
    types = FLAX_TYPES if side == "flax" else OUR_TYPES
    kind = spec[0]
    if kind == "type":
        cls = types[spec[1]]
        return cls if spec[2] == "class" else lib.OfType(cls)
    if kind == "ndarray":
        return lib.OfType(np.ndarray)
    if kind == "tag":
        return spec[1] if spec[2] == "str" else lib.WithTag(spec[1])
    if kind == "path_contains":
        return lib.PathContains(spec[1], exact=spec[2])
    if kind == "path_in":
        return lib.PathIn(*spec[1])
    if kind == "callback":
        return CALLBACKS[spec[1]]
    if kind == "everything":
        return {"ellipsis": ..., "true": True, "instance": lib.Everything()}[spec[1]]
    if kind == "nothing":
        return {"none": None, "false": False, "instance": lib.Nothing()}[spec[1]]
    if kind == "not":
        return lib.Not(build(spec[1], side))
    parts = [build(p, side) for p in spec[1]]
    if kind == "all":
        return lib.All(*parts)
    return {"list": parts, "tuple": tuple(parts), "Any": lib.Any(*parts) if spec[2] == "Any" else None}[spec[2]]


# --------------------------------------------------------------------------
# Running one case on both sides
# --------------------------------------------------------------------------


def encode_flax(state, leaves):
    mapping = state.raw_mapping if isinstance(state, flax_nnx.State) else state
    return [
        (k, encode_flax(v, leaves) if isinstance(v, (dict, flax_nnx.State)) else leaves.describe_flax(v))
        for k, v in mapping.items()
    ]


def encode_ours(state, leaves):
    return [
        (k, encode_ours(v, leaves) if isinstance(v, ours.State) else leaves.describe_ours(v))
        for k, v in state.items()
    ]


def encode_pure(value):
    if isinstance(value, dict):
        return [(k, encode_pure(v)) for k, v in value.items()]
    return ("value", float(np.asarray(value)[0]))


def outcome(fn):
    """('ok', result) or ('error', category, detail)."""
    try:
        return ("ok", fn())
    except ValueError as e:
        text = str(e)
        if text.startswith("`...` or `True` can only be used as the last filters"):
            return ("error", "FILTER_ORDER", None)
        if text.startswith("Non-exhaustive filters, got a non-empty remainder"):
            return ("error", "NON_EXHAUSTIVE", text)
        return ("error", type(e).__name__, text)
    except Boom as e:
        return ("error", "Boom", str(e))
    except (IndexError, TypeError, KeyError) as e:
        return ("error", type(e).__name__, str(e))


def reference_unflatten(flat_items):
    """nnx_state's rule where Flax crashes (a path through an earlier leaf):
    entries in order, each replacing whatever is at its path."""
    root: dict = {}
    for path, leaf in flat_items:
        node = root
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = leaf
    return root


def encode_ids(tree, leaves):
    return [
        (k, encode_ids(v, leaves) if isinstance(v, dict) else leaves.describe_flax(leaves.flax[v]))
        for k, v in tree.items()
    ]


def run_case(rng: random.Random, tally: Counter):
    leaves = Leaves(rng)
    op = rng.choices(("filter", "split", "merge", "diff", "from_flat", "flat", "pure"),
                     weights=(30, 25, 15, 10, 10, 5, 5))[0]
    n, depth = rng.choice((rng.randint(1, 6), rng.randint(1, 15), rng.randint(1, 30))), rng.randint(1, 4)

    if op in ("filter", "split", "flat", "pure"):
        tree = random_tree(rng, leaves, n, depth, reuse=0.05)
        f_state = flax_nnx.State(materialize(tree, leaves, "flax"))
        o_state = ours.State(materialize(tree, leaves, "ours"))
        if op in ("filter", "split"):
            specs = FilterMaker(rng, tree).top(op)
            f_filters = [build(s, "flax") for s in specs]
            o_filters = [build(s, "ours") for s in specs]
            f_fn, o_fn = (flax_nnx.filter_state, ours.filter_state) if op == "filter" else (
                flax_nnx.split_state, ours.split_state)
            f_out = outcome(lambda: f_fn(f_state, *f_filters))
            o_out = outcome(lambda: o_fn(o_state, *o_filters))
            if f_out[:2] == ("error", "NON_EXHAUSTIVE") and o_out[:2] == f_out[:2]:
                # Both name the first leaf (in sorted order) that no filter takes.
                rest = flax_nnx.filter_state(f_state, *f_filters, ...)[-1]
                first = flax_nnx.to_flat_state(rest).paths[0]
                assert f"the first at {first!r}" in o_out[2], (first, o_out[2])
        elif op == "flat":
            f_out = outcome(lambda: flax_nnx.to_flat_state(f_state))
            o_out = outcome(lambda: ours.to_flat_state(o_state))
        else:
            f_out = outcome(lambda: flax_nnx.to_pure_dict(f_state))
            o_out = outcome(lambda: ours.to_pure_dict(o_state))
    elif op == "diff":
        tree = random_tree(rng, leaves, n, depth)
        pairs = list(flat_pairs(tree))
        other: dict = {}
        if rng.random() < 0.85:
            for path, ident in pairs:
                if rng.random() < 0.5:
                    _insert(other, path, ident if rng.random() < 0.3 else leaves.new(), allow_mixed=False)
            for _ in range(rng.randint(0, 2)):
                path = list(rng.choice(pairs)[0])
                i = rng.randrange(len(path))
                if twin(path[i]) is not None:
                    path[i] = twin(path[i])
                    _insert(other, tuple(path), leaves.new(), allow_mixed=False)
        f_out = outcome(lambda: flax_statelib.diff(flax_nnx.State(materialize(tree, leaves, "flax")),
                                                   flax_nnx.State(materialize(other, leaves, "flax"))))
        o_out = outcome(lambda: ours.diff(ours.State(materialize(tree, leaves, "ours")),
                                          ours.State(materialize(other, leaves, "ours"))))
    elif op == "merge":
        universe = random_tree(rng, leaves, max(n, 2), depth, mixed=rng.random() < 0.3)
        pairs = list(flat_pairs(universe))
        trees = []
        for k in range(rng.choices((1, 2, 3, 4), weights=(10, 50, 25, 15))[0]):
            t: dict = {}
            for path, ident in pairs:
                if rng.random() < 0.6:
                    _insert(t, path, ident if k == 0 or rng.random() < 0.4 else leaves.new_or_existing(0.1))
            if rng.random() < 0.2 and pairs:
                path = rng.choice(pairs)[0]
                _insert(t, path + (rng.choice(STR_KEYS),), leaves.new())  # may go through a leaf: Flax crashes
            trees.append(t)
        f_out = outcome(lambda: flax_nnx.merge_state(*(flax_nnx.State(materialize(t, leaves, "flax")) for t in trees)))
        o_out = outcome(lambda: ours.merge_state(*(ours.State(materialize(t, leaves, "ours")) for t in trees)))
        if len(trees) > 1 and f_out[0] == "error":
            flat = {}
            for t in trees:
                flat.update(dict(flat_pairs(t)))
            f_out = ("ok-ref", reference_unflatten(flat.items()))
    else:  # from_flat
        tree = random_tree(rng, leaves, n, depth, mixed=rng.random() < 0.3)
        pairs = list(flat_pairs(tree))
        rng.shuffle(pairs)
        for _ in range(rng.randint(0, 3)):
            if pairs:
                pairs.insert(rng.randint(0, len(pairs)), (rng.choice(pairs)[0], leaves.new_or_existing(0.3)))
        if pairs and rng.random() < 0.1:
            i = rng.randrange(len(pairs))
            pairs.insert(rng.randint(i + 1, len(pairs)), (pairs[i][0] + ("deeper",), leaves.new()))
        f_out = outcome(lambda: flax_nnx.from_flat_state([(p, leaves.flax[i]) for p, i in pairs]))
        o_out = outcome(lambda: ours.from_flat_state([(p, leaves.ours[i]) for p, i in pairs]))
        if f_out[0] == "error":
            f_out = ("ok-ref", reference_unflatten(dict(pairs).items()))

    compare(op, f_out, o_out, leaves)
    tally[op, f_out[0] if f_out[0] != "error" else f_out[1]] += 1


def _insert(tree: dict, path, ident, *, allow_mixed: bool = True) -> None:
    """Puts ident at path unless the path runs through a leaf or is taken by
    a subtree, or (unless allow_mixed) a level would mix int and str keys
    (which Flax cannot sort)."""
    node = tree
    if not allow_mixed:
        probe = tree
        for key in path:
            if not isinstance(probe, dict):
                return
            if probe and any(isinstance(k, int) != isinstance(key, int) for k in probe):
                return
            probe = probe.get(key, {})
    for key in path[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            return  # the path runs through a leaf of this tree: skip
        node = child
    if isinstance(node.get(path[-1]), dict):
        return
    node[path[-1]] = ident


def compare(op, f_out, o_out, leaves):
    if f_out[0] == "error":
        assert o_out[0] == "error", f"Flax raised {f_out[1:]}, nnx_state returned {o_out[1]!r}"
        assert o_out[1] == f_out[1], f"errors differ: Flax {f_out[1:]}, nnx_state {o_out[1:]}"
        if f_out[1] == "Boom":
            assert o_out[2] == f_out[2], "the callback's exception differs"
        return
    assert o_out[0] == "ok", f"nnx_state raised {o_out[1:]}, Flax succeeded"
    if f_out[0] == "ok-ref":  # Flax crashed; our documented rule applies
        assert encode_ours(o_out[1], leaves) == encode_ids(f_out[1], leaves)
        return
    f_res, o_res = f_out[1], o_out[1]
    if op == "flat":
        assert list(o_res.paths) == list(f_res.paths)
        assert [leaves.describe_ours(x) for x in o_res.leaves] == [leaves.describe_flax(x) for x in f_res.leaves]
        return
    if op == "pure":
        assert encode_pure(o_res) == encode_pure(f_res)
        return
    if isinstance(f_res, tuple):
        assert isinstance(o_res, tuple) and len(o_res) == len(f_res)
        for f, o in zip(f_res, o_res):
            assert encode_ours(o, leaves) == encode_flax(f, leaves)
    else:
        assert not isinstance(o_res, tuple)
        assert encode_ours(o_res, leaves) == encode_flax(f_res, leaves)


def test_differential_against_flax():
    rng = random.Random(SEED)
    tally: Counter = Counter()
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for i in range(N_CASES):
            case_rng = random.Random(rng.getrandbits(64))
            try:
                run_case(case_rng, tally)
            except AssertionError as e:
                failures.append(f"case {i} ({e.__traceback__.tb_next.tb_frame.f_locals.get('op')}): {e}")
    print(f"\n{N_CASES} differential cases against flax {flax_nnx.__name__}:")
    for (op, result), count in sorted(tally.items()):
        print(f"  {op:10} {result:16} {count:5}")
    assert not failures, f"{len(failures)} of {N_CASES} cases differ:\n" + "\n".join(failures[:15])
    assert sum(tally.values()) == N_CASES
    for category in ("FILTER_ORDER", "NON_EXHAUSTIVE", "Boom", "ok", "ok-ref"):
        assert any(result == category for _, result in tally), f"no case ended with {category}"

"""Classes map to native types by the class itself, never by name alone
(SPEC §3): same-named classes in two modules, a class redefined (a notebook
cell run twice) and a class made by a function called twice are types of
their own, and isinstance, type filters and type(v) behave as in Flax,
which is checked side by side where flax is installed."""

from __future__ import annotations

import pickle
import threading
import warnings

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import variablelib
from test_library import run_python

try:
    from flax import nnx as flax_nnx
except ImportError:  # pragma: no cover - depends on the environment
    flax_nnx = None

needs_flax = pytest.mark.skipif(flax_nnx is None, reason="needs flax")


# --------------------------------------------------------------------------
# The three ways to get two classes of one name, for nnx_state and for Flax
# --------------------------------------------------------------------------


def _class_in(module: str, name: str, base: type) -> type:
    """``class <name>(base): pass`` run as code of the module ``module``."""
    namespace: dict = {"base": base, "__name__": module}
    exec(f"class {name}(base):\n    pass\n", namespace)
    return namespace[name]


def two_modules(name: str, base: type) -> list[type]:
    return [_class_in("id_mod_a", name, base), _class_in("id_mod_b", name, base)]


def redefined(name: str, base: type) -> list[type]:
    namespace: dict = {"base": base, "__name__": "id_cells"}
    classes = []
    for _ in range(3):  # the same cell, run three times
        exec(f"class {name}(base):\n    pass\n", namespace)
        classes.append(namespace[name])
    return classes


def made_in_function(name: str, base: type) -> list[type]:
    namespace: dict = {"base": base, "__name__": "id_factory"}
    exec(f"def make():\n    class {name}(base):\n        pass\n    return {name}\n", namespace)
    return [namespace["make"](), namespace["make"]()]


SCENARIOS = {
    "two_modules": (two_modules, lambda n: [n, f"id_mod_b.{n}"]),
    "redefined": (redefined, lambda n: [n, f"id_cells.{n}", f"id_cells.{n}#2"]),
    "made_in_function": (made_in_function, lambda n: [n, f"id_factory.make.<locals>.{n}"]),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_class_is_its_own_native_type(scenario):
    make, expected = SCENARIOS[scenario]
    name = f"IdLora_{scenario}"
    classes = make(name, nnx.Param)
    assert len({c._type_id for c in classes}) == len(classes)
    assert [c.__name__ for c in classes] == [name] * len(classes)
    # The native name: plain for the first class, qualified where it clashes.
    assert [variablelib.type_name(c._type_id) for c in classes] == expected(name)
    assert [c(np.zeros(1)).type_name for c in classes] == expected(name)
    for c in classes:
        assert variablelib.type_parent(c._type_id) == nnx.Param._type_id
        assert variablelib.class_for_type(c._type_id) is c


def _world(ns, make, name):
    """The classes and a state using them, built with ``ns`` (nnx_state or
    flax.nnx): the same code for both."""
    classes = make(name, ns.Param)

    class Sub(classes[0]):  # a subclass of the first only
        pass

    leaves = {f"v{i}": c(np.full(1, float(i))) for i, c in enumerate(classes)}
    leaves["sub"] = Sub(np.zeros(1))
    leaves["param"] = ns.Param(np.ones(1))
    leaves["stat"] = ns.BatchStat(np.ones(1))
    return classes, Sub, ns.State(leaves)


def _filters(ns, classes, sub):
    first, second = classes[0], classes[1]
    return {
        "first": first,
        "second": second,
        "sub": sub,
        "OfType(first)": ns.OfType(first),
        "OfType(second)": ns.OfType(second),
        "[second, BatchStat]": [second, ns.BatchStat],
        "Not(first)": ns.Not(first),
        "All(Param, Not(second))": ns.All(ns.Param, ns.Not(second)),
        "Param": ns.Param,
    }


def _paths(state) -> list:
    return [path for path, _ in (nnx.to_flat_state(state) if isinstance(state, nnx.State) else flax_nnx.to_flat_state(state))]


@needs_flax
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_filters_isinstance_and_type_as_in_flax(scenario):
    make, _ = SCENARIOS[scenario]
    name = f"IdCmp_{scenario}"
    ours, our_sub, our_state = _world(nnx, make, name)
    theirs, their_sub, their_state = _world(flax_nnx, make, name)
    our_filters = _filters(nnx, ours, our_sub)
    their_filters = _filters(flax_nnx, theirs, their_sub)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for label in our_filters:
            got = _paths(nnx.filter_state(our_state, our_filters[label]))
            want = _paths(flax_nnx.filter_state(their_state, their_filters[label]))
            assert got == want, label
        # split, every leaf going to the first filter that takes it
        got = [_paths(s) for s in nnx.split_state(our_state, ours[1], ours[0], ...)]
        want = [_paths(s) for s in flax_nnx.split_state(their_state, theirs[1], theirs[0], ...)]
        assert got == want
        got = [_paths(s) for s in our_state.split(ours[0], nnx.Param, ...)]
        want = [_paths(s) for s in their_state.split(theirs[0], flax_nnx.Param, ...)]
        assert got == want
    for key in our_state:
        ours_leaf, their_leaf = our_state[key], their_state[key]
        assert type(ours_leaf).__name__ == type(their_leaf).__name__
        for i, (c, f) in enumerate(zip(ours, theirs)):
            assert isinstance(ours_leaf, c) == isinstance(their_leaf, f), (key, i)
            assert issubclass(type(ours_leaf), c) == issubclass(type(their_leaf), f), (key, i)
    for i, c in enumerate(ours):
        assert type(our_state[f"v{i}"]) is c
    assert type(our_state["sub"]) is our_sub


def test_flax_example_lora_defined_twice():
    class Lora(nnx.Param):
        pass

    first = Lora

    class Lora(nnx.Param):  # noqa: F811 - the cell run again
        pass

    s = nnx.State({"a": first(np.ones(2)), "b": Lora(np.zeros(2)), "c": nnx.Param(np.ones(1))})
    a, rest = nnx.split_state(s, first, ...)
    # As flax 0.12.8 gives for the same code: only the first class's leaf.
    assert list(a) == ["a"] and list(rest) == ["b", "c"]
    assert type(s["b"]) is Lora and not isinstance(s["b"], first)
    assert isinstance(s["a"], nnx.Param) and list(nnx.filter_state(s, nnx.OfType(Lora))) == ["b"]


def test_builtin_subclassing_and_variable_type_keep_working():
    class IdMyParam(nnx.Param):
        pass

    v = IdMyParam(np.zeros(1))
    assert isinstance(v, nnx.Param) and type(v) is IdMyParam and v.type_name == "IdMyParam"
    made = nnx.variable_type("IdMade", nnx.BatchStat)
    assert made.__name__ == "IdMade" and made is nnx.variable_type("IdMade", nnx.BatchStat)
    assert isinstance(made(np.zeros(1)), nnx.BatchStat)
    # variable_type asks by native name: it gives the class holding it.
    assert nnx.variable_type("IdMyParam", nnx.Param) is IdMyParam
    with pytest.raises(ValueError):
        nnx.variable_type("IdMyParam", nnx.Cache)
    # A class statement never takes over a name variable_type handed out.

    class IdMade(nnx.BatchStat):
        pass

    assert IdMade is not made and IdMade._type_id != made._type_id
    assert variablelib.type_name(IdMade._type_id) == f"{__name__}.test_builtin_subclassing_and_variable_type_keep_working.<locals>.IdMade"


def test_a_built_in_name_is_not_taken_over():
    class Param(nnx.Param):  # a user class named like the built-in
        pass

    assert Param._type_id != nnx.Param._type_id and nnx.Param._type_id == 1
    assert variablelib.type_name(Param._type_id).endswith("<locals>.Param")
    s = nnx.State({"mine": Param(np.zeros(1)), "builtin": nnx.Param(np.zeros(1))})
    assert list(nnx.filter_state(s, Param)) == ["mine"]
    assert list(nnx.filter_state(s, nnx.Param)) == ["builtin", "mine"]


def test_a_name_under_another_parent_is_qualified():
    class IdOther(nnx.Cache):
        pass

    namespace: dict = {"base": nnx.Param, "__name__": "id_elsewhere"}
    exec("class IdOther(base):\n    pass\n", namespace)
    other = namespace["IdOther"]
    assert variablelib.type_name(other._type_id) == "id_elsewhere.IdOther"
    assert variablelib.type_parent(other._type_id) == nnx.Param._type_id


def test_an_explicit_type_name_is_exact():
    class IdExplicit(nnx.Cache, type_name="idlib.Explicit"):
        pass

    assert variablelib.type_name(IdExplicit._type_id) == "idlib.Explicit"
    with pytest.raises(ValueError, match="already held by"):

        class IdExplicitAgain(nnx.Cache, type_name="idlib.Explicit"):
            pass

    with pytest.raises(ValueError) as info:

        class IdExplicitElsewhere(nnx.Param, type_name="idlib.Explicit"):
            pass

    assert info.value.status_name == "NNX_ERR_TYPE_CONFLICT"


def test_two_unrelated_variable_bases_are_refused():
    with pytest.raises(TypeError, match="one line of variable types"):

        class Both(nnx.Param, nnx.BatchStat):
            pass

    class Fine(nnx.Param, nnx.Variable):  # Variable is an ancestor of Param
        pass

    assert variablelib.type_parent(Fine._type_id) == nnx.Param._type_id


def test_a_class_takes_over_a_type_registered_before_it():
    from ctypes import byref, c_uint32

    out = c_uint32()
    nnx._lib.lib.nnx_type_register(b"IdFromC", nnx.Param._type_id, byref(out))
    holder = variablelib.rebuild_variable(variablelib.class_for_type(out.value), None, {})
    placeholder = type(holder)
    assert placeholder.__name__ == "IdFromC"

    class IdFromC(nnx.Param):
        pass

    assert IdFromC._type_id == out.value and IdFromC is not placeholder
    assert variablelib.class_for_type(out.value) is IdFromC
    assert type(variablelib.new_variable(IdFromC, None)) is IdFromC
    # The variable made before counts as one of the class's instances, as
    # the native type filter says.
    assert isinstance(holder, IdFromC) and issubclass(placeholder, IdFromC)
    s = nnx.State({"old": holder, "new": IdFromC(np.zeros(1)), "p": nnx.Param(np.zeros(1))})
    assert list(nnx.filter_state(s, IdFromC)) == ["new", "old"]

    class IdFromC(nnx.Param):  # noqa: F811 - a second class: its own type
        pass

    assert IdFromC._type_id != out.value


def test_concurrent_classes_of_one_name_get_distinct_types():
    made: list = []

    def define():
        for _ in range(20):
            made.append(_class_in("id_threads", "IdRace", nnx.Param))

    threads = [threading.Thread(target=define) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({c._type_id for c in made}) == len(made) == 80
    names = {variablelib.type_name(c._type_id) for c in made}
    assert names == {"IdRace", "id_threads.IdRace", *(f"id_threads.IdRace#{n}" for n in range(2, 80))}


# --------------------------------------------------------------------------
# Pickles and checkpoints carry the native names
# --------------------------------------------------------------------------


def test_pickle_keeps_each_class():
    classes = redefined("IdPickled", nnx.Param)
    for c in classes:
        back = pickle.loads(pickle.dumps(c(np.arange(2.0))))
        assert type(back) is c and list(back[...]) == [0.0, 1.0]


def test_safetensors_round_trip_keeps_each_class(tmp_path):
    classes = two_modules("IdSaved", nnx.Param)
    state = nnx.State({"a": classes[0](np.ones(2)), "b": classes[1](np.zeros(2))})
    nnx.save_safetensors(state, tmp_path / "m.safetensors")
    back = nnx.load_safetensors(tmp_path / "m.safetensors")
    assert type(back["a"]) is classes[0] and type(back["b"]) is classes[1]
    assert list(nnx.filter_state(back, classes[1])) == ["b"]


def test_a_checkpoint_loaded_first_filters_by_the_class_defined_after(tmp_path):
    path = tmp_path / "lora.safetensors"
    lora = _class_in("id_ckpt", "IdCkptLora", nnx.Param)
    nnx.save_safetensors(nnx.State({"w": lora(np.ones(2)), "p": nnx.Param(np.ones(1))}), path)
    code = f"""
import numpy as np, nnx_state as nnx
state = nnx.load_safetensors({str(path)!r})
before = type(state["w"])
class IdCkptLora(nnx.Param):
    pass
assert IdCkptLora is not before and IdCkptLora._type_id == before._type_id
assert list(nnx.filter_state(state, IdCkptLora)) == ["w"]
assert isinstance(state["w"], IdCkptLora)
print("ok")
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# --------------------------------------------------------------------------
# Flax classes pair with ours, one to one
# --------------------------------------------------------------------------


@needs_flax
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_flax_classes_come_back_as_themselves(scenario):
    make, _ = SCENARIOS[scenario]
    flax_classes = make(f"IdFlax_{scenario}", flax_nnx.Param)
    flax_state = flax_nnx.State({f"v{i}": c(np.full(2, float(i))) for i, c in enumerate(flax_classes)})
    state = nnx.from_flax(flax_state)
    ours = [type(state[f"v{i}"]) for i in range(len(flax_classes))]
    assert len(set(ours)) == len(ours)  # two Flax classes, two types here
    assert [c.__name__ for c in ours] == [c.__name__ for c in flax_classes]
    assert all(issubclass(c, nnx.Param) for c in ours)
    back = nnx.to_flax(state)
    assert [type(back[f"v{i}"]) for i in range(len(flax_classes))] == flax_classes
    # and again: the pairs stay
    again = nnx.from_flax(flax_state)
    assert [type(again[f"v{i}"]) for i in range(len(flax_classes))] == ours
    first = nnx.filter_state(state, ours[0])
    assert list(first) == ["v0"]


@needs_flax
def test_flax_variable_subclass_round_trip():
    class IdLoraVar(flax_nnx.Variable):
        pass

    flax_state = flax_nnx.State({"lora": {"a": IdLoraVar(np.ones(2))}, "p": flax_nnx.Param(np.zeros(1))})
    back = nnx.to_flax(nnx.from_flax(flax_state))
    assert type(back["lora"]["a"]) is IdLoraVar and type(back["p"]) is flax_nnx.Param


@needs_flax
def test_our_classes_of_one_name_go_to_two_flax_classes():
    classes = redefined("IdOursOnly", nnx.BatchStat)
    state = nnx.State({f"v{i}": c(np.zeros(1)) for i, c in enumerate(classes)})
    back = nnx.to_flax(state)
    flax_classes = [type(back[f"v{i}"]) for i in range(len(classes))]
    assert len(set(flax_classes)) == len(classes)
    assert all(c.__name__ == "IdOursOnly" and issubclass(c, flax_nnx.BatchStat) for c in flax_classes)
    again = nnx.from_flax(back)
    assert [type(again[f"v{i}"]) for i in range(len(classes))] == classes


@needs_flax
def test_a_loaded_type_goes_to_the_flax_class_of_its_name(tmp_path):
    class IdHubLora(flax_nnx.Param):
        pass

    path = tmp_path / "hub.safetensors"
    code = f"""
import numpy as np, nnx_state as nnx
class IdHubLora(nnx.Param):
    pass
nnx.save_safetensors(nnx.State({{"w": IdHubLora(np.ones(2))}}), {str(path)!r})
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    loaded = nnx.load_safetensors(path)
    assert type(nnx.to_flax(loaded)["w"]) is IdHubLora
    # ... and that pairing holds both ways
    assert type(nnx.from_flax(flax_nnx.State({"x": IdHubLora(np.ones(1))}))["x"]) is type(loaded["w"])


@needs_flax
def test_a_flax_class_pairs_with_our_class_of_its_name():
    class IdShared(nnx.Param):
        pass

    class IdShared_(flax_nnx.Param):
        pass

    IdShared_.__name__ = IdShared_.__qualname__ = "IdShared"  # the same name in both worlds
    state = nnx.from_flax(flax_nnx.State({"x": IdShared_(np.ones(1))}))
    assert type(state["x"]) is IdShared
    assert type(nnx.to_flax(nnx.State({"y": IdShared(np.ones(1))}))["y"]) is IdShared_

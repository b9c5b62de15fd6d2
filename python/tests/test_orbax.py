"""Orbax checkpoints written by Orbax from real flax.nnx models, read with
``load_orbax``; ``save_orbax`` read back by Orbax into Flax models.

The checkpoints of the first tests are written in a subprocess whose
arrays are sharded over 4 simulated CPU devices (OCDBT, plain TensorStore,
and a CheckpointManager directory), and read here on one CPU device, where
every value is compared bit for bit with what the writer held.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nnx_state as nnx

F = pytest.importorskip("flax.nnx")
jax = pytest.importorskip("jax")
ocp = pytest.importorskip("orbax.checkpoint")
optax = pytest.importorskip("optax")
jnp = jax.numpy

pytestmark = [pytest.mark.flax, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


class Model(F.Module):
    """Linear layers in a Sequential (int keys), BatchNorm, Dropout with its
    Rngs (a typed key), a bfloat16 embedding and a float64 numpy table;
    with ``mesh``, the kernel and the embedding sharded over it."""

    def __init__(self, seed: int, mesh=None):
        rngs = F.Rngs(seed, dropout=seed + 100)
        init = F.initializers.lecun_normal()
        embed_init = F.initializers.normal()
        if mesh is not None:
            init = F.with_partitioning(init, (None, "model"), mesh=mesh)
            embed_init = F.with_partitioning(embed_init, ("data", "model"), mesh=mesh)
        self.encoder = F.Sequential(F.Linear(4, 8, kernel_init=init, rngs=rngs), F.relu, F.Linear(8, 4, rngs=rngs))
        self.norm = F.BatchNorm(4, rngs=rngs)
        self.drop = F.Dropout(0.5, rngs=rngs)
        self.embed = F.Embed(16, 4, param_dtype=jnp.bfloat16, embedding_init=embed_init, rngs=rngs)
        self.table = F.Variable(np.arange(6, dtype=np.float64) / 3 + seed)

    def __call__(self, x):
        return self.drop(self.norm(self.encoder(x))) + self.embed(jnp.arange(x.shape[0]) % 16).astype(jnp.float32)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _bits(x):
    """(dtype, shape, bytes) of an array, or of a typed key's data and impl."""
    if _is_key(x):
        return (str(jax.random.key_impl(x)), _bits(jax.random.key_data(x)))
    a = np.asarray(x)
    return (a.dtype.str, a.shape, a.tobytes())


WRITER = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    import numpy as np
    import orbax.checkpoint as ocp
    from flax import nnx as F
    from test_orbax import Model, _is_key

    out = sys.argv[1]
    assert len(jax.devices()) == 4
    mesh = jax.make_mesh((2, 2), ("data", "model"))
    expected = {}
    with jax.set_mesh(mesh):
        models = {seed: Model(seed, mesh) for seed in (0, 1)}
    kernel = models[0].encoder.layers[0].kernel.get_value()
    embedding = models[0].embed.embedding.get_value()
    assert len(kernel.sharding.device_set) == 4 and len(embedding.sharding.device_set) == 4
    assert not kernel.sharding.is_fully_replicated and not embedding.sharding.is_fully_replicated
    for seed, model in models.items():
        for path, var in F.to_flat_state(F.state(model)):
            value = var.get_value()
            entry = {"type": type(var).__name__}
            if _is_key(value):
                entry["impl"] = str(jax.random.key_impl(value))
                value = jax.random.key_data(value)
            value = np.asarray(value)
            entry.update(dtype=value.dtype.str, shape=list(value.shape), hex=value.tobytes().hex())
            expected.setdefault(seed, {})["/".join(map(str, path))] = entry

    state = F.state(models[0])
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out + "/ocdbt", state)
    checkpointer.wait_until_finished()
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=False)) as plain:
        plain.save(out + "/plain", args=ocp.args.PyTreeSave(state))
    with ocp.CheckpointManager(out + "/run", item_names=("state", "ema", "notes")) as manager:
        for step, seed in ((1, 0), (2, 1)):
            manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(F.state(models[seed])),
                ema=ocp.args.StandardSave(F.state(models[seed], F.Param)),
                notes=ocp.args.JsonSave({"seed": seed})))
    with ocp.CheckpointManager(out + "/single") as manager:
        manager.save(3, args=ocp.args.StandardSave(state))
    print(json.dumps(expected))
    """
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The checkpoints the 4-device writer made, and what it held: (dir,
    {seed: {path: {type, impl?, dtype, shape, hex}}})."""
    here = Path(__file__).resolve().parent
    out = tmp_path_factory.mktemp("orbax")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(here.parent), str(here)]))
    result = subprocess.run([sys.executable, "-c", WRITER, str(out)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads(result.stdout.strip().splitlines()[-1])
    return out, {int(seed): leaves for seed, leaves in expected.items()}


@pytest.fixture(scope="module")
def abstract():
    return F.state(F.eval_shape(lambda: Model(0)))


def assert_holds(state, expected: dict, *, typed: bool = True):
    """``state`` holds what the writer held, bit for bit, at the same paths
    (and, ``typed``, in variables of the same type names)."""
    flat = nnx.to_flat_state(state)
    assert ["/".join(map(str, p)) for p in flat.paths] == list(expected)
    for path, leaf in flat:
        entry = expected["/".join(map(str, path))]
        if typed:
            assert isinstance(leaf, nnx.Variable) and type(leaf).__name__ == entry["type"], path
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        if "impl" in entry:
            assert _is_key(value) and str(jax.random.key_impl(value)) == entry["impl"], path
            value = jax.random.key_data(value)
        if isinstance(value, jax.Array):
            assert value.sharding == jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0]), path
        value = np.asarray(value)
        assert (value.dtype.str, list(value.shape)) == (entry["dtype"], entry["shape"]), path
        assert value.tobytes().hex() == entry["hex"], path


# --------------------------------------------------------------------------
# Reading what Orbax wrote on 4 devices, here on one
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["ocdbt", "plain"])
def test_a_checkpoint_sharded_over_four_devices_loads_on_one_with_flax_types(written, abstract, layout):
    out, expected = written
    assert len(jax.devices()) == 1
    state = nnx.load_orbax(out / layout, like=abstract)
    assert_holds(state, expected[0])
    # The types are Flax's, as from_flax pairs them; the metadata is like's.
    assert type(state["norm"]["mean"]) is nnx.BatchStat and type(state["encoder"]["layers"][0]["kernel"]) is nnx.Param
    key = state["drop"]["rngs"]["key"]
    assert type(key) is nnx.RngKey and key.get_metadata("tag") == "dropout"
    assert isinstance(state["table"].get_value(), np.ndarray)  # float64, not narrowed by jax
    assert nnx.to_flax(state, array_fn=jnp.asarray)  # and back into Flax


def test_like_in_nnx_state_form_and_types_rules(written, abstract):
    out, expected = written
    like = nnx.from_flax(abstract)
    assert_holds(nnx.load_orbax(out / "ocdbt", like=like), expected[0])
    rules = {
        "path:mean | path:var": "BatchStat",
        "path:rngs & path:count": "RngCount",
        "path:rngs & path:key": nnx.RngKey,
        "path:table": "Variable",
        "...": "Param",
    }
    state = nnx.load_orbax(out / "ocdbt", types=rules)
    assert_holds(state, expected[0])
    assert state["drop"]["rngs"]["key"].get_metadata() == nnx.RngKey(None).get_metadata()  # no tag: not on disk


def test_without_types_leaves_are_bare_arrays_and_keys_rng_keys(written):
    out, expected = written
    state = nnx.load_orbax(out / "ocdbt")
    assert_holds(state, expected[0], typed=False)
    flat = dict(nnx.to_flat_state(state))
    assert type(flat[("drop", "rngs", "key")]) is nnx.RngKey
    assert all(not isinstance(v, nnx.Variable) for p, v in flat.items() if p != ("drop", "rngs", "key"))
    assert ("encoder", "layers", 0, "kernel") in flat  # the value level gone, decimal keys as ints
    kept = nnx.load_orbax(out / "ocdbt", int_keys=False)
    assert ("encoder", "layers", "0", "kernel") in dict(nnx.to_flat_state(kept))


def test_checkpoint_manager_steps_and_items(written, abstract):
    out, expected = written
    run = out / "run"
    assert_holds(nnx.load_orbax(run, item="state", like=abstract), expected[1])  # the latest step
    assert_holds(nnx.load_orbax(run, item="state", step=1, like=abstract), expected[0])
    assert_holds(nnx.load_orbax(run / "1" / "state", like=abstract), expected[0])
    ema = nnx.load_orbax(run, item="ema", step=1, like=abstract, filter=nnx.Param)
    assert_holds(ema, {p: e for p, e in expected[0].items() if e["type"] == "Param"})
    assert_holds(nnx.load_orbax(out / "single", like=abstract), expected[0])  # the only item, "default"
    with pytest.raises(ValueError, match="holds the items ema, state; name one with item="):
        nnx.load_orbax(run)
    with pytest.raises(FileNotFoundError, match=r"no step 7 \(steps: 1, 2\)"):
        nnx.load_orbax(run, step=7, item="state")
    with pytest.raises(FileNotFoundError, match=r"no PyTree item 'notes' \(items: ema, state\)"):
        nnx.load_orbax(run, item="notes")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        nnx.load_orbax(out / "missing")


def test_a_filter_reads_only_the_arrays_it_selects(written, abstract, tmp_path):
    """Without OCDBT each array has its own TensorStore directory: with the
    chunks of the batch statistics overwritten by garbage, a load that
    leaves them out still works, and one that asks for them fails."""
    out, expected = written
    copy = tmp_path / "plain"
    shutil.copytree(out / "plain", copy)
    for name in ("norm.mean.value", "norm.var.value"):
        chunks = [p for p in (copy / name).iterdir() if not p.name.startswith(".")]
        assert chunks
        for chunk in chunks:
            chunk.write_bytes(b"not a chunk")
    state = nnx.load_orbax(copy, like=abstract, filter=nnx.Not(nnx.BatchStat))
    assert_holds(state, {p: e for p, e in expected[0].items() if e["type"] != "BatchStat"})
    params = nnx.load_orbax(copy, types={"...": "Param"}, filter=["path:encoder", "at:embed/embedding"])
    assert_holds(params, {p: e for p, e in expected[0].items() if p.startswith(("encoder", "embed"))})
    # Asking for them reads the garbage and fails (in a process of its own:
    # Orbax leaves the failed reads' coroutines behind, to warn in later tests).
    script = "import sys, nnx_state as nnx\ntry:\n    nnx.load_orbax(sys.argv[1])\nexcept Exception as e:\n    print(e)"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    result = subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True, text=True, env=env,
                            timeout=120)
    assert "while reading array" in result.stdout, (result.stdout, result.stderr[-2000:])


def test_like_and_the_checkpoint_must_agree(written, abstract):
    out, _ = written
    smaller = F.state(F.eval_shape(lambda: Model(0)), F.Param)
    with pytest.raises(ValueError, match="holds 'drop/rngs/count', which `like` has not"):
        nnx.load_orbax(out / "ocdbt", like=smaller)
    assert len(nnx.to_flat_state(nnx.load_orbax(out / "ocdbt", like=smaller, filter="Param"))) == 7
    bigger = nnx.from_flax(abstract)
    bigger["extra"] = nnx.Param(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="`like` has 'extra', which the Orbax checkpoint .* does not hold"):
        nnx.load_orbax(out / "ocdbt", like=bigger)
    wrong = nnx.from_flax(abstract)
    wrong["norm"]["mean"] = nnx.BatchStat(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"'norm/mean' is float32\[4\] where `like` has float32\[5\]"):
        nnx.load_orbax(out / "ocdbt", like=wrong)
    with pytest.raises(TypeError, match=r"unknown variable type 'BatchStats' \(did you mean BatchStat"):
        nnx.load_orbax(out / "ocdbt", types={"path:mean": "BatchStats"})


# --------------------------------------------------------------------------
# save_orbax
# --------------------------------------------------------------------------


class Trainer(F.Module):
    def __init__(self, seed):
        self.model = Model(seed)
        self.optimizer = F.Optimizer(self.model, optax.adam(1e-2), wrt=F.Param)

    def step(self, x):
        def loss(model):
            return jnp.mean(model(x) ** 2)

        self.optimizer.update(self.model, F.grad(loss)(self.model))


def _trained(seed):
    trainer = Trainer(seed)
    trainer.step(jnp.ones((3, 4)))
    return trainer


def test_save_orbax_restores_in_flax_unchanged(tmp_path):
    trainer = _trained(0)
    flax_state = F.state(trainer)
    nnx.save_orbax(nnx.from_flax(flax_state), tmp_path / "ckpt")
    fresh = Trainer(7)
    restored = ocp.StandardCheckpointer().restore(tmp_path / "ckpt", F.state(fresh))
    ours, theirs = F.to_flat_state(restored), F.to_flat_state(flax_state)
    assert list(ours.paths) == list(theirs.paths)
    for (path, a), (_, b) in zip(ours, theirs):
        assert type(a) is type(b) and a.get_metadata() == b.get_metadata(), path
        assert type(a.get_value()) is type(b.get_value()), path
        assert _bits(a.get_value()) == _bits(b.get_value()), path
    F.update(fresh, restored)
    x = jnp.arange(12.0).reshape(3, 4)
    trainer.model.eval(), fresh.model.eval()
    assert np.asarray(fresh.model(x)).tobytes() == np.asarray(trainer.model(x)).tobytes()


def test_save_orbax_of_a_flax_state_and_back_exactly(tmp_path):
    flax_state = F.state(_trained(1))
    nnx.save_orbax(flax_state, tmp_path / "ckpt")
    state = nnx.load_orbax(tmp_path / "ckpt")  # the checkpoint's own records
    assert state == nnx.from_flax(flax_state)
    for (path, a), (_, b) in zip(nnx.to_flat_state(state), F.to_flat_state(flax_state)):
        assert type(a).__name__ == type(b).__name__ and _bits(a.get_value()) == _bits(b.get_value()), path
    assert state["model"]["drop"]["rngs"]["key"].get_metadata("tag") == "dropout"
    with pytest.raises(Exception, match="exists"):
        nnx.save_orbax(flax_state, tmp_path / "ckpt")
    nnx.save_orbax(state, tmp_path / "ckpt", force=True)


def test_save_orbax_keeps_what_only_nnx_state_records(tmp_path):
    Lora = nnx.variable_type("OrbaxLora", nnx.Param)
    shared = nnx.Param(np.arange(4, dtype=np.int16), axes=("x",), note=None)
    state = nnx.State({
        "layers": {0: {"w": Lora(np.ones((2, 2), np.float32), rank=2, scale=0.5)}, "1": {"w": shared}},
        "tied": shared,
        "empty": nnx.Cache(None),
        "bare": np.arange(3, dtype=np.uint8),
        "rng": nnx.RngKey(jax.random.key(3, impl="rbg"), tag="noise"),
    })
    nnx.save_orbax(state, tmp_path / "ckpt")
    back = nnx.load_orbax(tmp_path / "ckpt")
    assert back == state
    assert back["tied"] is back["layers"]["1"]["w"]  # one variable, saved once
    assert type(back["layers"][0]["w"]) is Lora and back["layers"][0]["w"].get_metadata("rank") == 2
    assert back["layers"]["1"]["w"].get_metadata("axes") == ("x",)
    assert back["empty"].get_value() is None
    assert str(jax.random.key_impl(back["rng"].get_value())) == "rbg"
    # Rules type what the checkpoint leaves untyped; recorded types stay.
    ruled = nnx.load_orbax(tmp_path / "ckpt", types={"...": "Cache"})
    assert type(ruled["bare"]) is nnx.Cache and type(ruled["layers"][0]["w"]) is Lora
    only = nnx.load_orbax(tmp_path / "ckpt", filter="OrbaxLora | tag:noise")
    assert [p for p, _ in nnx.to_flat_state(only)] == [("layers", 0, "w"), ("rng",)]
    with pytest.raises(ValueError, match="under 'layers', the keys 0 and '0' are one key in Orbax"):
        nnx.save_orbax(nnx.State({"layers": {0: np.zeros(1), "0": np.ones(1)}}), tmp_path / "clash")


def test_scalars_and_strings_of_a_pytree_checkpoint(tmp_path):
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "ckpt", {"step": 5, "lr": 0.1, "name": "run", "w": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match=r"'name' holds a str \('run'\), not an array: leave it out \(filter '~at:name'\)"):
        nnx.load_orbax(tmp_path / "ckpt")
    state = nnx.load_orbax(tmp_path / "ckpt", filter="~at:name")
    assert state["step"].dtype == np.int64 and state["step"] == 5 and state["lr"] == 0.1
    named = nnx.load_orbax(tmp_path / "ckpt", types={"at:name": "Variable"})
    assert named["name"].get_value() == "run"

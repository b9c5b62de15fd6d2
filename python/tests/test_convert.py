"""``python -m nnx_state convert``, run as a user runs it: Orbax ->
safetensors -> Orbax with a real flax.nnx model, msgpack -> sharded
safetensors, and the command line's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx_state as nnx

PYTHON_DIR = Path(__file__).resolve().parent.parent


def convert(*args, check_ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(PYTHON_DIR))
    result = subprocess.run([sys.executable, "-m", "nnx_state", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=120)
    if check_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


# --------------------------------------------------------------------------
# The command line (no flax needed)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ((), "no command given"),
    (("conver", "a", "b"), "unknown command 'conver' (did you mean convert?)"),
    (("convert", "a"), "the following arguments are required: DST"),
    (("convert", "a.msgpack", "b.safetensors", "--bogus"), "unrecognized arguments: --bogus"),
    (("convert", "a.msgpack", "b.safetensors", "--type", "path:mean=BatchStats"),
     "--type 'path:mean=BatchStats': unknown variable type 'BatchStats' (did you mean BatchStat?)"),
    (("convert", "a.msgpack", "b.safetensors", "--type", "=Param"), "write FILTER=TYPE"),
    (("convert", "a.msgpack", "b.safetensors", "--filter", "Param &"), "--filter 'Param &'"),
    (("convert", "a.msgpack", "b", "--max-shard-size", "lots"), "--max-shard-size"),
    (("convert", "a.msgpack", "b.msgpack", "--step", "3"), "--item and --step are for an Orbax source"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message, capsys):
    from nnx_state.__main__ import main

    assert main(list(args)) == 2
    out, err = capsys.readouterr()
    assert message in err and not out
    assert len(err.splitlines()) <= 2  # the message and a hint, not the whole help


def test_exit_statuses_of_the_command(tmp_path):
    result = convert("convert", "a.msgpack", "b.safetensors", "--type", "Parm", check_ok=False)
    assert result.returncode == 2 and "did you mean Param?" in result.stderr, result.stderr
    result = convert("convert", tmp_path / "missing.msgpack", tmp_path / "out.safetensors", check_ok=False)
    assert result.returncode == 1 and "missing.msgpack: no such file" in result.stderr, result.stderr


def test_failures_name_the_file(tmp_path, capsys):
    from nnx_state.__main__ import main

    (tmp_path / "exists").mkdir()
    (tmp_path / "in.safetensors").write_bytes(b"")
    assert main(["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "exists")]) == 1
    assert "exists: already exists (--force replaces it)" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "no" / "out.msgpack")]) == 1
    assert f"the directory {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "out.msgpack")]) == 1
    assert f"reading {str(tmp_path / 'in.safetensors')!r} (safetensors): " in capsys.readouterr().err


def test_help(capsys):
    from nnx_state.convert import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--type RULE" in out and "FILTER=TYPE" in out


# --------------------------------------------------------------------------
# Real conversions
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flax_parts():
    F = pytest.importorskip("flax.nnx")
    jax = pytest.importorskip("jax")
    ocp = pytest.importorskip("orbax.checkpoint")

    class Net(F.Module):
        def __init__(self, seed):
            rngs = F.Rngs(seed, dropout=seed + 1)
            self.layers = F.List([F.Linear(3, 5, rngs=rngs), F.Linear(5, 2, rngs=rngs)])
            self.norm = F.BatchNorm(2, rngs=rngs)
            self.drop = F.Dropout(0.2, rngs=rngs)

        def __call__(self, x):
            return self.drop(self.norm(self.layers[1](self.layers[0](x))))

    return F, jax, ocp, Net


RULES = ["--type", "path:mean | path:var=BatchStat", "--type", "path:rngs & path:count=RngCount",
         "--type", "path:rngs & path:key=RngKey", "--type", "Param"]


def _bits(jax, x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(x)), _bits(jax, jax.random.key_data(x))
    a = np.asarray(x)
    return a.dtype.str, a.shape, a.tobytes()


@pytest.mark.flax
def test_orbax_to_safetensors_to_orbax_into_flax(flax_parts, tmp_path):
    F, jax, ocp, Net = flax_parts
    model = Net(0)
    model(jax.numpy.ones((4, 3)))  # batch statistics and the dropout key move
    flax_state = F.state(model)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", flax_state)
    checkpointer.wait_until_finished()

    result = convert("convert", tmp_path / "ckpt", tmp_path / "model.safetensors", *RULES)
    assert "(orbax) ->" in result.stdout and "(safetensors): 10 leaves" in result.stdout, result.stdout
    # A plain safetensors reader sees each tensor under its dotted path...
    from safetensors.numpy import load_file

    tensors = load_file(tmp_path / "model.safetensors")
    assert np.array_equal(tensors["layers.0.kernel"], np.asarray(flax_state["layers"][0]["kernel"].get_value()))
    # ... and nnx_state the types and the key.
    state = nnx.load_safetensors(tmp_path / "model.safetensors")
    for (path, a), (_, b) in zip(nnx.to_flat_state(state), F.to_flat_state(flax_state), strict=True):
        assert type(a).__name__ == type(b).__name__, path
        assert _bits(jax, a.get_value()) == _bits(jax, b.get_value()), path

    convert("convert", tmp_path / "model.safetensors", tmp_path / "back", "--quiet")
    fresh = Net(9)
    restored = ocp.StandardCheckpointer().restore(tmp_path / "back", F.state(fresh))
    for (path, a), (_, b) in zip(F.to_flat_state(restored), F.to_flat_state(flax_state), strict=True):
        assert type(a) is type(b) and _bits(jax, a.get_value()) == _bits(jax, b.get_value()), path
    F.update(fresh, restored)
    model.eval(), fresh.eval()
    x = jax.numpy.arange(6.0).reshape(2, 3)
    assert np.asarray(fresh(x)).tobytes() == np.asarray(model(x)).tobytes()


@pytest.mark.flax
def test_msgpack_to_sharded_safetensors_and_a_filter(flax_parts, tmp_path):
    F, jax, ocp, Net = flax_parts
    from flax import serialization

    params = F.state(Net(1), F.Param)
    (tmp_path / "params.msgpack").write_bytes(serialization.to_bytes(F.to_pure_dict(params)))
    result = convert("convert", tmp_path / "params.msgpack", tmp_path / "shards", "--type", "Param",
                     "--max-shard-size", "64")
    assert "(msgpack) ->" in result.stdout and "6 leaves" in result.stdout, result.stdout
    index = json.loads((tmp_path / "shards" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    state = nnx.load_safetensors(tmp_path / "shards")
    for (path, a), (_, b) in zip(nnx.to_flat_state(state), F.to_flat_state(params), strict=True):
        assert type(a) is nnx.Param and _bits(jax, a.get_value()) == _bits(jax, b.get_value()), path
    convert("convert", tmp_path / "shards", tmp_path / "kernels.safetensors", "--filter", "path:kernel", "-q")
    kernels = nnx.load_safetensors(tmp_path / "kernels.safetensors")
    assert [p for p, _ in nnx.to_flat_state(kernels)] == [("layers", 0, "kernel"), ("layers", 1, "kernel")]


@pytest.mark.flax
def test_foreign_safetensors_typed_by_rules_and_msgpack_out(tmp_path, capsys):
    pytest.importorskip("flax")
    from safetensors.numpy import save_file

    from nnx_state.__main__ import main

    tensors = {"norm.mean": np.zeros(3, np.float32), "norm.scale": np.ones(3, np.float32),
               "layers.0.kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_file(tensors, tmp_path / "hf.safetensors", metadata={"format": "pt"})
    assert main(["convert", str(tmp_path / "hf.safetensors"), str(tmp_path / "typed.safetensors"),
                 "--type", "path:mean=BatchStat", "--type", "Param"]) == 0
    assert "3 leaves" in capsys.readouterr().out
    typed = nnx.load_safetensors(tmp_path / "typed.safetensors")
    assert type(typed["norm"]["mean"]) is nnx.BatchStat and type(typed["layers"][0]["kernel"]) is nnx.Param
    assert main(["convert", str(tmp_path / "typed.safetensors"), str(tmp_path / "out.msgpack"), "-q"]) == 0
    back = nnx.load_msgpack(tmp_path / "out.msgpack", like=typed)
    assert back == typed

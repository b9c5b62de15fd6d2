"""No leaks: variables, arrays, states and callbacks created and dropped in
bulk leave the process's memory flat, and every buffer lent to the library
is given back (also when the last reference goes on another thread)."""

from __future__ import annotations

import gc
import sys
import threading

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import _arrays, filterlib, variablelib

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def counts() -> tuple[int, int, int]:
    gc.collect()
    return variablelib.live_count(), _arrays.lent_count(), len(filterlib._callbacks)


def churn(n: int) -> None:
    for _ in range(n // 1000):
        variables = [nnx.Param(np.zeros(4, np.float32), tag="t") for _ in range(1000)]
        state = nnx.State({i: v for i, v in enumerate(variables)})
        state["bare"] = np.ones(8)
        params, rest = nnx.filter_state(state, nnx.Param, lambda p, x: True)
        params[3][...] += 1
        _ = nnx.to_flat_state(nnx.merge_state(params, rest)).leaves
        del variables, state, params, rest, _


@pytest.mark.slow
def test_200k_variables_leave_memory_flat():
    baseline = counts()
    churn(20_000)  # warm up allocator pools and caches
    before = rss_mb()
    for _ in range(200):
        nnx.Param(np.zeros(4, np.float32))  # alone: the object is gone at once
    churn(200_000)
    after = rss_mb()
    assert counts() == baseline
    # A leak of even one variable and its buffer each time would be ~70 MB.
    assert after - before < 15, f"RSS grew from {before:.1f} MB to {after:.1f} MB"


def test_python_scalars_and_copies_do_not_leak():
    baseline = counts()
    before = rss_mb()
    for i in range(30_000):
        v = nnx.Variable(float(i))
        v.set_value(np.arange(3.0)[::2])  # strided: copied
        v.set_metadata(a=i)
        del v
    assert counts() == baseline
    assert rss_mb() - before < 10


def test_release_on_another_thread():
    baseline = counts()
    holder = [nnx.State({"a": np.arange(100.0), "b": {"c": nnx.Param(np.ones(10))}})]
    assert _arrays.lent_count() == baseline[1] + 2

    def drop():
        holder.pop()
        gc.collect()

    worker = threading.Thread(target=drop)
    worker.start()
    worker.join()
    assert counts() == baseline


def test_views_outlive_everything_else():
    baseline = counts()
    views = []
    for _ in range(100):
        state = nnx.State({"w": nnx.Param(np.arange(16.0))})
        views.append(state["w"][...])
    del state
    gc.collect()
    assert _arrays.lent_count() == baseline[1] + 100  # the views keep them
    assert all(v.sum() == 120 for v in views)
    views.clear()
    assert counts() == baseline

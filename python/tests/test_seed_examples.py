"""The three documented examples of flax.nnx.State (filter, split, merge),
written with nnx_state, on the state of

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.batchnorm = nnx.BatchNorm(2, rngs=rngs)
            self.linear = nnx.Linear(2, 3, rngs=rngs)

built by hand (nnx_state has no Modules)."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_state as nnx


@pytest.fixture
def state():
    f32 = np.float32
    return nnx.State({
        "batchnorm": {
            "bias": nnx.Param(np.zeros(2, f32)),
            "mean": nnx.BatchStat(np.zeros(2, f32)),
            "scale": nnx.Param(np.ones(2, f32)),
            "var": nnx.BatchStat(np.ones(2, f32)),
        },
        "linear": {
            "bias": nnx.Param(np.zeros(3, f32)),
            "kernel": nnx.Param(np.full((2, 3), 0.5, f32)),
        },
    })


def paths(state):
    return list(nnx.to_flat_state(state).paths)


def test_filter_examples(state):
    # param = nnx.filter_state(state, nnx.Param)
    param = nnx.filter_state(state, nnx.Param)
    assert paths(param) == [
        ("batchnorm", "bias"), ("batchnorm", "scale"), ("linear", "bias"), ("linear", "kernel"),
    ]
    # batch_stats = nnx.filter_state(state, nnx.BatchStat)
    batch_stats = nnx.filter_state(state, nnx.BatchStat)
    assert paths(batch_stats) == [("batchnorm", "mean"), ("batchnorm", "var")]
    # param, batch_stats = nnx.filter_state(state, nnx.Param, nnx.BatchStat)
    param2, batch_stats2 = nnx.filter_state(state, nnx.Param, nnx.BatchStat)
    assert param2 == param and batch_stats2 == batch_stats
    # The outputs hold the very same variables.
    assert param["linear"]["kernel"] is state["linear"]["kernel"]
    assert batch_stats.batchnorm.mean is state.batchnorm.mean
    # As methods too (no deprecation warning here).
    assert state.filter(nnx.Param) == param


def test_split_example(state):
    param, batch_stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
    assert isinstance(param, nnx.State) and isinstance(batch_stats, nnx.State)
    assert list(param) == ["batchnorm", "linear"]
    assert list(param["batchnorm"]) == ["bias", "scale"]
    assert list(batch_stats["batchnorm"]) == ["mean", "var"]
    assert all(isinstance(v, nnx.Param) for _, v in nnx.to_flat_state(param))
    assert all(isinstance(v, nnx.BatchStat) for _, v in nnx.to_flat_state(batch_stats))
    with pytest.raises(ValueError, match="^Non-exhaustive filters, got a non-empty remainder"):
        nnx.split_state(state, nnx.Param)


def test_merge_example(state):
    # params, batch_stats = nnx.state(model, nnx.Param, nnx.BatchStat)
    params, batch_stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
    # params['linear']['bias'][...] += 1
    params["linear"]["bias"][...] += 1
    # state = nnx.merge_state(params, batch_stats)
    merged = nnx.merge_state(params, batch_stats)
    # assert (model.linear.bias[...] == jnp.array([1, 1, 1])).all()
    assert (merged["linear"]["bias"][...] == np.array([1, 1, 1])).all()
    # The variable is shared: the original state sees the change as well.
    assert (state["linear"]["bias"][...] == 1).all()
    assert merged["linear"]["bias"] is state["linear"]["bias"]
    assert merged == state
    assert paths(merged) == paths(state)

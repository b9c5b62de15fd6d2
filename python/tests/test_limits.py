"""The nesting limit (NNX_MAX_DEPTH) from Python: states, flat states,
filters and files deeper than the library takes raise ValueError with the
library's status, and write nothing; at the limit everything works."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import nnx_state as nnx
from nnx_state import _lib
from nnx_state.checkpoint import load_safetensors, parse_filter
from nnx_state.errors import NnxFormatError

LIMIT = _lib.NNX_MAX_DEPTH


def nested(levels: int):
    """A dict `levels` deep: a Param at a path of `levels` keys."""
    top = inner = {}
    for _ in range(levels - 1):
        inner["a"] = {}
        inner = inner["a"]
    inner["v"] = nnx.Param(np.zeros(1))
    return top


def test_limit_is_what_the_library_enforces():
    assert LIMIT == 64
    state = nnx.State(nested(LIMIT))
    assert len(nnx.to_flat_state(state)) == 1
    with pytest.raises(ValueError, match="nesting limit") as e:
        nnx.State(nested(LIMIT + 1))
    assert e.value.status_name == "NNX_ERR_TOO_DEEP"


def test_setting_past_the_limit_writes_nothing():
    state = nnx.State(nested(LIMIT))
    view = state
    for _ in range(LIMIT - 1):
        view = view["a"]  # LIMIT - 1 keys down: one more key fills the limit
    with pytest.raises(ValueError, match="nesting limit"):
        view["deeper"] = {"x": nnx.Param(np.ones(1))}
    assert len(nnx.to_flat_state(state)) == 1
    view["beside"] = nnx.Param(np.ones(1))
    assert len(nnx.to_flat_state(state)) == 2


def test_flat_states_past_the_limit():
    ok = nnx.from_flat_state({tuple(range(LIMIT)): nnx.Param(np.zeros(1))})
    assert len(nnx.to_flat_state(ok)) == 1
    with pytest.raises(ValueError, match="nesting limit"):
        nnx.from_flat_state({tuple(range(LIMIT + 1)): nnx.Param(np.zeros(1))})


def test_filters_past_the_limit():
    state = nnx.State({"a": nnx.Param(np.zeros(1)), "b": nnx.BatchStat(np.zeros(1))})
    chain = nnx.Param
    for _ in range(LIMIT - 1):
        chain = nnx.Not(chain)
    # LIMIT - 1 Nots of Param select what is not a Param.
    assert list(nnx.filter_state(state, chain).keys()) == ["b"]
    with pytest.raises(ValueError, match="nesting limit"):
        nnx.filter_state(state, nnx.Not(chain))
    with pytest.raises(ValueError, match="nesting limit"):
        parse_filter("(" * (LIMIT + 1) + "Param" + ")" * (LIMIT + 1))


def foreign_file(tmp_path, name: str):
    header = json.dumps({name: {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))
    return path


def test_a_file_with_a_deep_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="30000 components") as e:
        load_safetensors(foreign_file(tmp_path, ".".join(["a"] * 30000)))
    assert e.value.status_name == "NNX_ERR_TOO_DEEP"
    state = load_safetensors(foreign_file(tmp_path, ".".join(["a"] * LIMIT)))
    assert len(nnx.to_flat_state(state)) == 1


def test_an_empty_name_component_is_malformed(tmp_path):
    with pytest.raises(NnxFormatError, match="empty component"):
        load_safetensors(foreign_file(tmp_path, "a..b"))

"""Test setup: import nnx_state from this source tree, keep JAX (pulled in
by flax) on the CPU, and name the markers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent

# The tests exercise this source tree's package, even where a copy is
# installed; NNX_STATE_TEST_INSTALLED=1 tests the installed copy instead.
if not os.environ.get("NNX_STATE_TEST_INSTALLED"):
    sys.path.insert(0, str(PYTHON_DIR))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a longer test (memory, differential); deselect with -m 'not slow'")
    config.addinivalue_line("markers", "flax: needs flax installed (skipped otherwise)")

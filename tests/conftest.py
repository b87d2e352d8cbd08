from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

import kaffa
from kaffa.plugins import registry

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="kaffa-xdg-"))


@pytest.fixture
def ws() -> kaffa.Workspace:
    return kaffa.Workspace("test")


@pytest.fixture
def mock():
    """Register a mock backend claiming Relu and Add (float32); unregistered afterwards."""
    from kaffa_conformance.mock import MockPlugin

    plugin = MockPlugin(ops={"Relu", "Add"}, dtypes=["float32"])
    registry().register(plugin, name="mock")
    yield plugin
    registry().unregister("mock")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

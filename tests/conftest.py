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


@pytest.fixture
def cpu_only_op():
    """Register ``CpuOnlyTestOp`` (Y = X + 1) with a cpu kernel and no other: an op that falls back
    to cpu on every device backend, however many kernels those get. Unregistered afterwards."""
    import types

    from kaffa.plugins import PLUGIN_API, hookimpl
    from kaffa.schema import OpSchema, same_as_input

    schema = OpSchema(name="CpuOnlyTestOp", family="test", doc="Y = X + 1", infer=same_as_input(0))

    def kernels(registry):  # pluggy matches hook arguments by name
        registry.add("cpu", "CpuOnlyTestOp", lambda ctx: lambda x: (x + x.dtype.type(1),))

    plugin = types.SimpleNamespace(
        kaffa_plugin_api=hookimpl(lambda: PLUGIN_API),
        kaffa_op_schemas=hookimpl(lambda: [schema]),
        kaffa_kernels=hookimpl(kernels),
    )
    registry().register(plugin, name="cpu_only_test_op")
    yield "CpuOnlyTestOp"
    registry().unregister("cpu_only_test_op")

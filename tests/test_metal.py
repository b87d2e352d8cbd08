"""The metal backend's own machinery, on lavapipe (Vulkan on the CPU): shader builds (cached, typed
build errors with naga's diagnostic), dispatches beyond one dimension's workgroup limit,
out-of-memory as a typed error, float64 refused cleanly, and the conformance suite in strict
mode."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kaffa
from kaffa.core import Net
from kaffa.plugins import registry

pytestmark = pytest.mark.metal


@pytest.fixture
def metal():
    backend = registry().backend("metal")
    reason = backend.unavailable_reason()
    if reason is not None:
        pytest.skip(f"metal is unavailable here: {reason}")
    return backend


def _relu_net(name: str = "relu") -> Net:
    net = Net(name)
    net.Relu("x", "y", device_option=kaffa.core.DeviceOption("metal", 0))
    return net


def test_pipelines_are_built_once_per_device_entry_and_types(metal):
    from kaffa_metal.kernels import common

    dev = metal.device(0)
    dev.allocator  # noqa: B018
    a = common.PIPELINES.get(dev, "activation", "relu", common.prelude(np.float32))
    b = common.PIPELINES.get(dev, "activation", "relu", common.prelude(np.float32))
    c = common.PIPELINES.get(dev, "activation", "relu", common.prelude(np.float16))
    assert a is b and a is not c


def test_a_build_failure_names_the_shader_and_shows_the_diagnostic(metal, tmp_path, monkeypatch):
    from kaffa_metal.kernels import common

    (tmp_path / "broken.wgsl").write_text(
        "@group(0) @binding(0) var<storage, read_write> y: array<T>;\n"
        "@compute @workgroup_size(WG) fn broken() { y[0] = undefined_name; }\n"
    )
    monkeypatch.setattr(common, "WGSL_DIR", tmp_path)
    dev = metal.device(0)
    dev.allocator  # noqa: B018
    with pytest.raises(kaffa.KernelBuildError) as err:
        common.PIPELINES.get(dev, "broken", "broken", common.prelude(np.float32))
    text = str(err.value)
    assert "wgsl/broken.wgsl" in text and "alias T = f32" in text
    assert "undefined_name" in text  # naga's diagnostic, not just "build failed"


def test_large_dispatches_are_split_over_two_dimensions(metal, ws):
    n = 65535 * 256 + 1000  # one workgroup more than a single dimension takes
    x = np.linspace(-1, 1, n, dtype=np.float32)
    ws.feed_blob("x", x, "metal")
    ws.create_net(_relu_net(), policy="strict")
    ws.run_net("relu")
    y = ws.fetch_blob("y")
    np.testing.assert_array_equal(y[-2000:], np.maximum(x[-2000:], 0))
    assert np.array_equal(y, np.maximum(x, 0))


def test_float64_is_refused_cleanly(metal, ws):
    with pytest.raises(kaffa.DeviceError, match="WGSL has no 64-bit floats"):
        ws.feed_blob("x", np.ones(3), "metal")


def test_out_of_device_memory_is_typed_and_leaves_the_workspace_as_it_was(metal, ws, monkeypatch):
    x = np.array([-1.0, 2.0, -3.0], np.float32)
    ws.feed_blob("x", x, "metal")
    ws.feed_blob("y", np.full(3, 7.0, np.float32))
    ws.create_net(_relu_net("oom"))
    allocator = metal.device(0).allocator

    def empty(shape, dtype):
        raise kaffa.DeviceError("metal:0 could not allocate 12 bytes: GPUOutOfMemoryError (simulated)")

    monkeypatch.setattr(allocator, "empty", empty)
    with pytest.raises(kaffa.DeviceMemoryError, match=r"out of memory allocating float32\[3\].*op #0 Relu"):
        ws.run_net("oom")
    np.testing.assert_array_equal(ws.fetch_blob("y"), np.full(3, 7.0, np.float32))


@pytest.mark.slow
def test_conformance_strict_on_metal_passes(metal, tmp_path):
    cmd = ["conformance", "--backend", "metal", "--strict", "--report", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "kaffa", *cmd], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "conformance: OK" in out.stdout

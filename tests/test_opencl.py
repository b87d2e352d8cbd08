"""The opencl backend's own machinery, on PoCL: kernel builds (cached, typed build errors with the
log), out-of-memory as a typed error that leaves the workspace as it was, and the conformance
suite in strict mode (every op on real OpenCL kernels, no cpu fallback)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kaffa
from kaffa.core import Net
from kaffa.plugins import registry

pytestmark = pytest.mark.opencl


@pytest.fixture
def opencl():
    backend = registry().backend("opencl")
    reason = backend.unavailable_reason()
    if reason is not None:
        pytest.skip(f"opencl is unavailable here: {reason}")
    return backend


def test_programs_are_built_once_per_device_file_and_types(opencl):
    from kaffa_opencl.kernels import common

    dev = opencl.device(0)
    dev.allocator  # noqa: B018
    a = common.PROGRAMS.get(dev, "activation", common.type_options(np.float32))
    b = common.PROGRAMS.get(dev, "activation", common.type_options(np.float32))
    c = common.PROGRAMS.get(dev, "activation", common.type_options(np.float16))
    assert a is b and a is not c


def test_a_build_failure_names_the_source_and_shows_the_log(opencl, tmp_path, monkeypatch):
    from kaffa_opencl.kernels import common

    (tmp_path / "broken.cl").write_text("__kernel void broken(__global T *x) { x[0] = undefined_name; }\n")
    monkeypatch.setattr(common, "CL_DIR", tmp_path)
    dev = opencl.device(0)
    dev.allocator  # noqa: B018
    with pytest.raises(kaffa.KernelBuildError) as err:
        common.PROGRAMS.get(dev, "broken", common.type_options(np.float32))
    text = str(err.value)
    assert "cl/broken.cl" in text and "-DT=float" in text
    assert "undefined_name" in text  # the compiler's log, not just "build failed"


def test_out_of_device_memory_is_typed_and_leaves_the_workspace_as_it_was(opencl, ws, monkeypatch):
    x = np.array([-1.0, 2.0, -3.0], np.float32)
    ws.feed_blob("x", x, "opencl")
    ws.feed_blob("y", np.full(3, 7.0, np.float32))
    net = Net("oom")
    dev = kaffa.core.DeviceOption("opencl", 0)
    net.Relu("x", "h", device_option=dev)
    net.Relu("h", "y", device_option=dev)
    ws.create_net(net)

    allocator = opencl.device(0).allocator
    real_empty, calls = allocator.empty, []

    def empty(shape, dtype):
        calls.append(shape)
        if len(calls) == 2:  # the second op's output
            raise allocator.cl_array.cl.MemoryError("MEM_OBJECT_ALLOCATION_FAILURE (simulated)")
        return real_empty(shape, dtype)

    monkeypatch.setattr(allocator, "empty", empty)
    with pytest.raises(kaffa.DeviceMemoryError, match=r"out of memory allocating float32\[3\].*op #1 Relu"):
        ws.run_net("oom")
    assert not ws.has_blob("h")
    np.testing.assert_array_equal(ws.fetch_blob("y"), np.full(3, 7.0, np.float32))
    monkeypatch.setattr(allocator, "empty", real_empty)
    ws.run_net("oom")  # and the net still works afterwards
    np.testing.assert_array_equal(ws.fetch_blob("y"), np.maximum(x, 0))


def test_half_runs_without_cl_khr_fp16(opencl, ws):
    """float16 blobs are stored as half and computed in float (vload_half/vstore_half are core
    OpenCL), so devices without cl_khr_fp16 (PoCL) still run them."""
    x = np.array([-1.5, 0.25, 3.0], np.float16)
    ws.feed_blob("x", x, "opencl")
    net = Net("half")
    net.Relu("x", "y", device_option=kaffa.core.DeviceOption("opencl", 0))
    ws.create_net(net, policy="strict")
    ws.run_net("half")
    y = ws.fetch_blob("y")
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.slow
def test_conformance_strict_on_opencl_passes(opencl, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaffa",
            "conformance",
            "--backend",
            "opencl",
            "--strict",
            "--report",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "conformance: OK" in out.stdout

"""The opencl, cuda and metal plugins: discovery (devices, or the exact reason there are none),
host copies, dtype refusals, and cpu fallback with planner copies."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import kaffa
from kaffa.core import Net
from kaffa.plugins import PLUGIN_API, registry
from kaffa.runtime import BufferPool, DeviceBackend, Unavailable, lazy_import
from kaffa_cuda.device import CUDABackend
from kaffa_metal.device import MetalBackend
from kaffa_opencl.device import OpenCLBackend

DEVICE_BACKENDS = ("opencl", "cuda", "metal")
MISSING = {  # backend -> (class, the module it imports lazily, the reason when it is missing)
    "opencl": (OpenCLBackend, "pyopencl", "pyopencl is not installed (pip install 'kaffa[opencl]')"),
    "cuda": (CUDABackend, "cupy", "CuPy is not installed (pip install 'kaffa[cuda]')"),
    "metal": (MetalBackend, "wgpu", "wgpu is not installed (pip install 'kaffa[metal]')"),
}


def _available(name: str) -> DeviceBackend:
    backend = registry().backend(name)
    reason = backend.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{name} is unavailable here: {reason}")
    return backend


def test_plugins_import_and_expose_the_hooks():
    import kaffa_cuda
    import kaffa_metal
    import kaffa_opencl

    for module in (kaffa_opencl, kaffa_cuda, kaffa_metal):
        assert module.kaffa_plugin_api() == PLUGIN_API
        (backend,) = module.kaffa_backends()
        assert isinstance(backend, DeviceBackend)


def test_registry_has_all_four_backends_none_quarantined():
    reg = registry()
    for name in ("cpu", *DEVICE_BACKENDS):
        assert name in reg.backends, reg.plugins.get(name)
        assert not reg.plugins[name].quarantined
    assert {reg.backends[n].device_type for n in DEVICE_BACKENDS} == {kaffa.OPENCL, kaffa.CUDA, kaffa.METAL}


@pytest.mark.parametrize("name", ["cpu", *DEVICE_BACKENDS])
def test_backend_has_devices_or_says_why_not(name):
    backend = registry().backend(name)
    reason = backend.unavailable_reason()
    devices = backend.devices()
    if reason is None:
        assert devices, f"{name} is available but lists no device"
        assert [d.index for d in devices] == list(range(len(devices)))
        for d in devices:
            assert d.name and d.kind in ("cpu", "gpu", "accelerator", "other") and d.api
        assert backend.version and "available" in backend.describe()
    else:
        assert isinstance(reason, str) and reason.strip() and devices == []
        assert f"unavailable: {reason}" in backend.describe()
    assert backend.devices() == devices  # cached, stable order


def test_metal_says_which_native_api_it_runs_on():
    backend = _available("metal")
    for d in backend.devices():
        assert any(f"{api} via wgpu" in d.api for api in ("Metal", "Vulkan", "D3D12", "OpenGL")), d.api


SHAPES = [(5,), (2, 3), (), (0, 4), (1, 1, 7)]


@pytest.mark.parametrize("dtype", ["float32", "int32", "float16"])
@pytest.mark.parametrize("name", DEVICE_BACKENDS)
def test_round_trip(name, dtype, rng):
    backend = _available(name)
    why = backend.unsupported_dtype_reason(dtype)
    if why is not None:
        pytest.skip(f"{dtype} does not live on {name}: {why}")
    for shape in SHAPES:
        host = (rng.standard_normal(shape) * 10).astype(dtype)
        arr = backend.from_host(host)
        assert isinstance(arr, backend.array_types) and arr.shape == shape and arr.dtype == host.dtype
        back = backend.to_host(arr)
        assert type(back) is np.ndarray and back.shape == shape and back.dtype == host.dtype
        assert back.flags.writeable and not np.shares_memory(back, host)
        np.testing.assert_array_equal(back, host)
    transposed = np.arange(12, dtype=dtype).reshape(3, 4).T  # not C-contiguous
    np.testing.assert_array_equal(backend.to_host(backend.from_host(transposed)), transposed)
    backend.synchronize(0)


def test_blobs_fed_to_a_device_live_there(ws):
    for name in DEVICE_BACKENDS:
        backend = registry().backend(name)
        if backend.unavailable_reason() is not None:
            with pytest.raises(kaffa.DeviceError, match="backend unavailable"):
                ws.feed_blob("x", np.ones(2, np.float32), name)
            continue
        ws.feed_blob("x", np.arange(6, dtype=np.float32).reshape(2, 3), f"{name}:0")
        assert isinstance(ws._blobs["x"], backend.array_types)
        assert ws.blob_info("x").shape == (2, 3) and str(ws.blob_device("x")) == f"{name}:0"
        np.testing.assert_array_equal(ws.fetch_blob("x"), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    "dtype, why", [("float64", "no 64-bit floats"), ("int64", "no 64-bit integers"), ("bool", "bool")]
)
def test_metal_refuses_what_wgsl_cannot_hold(ws, dtype, why):
    backend = _available("metal")
    assert why in backend.unsupported_dtype_reason(dtype)
    with pytest.raises(kaffa.DeviceError, match=rf"cannot place {dtype}\[3\] on metal:0 .*{why}"):
        backend.from_host(np.ones(3, dtype))
    with pytest.raises(kaffa.DeviceError, match=why):
        ws.feed_blob("x", np.ones(3, dtype), "metal")


def test_metal_refuses_arrays_larger_than_a_binding(monkeypatch):
    backend = _available("metal")
    alloc = backend.device(0).allocator
    monkeypatch.setattr(alloc, "max_alloc", 64)
    too_big = r"needs 68 bytes and the device takes at most 64 .* \(max_storage_buffer_binding_size"
    with pytest.raises(kaffa.DeviceError, match=too_big):
        backend.from_host(np.zeros(17, np.float32))
    assert backend.to_host(backend.from_host(np.ones(16, np.float32))).sum() == 16


def test_device_blob_handed_to_the_wrong_backend_is_a_clear_error():
    backend = _available("opencl")
    with pytest.raises(kaffa.DeviceError, match=r"opencl:0 .* was handed a numpy.ndarray, not a pyopencl"):
        backend.to_host(np.ones(2))
    with pytest.raises(kaffa.DeviceError, match="device 7 does not exist"):
        backend.from_host(np.ones(2), 7)


@pytest.mark.parametrize("name", DEVICE_BACKENDS)
def test_missing_library_is_the_unavailable_reason(name, monkeypatch):
    cls, module, reason = MISSING[name]
    monkeypatch.setitem(sys.modules, module, None)  # what `import` does for a missing module
    backend = cls()  # fresh: the registry's instance has already discovered
    assert backend.unavailable_reason() == reason
    assert backend.devices() == [] and reason in backend.describe()
    with pytest.raises(kaffa.DeviceError, match="is not installed"):
        backend.from_host(np.ones(2, np.float32))


def test_broken_library_is_the_unavailable_reason(tmp_path, monkeypatch):
    (tmp_path / "kaffa_broken_lib.py").write_text(
        "raise OSError('libOpenCL.so.1: cannot open shared object')"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Unavailable, match=r"kaffa_broken_lib failed to import: OSError: libOpenCL"):
        lazy_import("kaffa_broken_lib", "opencl")


def test_plugins_load_without_their_libraries():
    code = (
        "import sys\n"
        "for m in ('pyopencl', 'cupy', 'wgpu'): sys.modules[m] = None\n"
        "from kaffa.plugins import registry\n"
        "reg = registry()\n"
        "for n in ('opencl', 'cuda', 'metal'):\n"
        "    assert not reg.plugins[n].quarantined, reg.plugins[n].error\n"
        "    print(reg.backends[n].describe())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in DEVICE_BACKENDS:
        assert MISSING[name][2] in out.stdout


# -- the GPU path of the cuda plugin, on a fake CuPy (no GPU here) -----------------------------------


def _fake_cupy(count: int = 2, error: Exception | None = None, driver: int = 12040) -> types.ModuleType:
    current = [0]

    class ndarray:  # CuPy's name
        def __init__(self, data: np.ndarray):
            self.data, self.device = data, types.SimpleNamespace(id=current[0])

        shape = property(lambda self: self.data.shape)
        dtype = property(lambda self: self.data.dtype)

        def set(self, host):
            self.data[...] = host

        def get(self):
            assert current[0] == self.device.id, "read outside its device's context"
            return self.data.copy()

        def copy(self):
            return ndarray(self.data.copy())

    class Device:
        def __init__(self, i):
            self.id = i

        def __enter__(self):
            self.prev, current[0] = current[0], self.id

        def __exit__(self, *exc):
            current[0] = self.prev

        def synchronize(self):
            cp.synced.append(self.id)

    def count_devices():
        if error is not None:
            raise error
        return count

    props = {"name": b"Fake H200", "totalGlobalMem": 141 << 30, "major": 9, "minor": 0}
    cp = types.ModuleType("cupy")
    cp.__version__, cp.ndarray, cp.synced = "14.0-fake", ndarray, []
    cp.empty = lambda shape, dtype: ndarray(np.empty(shape, dtype))
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    runtime = types.SimpleNamespace(
        is_hip=False,
        getDeviceCount=count_devices,
        driverGetVersion=lambda: driver,
        runtimeGetVersion=lambda: 12090,
        getDeviceProperties=lambda i: {**props, "pciBusID": i},
    )
    cp.cuda = types.SimpleNamespace(runtime=runtime, Device=Device)
    return cp


def test_cuda_discovery_and_copies_on_a_fake_cupy(monkeypatch):
    cp = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    backend = CUDABackend()
    assert backend.unavailable_reason() is None and backend.version == "CuPy 14.0-fake"
    devices = backend.devices()
    assert [d.describe() for d in devices] == [
        f"[{i}] Fake H200 (gpu, 141.0 GiB, CUDA driver 12.4, runtime 12.9, compute capability 9.0)"
        for i in range(2)
    ]
    host = np.arange(6, dtype=np.float16).reshape(2, 3)
    arr = backend.from_host(host, 1)
    assert arr.device.id == 1
    moved = backend.copy_between(arr, 1, 0)
    assert moved.device.id == 0
    np.testing.assert_array_equal(backend.to_host(moved, 0), host)
    backend.synchronize(1)
    assert cp.synced == [1]


@pytest.mark.parametrize(
    "driver, expected",
    [
        (0, "no CUDA driver: cudaErrorInsufficientDriver: CUDA driver version is insufficient"),
        (12040, "CUDA unusable (driver 12.4, CuPy's runtime 12.9): cudaErrorInsufficientDriver"),
    ],
)
def test_cuda_without_a_usable_driver_says_why(monkeypatch, driver, expected):
    error = RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(error=error, driver=driver))
    assert CUDABackend().unavailable_reason().startswith(expected)
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count=0))
    assert CUDABackend().unavailable_reason().startswith("no CUDA device found")


# -- the buffer pool --------------------------------------------------------------------------------


class _CountingPool(BufferPool):
    def __init__(self, cache_limit: int):
        super().__init__(cache_limit)
        self.created, self.destroyed = 0, []

    def _create(self, capacity):
        self.created += 1
        return bytearray(capacity)

    def _destroy(self, buffer):
        self.destroyed.append(len(buffer))


def test_buffer_pool_reuses_by_bucket_and_evicts_least_recently_freed():
    pool = _CountingPool(cache_limit=4096)
    a, cap = pool.alloc(1000)
    assert cap == 1024 and BufferPool.bucket(3 << 20) == 3 << 20 and BufferPool.bucket(1) == 256
    pool.release(a, cap)
    b, _ = pool.alloc(900)  # same bucket: reused
    assert b is a and pool.created == 1
    pool.release(b, cap)
    c, c_cap = pool.alloc(4000)
    pool.release(c, c_cap)  # 1024 + 4096 > 4096: the older 1024 buffer goes
    assert pool.stats() == (0, 4096) and pool.destroyed == [1024]
    pool.trim()
    assert pool.destroyed == [1024, 4096] and pool.stats() == (0, 0)
    assert pool.alloc(100, max_capacity=128)[1] == 128


def test_metal_buffers_go_back_to_the_pool():
    backend = _available("metal")
    pool = backend.device(0).allocator.pool
    arr = backend.from_host(np.ones(1000, np.float32))
    active, held = pool.stats()
    del arr
    assert pool.stats() == (active - 4096, held + 4096)
    again = backend.from_host(np.zeros(1000, np.float32))  # the freed buffer, rewritten
    assert backend.to_host(again).sum() == 0


# -- placement: ops a device lacks run on cpu with copies -------------------------------------------


@pytest.mark.parametrize("name", DEVICE_BACKENDS)
def test_ops_on_a_device_fall_back_to_cpu_with_copies(ws, name, cpu_only_op):
    _available(name)
    x = np.array([[-1.0, 0.5], [2.0, -3.0]], dtype=np.float32)
    ws.feed_blob("x", x, name)
    net = Net(f"on_{name}")
    net.CpuOnlyTestOp("x", "y", device_option=kaffa.core.DeviceOption(name, 0))
    net.CpuOnlyTestOp("y", "z", device_option=kaffa.core.DeviceOption(name, 0))
    with pytest.warns(kaffa.FallbackWarning, match=r"2 op\(s\) .* fell back to cpu"):
        ws.create_net(net)
    ws.run_net(net.Proto().name)
    np.testing.assert_array_equal(ws.fetch_blob("z"), x + 2)
    report = ws.placement_report(net.Proto().name)
    assert [(p.op_type, p.requested, p.ran_on) for p in report.placements] == [
        ("CpuOnlyTestOp", f"{name}:0", "cpu"),
        ("CpuOnlyTestOp", f"{name}:0", "cpu"),
    ]
    assert f"backend '{name}' has no CpuOnlyTestOp kernel" in report.fallbacks[0].reason
    assert [(c.blob, c.src, c.dst) for c in report.copies] == [("x", f"{name}:0", "cpu")]  # copied once


def test_copies_in_and_out_of_opencl_around_a_fallback(ws, cpu_only_op):
    """The planner copies a blob out of opencl for a cpu fallback and the result back in for the
    next opencl op."""
    _available("opencl")
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    ws.feed_blob("x", x, "opencl")
    dev = kaffa.core.DeviceOption("opencl", 0)
    net = Net("in_and_out")
    net.CpuOnlyTestOp("x", "a", device_option=dev)  # no opencl kernel: cpu
    net.Relu("a", "b", device_option=dev)  # on opencl
    with pytest.warns(kaffa.FallbackWarning, match="#0 CpuOnlyTestOp"):
        ws.create_net(net)
    ws.run_net("in_and_out")
    report = ws.placement_report("in_and_out")
    assert [(c.blob, c.src, c.dst, c.before_op) for c in report.copies] == [
        ("x", "opencl:0", "cpu", 0),
        ("a", "cpu", "opencl:0", 1),
    ]
    assert str(ws.blob_device("b")) == "opencl:0" and str(ws.blob_device("a")) == "cpu"
    np.testing.assert_allclose(ws.fetch_blob("b"), np.maximum(x + 1, 0))

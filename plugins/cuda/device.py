"""The cuda backend object and its devices: the GPUs the CUDA driver sees, in CUDA's order
(``CUDA_VISIBLE_DEVICES`` applies), each used through ``cupy.cuda.Device(i)``."""

from __future__ import annotations

from typing import Any

from kaffa.backend import DeviceInfo
from kaffa.device import CUDA
from kaffa.runtime import DeviceBackend, RuntimeDevice, Unavailable, lazy_import, one_line
from kaffa_cuda.allocator import CUDAAllocator


def _version(v: int) -> str:
    """CUDA encodes 12.4 as 12040."""
    return f"{v // 1000}.{v % 1000 // 10}"


class CUDADevice(RuntimeDevice):
    """One GPU. Work goes to CuPy's current stream on that device, so synchronizing the device
    waits for it."""

    def __init__(self, info: DeviceInfo, cupy: Any, index: int):
        super().__init__(info)
        self.cupy = cupy
        self.index = index

    def _open(self) -> CUDAAllocator:
        return CUDAAllocator(f"cuda:{self.index} ({self.info.name})", self.cupy, self.index)

    def synchronize(self) -> None:
        self.cupy.cuda.Device(self.index).synchronize()


class CUDABackend(DeviceBackend):
    name = "cuda"
    device_type = CUDA

    def _discover(self) -> list[CUDADevice]:
        cupy = lazy_import("cupy", "cuda", "CuPy")
        self._version = f"CuPy {cupy.__version__}"
        self._array_types = (cupy.ndarray,)
        rt = cupy.cuda.runtime
        if getattr(rt, "is_hip", False):
            raise Unavailable("this CuPy is built for ROCm/HIP; the cuda backend needs a CUDA build of CuPy")
        try:
            count = rt.getDeviceCount()
        except Exception as e:  # CUDARuntimeError without a driver; CuPy's message says which
            try:
                driver = rt.driverGetVersion()
            except Exception:
                driver = 0
            if not driver:
                raise Unavailable(f"no CUDA driver: {one_line(e)}") from None
            raise Unavailable(
                f"CUDA unusable (driver {_version(driver)}, CuPy's runtime "
                f"{_version(rt.runtimeGetVersion())}): {one_line(e)}"
            ) from None
        if count == 0:
            raise Unavailable("no CUDA device found (the driver sees no GPU; check CUDA_VISIBLE_DEVICES)")
        driver, runtime = _version(rt.driverGetVersion()), _version(rt.runtimeGetVersion())
        versions = f"CUDA driver {driver}, runtime {runtime}"
        found = []
        for i in range(count):
            p = rt.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
            cc = f"{p['major']}.{p['minor']}"
            info = DeviceInfo(
                index=i,
                name=one_line(name),
                kind="gpu",
                memory=int(p["totalGlobalMem"]),
                api=f"{versions}, compute capability {cc}",
                details={
                    "compute_capability": cc,
                    "multiprocessors": str(p.get("multiProcessorCount", "?")),
                    "pci_bus_id": f"{p.get('pciDomainID', 0):04x}:{p.get('pciBusID', 0):02x}:"
                    f"{p.get('pciDeviceID', 0):02x}",
                },
            )
            found.append(CUDADevice(info, cupy, i))
        return found

    def copy_between(self, array: Any, src_index: int, dst_index: int) -> Any:
        alloc = self.device(dst_index).allocator
        alloc.check_array(array)
        return alloc.copy_to(array)  # device to device, not through the host


# One per process: discovery is cached on it, and a reloaded registry reuses it.
BACKEND = CUDABackend()

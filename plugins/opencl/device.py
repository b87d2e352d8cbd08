"""The opencl backend object and its devices: every device of every OpenCL platform, each with its
own context and in-order queue.

DeviceOption.device_id indexes them in a stable order: platforms sorted by name (the ICD loader
lists them in whatever order it reads /etc/OpenCL/vendors), then each platform's devices in its
driver's order. ``kaffa info`` shows the resulting indices."""

from __future__ import annotations

from typing import Any

from kaffa.backend import DeviceInfo
from kaffa.device import OPENCL
from kaffa.runtime import DeviceBackend, RuntimeDevice, Unavailable, lazy_import, one_line
from kaffa_opencl.allocator import OpenCLAllocator


def _kind(cl: Any, device: Any) -> str:
    # PoCL reports CPU devices as "ALL | CPU", so test the bits rather than compare the type.
    for bit, kind in (
        (cl.device_type.GPU, "gpu"),
        (cl.device_type.ACCELERATOR, "accelerator"),
        (cl.device_type.CPU, "cpu"),
    ):
        if device.type & bit:
            return kind
    return "other"


class OpenCLDevice(RuntimeDevice):
    """One OpenCL device. The context and queue are created on first use, not at discovery."""

    def __init__(self, info: DeviceInfo, cl: Any, cl_device: Any):
        super().__init__(info)
        self.cl = cl
        self.cl_device = cl_device
        self.context: Any = None
        self.queue: Any = None

    def _open(self) -> OpenCLAllocator:
        self.context = self.cl.Context([self.cl_device])
        self.queue = self.cl.CommandQueue(self.context)
        return OpenCLAllocator(
            f"opencl:{self.info.index} ({self.info.name})",
            self.queue,
            fp64="cl_khr_fp64" in self.cl_device.extensions,
            max_alloc=int(self.cl_device.max_mem_alloc_size),
        )

    def synchronize(self) -> None:
        if self.queue is not None:
            self.queue.finish()


class OpenCLBackend(DeviceBackend):
    name = "opencl"
    device_type = OPENCL

    def _discover(self) -> list[OpenCLDevice]:
        cl = lazy_import("pyopencl", "opencl")
        self._version = f"pyopencl {cl.VERSION_TEXT}"
        self._array_types = (lazy_import("pyopencl.array", "opencl", "pyopencl").Array,)
        hint = "pip install pocl-binary-distribution for a CPU platform"
        try:
            platforms = cl.get_platforms()
        except cl.Error as e:  # the ICD loader raises PLATFORM_NOT_FOUND_KHR when there is none
            raise Unavailable(f"no OpenCL platform found ({one_line(e)}); {hint}") from None
        if not platforms:
            raise Unavailable(f"no OpenCL platform found; {hint}")
        found: list[OpenCLDevice] = []
        for platform in sorted(platforms, key=lambda p: (one_line(p.name), one_line(p.vendor))):
            try:
                cl_devices = platform.get_devices()
            except cl.Error:  # DEVICE_NOT_FOUND: a platform whose driver sees no hardware
                continue
            version = one_line(platform.version)
            for d in cl_devices:
                info = DeviceInfo(
                    index=len(found),
                    name=one_line(d.name),
                    kind=_kind(cl, d),
                    memory=int(d.global_mem_size),
                    # PoCL appends build flags after a comma; the first part names the API and driver.
                    api=f"{one_line(platform.name)}, {version.split(',')[0]}",
                    details={
                        "platform": one_line(platform.name),
                        "platform_version": version,
                        "vendor": one_line(d.vendor),
                        "device_version": one_line(d.version),
                        "driver_version": one_line(d.driver_version),
                        "compute_units": str(d.max_compute_units),
                        "max_alloc": str(d.max_mem_alloc_size),
                        "fp16": str("cl_khr_fp16" in d.extensions),
                        "fp64": str("cl_khr_fp64" in d.extensions),
                    },
                )
                found.append(OpenCLDevice(info, cl, d))
        if not found:
            names = ", ".join(one_line(p.name) for p in platforms)
            raise Unavailable(f"no OpenCL device found on platform(s) {names}")
        return found


# One per process: discovery is cached on it, and a reloaded registry reuses it.
BACKEND = OpenCLBackend()

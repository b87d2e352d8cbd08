"""kaffa's opencl backend: OpenCL devices through pyopencl (PoCL gives a CPU platform anywhere).

Parts, the same in every device plugin: ``device`` (discovery, one context and queue per device),
``allocator`` (pooled pyopencl arrays, host copies) and ``kernels`` (one module per op family, its
OpenCL C in ``kernels/cl/<family>.cl``). Ops without an opencl kernel run on cpu, with copies, and
the placement report says so (or, with policy="strict", the net is refused).
"""

from __future__ import annotations

from kaffa.backend import Backend
from kaffa.kernels import KernelRegistry
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_opencl.device import BACKEND


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [BACKEND]


@hookimpl
def kaffa_kernels(registry: KernelRegistry) -> None:
    # Registering needs no OpenCL: pyopencl is imported when a kernel is first built on a device.
    from kaffa_opencl.kernels import TABLES

    for table in TABLES:
        table.install(registry)

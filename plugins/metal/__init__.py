"""kaffa's metal backend: WGSL compute through wgpu. On macOS wgpu runs on Metal; elsewhere on
Vulkan (Mesa lavapipe on a machine without a GPU), D3D12 or OpenGL, and every device says which.

Parts, the same in every device plugin: ``device`` (discovery, one wgpu device and queue per
adapter), ``allocator`` (pooled wgpu storage buffers wrapped in ``MetalArray``, host copies) and
``kernels`` (one module per op family, its WGSL in ``kernels/wgsl/<family>.wgsl``). Ops without a
metal kernel run on cpu, with copies, and the placement report says so (or, with
policy="strict", the net is refused).
"""

from __future__ import annotations

from kaffa.backend import Backend
from kaffa.kernels import KernelRegistry
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_metal.device import BACKEND


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [BACKEND]


@hookimpl
def kaffa_kernels(registry: KernelRegistry) -> None:
    # Registering needs no GPU: wgpu is imported when a kernel is first built on a device.
    from kaffa_metal.kernels import TABLES

    for table in TABLES:
        table.install(registry)

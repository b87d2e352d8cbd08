"""kaffa's metal backend: WGSL compute through wgpu. On macOS wgpu runs on Metal; elsewhere on
Vulkan (Mesa lavapipe on a machine without a GPU), D3D12 or OpenGL, and every device says which.

Parts, the same in every device plugin: ``device`` (discovery, one wgpu device and queue per
adapter) and ``allocator`` (pooled wgpu storage buffers wrapped in ``MetalArray``, host copies).
No op kernels yet: every op placed on metal runs on cpu, with copies, and the placement report
says so.
"""

from __future__ import annotations

from kaffa.backend import Backend
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_metal.device import BACKEND


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [BACKEND]

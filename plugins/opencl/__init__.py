"""kaffa's opencl backend: OpenCL devices through pyopencl (PoCL gives a CPU platform anywhere).

Parts, the same in every device plugin: ``device`` (discovery, one context and queue per device)
and ``allocator`` (pooled pyopencl arrays, host copies). No op kernels yet: every op placed on
opencl runs on cpu, with copies, and the placement report says so.
"""

from __future__ import annotations

from kaffa.backend import Backend
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_opencl.device import BACKEND


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [BACKEND]

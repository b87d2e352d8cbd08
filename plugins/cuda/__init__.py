"""kaffa's cuda backend: NVIDIA GPUs through CuPy.

Parts, the same in every device plugin: ``device`` (discovery, one CuPy device and stream per
GPU) and ``allocator`` (CuPy arrays from CuPy's memory pool, host copies). No op kernels yet:
every op placed on cuda runs on cpu, with copies, and the placement report says so.
"""

from __future__ import annotations

from kaffa.backend import Backend
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_cuda.device import BACKEND


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [BACKEND]

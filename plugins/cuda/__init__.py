"""kaffa's cuda backend: NVIDIA GPUs through CuPy.

Parts, the same in every device plugin: ``device`` (discovery, one CuPy device per GPU; work goes
to that device's current CuPy stream, one per device), ``allocator`` (CuPy arrays from CuPy's
memory pool, host copies, out of memory as DeviceMemoryError) and ``kernels`` (one module per op
family: CuPy array code with cuBLAS GEMMs, and raw CUDA C in ``kernels/cu/<family>.cu``). Engines:
``CUDNN`` (``cudnn``, Conv through the cuDNN frontend; preferred by default) and ``NCCL`` (``nccl``,
the collectives). Ops without a cuda kernel run on cpu, with copies, and the placement report says so.
"""

from __future__ import annotations

from kaffa.backend import Backend
from kaffa.kernels import KernelRegistry
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_cuda.device import BACKEND


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [BACKEND]


@hookimpl
def kaffa_kernels(registry: KernelRegistry) -> None:
    # Registering needs no GPU: CuPy and the cuDNN frontend are imported when a kernel is built.
    from kaffa_cuda import cudnn, nccl  # nccl: the collectives' NCCL engine
    from kaffa_cuda.kernels import TABLES

    for table in TABLES:
        table.install(registry)
    cudnn.table.install(registry)
    nccl.table.install(registry)

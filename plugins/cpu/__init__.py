"""kaffa's cpu backend: numpy kernels on host memory. Always available; the fallback for ops
other backends lack."""

from __future__ import annotations

from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_cpu import onednn
from kaffa_cpu.backend import CPUBackend
from kaffa_cpu.kernels import TABLES


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list:
    return [CPUBackend()]


@hookimpl
def kaffa_kernels(registry) -> None:
    for table in TABLES:
        table.install(registry)
    onednn.table.install(registry)  # the ONEDNN engine; it declines when oneDNN is not installed

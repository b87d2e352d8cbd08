"""The cpu backend object: one device, the host, with numpy arrays."""

from __future__ import annotations

import os
import platform
from functools import cache

import numpy as np

from kaffa.backend import DeviceInfo, HostBackend
from kaffa.device import CPU


@cache
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


@cache
def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


class CPUBackend(HostBackend):
    name = "cpu"
    device_type = CPU

    @property
    def version(self) -> str:  # type: ignore[override]
        """numpy's version, and oneDNN's when the ONEDNN engine can run."""
        from kaffa_cpu import onednn

        info = onednn.describe()
        extra = f", oneDNN {info['version']} (engine ONEDNN)" if info["available"] else ""
        return f"numpy {np.__version__}{extra}"

    def devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(0, _cpu_name(), "cpu", _memory(), f"numpy {np.__version__}, {os.cpu_count()} threads")
        ]

    def unavailable_reason(self) -> str | None:
        return None

    @property
    def conv_order(self) -> str:  # type: ignore[override]
        """NHWC when the ONEDNN engine runs this process's Conv ops (oneDNN keeps activations
        channels-last); NCHW, the numpy kernels' own layout, otherwise."""
        from kaffa import engines
        from kaffa_cpu import onednn

        if onednn.unavailable() is None and engines.engine_order("cpu", "Conv", "")[0] == "ONEDNN":
            return "NHWC"
        return "NCHW"

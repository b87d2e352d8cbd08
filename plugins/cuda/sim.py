"""``cudasim``: a test-only backend that runs the cuda kernels' host logic and CuPy array code
on numpy, so they are checked on machines without a GPU (tests/test_cuda.py runs the
conformance suite on it).

Its blobs are numpy arrays on the host; ``kaffa_cuda.kernels.common.xp`` hands its kernels numpy
instead of CuPy. Kernels that launch raw CUDA C cannot run here and are not registered (their
ops show as unsupported); those are compiled with ``nvcc -ptx`` instead. Load it with
``KAFFA_PLUGINS=kaffa_cuda.sim`` or ``registry().register(kaffa_cuda.sim, name="cudasim")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from kaffa.backend import Backend, DeviceInfo, HostBackend
from kaffa.kernels import KernelContext, KernelRegistry, RunFn
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_cuda.kernels.common import RAW, SIM

# Ops whose kernels ran on cudasim in this process: tests/test_cuda.py checks that the conformance
# run exercised every simulated kernel, gradient ops included.
RAN: set[str] = set()

DEVICE_TYPE = 20902  # next to kaffa.device.ONLY_FOR_TEST (the mock backend); no real backend uses it


class SimBackend(HostBackend):
    name = SIM
    device_type = DEVICE_TYPE
    version = "numpy stand-in for CuPy (test only)"

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(0, "cuda kernels on numpy", "other", None, "host memory")]

    def unavailable_reason(self) -> str | None:
        return None


def simulated_ops() -> set[str]:
    from kaffa_cuda.kernels import TABLES

    return {op for t in TABLES for op, _, _ in t.entries if (t.engine, op) not in RAW}


def _recorded(op: str, build: Callable[[KernelContext], RunFn]) -> Callable[[KernelContext], RunFn]:
    @functools.wraps(build)
    def wrapped(ctx: KernelContext) -> RunFn:
        run = build(ctx)

        def counted(*xs):
            RAN.add(op)
            return run(*xs)

        return counted

    return wrapped


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return [SimBackend()]


@hookimpl
def kaffa_kernels(registry: KernelRegistry) -> None:
    from kaffa_cuda.kernels import TABLES

    for table in TABLES:
        for op, build, opts in table.entries:
            if (table.engine, op) not in RAW:
                registry.add(SIM, op, _recorded(op, build), **opts)

"""A mock backend that claims a configurable subset of ops, for testing dispatch, fallback,
strict mode and reporting without hardware (like ORT's InternalTesting EP).

Its blobs are ``MockArray`` objects, not numpy arrays, so a cpu kernel handed a mock blob by
mistake fails loudly: copies between mock and cpu must come from the planner. Its kernels are
the conformance references evaluated in float64 and cast back; an op listed as *broken* returns
deliberately wrong numbers (the suite must catch it).

Use it programmatically::

    from kaffa_conformance.mock import MockPlugin
    kaffa.plugins.registry().register(MockPlugin(ops={"Relu", "Add"}, broken={"Add"}), name="mock")

or from the command line, configured by environment variables::

    KAFFA_PLUGINS=kaffa_conformance.mock KAFFA_MOCK_OPS=Relu,Add KAFFA_MOCK_BROKEN=Add \
        kaffa conformance --backend mock
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from kaffa.backend import Backend, DeviceInfo
from kaffa.device import ONLY_FOR_TEST
from kaffa.kernels import KernelContext, KernelRegistry
from kaffa.plugins import PLUGIN_API, hookimpl
from kaffa_conformance import reference


class MockArray:
    """A host array in disguise."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray):
        self.data = data

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __repr__(self) -> str:
        return f"MockArray({self.data.dtype}{list(self.data.shape)})"


class MockBackend(Backend):
    name = "mock"
    device_type = ONLY_FOR_TEST
    version = "test"
    array_types = (MockArray,)

    def __init__(self, num_devices: int = 1):
        self.num_devices = num_devices

    def devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(i, f"mock device {i}", "other", None, "host memory in disguise")
            for i in range(self.num_devices)
        ]

    def unavailable_reason(self) -> str | None:
        return None

    def to_host(self, array: Any, device_index: int = 0) -> np.ndarray:
        if not isinstance(array, MockArray):
            raise TypeError(f"mock backend was handed {type(array).__name__}, not a MockArray")
        return array.data.copy()

    def from_host(self, array: np.ndarray, device_index: int = 0) -> MockArray:
        return MockArray(np.array(array, copy=True))


def _kernel(broken: bool):
    def build(ctx: KernelContext):
        args = dict(ctx.args)
        op = ctx.op_type
        out_dtypes = [o.dtype for o in ctx.outputs]

        def run(*inputs: MockArray):
            views = []
            for x in inputs:
                d = x.data
                views.append(
                    d.astype(np.float64)
                    if d.dtype.kind == "f"
                    else d.astype(np.int64)
                    if d.dtype.kind in "iu"
                    else d
                )
            outs = reference.run(op, args, views, len(out_dtypes))[: len(out_dtypes)]
            result = []
            for y, dt in zip(outs, out_dtypes):
                y = np.asarray(y)
                if broken and y.dtype.kind == "f":
                    y = y + 0.5
                result.append(MockArray(y.astype(dt if dt is not None else y.dtype)))
            return result

        return run

    return build


class MockPlugin:
    """A plugin object: ``ops`` it claims (for ``dtypes``), and ``broken`` ops that compute wrong results."""

    def __init__(
        self,
        ops: Iterable[str] = ("Relu", "Add", "FC"),
        broken: Iterable[str] = (),
        dtypes: Iterable[Any] = ("float32",),
        num_devices: int = 1,
    ):
        self.ops = set(ops)
        self.broken = set(broken)
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.num_devices = num_devices

    @hookimpl
    def kaffa_plugin_api(self) -> str:
        return PLUGIN_API

    @hookimpl
    def kaffa_backends(self) -> list[Backend]:
        return [MockBackend(self.num_devices)]

    @hookimpl
    def kaffa_kernels(self, registry: KernelRegistry) -> None:
        for op in sorted(self.ops | self.broken):
            if reference.get(op) is None:
                raise ValueError(f"mock backend: no reference to build a kernel for {op}")
            registry.add("mock", op, _kernel(op in self.broken), dtypes=self.dtypes)


def _from_env() -> MockPlugin:
    def names(var: str, default: str) -> list[str]:
        return [s.strip() for s in os.environ.get(var, default).split(",") if s.strip()]

    return MockPlugin(
        names("KAFFA_MOCK_OPS", "Relu,Add,FC"),
        names("KAFFA_MOCK_BROKEN", ""),
        names("KAFFA_MOCK_DTYPES", "float32"),
        int(os.environ.get("KAFFA_MOCK_DEVICES", "1")),
    )


# Loaded as a module through KAFFA_PLUGINS: the module itself is the plugin, configured from the env.
_env_plugin = _from_env()


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list[Backend]:
    return _env_plugin.kaffa_backends()


@hookimpl
def kaffa_kernels(registry: KernelRegistry) -> None:
    _env_plugin.kaffa_kernels(registry)

"""Kernels: how a backend runs an operator.

A kernel is registered under (backend, op type, engine) with the dtypes it claims and an
optional predicate that rejects argument combinations it cannot run. At net creation kaffa
calls the kernel's ``build(ctx)`` once; ``build`` parses what it needs from ``ctx`` and returns
the *run function*. Running a net is then a loop of direct calls ``run(*inputs) -> outputs``:

    table = KernelTable("cpu")

    @table.kernel("Relu", dtypes=FLOAT_TYPES)
    def relu(ctx):
        def run(x):
            return (np.maximum(x, 0),)
        return run

Rules for run functions: return a tuple (or list) with one array per op output; never write into
an input array (blobs are shared, and a failed run must leave the workspace unchanged); inputs
are arrays of this backend on ``ctx.device``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kaffa.backend import Backend
from kaffa.device import Device
from kaffa.errors import PluginError
from kaffa.proto import OperatorDef
from kaffa.schema import SCHEMAS, TensorInfo

RunFn = Callable[..., Sequence[Any]]


@dataclass
class KernelContext:
    """What a kernel's ``build`` (and ``supports``) sees of the op it is bound to."""

    op: OperatorDef
    op_type: str
    args: Mapping[str, Any]
    inputs: list[TensorInfo]  # inferred at net creation; shapes may change between runs
    outputs: list[TensorInfo]
    device: Device
    backend: Backend
    engine: str = ""
    seed: int = 0  # for random ops: from DeviceOption.random_seed or kaffa.set_random_seed
    dtype: np.dtype | None = None  # the op's type T (see OpSchema.type_input)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)


@dataclass(frozen=True)
class KernelDef:
    op: str
    backend: str
    build: Callable[[KernelContext], RunFn]
    engine: str = ""
    dtypes: frozenset[np.dtype] | None = None  # None: any dtype the op is defined for
    supports: Callable[[KernelContext], str | None] | None = None  # a reason to reject, or None
    plugin: str = ""

    def claims(self, dtype: np.dtype | None) -> bool:
        return self.dtypes is None or dtype is None or np.dtype(dtype) in self.dtypes

    def rejection(self, ctx: KernelContext) -> str | None:
        """Why this kernel cannot run ``ctx`` (dtype not claimed, arguments rejected), or None."""
        if not self.claims(ctx.dtype):
            claimed = ", ".join(sorted(d.name for d in self.dtypes or ()))
            return f"dtype {np.dtype(ctx.dtype).name} is not claimed (claims: {claimed})"
        if self.supports is not None:
            return self.supports(ctx)
        return None


class KernelRegistry:
    """(backend, op, engine) -> KernelDef for every loaded plugin."""

    def __init__(self) -> None:
        self._kernels: dict[tuple[str, str], dict[str, KernelDef]] = {}
        self._plugin = ""  # the plugin currently registering (set by the plugin loader)

    def add(
        self,
        backend: str,
        op: str,
        build: Callable[[KernelContext], RunFn],
        *,
        engine: str = "",
        dtypes: Iterable[Any] | None = None,
        supports: Callable[[KernelContext], str | None] | None = None,
    ) -> KernelDef:
        if op not in SCHEMAS:
            raise PluginError(
                f"kernel for unknown operator '{op}' on backend '{backend}' (register its schema first)"
            )
        claimed = None if dtypes is None else frozenset(np.dtype(d) for d in dtypes)
        kdef = KernelDef(op, backend, build, engine.upper(), claimed, supports, self._plugin)
        self._kernels.setdefault((backend, op), {})[kdef.engine] = kdef
        return kdef

    def get(self, backend: str, op: str, engine: str = "") -> KernelDef | None:
        return self._kernels.get((backend, op), {}).get(engine.upper())

    def engines(self, backend: str, op: str) -> dict[str, KernelDef]:
        return dict(self._kernels.get((backend, op), {}))

    def ops(self, backend: str) -> set[str]:
        return {op for (b, op), engines in self._kernels.items() if b == backend and engines}

    def backends_for(self, op: str) -> list[str]:
        return sorted(b for (b, o), engines in self._kernels.items() if o == op and engines)

    def remove_plugin(self, plugin: str) -> None:
        for key, engines in list(self._kernels.items()):
            for eng, kdef in list(engines.items()):
                if kdef.plugin == plugin:
                    del engines[eng]
            if not engines:
                del self._kernels[key]

    def remove_backend(self, backend: str) -> None:
        for key in [k for k in self._kernels if k[0] == backend]:
            del self._kernels[key]


@dataclass
class KernelTable:
    """Collects a plugin module's kernels with a decorator; ``install`` adds them to the registry
    (call it from the plugin's ``kaffa_kernels`` hook)."""

    backend: str
    engine: str = ""
    entries: list[tuple[str, Callable[[KernelContext], RunFn], dict[str, Any]]] = field(default_factory=list)

    def kernel(
        self,
        *ops: str,
        dtypes: Iterable[Any] | None = None,
        engine: str | None = None,
        supports: Callable[[KernelContext], str | None] | None = None,
    ) -> Callable[[Callable[[KernelContext], RunFn]], Callable[[KernelContext], RunFn]]:
        """Register ``build`` for one or more op types (a family can share one build function, which
        reads ``ctx.op_type``)."""

        def deco(build: Callable[[KernelContext], RunFn]) -> Callable[[KernelContext], RunFn]:
            opts = {
                "dtypes": dtypes,
                "engine": self.engine if engine is None else engine,
                "supports": supports,
            }
            for op in ops:
                self.entries.append((op, build, opts))
            return build

        return deco

    def extend(self, other: KernelTable) -> None:
        self.entries.extend(other.entries)

    def install(self, registry: KernelRegistry) -> None:
        for op, build, opts in self.entries:
            registry.add(self.backend, op, build, **opts)

    def ops(self) -> set[str]:
        return {op for op, _, _ in self.entries}


def all_ops(tables: Sequence[KernelTable]) -> set[str]:
    return set().union(*(t.ops() for t in tables)) if tables else set()

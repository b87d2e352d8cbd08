"""What every metal kernel module shares: compute pipelines built from ``wgsl/<file>.wgsl`` once
per (device, file, entry point, types) and cached, launches that respect the adapter's dispatch
limits, output allocation and parameter tables.

WGSL has no preprocessor, so types are specialised by a generated prelude: ``alias T = f32;``
(the op's type), ``alias A = f32;`` (its arithmetic type: f16 is computed in f32), an ``enable
f16;`` when needed, plus the kernel's extra aliases and constants. Every kernel has workgroup
size ``WG`` (256) and takes its flat index from ``flat_index(gid, nwg)``: work beyond 65,535
workgroups is spread over the dispatch's y dimension.

Binding convention: a launch binds its arrays in order to @binding(0), (1), ... and, when given,
the parameter table (u32 words; floats as their bit patterns, read back with ``bitcast<f32>``)
to the next binding.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaffa.errors import DeviceError, DeviceMemoryError, KernelBuildError
from kaffa.kernels import KernelContext
from kaffa.launch import TableCache
from kaffa.runtime import one_line
from kaffa_metal.allocator import MetalArray
from kaffa_metal.device import BACKEND, MetalDevice

WGSL_DIR = Path(__file__).parent / "wgsl"
WG = 256  # workgroup size of every 1-d kernel

FLOATS = (np.float16, np.float32)
INTS = (np.int32,)
NUMERIC = (*FLOATS, *INTS)

_WGSL_TYPES = {
    np.dtype(np.float16): "f16",
    np.dtype(np.float32): "f32",
    np.dtype(np.int32): "i32",
    np.dtype(np.uint32): "u32",
}

_COMMON = f"""
const WG: u32 = {WG}u;
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {{ return gid.x + gid.y * nwg.x * WG; }}
"""


def wgsl_type(dtype: Any) -> str:
    try:
        return _WGSL_TYPES[np.dtype(dtype)]
    except KeyError:
        raise DeviceError(f"WGSL has no type for {np.dtype(dtype).name}") from None


def prelude(dtype: Any, **extra: Any) -> str:
    """The WGSL lines that specialise a shader file: T/A for ``dtype``, then each extra name as an
    alias (a dtype) or a constant (an int, float or bool)."""
    dt = np.dtype(dtype)
    types = [dt]
    lines = [f"alias T = {wgsl_type(dt)};", f"alias A = {'f32' if dt == np.float16 else wgsl_type(dt)};"]
    for name, v in sorted(extra.items()):
        if isinstance(v, bool):
            lines.append(f"const {name}: bool = {'true' if v else 'false'};")
        elif isinstance(v, int):
            lines.append(f"const {name}: i32 = {v};")
        elif isinstance(v, float):
            lines.append(f"const {name}: f32 = {v!r};")
        else:
            types.append(np.dtype(v))
            lines.append(f"alias {name} = {wgsl_type(v)};")
    if any(t == np.float16 for t in types):
        lines.insert(0, "enable f16;")
    return "\n".join(lines) + _COMMON


class _Pipelines:
    def __init__(self) -> None:
        self._built: dict[tuple[int, str, str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, dev: MetalDevice, file: str, entry: str, head: str) -> Any:
        key = (dev.info.index, file, entry, head)
        pipe = self._built.get(key)
        if pipe is None:
            with self._lock:
                pipe = self._built.get(key)
                if pipe is None:
                    pipe = self._built[key] = _build(dev, file, entry, head)
        return pipe


def _build(dev: MetalDevice, file: str, entry: str, head: str) -> Any:
    source = head + "\n" + (WGSL_DIR / f"{file}.wgsl").read_text()
    try:
        module = dev.device.create_shader_module(label=f"kaffa {file}.wgsl", code=source)
        return dev.device.create_compute_pipeline(
            label=f"kaffa {file}.{entry}", layout="auto", compute={"module": module, "entry_point": entry}
        )
    except Exception as e:  # wgpu raises GPUValidationError with naga's diagnostic
        types = " ".join(line for line in head.splitlines() if line.startswith(("alias", "const", "enable")))
        raise KernelBuildError(
            f"metal shader wgsl/{file}.wgsl entry '{entry}' failed to build for {dev.info.name} "
            f"with {types}:\n{e}"
        ) from None


PIPELINES = _Pipelines()


def device(ctx: KernelContext) -> MetalDevice:
    """The metal device the op is placed on, opened (wgpu device, queue, pool)."""
    dev = BACKEND.device(ctx.device.index)
    dev.allocator  # noqa: B018  (requests the wgpu device on first use)
    return dev


class Launcher:
    """One entry point of a built shader, bound to its device."""

    def __init__(self, dev: MetalDevice, pipeline: Any, name: str):
        self.dev = dev
        self.wgpu_device = dev.device
        self.queue = dev.device.queue
        self.pipeline = pipeline
        self.layout = pipeline.get_bind_group_layout(0)
        self.name = name
        self.max_groups = int(dev.device.limits["max-compute-workgroups-per-dimension"])
        self.params = Params(dev)

    def __call__(self, n: int, *arrays: MetalArray, params: Sequence[Any] | None = None) -> None:
        """Run ``n`` invocations (rounded up to whole workgroups) over ``arrays`` (+ ``params``)."""
        if n <= 0:
            return
        buffers = [a.buffer for a in arrays]
        if params is not None:
            buffers.append(self.params(params))
        entries = [
            {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}}
            for i, b in enumerate(buffers)
        ]
        group = self.wgpu_device.create_bind_group(layout=self.layout, entries=entries)
        groups = -(-n // WG)
        x, y = groups, 1
        if groups > self.max_groups:
            y = -(-groups // self.max_groups)
            x = -(-groups // y)
            if y > self.max_groups:
                raise DeviceError(f"{self.name}: {n:,} invocations exceed the adapter's dispatch limits")
        encoder = self.wgpu_device.create_command_encoder()
        cpass = encoder.begin_compute_pass()
        cpass.set_pipeline(self.pipeline)
        cpass.set_bind_group(0, group)
        cpass.dispatch_workgroups(x, y, 1)
        cpass.end()
        self.queue.submit([encoder.finish()])


def kernel(ctx: KernelContext, file: str, entry: str, dtype: Any = None, **extra: Any) -> Launcher:
    """Entry point ``entry`` of wgsl/``file``.wgsl, specialised for ``dtype`` (default: the op's
    type T) and the ``extra`` aliases or constants."""
    dev = device(ctx)
    dt = ctx.dtype if dtype is None else dtype
    pipe = PIPELINES.get(dev, file, entry, prelude(np.float32 if dt is None else dt, **extra))
    return Launcher(dev, pipe, entry)


def empty(ctx_or_dev: KernelContext | MetalDevice, shape: Sequence[int], dtype: Any) -> MetalArray:
    """A new device array from the pool; out of memory is a DeviceMemoryError."""
    dev = ctx_or_dev if isinstance(ctx_or_dev, MetalDevice) else device(ctx_or_dev)
    shape = tuple(int(d) for d in shape)
    allocator = dev.allocator
    allocator.check(shape, np.dtype(dtype))
    try:
        return allocator.empty(shape, np.dtype(dtype))
    except DeviceError as e:
        raise DeviceMemoryError(
            f"metal:{dev.info.index} ({dev.info.name}) is out of memory allocating "
            f"{np.dtype(dtype).name}{list(shape)}: {one_line(e)}"
        ) from None


def words(*values: Any) -> np.ndarray:
    """Pack ints (as u32, two's complement) and floats (as f32 bits) into a parameter table."""
    out = np.empty(len(values), np.uint32)
    for i, v in enumerate(values):
        if isinstance(v, (float, np.floating)):
            out[i] = np.array(v, np.float32).view(np.uint32)
        else:
            out[i] = np.array(int(v), np.int64).astype(np.uint32)
    return out


class Params:
    """Parameter tables (u32 words) on the device, one upload per distinct value
    (``kaffa.launch.TableCache``). The cache keeps the MetalArray, not just its buffer: its
    finalizer hands the buffer back to the pool, where an op could get it as an output while
    launches still read it."""

    def __init__(self, dev: MetalDevice, limit: int = 64):
        self.dev = dev
        self._tables = TableCache(dev.allocator.copyin, limit)

    def __call__(self, values: Sequence[Any] | np.ndarray) -> Any:
        arr = values if isinstance(values, np.ndarray) and values.dtype == np.uint32 else words(*values)
        if arr.size == 0:
            arr = np.zeros(1, np.uint32)
        return self._tables(arr).buffer

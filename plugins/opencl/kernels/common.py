"""What every opencl kernel module shares: programs built from the ``cl/*.cl`` files once per
(device, file, types) and cached, launches, output allocation, dtype claims and small constant
tables on the device.

A kernel's ``build(ctx)`` calls ``kernel(ctx, "activation", "relu")`` (file cl/activation.cl,
function ``relu``, compiled with T = the op's dtype) and ``out(ctx, shape)``; its ``run`` then
only allocates and launches. Shapes arrive at run time, so geometry tables (see kaffa.launch)
are uploaded through ``Consts``, which caches them by value.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaffa.errors import DeviceMemoryError, KernelBuildError
from kaffa.kernels import KernelContext
from kaffa.launch import TableCache
from kaffa.launch.math import work_dtype
from kaffa.runtime import one_line
from kaffa_opencl.device import BACKEND, OpenCLDevice

CL_DIR = Path(__file__).parent / "cl"
HEADER = (CL_DIR / "kaffa.h").read_text()

FLOATS = (np.float16, np.float32, np.float64)
INTS = (np.int32, np.int64)
NUMERIC = (*FLOATS, *INTS)

_C_TYPES = {
    np.dtype(np.float16): "half",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.int8): "char",
    np.dtype(np.uint8): "uchar",
    np.dtype(np.int16): "short",
    np.dtype(np.uint16): "ushort",
    np.dtype(np.int32): "int",
    np.dtype(np.uint32): "uint",
    np.dtype(np.int64): "long",
    np.dtype(np.uint64): "ulong",
    np.dtype(np.bool_): "uchar",
}


def c_type(dtype: Any) -> str:
    return _C_TYPES[np.dtype(dtype)]


def acc_scalar(dtype: Any, value: float) -> np.generic:
    """``value`` as a kernel argument of type A for T = ``dtype``."""
    return work_dtype(dtype).type(value)


def type_options(dtype: Any, **extra: Any) -> tuple[str, ...]:
    """Compiler options defining T/A for ``dtype`` and each ``extra`` name (I=np.int64, U=...)."""
    dt = np.dtype(dtype)
    opts = [f"-DT={c_type(dt)}", f"-DA={'float' if dt == np.float16 else c_type(dt)}"]
    if dt == np.float16:
        opts.append("-DKAFFA_HALF")
    if dt.kind in "iub":  # lets a file leave float-only kernels (exp, log, ...) out of integer builds
        opts.append("-DKAFFA_INT")
    fp64 = dt == np.float64
    for name, t in sorted(extra.items()):
        if isinstance(t, (str, int, float)) and not isinstance(t, type):
            opts.append(f"-D{name}={t}")  # a plain compile-time constant
            continue
        opts.append(f"-D{name}={c_type(t)}")
        fp64 |= np.dtype(t) == np.float64
    if fp64:
        opts.append("-DKAFFA_FP64")
    return tuple(opts)


class _Programs:
    """Built programs keyed by (device index, file, options). pyopencl also keeps compiled
    binaries in its on-disk cache, so a second process skips the compiler."""

    def __init__(self) -> None:
        self._built: dict[tuple[int, str, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()

    def get(self, dev: OpenCLDevice, file: str, options: tuple[str, ...]) -> Any:
        key = (dev.info.index, file, options)
        prg = self._built.get(key)
        if prg is None:
            with self._lock:
                prg = self._built.get(key)
                if prg is None:
                    prg = self._built[key] = _build(dev, file, options)
        return prg


def _build(dev: OpenCLDevice, file: str, options: tuple[str, ...]) -> Any:
    cl = dev.cl
    source = HEADER + "\n#line 1\n" + (CL_DIR / f"{file}.cl").read_text()
    try:
        return cl.Program(dev.context, source).build(options=list(options))
    except cl.Error as e:
        raise KernelBuildError(
            f"opencl kernel source cl/{file}.cl failed to build for {dev.info.name} with options "
            f"{' '.join(options)}:\n{e}"
        ) from None


PROGRAMS = _Programs()


def device(ctx: KernelContext) -> OpenCLDevice:
    """The opencl device the op is placed on, opened (context, queue, pool)."""
    dev = BACKEND.device(ctx.device.index)
    dev.allocator  # noqa: B018  (opens the context and queue on first use)
    return dev


class Launcher:
    """One kernel function of a built program, bound to its device's queue. Each op gets its own
    cl.Kernel: a kernel object holds its arguments, so ops on parallel branches cannot share one."""

    def __init__(self, dev: OpenCLDevice, prg: Any, name: str):
        self.dev = dev
        self.queue = dev.queue
        self.knl = dev.cl.Kernel(prg, name)
        self.name = name

    def __call__(
        self, global_size: int | Sequence[int], *args: Any, local: Sequence[int] | None = None
    ) -> None:
        gs = (global_size,) if isinstance(global_size, int) else tuple(global_size)
        if min(gs) <= 0:
            return
        self.knl(self.queue, gs, local, *(_arg(a) for a in args))


_EMPTY: dict[Any, Any] = {}  # context -> a 4-byte stand-in buffer for zero-size arrays


def _arg(a: Any) -> Any:
    if not hasattr(a, "base_data"):  # a scalar or a raw buffer
        return a
    if a.base_data is None:  # a zero-size array has no buffer; the kernel must not touch it
        import pyopencl as cl  # importable: the array came from it

        ctx = a.queue.context
        if ctx not in _EMPTY:
            _EMPTY[ctx] = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, 4)
        return _EMPTY[ctx]
    if a.offset:
        raise ValueError("opencl kernels take arrays that start at their buffer (offset 0)")
    return a.base_data


def kernel(ctx: KernelContext, file: str, name: str, dtype: Any = None, **extra: Any) -> Launcher:
    """Kernel ``name`` of cl/``file``.cl, compiled for ``dtype`` (default: the op's type T) and the
    ``extra`` types or constants."""
    dev = device(ctx)
    dt = ctx.dtype if dtype is None else dtype
    if dt is None:
        dt = np.float32
    prg = PROGRAMS.get(dev, file, type_options(dt, **extra))
    return Launcher(dev, prg, name)


def empty(ctx_or_dev: KernelContext | OpenCLDevice, shape: Sequence[int], dtype: Any) -> Any:
    """A new device array from the pool; out of memory is a DeviceMemoryError."""
    dev = ctx_or_dev if isinstance(ctx_or_dev, OpenCLDevice) else device(ctx_or_dev)
    shape = tuple(int(d) for d in shape)
    try:
        return dev.allocator.empty(shape, np.dtype(dtype))
    except dev.cl.MemoryError as e:
        raise DeviceMemoryError(
            f"opencl:{dev.info.index} ({dev.info.name}) is out of memory allocating "
            f"{np.dtype(dtype).name}{list(shape)}: {one_line(e)}"
        ) from None


def zeros(dev: OpenCLDevice, shape: Sequence[int], dtype: Any) -> Any:
    a = empty(dev, shape, dtype)
    if a.size:
        a.fill(0)
    return a


class Consts:
    """Small int32/float tables (geometry, axes) on the device, one upload per distinct value
    (``kaffa.launch.TableCache``)."""

    def __init__(self, dev: OpenCLDevice, limit: int = 64):
        self.dev = dev
        self._tables = TableCache(dev.allocator.copyin, limit)

    def __call__(self, values: np.ndarray | Sequence[int]) -> Any:
        arr = np.ascontiguousarray(values if isinstance(values, np.ndarray) else np.asarray(values, np.int32))
        if arr.size == 0:
            arr = np.zeros(1, arr.dtype)  # a zero-size buffer is invalid in OpenCL
        return self._tables(arr)


def args_get(args: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = args.get(name, default)
    return default if value is None else value


i32, i64, f32 = np.int32, np.int64, np.float32

"""What every cuda kernel module shares: the array module, raw CUDA C modules built from the
``cu/*.cu`` files once per (device, file, dtype) through CuPy's RawModule (NVRTC) and cached,
launches with a grid-stride geometry, output allocation with out of memory as a typed error, and
the dtype claims.

Most kernels are written against the numpy-compatible CuPy array API (cuBLAS for matmul, CuPy's
elementwise and reduction kernels) through ``xp(ctx)``. ``xp`` is CuPy on the cuda backend and
numpy on the test-only ``cudasim`` backend (``kaffa_cuda.sim``), so their host logic and array
code run on any machine. Kernels that launch raw CUDA C (``raw=True`` in ``RAW``) cannot run
there and are compiled with ``nvcc -ptx`` by tests/test_cuda.py instead.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kaffa.errors import DeviceMemoryError, KernelBuildError
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.math import work_dtype
from kaffa.runtime import one_line

CU_DIR = Path(__file__).parent / "cu"
HEADER_FILE = CU_DIR / "kaffa.cuh"

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# Honest claims: raw .cu kernels are built for float16 and float32 (and float64, which every GPU
# runs, slowly); CuPy array-API kernels take what CuPy computes. No bfloat16: CuPy has no such
# dtype, so bfloat16 ops run on cpu.
FLOATS = (F16, F32, F64)
INTS = (np.dtype(np.int32), np.dtype(np.int64))
NUMERIC = (*FLOATS, *INTS)

SIM = "cudasim"  # the test backend whose arrays are numpy arrays (kaffa_cuda.sim)

# (engine, op) of kernels that launch raw CUDA C: the simulator cannot run them.
RAW: set[tuple[str, str]] = set()

_C_TYPES = {F16: "__half", F32: "float", F64: "double"}


def is_sim(ctx: KernelContext) -> bool:
    return ctx.backend.name == SIM


def xp(ctx: KernelContext) -> Any:
    """The array module of the op's backend: CuPy (imported here, lazily), or numpy on cudasim."""
    if is_sim(ctx):
        return np
    import cupy

    return cupy


def defines(dtype: Any) -> tuple[str, ...]:
    """Compiler options that set T and A (kaffa.cuh) for ``dtype``."""
    dt = np.dtype(dtype)
    if dt not in _C_TYPES:
        raise KernelBuildError(f"cuda raw kernels are built for {sorted(_C_TYPES)}, not {dt.name}")
    opts = [f"-DKAFFA_T={_C_TYPES[dt]}", f"-DKAFFA_A={_C_TYPES[work_dtype(dt)]}"]
    if dt == F16:
        opts.append("-DKAFFA_HALF")
    return tuple(opts)


def source(file: str) -> str:
    """The full source of cu/``file``.cu: the header, then the file (line numbers kept)."""
    return HEADER_FILE.read_text() + f'\n#line 1 "{file}.cu"\n' + (CU_DIR / f"{file}.cu").read_text()


class _Modules:
    """Built RawModules keyed by (device, file, options). CuPy also caches the compiled binaries on
    disk (~/.cupy/kernel_cache), so a second process skips NVRTC."""

    def __init__(self) -> None:
        self._built: dict[tuple[int, str, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()

    def get(self, index: int, file: str, options: tuple[str, ...]) -> Any:
        key = (index, file, options)
        mod = self._built.get(key)
        if mod is None:
            with self._lock:
                mod = self._built.get(key)
                if mod is None:
                    mod = self._built[key] = _build(index, file, options)
        return mod


def _build(index: int, file: str, options: tuple[str, ...]) -> Any:
    import cupy

    with cupy.cuda.Device(index):
        try:
            mod = cupy.RawModule(code=source(file), options=("--std=c++14", *options))
            mod.compile()
        except Exception as e:  # cupy.cuda.compiler.CompileException carries NVRTC's log
            raise KernelBuildError(
                f"cuda kernel source cu/{file}.cu failed to build with {' '.join(options)}:\n{e}"
            ) from None
    return mod


MODULES = _Modules()
THREADS = 256
MAX_BLOCKS = 65535 * 8  # grid-stride loops cover the rest


def grid(n: int, threads: int = THREADS) -> int:
    """Blocks for ``n`` items of one thread each, capped (the kernels loop over the rest)."""
    return max(1, min(MAX_BLOCKS, (int(n) + threads - 1) // threads))


class Launcher:
    """One function of a built module on the op's device."""

    def __init__(self, ctx: KernelContext, file: str, name: str, dtype: Any = None):
        dt = np.dtype(ctx.dtype if dtype is None else dtype)
        self.index = ctx.device.index
        self.fn = MODULES.get(self.index, file, defines(dt)).get_function(name)
        self.name = name

    def __call__(
        self, n: int, *args: Any, threads: int = THREADS, blocks: int | None = None, shared: int = 0
    ):
        if n <= 0:
            return
        b = grid(n, threads) if blocks is None else blocks
        with guard(f"launching {self.name}", self.index):
            self.fn((b,), (threads,), args, shared_mem=shared)


def scalar(dtype: Any, value: float) -> np.generic:
    """``value`` as a kernel argument of type A for T = ``dtype``."""
    return work_dtype(dtype).type(value)


@contextlib.contextmanager
def guard(what: str, index: int) -> Iterator[None]:
    """CuPy's OutOfMemoryError as kaffa's DeviceMemoryError. Kernels never write into their
    inputs and the executor writes results back only after the whole net ran, so the workspace
    stays as it was."""
    try:
        yield
    except Exception as e:
        if type(e).__name__ == "OutOfMemoryError":  # cupy.cuda.memory.OutOfMemoryError
            raise DeviceMemoryError(f"cuda:{index} is out of memory {what}: {one_line(e)}") from None
        raise


def on_device(ctx: KernelContext) -> contextlib.AbstractContextManager:
    """The op's device as CuPy's current device (for work done outside a run, at build time)."""
    if is_sim(ctx):
        return contextlib.nullcontext()
    import cupy

    return cupy.cuda.Device(ctx.device.index)


def oom_safe(ctx: KernelContext, run: RunFn) -> RunFn:
    """``run`` on the op's device and stream, with out of memory as DeviceMemoryError."""
    if is_sim(ctx):
        return run
    import cupy

    index, op = ctx.device.index, ctx.op_type
    device = cupy.cuda.Device(index)

    @functools.wraps(run)
    def wrapped(*xs):
        with device, guard(f"running {op}", index):
            return run(*xs)

    return wrapped


def kernel_table_entry(build: Callable[[KernelContext], RunFn]) -> Callable[[KernelContext], RunFn]:
    """Wraps a build function so its run function is ``oom_safe``."""

    @functools.wraps(build)
    def wrapped(ctx: KernelContext) -> RunFn:
        return oom_safe(ctx, build(ctx))

    return wrapped


class Table(KernelTable):
    """A cuda KernelTable whose run functions are ``oom_safe``; ``raw=True`` marks kernels that
    launch raw CUDA C (listed in RAW, left out of the simulator)."""

    def __init__(self, engine: str = ""):
        super().__init__("cuda", engine=engine)

    def kernel(self, *ops: str, raw: bool = False, **kw: Any):  # type: ignore[override]
        deco = super().kernel(*ops, **kw)

        def register(build: Callable[[KernelContext], RunFn]) -> Callable[[KernelContext], RunFn]:
            deco(kernel_table_entry(build))
            if raw:
                RAW.update((self.engine, op) for op in ops)
            return build

        return register


def wide(xp_: Any, x: Any) -> Any:
    """``x`` in its work type (float32 for float16)."""
    return x.astype(work_dtype(x.dtype), copy=False)


def contiguous(xp_: Any, x: Any) -> Any:
    return xp_.ascontiguousarray(x)


def to_host(x: Any) -> np.ndarray:
    """A device array's values on the host (a blocking copy; numpy arrays on cudasim as they are):
    for metadata the output shape depends on (shapes, split sizes, index ranges)."""
    return x.get() if hasattr(x, "get") else np.asarray(x)


def index_range(cp: Any, idx: Any) -> tuple[int, int]:
    """(min, max) of an index array, reduced on the device and read back in one copy."""
    if idx.size == 0:
        return 0, 0
    lo, hi = (int(v) for v in to_host(cp.stack([idx.min(), idx.max()]).astype(np.int64)))
    return lo, hi


def scatter_add(cp: Any, out: Any, idx: Any, values: Any) -> None:
    """``out[idx] += values`` with repeated indices summed (numpy's ``add.at``). CuPy's ``add.at``
    (atomicAdd) takes int32, uint32, uint64 and floats: int64 adds as uint64, which wraps alike."""
    if out.dtype == np.int64:
        cp.add.at(out.view(np.uint64), idx, values.astype(np.int64, copy=False).view(np.uint64))
    else:
        cp.add.at(out, idx, values.astype(out.dtype, copy=False))


class Rng:
    """One op's random stream, made on first use from the op's seed (as on cpu): every run draws
    new values, and a seeded net recreated draws the same sequence. On cuda it is CuPy's cuRAND
    host-API generator (``RandomState``: cheap to hold, one per op; CuPy's ``default_rng`` would
    keep 256k device states per op); on cudasim numpy's Generator."""

    def __init__(self, ctx: KernelContext):
        self.cp, self.sim, self.seed = xp(ctx), is_sim(ctx), int(ctx.seed) % 2**63
        self._gen: Any = None

    def _get(self) -> Any:
        if self._gen is None:
            self._gen = (
                np.random.default_rng(self.seed) if self.sim else self.cp.random.RandomState(self.seed)
            )
        return self._gen

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """U[0, 1) samples of float32 or float64 ``dtype``."""
        g = self._get()
        return g.random(shape, dtype=dtype) if self.sim else g.random_sample(shape, dtype=dtype)

    def normal(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """N(0, 1) samples of float32 or float64 ``dtype``."""
        return self._get().standard_normal(shape, dtype=dtype)

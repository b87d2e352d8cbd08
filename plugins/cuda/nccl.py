"""The NCCL engine of the collective ops on cuda: Allreduce, Broadcast, Allgather, Barrier on CuPy
arrays through ``cupy.cuda.nccl``, on the device's current stream (no trip through the host).

One NCCL communicator per (host communicator, GPU), created at the first run of a collective:
rank 0 makes the NCCL unique id and the host communicator (MPI under mpiexec) broadcasts it, so
every rank must reach that first run (as it must reach every collective). One rank per GPU (local
rank -> device, see kaffa.distributed.data_parallel.local_rank). The ``timeout`` argument does not
apply: NCCL calls only enqueue work; a dead peer shows up at the next synchronization.

UNTESTED HERE: this machine has no GPU, so this engine is import-safe and registered but has never
run. The planner declines it (and falls back to the cpu kernels, through host memory) when CuPy has
no NCCL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kaffa.distributed import comm as _comm
from kaffa.distributed.errors import DistributedError
from kaffa.dtypes import ALL_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check

table = KernelTable("cuda", engine="NCCL")

_comms: dict[tuple[int, int], NCCLCommunicator] = {}
_lock = threading.Lock()


def _nccl() -> Any:
    from cupy.cuda import nccl

    return nccl


def _unavailable(ctx: KernelContext) -> str | None:
    try:
        nccl = _nccl()
    except Exception as e:  # no CuPy, or a CuPy without its NCCL module
        return f"CuPy's NCCL is not importable: {type(e).__name__}: {e}"
    if not getattr(nccl, "available", True):
        return "CuPy finds no NCCL library (pip install nvidia-nccl-cu12)"
    return None


def _nccl_dtype(nccl: Any, dtype: Any) -> int:
    table = {
        "float16": nccl.NCCL_FLOAT16,
        "float32": nccl.NCCL_FLOAT32,
        "float64": nccl.NCCL_FLOAT64,
        "int32": nccl.NCCL_INT32,
        "int64": nccl.NCCL_INT64,
    }
    return table[str(dtype)]


class NCCLCommunicator:
    """An NCCL communicator over the ranks of a host communicator, on one GPU."""

    backend = "nccl"

    def __init__(self, host: _comm.Communicator, device: int) -> None:
        import cupy

        nccl = _nccl()
        self.host, self.device, self.rank, self.size = host, device, host.rank, host.size
        self.name = f"{host.name}/nccl:{device}"
        uid = host.broadcast_object(nccl.get_unique_id() if host.rank == 0 else None, 0)
        with cupy.cuda.Device(device):
            self.nccl = nccl.NcclCommunicator(host.size, uid, host.rank)
        self._cupy, self._lib = cupy, nccl

    def _stream(self) -> int:
        return self._cupy.cuda.get_current_stream().ptr

    def allreduce(self, xs: tuple[Any, ...], reduction: str) -> list[Any]:
        _comm._check_reduction(reduction, xs)
        cp, nccl = self._cupy, self._lib
        out: list[Any] = [None] * len(xs)
        by_dtype: dict[Any, list[int]] = {}
        for i, x in enumerate(xs):
            by_dtype.setdefault(x.dtype, []).append(i)
        for dtype, idx in by_dtype.items():
            buf = cp.concatenate([xs[i].reshape(-1) for i in idx])  # a fresh buffer: inputs stay intact
            if buf.size:
                self.nccl.allReduce(
                    buf.data.ptr,
                    buf.data.ptr,
                    buf.size,
                    _nccl_dtype(nccl, dtype),
                    nccl.NCCL_SUM,
                    self._stream(),
                )
            if reduction == "mean":
                buf /= self.size
            offset = 0
            for i in idx:
                n = xs[i].size
                out[i] = buf[offset : offset + n].reshape(xs[i].shape)
                offset += n
        return out

    def broadcast(self, xs: tuple[Any, ...], root: int) -> list[Any]:
        cp, nccl = self._cupy, self._lib
        offsets, total = _comm._segments(xs)  # each array ALIGN-aligned: views must not be misaligned
        buf = cp.zeros(total, cp.uint8)
        if self.rank == root:
            for x, o in zip(xs, offsets):
                buf[o : o + x.nbytes] = cp.ascontiguousarray(x).reshape(-1).view(cp.uint8)
        if buf.size:
            self.nccl.bcast(buf.data.ptr, buf.size, nccl.NCCL_UINT8, root, self._stream())
        if self.rank == root:
            return list(xs)
        return [buf[o : o + x.nbytes].view(x.dtype).reshape(x.shape) for x, o in zip(xs, offsets)]

    def allgather(self, x: Any) -> Any:
        cp, nccl = self._cupy, self._lib
        send = cp.ascontiguousarray(x)
        out = cp.empty((self.size, *x.shape), x.dtype)
        if x.nbytes:
            self.nccl.allGather(send.data.ptr, out.data.ptr, x.nbytes, nccl.NCCL_UINT8, self._stream())
        return out.reshape((self.size * x.shape[0], *x.shape[1:]))

    def barrier(self) -> None:
        cp, nccl = self._cupy, self._lib
        token = cp.zeros(1, cp.float32)
        self.nccl.allReduce(
            token.data.ptr, token.data.ptr, 1, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, self._stream()
        )
        cp.cuda.get_current_stream().synchronize()


def communicator(host: _comm.Communicator, device: int) -> NCCLCommunicator:
    """The NCCL communicator of ``host``'s ranks on GPU ``device`` (created once, collectively)."""
    key = (id(host), device)
    with _lock:
        if key not in _comms:
            _comms[key] = NCCLCommunicator(host, device)
        return _comms[key]


def _resolver(ctx: KernelContext) -> Callable[[], NCCLCommunicator]:
    name, device = ctx.args["comm"], ctx.device.index
    found: list[NCCLCommunicator] = []

    def get() -> NCCLCommunicator:
        if not found:
            host = _comm.get(name)
            if host.backend not in ("local", "mpi"):
                raise DistributedError(f"{ctx.op_type}: communicator '{host.name}' cannot set up NCCL")
            found.append(communicator(host, device))
        return found[0]

    return get


def _on_device(ctx: KernelContext, fn: Callable[..., Any]) -> RunFn:
    import cupy

    device = cupy.cuda.Device(ctx.device.index)

    def run(*xs):
        with device:
            return fn(*xs)

    return run


@table.kernel("Allreduce", dtypes=NUMERIC_TYPES, supports=_unavailable)
def allreduce(ctx: KernelContext) -> RunFn:
    get, reduction = _resolver(ctx), ctx.args["reduction"]
    return _on_device(ctx, lambda *xs: get().allreduce(xs, reduction))


@table.kernel("Broadcast", dtypes=ALL_TYPES, supports=_unavailable)
def broadcast(ctx: KernelContext) -> RunFn:
    get, root = _resolver(ctx), ctx.args["root"]

    def run(*xs):
        c = get()
        if root >= c.size:
            raise DistributedError(
                f"Broadcast: root {root} is not a rank of communicator '{c.name}' (size {c.size})"
            )
        return c.broadcast(xs, root)

    return _on_device(ctx, run)


@table.kernel("Allgather", dtypes=ALL_TYPES, supports=_unavailable)
def allgather(ctx: KernelContext) -> RunFn:
    get = _resolver(ctx)

    def run(x):
        check(
            x.ndim >= 1, "Allgather: X must have at least one dim (it is gathered along axis 0), got a scalar"
        )
        return (get().allgather(x),)

    return _on_device(ctx, run)


@table.kernel("Barrier", supports=_unavailable)
def barrier(ctx: KernelContext) -> RunFn:
    get = _resolver(ctx)

    def run(*xs):
        get().barrier()
        return xs

    return _on_device(ctx, run)

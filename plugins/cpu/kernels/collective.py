"""Allreduce, Broadcast, Allgather, Barrier on host arrays.

Registered twice: as the default kernels, which run over whatever host communicator the op's
``comm`` names (MPI under mpiexec, an identity in a single process), and as the ``MPI`` engine,
which always goes through MPI (COMM_WORLD as an MPI singleton when there is no launcher) and is
declined when mpi4py is missing. Arrays of device backends without a collective kernel of their
own reach these kernels through host memory (the planner's cpu fallback inserts the copies).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kaffa.distributed import comm as _comm
from kaffa.distributed.errors import DistributedError
from kaffa.dtypes import ALL_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check

table = KernelTable("cpu")


def _mpi_missing(ctx: KernelContext) -> str | None:
    try:
        import mpi4py  # noqa: F401  (only whether it is installed: MPI itself starts at the first run)
    except ImportError:
        return "mpi4py is not installed (pip install kaffa[distributed])"
    return None


def _resolver(ctx: KernelContext) -> Callable[[], _comm.Communicator]:
    """The op's communicator, looked up at its first run (so set_default may come after planning):
    for the MPI engine a communicator that is not MPI (a single process) becomes MPI's own world."""
    name, mpi = ctx.args["comm"], ctx.engine == "MPI"
    found: list[_comm.Communicator] = []

    def get() -> _comm.Communicator:
        if not found:
            c = _comm.get(name)
            if c.backend not in ("local", "mpi"):
                raise DistributedError(
                    f"{ctx.op_type}: communicator '{c.name}' is a {c.backend} communicator; host arrays "
                    "need an MPI (or single-process) one"
                )
            if mpi and not isinstance(c, _comm.MPICommunicator):
                c = _comm.mpi_world()
            found.append(c)
        return found[0]

    return get


def _timeout(ctx: KernelContext) -> float | None:
    return ctx.args["timeout"] or None


def _host(op: str, xs: tuple[np.ndarray, ...]) -> None:
    """Matching shapes across ranks is the caller's contract (checking it would cost a message)."""
    for x in xs:
        check(isinstance(x, np.ndarray), f"{op}: expected host arrays, got {type(x).__name__}")


def allreduce(ctx: KernelContext) -> RunFn:
    get, reduction, timeout = _resolver(ctx), ctx.args["reduction"], _timeout(ctx)

    def run(*xs):
        _host("Allreduce", xs)
        return get().allreduce(xs, reduction, timeout)

    return run


def broadcast(ctx: KernelContext) -> RunFn:
    get, root, timeout = _resolver(ctx), ctx.args["root"], _timeout(ctx)

    def run(*xs):
        _host("Broadcast", xs)
        return get().broadcast(xs, root, timeout)

    return run


def allgather(ctx: KernelContext) -> RunFn:
    get, timeout = _resolver(ctx), _timeout(ctx)

    def run(x):
        check(
            x.ndim >= 1, "Allgather: X must have at least one dim (it is gathered along axis 0), got a scalar"
        )
        return (get().allgather(x, timeout),)

    return run


def barrier(ctx: KernelContext) -> RunFn:
    get, timeout = _resolver(ctx), _timeout(ctx)

    def run(*xs):
        get().barrier(timeout)
        return xs

    return run


for _engine, _supports in (("", None), ("MPI", _mpi_missing)):
    table.kernel("Allreduce", dtypes=NUMERIC_TYPES, engine=_engine, supports=_supports)(allreduce)
    table.kernel("Broadcast", dtypes=ALL_TYPES, engine=_engine, supports=_supports)(broadcast)
    table.kernel("Allgather", dtypes=ALL_TYPES, engine=_engine, supports=_supports)(allgather)
    table.kernel("Barrier", engine=_engine, supports=_supports)(barrier)  # passes any dtype through

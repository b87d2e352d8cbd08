"""Communicators: the groups of processes the collective ops (Allreduce, Broadcast, Allgather,
Barrier) run over.

An op names its communicator with its ``comm`` argument: ``""`` is the process-wide default
(``set_default``), ``"world"`` every rank of the job, ``"self"`` this process alone, any other
name one registered with ``register``. Until ``set_default`` is called the default is ``world()``:
mpi4py's ``COMM_WORLD`` when the process was started by an MPI launcher (``mpiexec``, ``kaffa
launch``), a single-process communicator otherwise, so a script written for N ranks also runs,
unchanged, as one (every collective is then an identity). mpi4py is imported only when needed.

Host communicators work on numpy arrays. Every MPI collective is issued non-blocking and waited
for with a deadline (``timeout``, else ``KAFFA_COLLECTIVE_TIMEOUT`` seconds, default 600): a peer
that died or hangs gives a ``CollectiveTimeoutError`` on the ranks still waiting instead of a hang.
A multi-rank job also aborts every rank (``MPI_Abort``) when one raises an uncaught exception,
since MPI would otherwise leave the others blocked in their next collective.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.distributed.errors import CollectiveTimeoutError, DistributedError

REDUCTIONS = ("sum", "mean")
TIMEOUT_VAR = "KAFFA_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
# Set by MPI launchers (MPICH/Hydra and Intel MPI: PMI_SIZE; Open MPI; MVAPICH) and by `kaffa launch`.
LAUNCHER_SIZE_VARS = ("KAFFA_WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
ALIGN = 64  # byte alignment of each array inside a fused buffer
F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


def launched_world_size() -> int | None:
    """The number of ranks an MPI launcher started this process among, or None when no launcher did."""
    for var in LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def default_timeout() -> float:
    """Seconds a collective waits for its peers: ``KAFFA_COLLECTIVE_TIMEOUT``, else 600."""
    value = os.environ.get(TIMEOUT_VAR, "").strip()
    try:
        return float(value) if value and float(value) > 0 else DEFAULT_TIMEOUT
    except ValueError:
        raise DistributedError(f"{TIMEOUT_VAR}={value!r} is not a number of seconds") from None


def import_mpi(why: str) -> Any:
    """mpi4py's MPI module (initializing MPI), or a DistributedError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"{why}, but mpi4py is not importable ({e}); install it with `pip install kaffa[distributed]` "
            "(mpi4py and the mpich wheel)"
        ) from None
    return MPI


class Communicator:
    """A group of ``size`` ranks, this process being ``rank``. Collectives take and return host
    (numpy) arrays and never write into their inputs; every rank must call the same collectives in
    the same order with arrays of the same shapes and dtypes. This base class is the group of one
    process: every collective is an identity."""

    backend = "local"

    def __init__(self, name: str = "self", rank: int = 0, size: int = 1) -> None:
        self.name, self.rank, self.size = name, rank, size

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}' rank {self.rank} of {self.size}>"

    def check_root(self, root: int, op: str = "Broadcast") -> None:
        if not 0 <= root < self.size:
            raise DistributedError(
                f"{op}: root {root} is not a rank of communicator '{self.name}' (size {self.size})"
            )

    def allreduce(
        self, arrays: Sequence[np.ndarray], reduction: str = "sum", timeout: float | None = None
    ) -> list[np.ndarray]:
        """The elementwise sum (or mean) of each array over the ranks; one MPI call per dtype."""
        _check_reduction(reduction, arrays)
        return list(arrays)

    def broadcast(
        self, arrays: Sequence[np.ndarray], root: int = 0, timeout: float | None = None
    ) -> list[np.ndarray]:
        """Rank ``root``'s arrays, on every rank (the other ranks' values only give the shapes)."""
        self.check_root(root)
        return list(arrays)

    def allgather(self, x: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Every rank's ``x`` concatenated along axis 0, in rank order."""
        return x

    def barrier(self, timeout: float | None = None) -> None:
        """Returns once every rank has called it."""

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """A picklable object from ``root`` (setup only: blocking, no timeout)."""
        self.check_root(root, "broadcast_object")
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable object, in rank order (setup and checks only)."""
        return [obj]


SingleProcess = Communicator


def _check_reduction(reduction: str, arrays: Sequence[np.ndarray]) -> None:
    if reduction not in REDUCTIONS:
        raise DistributedError(
            f"Allreduce: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )
    if reduction == "mean":
        bad = sorted({a.dtype.name for a in arrays if a.dtype.kind != "f"})
        if bad:
            raise DistributedError(f"Allreduce: a mean needs float arrays, got {', '.join(bad)}")


def _segments(arrays: Sequence[np.ndarray], itemsize: int = 1) -> tuple[list[int], int]:
    """Offsets (in units of ``itemsize``) of each array in a fused buffer, each ALIGN-aligned, and
    the buffer's length."""
    step = max(1, ALIGN // itemsize)
    offsets, end = [], 0
    for a in arrays:
        offsets.append(end)
        n = a.nbytes // itemsize
        end += -(-n // step) * step
    return offsets, end


def _as_bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


class MPICommunicator(Communicator):
    """An mpi4py communicator (``COMM_WORLD`` or a split of it) for host arrays."""

    backend = "mpi"

    def __init__(self, mpi_comm: Any, name: str = "world") -> None:
        super().__init__(name, mpi_comm.Get_rank(), mpi_comm.Get_size())
        self.mpi = mpi_comm
        self._MPI = import_mpi("an MPI communicator")
        # One collective at a time per communicator (the dag executor runs ops on several threads).
        self._lock = threading.Lock()
        self.broken: str | None = None
        if self.size > 1:
            install_abort_on_error()

    # -- waiting with a deadline ----------------------------------------------------------------
    def _wait(self, request: Any, what: str, timeout: float | None) -> None:
        limit = timeout if timeout is not None and timeout > 0 else default_timeout()
        deadline = time.monotonic() + limit
        spins = 0
        test = request.Test
        while not test():
            spins += 1
            if spins < 2000:  # short waits: spin, as MPI's own blocking calls do
                continue
            if time.monotonic() > deadline:
                self.broken = (
                    f"{what} on communicator '{self.name}' (rank {self.rank} of {self.size}) did not "
                    f"complete within {limit:g}s: another rank has probably died, hangs, or runs a "
                    f"different sequence of collectives (raise {TIMEOUT_VAR} to wait longer)"
                )
                _FAILED.append(self)
                raise CollectiveTimeoutError(self.broken)
            # Long waits (a slower peer): give the core to whoever shares it.
            time.sleep(0.0 if spins < 20000 else 0.0002)

    def _run(self, what: str, start: Any, timeout: float | None) -> None:
        if self.broken is not None:
            raise DistributedError(f"{what}: communicator '{self.name}' is unusable after: {self.broken}")
        with self._lock:
            self._wait(start(), what, timeout)

    # -- collectives ----------------------------------------------------------------------------
    def allreduce(
        self, arrays: Sequence[np.ndarray], reduction: str = "sum", timeout: float | None = None
    ) -> list[np.ndarray]:
        _check_reduction(reduction, arrays)
        MPI = self._MPI
        out: list[np.ndarray] = [None] * len(arrays)  # type: ignore[list-item]
        by_dtype: dict[np.dtype, list[int]] = {}
        for i, a in enumerate(arrays):
            by_dtype.setdefault(a.dtype, []).append(i)
        for dtype, idx in by_dtype.items():
            work = F32 if dtype == F16 else dtype  # MPI has no half type; sum it in float32
            group = [arrays[i] for i in idx]
            offsets, total = _segments([np.empty(a.size, work) for a in group], work.itemsize)
            buf = np.zeros(total, work)  # fused: one message per dtype instead of one per array
            for a, o in zip(group, offsets):
                buf[o : o + a.size] = a.reshape(-1)
            self._run("Allreduce", lambda b=buf: self.mpi.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM), timeout)
            if reduction == "mean":
                buf /= self.size
            for i, a, o in zip(idx, group, offsets):
                out[i] = buf[o : o + a.size].reshape(a.shape).astype(dtype, copy=False)
        return out

    def broadcast(
        self, arrays: Sequence[np.ndarray], root: int = 0, timeout: float | None = None
    ) -> list[np.ndarray]:
        self.check_root(root)
        offsets, total = _segments(arrays)
        buf = np.zeros(total, np.uint8)
        if self.rank == root:
            for a, o in zip(arrays, offsets):
                buf[o : o + a.nbytes] = _as_bytes(a)
        self._run("Broadcast", lambda: self.mpi.Ibcast(buf, root=root), timeout)
        if self.rank == root:
            return list(arrays)
        return [buf[o : o + a.nbytes].view(a.dtype).reshape(a.shape) for a, o in zip(arrays, offsets)]

    def allgather(self, x: np.ndarray, timeout: float | None = None) -> np.ndarray:
        out = np.empty((self.size, *x.shape), x.dtype)
        send = _as_bytes(x)
        self._run("Allgather", lambda: self.mpi.Iallgather(send, out.reshape(-1).view(np.uint8)), timeout)
        return out.reshape((self.size * x.shape[0], *x.shape[1:])) if x.ndim else out

    def barrier(self, timeout: float | None = None) -> None:
        self._run("Barrier", self.mpi.Ibarrier, timeout)

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        self.check_root(root, "broadcast_object")
        return self.mpi.bcast(obj, root=root)

    def allgather_object(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj)

    def split(self, color: int, key: int | None = None, name: str | None = None) -> MPICommunicator:
        """The ranks that pass the same ``color`` as a new communicator (collective over this one)."""
        sub = self.mpi.Split(color, self.rank if key is None else key)
        return MPICommunicator(sub, name or f"{self.name}.{color}")


# -- failure handling -------------------------------------------------------------------------------

_FAILED: list[MPICommunicator] = []
_abort_installed = False
_aborting = False


def _abort(code: int, why: str) -> None:
    global _aborting
    if _aborting:  # the excepthook's abort may reach the exit handlers before the process ends
        return
    _aborting = True
    MPI = import_mpi("aborting the job")
    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    sys.stderr.write(f"kaffa.distributed: rank {rank} of {size}: {why}; aborting all ranks (MPI_Abort)\n")
    sys.stderr.flush()
    sys.stdout.flush()
    # mpiexec forwards each rank's output through its proxy; an abort right after the write can
    # tear the job down before the proxy has passed the message (and the traceback) on.
    time.sleep(0.5)
    MPI.COMM_WORLD.Abort(code)


def install_abort_on_error() -> None:
    """In a multi-rank job: an uncaught exception on any rank aborts every rank (after the traceback
    is printed), and so does exiting after a collective failed (MPI_Finalize would wait forever for
    the collective still pending). Installed by every multi-rank MPI communicator."""
    global _abort_installed
    if _abort_installed:
        return
    _abort_installed = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        _abort(1, f"uncaught {kind.__name__}")

    sys.excepthook = hook
    atexit.register(_abort_if_broken)


def _abort_if_broken() -> None:
    if _FAILED:
        _abort(1, f"exiting after a failed collective ({_FAILED[0].broken})")


# -- the registry of communicators ------------------------------------------------------------------

_lock = threading.RLock()
_named: dict[str, Communicator] = {}
_default: Communicator | None = None


def world() -> Communicator:
    """Every rank of the job: MPI's COMM_WORLD under an MPI launcher, else this process alone."""
    with _lock:
        if "world" not in _named:
            n = launched_world_size()
            if n is None:
                _named["world"] = Communicator("world")
            else:
                MPI = import_mpi(f"this process was started by an MPI launcher ({n} ranks)")
                _named["world"] = MPICommunicator(MPI.COMM_WORLD, "world")
        return _named["world"]


def mpi_world() -> MPICommunicator:
    """COMM_WORLD through MPI even without a launcher (then an MPI singleton of one rank)."""
    comm = world()
    if isinstance(comm, MPICommunicator):
        return comm
    with _lock:
        if "mpi_world" not in _named:
            _named["mpi_world"] = MPICommunicator(import_mpi("the MPI engine").COMM_WORLD, "world")
        return _named["mpi_world"]  # type: ignore[return-value]


def register(name: str, comm: Communicator) -> Communicator:
    """Make ``comm`` available to ops as ``comm=name``."""
    if not name or name in ("world", "self"):
        raise DistributedError(f"cannot register a communicator as {name!r} (reserved)")
    with _lock:
        _named[name] = comm
    return comm


def set_default(comm: Communicator | str | None) -> None:
    """The communicator of ops whose ``comm`` argument is empty (a communicator, a registered name,
    or None for ``world()``)."""
    global _default
    with _lock:
        _default = get(comm) if isinstance(comm, str) else comm


def get(name: str = "") -> Communicator:
    """The communicator an op's ``comm`` argument names."""
    if not name:
        with _lock:
            return _default if _default is not None else world()
    if name == "world":
        return world()
    if name == "self":
        return Communicator("self")
    with _lock:
        comm = _named.get(name)
    if comm is None:
        known = ", ".join(sorted({"world", "self", *_named} - {"mpi_world"}))
        raise DistributedError(
            f"no communicator named '{name}' (known: {known}; see kaffa.distributed.register)"
        )
    return comm


def size(name: str = "") -> int:
    return get(name).size


def rank(name: str = "") -> int:
    return get(name).rank


def reset() -> None:
    """Forget the default and the registered communicators (tests)."""
    global _default
    with _lock:
        _default = None
        for key in [k for k in _named if k not in ("world", "mpi_world")]:
            del _named[key]

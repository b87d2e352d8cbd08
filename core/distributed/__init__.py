"""Distributed data-parallel training over MPI (host arrays) and NCCL (CUDA arrays).

    mpiexec -n 2 python train.py        # or: kaffa launch -n 2 train.py

Communicators (kaffa.distributed.comm) are the groups the collective ops (Allreduce, Broadcast,
Allgather, Barrier; kaffa.ops.collective) run over; ``DataParallel`` (kaffa.distributed.data_parallel)
builds a replica of a model per rank from a model builder and an optimizer builder, broadcasts the
parameters from rank 0, averages gradients before every update and lets rank 0 alone write
checkpoints. See docs/distributed.md.
"""

from __future__ import annotations

from typing import Any

from kaffa.distributed.comm import (
    Communicator,
    MPICommunicator,
    get,
    launched_world_size,
    rank,
    register,
    set_default,
    size,
    world,
)
from kaffa.distributed.errors import CollectiveTimeoutError, DistributedError

__all__ = [
    "CollectiveTimeoutError",
    "Communicator",
    "DataParallel",
    "DistributedError",
    "MPICommunicator",
    "get",
    "launched_world_size",
    "rank",
    "register",
    "set_default",
    "shard",
    "size",
    "world",
]


def __getattr__(name: str) -> Any:
    # The trainer pulls in the model-building API; communicators alone stay light.
    if name in ("DataParallel", "shard"):
        from kaffa.distributed import data_parallel

        return getattr(data_parallel, name)
    raise AttributeError(f"module 'kaffa.distributed' has no attribute '{name}'")

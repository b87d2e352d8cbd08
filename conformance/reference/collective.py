"""References for Allreduce, Broadcast, Allgather, Barrier with single-rank semantics (world size
1, what the conformance suite runs): the sum, mean, broadcast, gather and barrier over one rank
are each an identity. The multi-rank behaviour is tested with real processes under mpiexec
(tests/test_distributed.py)."""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference

WORLD = 1


@reference("Allreduce")
def allreduce(args, *xs):
    # sum over WORLD identical contributions of this rank, divided by WORLD for the mean
    total = [np.sum([x] * WORLD, axis=0) for x in xs]
    if args["reduction"] == "mean":
        return tuple(t / WORLD for t in total)
    return tuple(total)


@reference("Broadcast")
def broadcast(args, *xs):
    assert args["root"] < WORLD, "the root must be a rank"
    return tuple(np.array(x, copy=True) for x in xs)


@reference("Allgather")
def allgather(args, x):
    return (np.concatenate([x] * WORLD, axis=0),)


@reference("Barrier")
def barrier(args, *xs):
    return tuple(np.array(x, copy=True) for x in xs)

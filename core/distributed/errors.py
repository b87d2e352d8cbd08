"""Errors of kaffa.distributed."""

from __future__ import annotations

from kaffa.errors import KaffaError


class DistributedError(KaffaError):
    """A communicator cannot be set up or used (mpi4py missing under mpiexec, an unknown
    communicator name, a root out of range, a communicator broken by an earlier failure)."""


class CollectiveTimeoutError(DistributedError):
    """A collective did not complete within its timeout: a peer rank died, hangs, or runs a
    different sequence of collectives. The job cannot continue (the collective is still pending),
    so kaffa aborts it at exit unless the process aborts first."""

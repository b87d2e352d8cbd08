"""Collectives: Allreduce, Broadcast, Allgather, Barrier (schemas, shape inference). None is
differentiable: data-parallel training applies them to gradients after the backward pass.

Each op runs over the communicator its ``comm`` argument names (see kaffa.distributed.comm: ""
is the process default, "world" every rank under mpiexec, "self" this process). Every rank must
run the same collectives in the same order, with the same shapes and dtypes, so nets holding
several collectives should use the simple executor (or order them by data dependencies). In a
single process (world size 1) each op is an identity: that is what the conformance suite checks.
``timeout`` (seconds; 0: KAFFA_COLLECTIVE_TIMEOUT, default 600) bounds the wait for peer ranks.
Kernels: cpu (default and MPI engines, host arrays), cuda (NCCL engine); other backends' arrays
go through host memory (the planner's cpu fallback copies them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaffa import dtypes
from kaffa.errors import ArgumentError, SchemaError
from kaffa.schema import Arg, ArgType, TensorInfo, check, define

REDUCTIONS = ("sum", "mean")

COMM_ARGS = [
    Arg(
        "comm",
        ArgType.STRING,
        "",
        "communicator name: '' the process default, 'world', 'self', or registered",
    ),
    Arg("timeout", ArgType.FLOAT, 0.0, "seconds to wait for the other ranks (0: KAFFA_COLLECTIVE_TIMEOUT)"),
]


def _canon(op: str):
    def canon(args: dict[str, Any]) -> dict[str, Any]:
        if args["timeout"] < 0:
            raise ArgumentError(f"{op}: timeout must be >= 0 seconds, got {args['timeout']}")
        if op == "Allreduce" and args["reduction"] not in REDUCTIONS:
            raise ArgumentError(
                f"Allreduce: reduction must be one of {', '.join(REDUCTIONS)}, got '{args['reduction']}'"
            )
        if op == "Broadcast" and args["root"] < 0:
            raise ArgumentError(f"Broadcast: root must be a rank (>= 0), got {args['root']}")
        return args

    return canon


def _pairs(op: str, ins: list[TensorInfo], n: int) -> None:
    if len(ins) != n:
        raise SchemaError(f"{op} takes one output per input, got {len(ins)} inputs and {n} outputs")


def comm_size(name: str) -> int | None:
    """The size of communicator ``name`` (None if it cannot be resolved now)."""
    from kaffa.distributed import comm

    try:
        return comm.get(name).size
    except Exception:  # unknown name, mpi4py missing: the kernel reports it when it is built
        return None


def _infer_allreduce(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _pairs("Allreduce", ins, n)
    if args["reduction"] == "mean":
        bad = [dtypes.name(i.dtype) for i in ins if i.dtype is not None and i.dtype.kind != "f"]
        check(not bad, f"Allreduce: reduction 'mean' needs float inputs, got {', '.join(bad)}")
    return list(ins)


define(
    "Allreduce",
    family="collective",
    doc="Y_i = the elementwise sum (reduction='sum') or mean ('mean') of X_i over every rank of the "
    "communicator, on every rank. Several inputs are fused into one message per dtype. In place "
    "(Y_i = X_i) is the usual form. With one rank: Y_i = X_i.",
    inputs=(1, float("inf")),
    outputs=(1, float("inf")),
    input_docs=[("X", "one or more tensors, the same shapes on every rank")],
    output_docs=[("Y", "one per input, same shape and dtype")],
    args=[Arg("reduction", ArgType.STRING, "sum", "sum or mean (floats only)"), *COMM_ARGS],
    canonicalize=_canon("Allreduce"),
    inplace="one_to_one",
    infer=_infer_allreduce,
    dtypes=dtypes.NUMERIC_TYPES,
    differentiable=False,
)


def _infer_same(op: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        _pairs(op, ins, n)
        return list(ins)

    return infer


define(
    "Broadcast",
    family="collective",
    doc="Y_i = X_i of rank `root`, on every rank (the other ranks' X_i give only shape and dtype). "
    "Several inputs go in one message. With one rank: Y_i = X_i.",
    inputs=(1, float("inf")),
    outputs=(1, float("inf")),
    input_docs=[("X", "one or more tensors, the same shapes on every rank")],
    output_docs=[("Y", "one per input: root's values")],
    args=[Arg("root", ArgType.INT, 0, "the rank whose values every rank gets"), *COMM_ARGS],
    canonicalize=_canon("Broadcast"),
    inplace="one_to_one",
    infer=_infer_same("Broadcast"),
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)


def _infer_allgather(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is None:
        return [TensorInfo(None, x.dtype)]
    check(
        len(x.shape) >= 1,
        "Allgather: X must have at least one dim (it is gathered along axis 0), got a scalar",
    )
    world = comm_size(args["comm"])
    first = None if x.shape[0] is None or world is None else x.shape[0] * world
    return [TensorInfo((first, *x.shape[1:]), x.dtype)]


define(
    "Allgather",
    family="collective",
    doc="Y = every rank's X concatenated along axis 0 in rank order: [size * N, ...] for X [N, ...] "
    "(the same shape on every rank). With one rank: Y = X.",
    inputs=1,
    outputs=1,
    input_docs=[("X", "a tensor of at least one dim")],
    output_docs=[("Y", "[world size * N, ...]")],
    args=COMM_ARGS,
    canonicalize=_canon("Allgather"),
    infer=_infer_allgather,
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)

define(
    "Barrier",
    family="collective",
    doc="Waits until every rank of the communicator reaches it. Its inputs pass through unchanged "
    "(Y_i = X_i, usually in place), so ops can be ordered after the barrier by data dependencies; "
    "it may also take none.",
    inputs=(0, float("inf")),
    outputs=(0, float("inf")),
    input_docs=[("X", "zero or more tensors to pass through")],
    output_docs=[("Y", "one per input, the same values")],
    args=COMM_ARGS,
    canonicalize=_canon("Barrier"),
    inplace="one_to_one",
    infer=_infer_same("Barrier"),
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)

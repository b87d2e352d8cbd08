"""If, While, Do: run sub-nets in private child workspaces (``kaffa.subnet.SubnetRunner``).

The sub-nets are checked when the outer net is created (every blob they read is bound, every
output is produced) and planned on their first run; later runs reuse the plans."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.errors import ExecutionError, IterationLimitError, SchemaError, ShapeError
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.control import bindings, check_net
from kaffa.proto import NetDef
from kaffa.subnet import SubnetRunner, reads, writes

table = KernelTable("cpu")


def _label(ctx: KernelContext, key: str, net: NetDef) -> str:
    return net.name or f"{ctx.op.name or ctx.op_type}.{key}"


def truth(op: str, value: Any) -> bool:
    """The value of a one-element bool condition."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise ShapeError(f"{op}: the condition must have one element, got shape {list(arr.shape)}")
    return bool(arr.reshape(-1)[0])


@table.kernel("If")
def if_(ctx: KernelContext) -> RunFn:
    ins, outs = bindings(ctx.op, ctx.args)
    data = ins[1:]
    branches = []
    for key in ("then_net", "else_net"):
        net = ctx.args[key]
        if net is None:
            missing = [o for o in outs if o not in data]
            if missing:
                raise SchemaError(
                    f"If has no else_net, so its outputs must be inputs it passes through; "
                    f"{', '.join(repr(m) for m in missing)} are not"
                )
            branches.append(None)
            continue
        check_net("If", key, net, data, outs)
        branches.append(SubnetRunner(net, data, outs, device=ctx.device, name=_label(ctx, key, net)))
    then_run, else_run = branches
    where = {name: k for k, name in enumerate(data)}

    def run(cond: Any, *values: Any) -> tuple[Any, ...]:
        branch = then_run if truth("If", cond) else else_run
        if branch is None:
            return tuple(values[where[o]] for o in outs)
        return branch(*values)

    return run


@table.kernel("Do")
def do(ctx: KernelContext) -> RunFn:
    ins, outs = bindings(ctx.op, ctx.args)
    net = ctx.args["net"]
    check_net("Do", "net", net, ins, outs)
    runner = SubnetRunner(net, ins, outs, device=ctx.device, name=_label(ctx, "net", net))

    def run(*values: Any) -> tuple[Any, ...]:
        return runner(*values)

    return run


@table.kernel("While")
def while_(ctx: KernelContext) -> RunFn:
    ins, outs = bindings(ctx.op, ctx.args)
    loop_net, cond_net = ctx.args["loop_net"], ctx.args["cond_net"]
    limit, scan = int(ctx.args["max_iterations"]), list(ctx.args["scan_blobs"])
    final = outs[: len(outs) - len(scan)]
    cond_name = ins[0]
    cond_writes = writes(cond_net) if cond_net is not None else []
    if cond_net is not None:
        check_net("While", "cond_net", cond_net, ins)
    check_net("While", "loop_net", loop_net, [*ins, *cond_writes])
    state_names = {*ins, *cond_writes, *writes(loop_net)}
    absent = [n for n in final if n not in state_names]
    if absent:
        raise SchemaError(f"While: no sub-net writes output(s) {absent} and they are not inputs")
    absent = [n for n in scan if n not in state_names]
    if absent:
        raise SchemaError(f"While: scan_blobs {absent} are neither written by loop_net nor inputs")
    loop_run = SubnetRunner(loop_net, device=ctx.device, name=_label(ctx, "loop_net", loop_net))
    cond_run = (
        SubnetRunner(cond_net, device=ctx.device, name=_label(ctx, "cond_net", cond_net))
        if cond_net is not None
        else None
    )
    loop_reads = reads(loop_net)
    cond_reads = reads(cond_net) if cond_net is not None else []

    def run(*values: Any) -> tuple[Any, ...]:
        state = dict(zip(ins, values))
        stacks: list[list[Any]] = [[] for _ in scan]
        done = 0
        while True:
            if cond_run is not None:
                state.update(cond_run.run({n: state[n] for n in cond_reads}))
            if not truth("While", state[cond_name]):
                break
            if done >= limit:
                raise IterationLimitError(
                    f"While ran {limit} iterations and its condition is still true "
                    f"(max_iterations={limit}; raise it if the loop is meant to run longer)",
                    limit=limit,
                )
            state.update(loop_run.run({n: state[n] for n in loop_reads}))
            for k, name in enumerate(scan):
                stacks[k].append(state[name])
            done += 1
        missing = [n for n in final if n not in state]
        if missing:
            raise ExecutionError(f"While ran {done} iterations and never wrote output(s) {missing}")
        stacked = [np.stack(s) if s else np.zeros((0,), np.float32) for s in stacks]
        return (*(state[n] for n in final), *stacked)

    return run

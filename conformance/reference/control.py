"""References for If, While, Do: a float64 interpreter that runs sub-nets op by op through the
other ops' references (so the gradient of If, an If over gradient nets, is checked through the
branch ops' gradient references).

Bindings are by name, and a reference sees only values: called by the conformance runner, an op's
outer names are the runner's ``in0, in1, ... / out0, ...``; inside a sub-net, ``run_net`` passes
the real names of nested control ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kaffa.proto import NetDef
from kaffa.schema import SCHEMAS
from kaffa_conformance import reference as _reference
from kaffa_conformance.reference import reference


def run_net(net: NetDef, env: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``net`` on the blobs ``env`` through the references; returns the environment after it."""
    out = dict(env)
    for op in net.op:
        args = SCHEMAS.get(op.type).parse_args(op.arg)
        values = [out[n] for n in op.input]
        if op.type in _NAMED:
            res = _NAMED[op.type](args, list(op.input), list(op.output), values)
        else:
            res = _reference.run(op.type, args, values, len(op.output))
        out.update((n, np.asarray(v)) for n, v in zip(op.output, res))
    return out


def _inner(args: Mapping[str, Any], ins: Sequence[str], outs: Sequence[str]) -> tuple[list[str], list[str]]:
    names = [*ins, *outs]
    for name, k in zip(args["inner_blobs"], args["outer_blobs_idx"]):
        names[k] = name
    return names[: len(ins)], names[len(ins) :]


def _cond(x: np.ndarray) -> bool:
    return bool(np.asarray(x).reshape(-1)[0])


def if_named(args, ins, outs, values) -> tuple[np.ndarray, ...]:
    inner_in, inner_out = _inner(args, ins, outs)
    net = args["then_net"] if _cond(values[0]) else args["else_net"]
    env = dict(zip(inner_in[1:], values[1:]))
    if net is not None:
        env = run_net(net, env)
    return tuple(env[o] for o in inner_out)


def do_named(args, ins, outs, values) -> tuple[np.ndarray, ...]:
    inner_in, inner_out = _inner(args, ins, outs)
    env = run_net(args["net"], dict(zip(inner_in, values)))
    return tuple(env[o] for o in inner_out)


def while_named(args, ins, outs, values) -> tuple[np.ndarray, ...]:
    inner_in, inner_out = _inner(args, ins, outs)
    scan = list(args["scan_blobs"])
    state = dict(zip(inner_in, values))
    stacks: list[list[np.ndarray]] = [[] for _ in scan]
    for _ in range(args["max_iterations"] + 1):
        if args["cond_net"] is not None:
            state = run_net(args["cond_net"], state)
        if not _cond(state[inner_in[0]]):
            break
        state = run_net(args["loop_net"], state)
        for k, name in enumerate(scan):
            stacks[k].append(state[name])
    else:
        raise RuntimeError(f"While ran past max_iterations={args['max_iterations']}")
    final = [state[o] for o in inner_out[: len(inner_out) - len(scan)]]
    return (*final, *(np.stack(s) if s else np.zeros((0,)) for s in stacks))


_NAMED: dict[str, Callable[..., tuple[np.ndarray, ...]]] = {
    "If": if_named,
    "Do": do_named,
    "While": while_named,
}


def _runner_names(n_in: int, n_out: int) -> tuple[list[str], list[str]]:
    return [f"in{i}" for i in range(n_in)], [f"out{j}" for j in range(n_out)]


@reference("If")
def if_(args, *xs, num_outputs=1):
    return if_named(args, *_runner_names(len(xs), num_outputs), list(xs))


@reference("Do")
def do(args, *xs, num_outputs=1):
    return do_named(args, *_runner_names(len(xs), num_outputs), list(xs))


@reference("While")
def while_(args, *xs, num_outputs=0):
    return while_named(args, *_runner_names(len(xs), num_outputs), list(xs))

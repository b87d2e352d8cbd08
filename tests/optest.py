"""Helpers the per-family op tests share: schema inference, running one op, and its gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.core import create_operator
from kaffa.gradients import add_gradient_ops
from kaffa.proto import NetDef
from kaffa.schema import SCHEMAS, TensorInfo
from kaffa.workspace import Workspace


def infer(op: str, ins: list[TensorInfo], n: int = 1, **args: Any) -> list[TensorInfo]:
    """What ``op``'s schema infers for inputs ``ins`` and ``args``."""
    schema = SCHEMAS.get(op)
    parsed = schema.parse_args(create_operator(op, [f"i{k}" for k in range(len(ins))], ["o"], **args).arg)
    return schema.infer_outputs(parsed, ins, n)


def run(op: str, inputs: list[Any], n_out: int = 1, **args: Any) -> list[np.ndarray]:
    """Run one ``op`` on cpu in a fresh workspace and return its outputs."""
    ws = Workspace(f"test_{op}")
    names = [f"in{i}" for i in range(len(inputs))]
    for name, x in zip(names, inputs):
        ws.feed_blob(name, np.asarray(x))
    net = NetDef(name=op)
    outs = [f"out{j}" for j in range(n_out)]
    net.op.append(create_operator(op, names, outs, **args))
    ws.create_net(net).run()
    return [ws.fetch_blob(o) for o in outs]


def gradients(op: str, inputs: list[np.ndarray], dy: np.ndarray, **args: Any) -> list[np.ndarray]:
    """Input gradients of ``op`` for output gradient ``dy``, through add_gradient_ops and a net."""
    names = [f"x{i}" for i in range(len(inputs))]
    fwd = create_operator(op, names, ["y"], **args)
    grads, gmap = add_gradient_ops([fwd], {"y": "dy"})
    ws = Workspace("grad")
    for n, x in zip(names, inputs):
        ws.feed_blob(n, x)
    ws.feed_blob("dy", dy)
    net = NetDef(name="g")
    net.op.extend([fwd, *grads])
    ws.create_net(net).run()
    return [ws.fetch_blob(gmap[n]) for n in names]

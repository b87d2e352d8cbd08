"""Helpers the per-family op tests share: schema inference, running one op, and its gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.core import Net, create_operator
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


def loss_and_grads(build: Any, feeds: dict[str, np.ndarray], wrt: list[str] | None = None):
    """Build a net with ``build(net)`` (it writes ``loss``), add the gradients of ``loss`` when
    ``wrt`` names inputs, run it; return the loss and {input: its gradient}."""
    net = Net("t")
    build(net)
    grads = net.add_gradient_ops({"loss": "seed"}) if wrt else {}
    ws = Workspace()
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    ws.feed_blob("seed", np.array(1.0))
    ws.run_net_once(net)
    return float(ws.fetch_blob("loss")), {k: ws.fetch_blob(str(grads[k])) for k in wrt or []}


def check_against_finite_differences(
    build: Any,
    feeds: dict[str, np.ndarray],
    wrt: list[str],
    h: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
):
    """The net's gradients of ``loss`` for ``wrt`` match central differences (float64 feeds), in
    the input's shape and dtype."""
    _, grads = loss_and_grads(build, feeds, wrt)
    for name in wrt:
        x = feeds[name]
        assert grads[name].shape == x.shape and grads[name].dtype == x.dtype, name
        fd = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            plus, minus = dict(feeds), dict(feeds)
            plus[name], minus[name] = x.copy(), x.copy()
            plus[name][idx] += h
            minus[name][idx] -= h
            fd[idx] = (loss_and_grads(build, plus)[0] - loss_and_grads(build, minus)[0]) / (2 * h)
        np.testing.assert_allclose(grads[name], fd, rtol=rtol, atol=atol, err_msg=name)

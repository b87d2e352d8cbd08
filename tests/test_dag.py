"""The dag executor: independent branches run on a thread pool, with the same results as simple."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kaffa import Net, Workspace
from kaffa.errors import OperatorError


def _branched(kind: str, workers: int = 0) -> Net:
    """x -> four independent FC/Relu/Softmax branches -> Sum, with an in-place op in each branch."""
    net = Net(f"branched_{kind}")
    net.Proto().type = kind
    net.Proto().num_workers = workers
    outs = []
    for b in range(4):
        h = net.FC(["x", f"w{b}", f"b{b}"], f"h{b}")
        net.Relu(h, h)  # in place: must wait for the FC, and its readers must wait for it
        net.FC([h, f"w2_{b}", f"b2_{b}"], f"z{b}")
        outs.append(net.Tanh(f"z{b}", f"t{b}"))
    net.Sum(outs, "y")
    net.Softmax("y", "p")
    return net


def _feed(ws: Workspace) -> None:
    rng = np.random.default_rng(3)
    ws.feed_blob("x", rng.normal(size=(64, 32)).astype(np.float32))
    for b in range(4):
        ws.feed_blob(f"w{b}", rng.normal(size=(48, 32)).astype(np.float32))
        ws.feed_blob(f"b{b}", rng.normal(size=(48,)).astype(np.float32))
        ws.feed_blob(f"w2_{b}", rng.normal(size=(10, 48)).astype(np.float32))
        ws.feed_blob(f"b2_{b}", rng.normal(size=(10,)).astype(np.float32))


def test_dag_matches_simple_on_a_branched_net():
    results = {}
    for kind in ("simple", "dag"):
        ws = Workspace(kind)
        _feed(ws)
        ws.create_net(_branched(kind, workers=4))
        ws.run_net(f"branched_{kind}", num_iter=3)
        results[kind] = {n: ws.fetch_blob(n) for n in ("p", "y", "h0", "t3")}
    for name, value in results["simple"].items():
        np.testing.assert_array_equal(results["dag"][name], value, err_msg=name)


def test_dag_really_runs_branches_on_several_threads():
    seen: set[int] = set()
    ws = Workspace("threads")
    _feed(ws)
    net = ws.create_net(_branched("dag", workers=4))
    plan = net._plan
    barrier = threading.Barrier(2, timeout=5)

    def wrap(fn, first):
        def run(*a):
            seen.add(threading.get_ident())
            if first:
                barrier.wait()  # two first-layer FCs must be in flight at once, or this times out
            return fn(*a)

        return run

    firsts = [k for k, st in enumerate(plan.steps) if st[3].op_type == "FC" and st[3].inputs[0] == "x"][:2]
    plan.steps = [(wrap(fn, k in firsts), i, o, m) for k, (fn, i, o, m) in enumerate(plan.steps)]
    net.run()
    assert len(seen) >= 2


def test_a_failing_branch_leaves_the_workspace_unchanged():
    ws = Workspace("fail")
    _feed(ws)
    ws.feed_blob("w2_2", np.ones((10, 7), np.float32))  # wrong inner dim: branch 2's FC fails
    before = {n: ws.fetch_blob(n).copy() for n in ws.blobs()}
    net = _branched("dag", workers=4)
    with pytest.raises(OperatorError, match="FC"):
        ws.run_net_once(net)
    assert sorted(ws.blobs()) == sorted(before)
    for n, v in before.items():
        np.testing.assert_array_equal(ws.fetch_blob(n), v)

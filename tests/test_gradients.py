"""add_gradient_ops and the gradient rows of the conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from kaffa import Net, Workspace
from kaffa.errors import SchemaError
from kaffa.plugins import registry
from kaffa_conformance import reference, runner


def _types(net):
    return [(op.type, list(op.input), list(op.output)) for op in net.Proto().op]


def test_loss_is_seeded_and_gradients_flow_back():
    net = Net("g")
    net.Relu("x", "y")
    grads = net.add_gradient_ops(["y"])
    assert str(grads["x"]) == "x_grad" and str(grads["y"]) == "y_autogen_grad"
    assert _types(net)[1:] == [
        ("ConstantFill", ["y"], ["y_autogen_grad"]),
        ("ReluGradient", ["y", "y_autogen_grad"], ["x_grad"]),
    ]
    ws = Workspace()
    ws.feed_blob("x", np.array([-1.0, 2.0, 0.5], np.float32))
    ws.run_net_once(net)
    np.testing.assert_array_equal(ws.fetch_blob("x_grad"), [0.0, 1.0, 1.0])


def test_partial_gradients_of_a_shared_blob_are_summed():
    net = Net("shared")
    net.Relu("x", "a")
    net.Relu("x", "b")
    net.add_gradient_ops({"a": None, "b": None})
    ops = _types(net)
    sums = [op for op in ops if op[0] == "Sum"]
    assert len(sums) == 1 and sums[0][2] == ["x_grad"] and len(sums[0][1]) == 2
    ws = Workspace()
    ws.feed_blob("x", np.array([-1.0, 3.0], np.float32))
    ws.run_net_once(net)
    np.testing.assert_array_equal(ws.fetch_blob("x_grad"), [0.0, 2.0])


def test_an_unused_consumer_does_not_leave_an_autosplit_name():
    net = Net("dead")
    net.Relu("x", "y")
    net.Relu("x", "unused")  # no gradient flows into this branch
    grads = net.add_gradient_ops(["y"])
    assert str(grads["x"]) == "x_grad"


def test_in_place_overwrite_of_a_needed_value_is_refused():
    net = Net("inplace")
    net.Relu("x", "h")
    net.Relu("h", "h")  # the first Relu's gradient needs h as it left it
    before = list(net.Proto().op)
    with pytest.raises(SchemaError, match=r"needs 'h' as op #0 saw it, but op #1 overwrites it") as e:
        net.add_gradient_ops(["h"])
    assert "net 'inplace'" in str(e.value)
    assert list(net.Proto().op) == before  # nothing half-added


def test_non_differentiable_op_on_the_path_is_named():
    net = Net("nodiff")
    net.GaussianFill([], "x", shape=[2])
    net.Relu("x", "y")
    grads = net.add_gradient_ops(["y"])  # fillers stop gradients quietly: x has one, GaussianFill none
    assert "x" in grads


def test_unknown_loss_is_an_error():
    net = Net("noloss")
    net.Relu("x", "y")
    with pytest.raises(SchemaError, match="loss 'z' is not produced"):
        net.add_gradient_ops(["z"])


def test_gradient_rows_pass_on_cpu():
    result = runner.run(["cpu"], ["Relu"])
    rows = {c.op for c in result.cells()}
    assert "Relu:grad" in rows and result.ok
    grad = [r for r in result.results if r.op == "Relu:grad"]
    assert grad and all(r.uses == ["ReluGradient"] for r in grad)


def test_a_wrong_reference_gradient_is_caught_by_finite_differences(monkeypatch):
    from kaffa_conformance import gradcheck

    monkeypatch.setitem(reference.REFERENCES, "ReluGradient", lambda args, y, dy: (dy * 1.01,))
    monkeypatch.setattr(gradcheck, "_PLANS", {})
    result = runner.run(["cpu"], ["Relu"])
    bad = [c for c in result.failures() if c.op == "Relu:grad"]
    assert bad and "finite difference" in bad[0].worst().message


def test_a_wrong_gradient_kernel_fails_its_cell():
    from kaffa_conformance.mock import MockPlugin

    registry().register(MockPlugin(ops={"Relu", "ReluGradient"}, broken={"ReluGradient"}), name="mock")
    try:
        result = runner.run(["mock"], ["Relu"])
    finally:
        registry().unregister("mock")
    bad = {(c.op, c.outcome) for c in result.failures()}
    assert ("Relu:grad", runner.FAIL) in bad and not any(op == "Relu" for op, _ in bad)

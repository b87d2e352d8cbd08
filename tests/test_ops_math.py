"""The math, reduce and logic families in whole nets: gradients through add_gradient_ops (broadcast
operands summed back, in-place uses refused or allowed), a plain SGD step, and the shape errors
conformance cases cannot show."""

from __future__ import annotations

import numpy as np
import pytest
from optest import check_against_finite_differences

from kaffa import Net, Workspace
from kaffa.errors import SchemaError, ShapeError


def _types(net: Net) -> list[str]:
    return [op.type for op in net.Proto().op]


def test_broadcast_bias_and_scale_gradients_are_summed_back():
    rng = np.random.default_rng(0)

    def build(net):
        net.Add(["x", "b"], "xb")  # b [4] broadcasts over [3, 4]
        net.Mul(["xb", "s"], "y")  # s [3, 1]
        net.Sub(["y", "c"], "z")  # c a scalar
        net.Div(["z", "d"], "q", broadcast=1, axis=0)  # legacy: d [3] lines up with axis 0
        net.ReduceMean("q", "m", axes=[1], keepdims=0)
        net.SumElements("m", "loss")

    feeds = {
        "x": rng.normal(size=(3, 4)),
        "b": rng.normal(size=(4,)),
        "s": rng.normal(size=(3, 1)),
        "c": np.array(0.5),
        "d": rng.uniform(1, 2, size=(3,)),
    }
    check_against_finite_differences(build, feeds, ["x", "b", "s", "c", "d"])


def test_variadic_and_matrix_gradients():
    rng = np.random.default_rng(1)

    def build(net):
        net.MatMul(["a", "w"], "h", axis_a=2, trans_b=1)  # a [2, 3, 4] flattened to [6, 4]
        net.BatchMatMul(["h", "v"], "k", broadcast=1)  # h [6, 5] broadcast over v's batch of 3
        net.Max(["k", "k2"], "mx")
        net.Mean(["mx", "k"], "mn")
        net.WeightedSum(["mn", "w0", "k2", "w1"], "ws", grad_on_w=1)
        net.Sum(["ws", "k"], "sm")
        net.ReduceMax("sm", "rm", axes=[0])
        net.ReduceSum("rm", "loss", keepdims=0)

    feeds = {
        "a": rng.normal(size=(2, 3, 4)),
        "w": rng.normal(size=(5, 4)),
        "v": rng.normal(size=(3, 5, 2)),
        "k2": rng.normal(size=(3, 6, 2)),
        "w0": np.array([0.7]),
        "w1": np.array(-1.3),
    }
    check_against_finite_differences(build, feeds, ["a", "w", "v", "k2", "w0", "w1"])


def test_sum_passes_the_gradient_through_without_ops():
    net = Net("s")
    net.Sum(["a", "b"], "loss")
    grads = net.add_gradient_ops(["loss"])
    assert _types(net) == ["Sum", "ConstantFill"]
    assert str(grads["a"]) == str(grads["b"]) == "loss_autogen_grad"


def test_legacy_add_passes_a_through_and_reduces_b():
    net = Net("l")
    net.Add(["a", "b"], "loss", broadcast=1, axis=1)
    grads = net.add_gradient_ops(["loss"])
    assert str(grads["a"]) == "loss_autogen_grad"
    ops = net.Proto().op
    assert ops[-1].type == "SumReduceLike" and [a.i for a in ops[-1].arg if a.name == "axis"] == [1]
    ws = Workspace()
    ws.feed_blob("a", np.ones((2, 3, 4)))
    ws.feed_blob("b", np.ones(3))
    ws.run_net_once(net)
    np.testing.assert_array_equal(ws.fetch_blob(str(grads["b"])), [8.0, 8.0, 8.0])


@pytest.mark.parametrize(
    "make",
    [
        lambda n: n.Mul(["x", "y"], "x"),
        lambda n: n.Mul(["y", "x"], "x"),
        lambda n: n.Div(["y", "x"], "x"),
        lambda n: n.Max(["x", "y"], "x"),
        lambda n: n.WeightedSum(["x", "w", "y", "w"], "x", grad_on_w=1),
    ],
)
def test_gradients_that_need_an_overwritten_input_are_refused(make):
    net = Net("inplace")
    make(net)
    with pytest.raises(SchemaError, match=r"needs input \d \('x'\), which the op overwrites in place"):
        net.add_gradient_ops(["x"])


def test_in_place_uses_whose_gradient_only_needs_shapes_work():
    def build(net):
        net.Add(["p", "b"], "x")
        net.Add(["x", "c"], "x")  # x += c: the gradient reads nothing of x ...
        net.Relu("x", "x")  # ... so a later in-place op on x is fine
        net.SumElements("x", "l1")
        net.WeightedSum(["p", "w", "y", "w"], "z")
        net.Div(["z", "d"], "z")  # z /= d: DivGradient reads z only as C (and for A's shape)
        net.SumElements("z", "l2")
        net.Sub(["p", "c"], "u")
        net.Sub(["u", "b"], "u")
        net.WeightedSum(["u", "w", "y", "w"], "u")  # the SGD form; its gradient reads no values
        net.SumElements("u", "l3", average=1)
        net.Sum(["l1", "l2", "l3"], "loss")

    rng = np.random.default_rng(2)
    feeds = {
        "p": rng.normal(size=(3, 4)),
        "b": rng.normal(size=(4,)),
        "c": rng.normal(size=(3, 1)),
        "d": rng.uniform(1, 2, size=(3, 4)),
        "y": rng.normal(size=(3, 4)),
        "w": np.array([0.5]),
    }
    check_against_finite_differences(build, feeds, ["p", "b", "c", "d", "y"])


def test_weighted_sum_runs_the_sgd_update_in_place():
    ws = Workspace()
    ws.feed_blob("w", np.array([1.0, 2.0], np.float32))
    ws.feed_blob("g", np.array([10.0, -10.0], np.float32))
    ws.feed_blob("one", np.ones(1, np.float32))
    ws.feed_blob("lr", np.full(1, -0.1, np.float32))
    net = Net("sgd")
    net.WeightedSum(["w", "one", "g", "lr"], "w")
    ws.create_net(net)
    ws.run_net("sgd", num_iter=2)
    np.testing.assert_allclose(ws.fetch_blob("w"), [-1.0, 4.0])


def test_comparisons_give_bool_and_stop_gradients():
    ws = Workspace()
    ws.feed_blob("a", np.array([[1, 2, 3], [3, 2, 1]], np.int32))
    ws.feed_blob("b", np.array([2], np.int32))
    net = Net("cmp")
    net.EQ(["a", "b"], "eq")
    net.LT(["a", "b"], "lt")
    net.GT(["a", "b"], "gt")
    net.Or(["lt", "gt"], "ne")
    net.Not("ne", "eq2")
    net.And(["eq", "eq2"], "both")
    ws.run_net_once(net)
    eq = ws.fetch_blob("eq")
    assert eq.dtype == np.bool_ and eq.tolist() == [[False, True, False], [False, True, False]]
    np.testing.assert_array_equal(ws.fetch_blob("both"), eq)
    g = Net("nograd")
    g.LT(["x", "y"], "m")
    assert "x" not in g.add_gradient_ops(["m"])  # comparisons stop gradients


@pytest.mark.parametrize(
    ("op", "inputs", "args", "message"),
    [
        ("Add", [(2, 3), (4,)], {}, r"Add: shapes \[2, 3\] and \[4\] do not broadcast"),
        ("Max", [(2, 3), (3,)], {}, r"Max: all inputs must have one shape, got \[2, 3\], \[3\]"),
        ("WeightedSum", [(2, 3), (1,), (2, 3)], {}, r"inputs come in \(X, weight\) pairs, got 3"),
        ("WeightedSum", [(2, 3), (2,)], {}, r"WeightedSum: weight 0 must have one element, got shape \[2\]"),
        ("BatchMatMul", [(2, 3, 4), (2, 5, 6)], {}, r"A \[2, 3, 4\] gives K=4 but B \[2, 5, 6\] gives K=5"),
        ("BatchMatMul", [(2, 3, 4), (3, 4, 5)], {}, r"need equal batch dims without broadcast=1"),
        ("BatchMatMul", [(2, 3, 4), (3, 4, 5)], {"broadcast": 1}, r"shapes \[2\] and \[3\] do not broadcast"),
        ("BatchMatMul", [(4,), (4, 5)], {"broadcast": 1}, r"must both be at least 2-D"),
        ("ReduceSum", [(2, 3)], {"axes": [1, -1]}, r"axes \[1, -1\] name an axis twice"),
        (
            "ReduceMean",
            [(2, 3)],
            {"axes": [2]},
            r"ReduceMean: axes entry 2 is out of range for a rank-2 input",
        ),
        ("ReduceMax", [(2, 0)], {"axes": [1]}, r"cannot reduce an empty axis of X \[2, 0\]"),
        ("EQ", [(2, 3), (4,)], {}, r"EQ: shapes \[2, 3\] and \[4\] do not broadcast"),
        ("LT", [(2, 3), (4,)], {"broadcast": 1}, r"with broadcast=1, B \[4\] does not match A \[2, 3\]"),
        ("SumReduceLike", [(2, 3), (4,)], {}, r"SumReduceLike: with broadcast=1, B \[4\] does not match"),
    ],
)
def test_shape_errors_name_the_shapes(op, inputs, args, message):
    ws = Workspace()
    names = []
    for i, shape in enumerate(inputs):
        ws.feed_blob(f"in{i}", np.zeros(shape, np.float32))
        names.append(f"in{i}")
    net = Net("bad")
    getattr(net, op)(names, "out", **args)
    with pytest.raises(ShapeError, match=message):
        ws.create_net(net)


def test_logic_ops_refuse_non_bool_inputs():
    ws = Workspace()
    ws.feed_blob("a", np.zeros(3, np.float32))
    ws.feed_blob("b", np.zeros(3, np.float32))
    net = Net("bad")
    net.And(["a", "b"], "c")
    with pytest.raises(ShapeError, match="And: inputs must be bool, got float32"):
        ws.create_net(net)

"""The activation and unary families in whole nets: gradients through add_gradient_ops (in-place
uses refused where the gradient reads X, allowed where it reads Y), StopGradient, Cast's dtypes and
gradient, and the argument and shape errors conformance cases cannot show."""

from __future__ import annotations

import numpy as np
import pytest
from optest import check_against_finite_differences

from kaffa import Net, Workspace
from kaffa.errors import ArgumentError, SchemaError, ShapeError
from kaffa.proto import TensorProto


def test_a_chain_of_activations_and_unary_ops_differentiates():
    rng = np.random.default_rng(0)

    def build(net):
        net.PRelu(["x", "slope"], "a")
        net.Elu("a", "b")
        net.LeakyRelu("b", "c", alpha=0.2)
        net.Selu("c", "d")
        net.Softplus("d", "e")
        net.Sigmoid("e", "f")
        net.Tanh("f", "g")
        net.Softmax("g", "h", axis=1)
        net.Exp("h", "i")
        net.Sqrt("i", "j")
        net.Clip("j", "k", min=1.0, max=1.5)
        net.Scale("k", "l", scale=-3.0)
        net.Negative("l", "l")  # in place: Scale's gradient reads nothing of l
        net.Elu("l", "l")  # in place: Negative's gradient reads nothing, Elu's reads its own Y
        net.Abs("l", "m1")
        net.Log("m1", "m2")
        net.Sqr("m2", "m3")
        net.Pow("m3", "m4", exponent=1.5)
        net.Pow(["m4", "p"], "m")
        net.SumElements("m", "loss")

    feeds = {
        "x": rng.uniform(0.1, 1, size=(2, 3, 2)) * rng.choice([-1, 1], size=(2, 3, 2)),
        "slope": rng.uniform(0.1, 0.5, size=(3,)),
        "p": rng.uniform(0.5, 2, size=(2,)),
    }
    check_against_finite_differences(build, feeds, ["x", "slope", "p"])


def test_legacy_broadcast_pow_sums_the_exponent_gradient():
    rng = np.random.default_rng(1)

    def build(net):
        net.Pow(["x", "e"], "y", broadcast=1, axis=0)
        net.SumElements("y", "loss")

    feeds = {"x": rng.uniform(0.5, 2, size=(3, 4)), "e": rng.uniform(-1, 2, size=(3,))}
    check_against_finite_differences(build, feeds, ["x", "e"])


@pytest.mark.parametrize(
    "make",
    [
        lambda n: n.Log("x", "x"),
        lambda n: n.Sqr("x", "x"),
        lambda n: n.Abs("x", "x"),
        lambda n: n.Pow("x", "x", exponent=2.0),
        lambda n: n.Pow(["x", "e"], "x"),
        lambda n: n.PRelu(["x", "s"], "x"),
    ],
)
def test_gradients_that_need_an_overwritten_input_are_refused(make):
    net = Net("inplace")
    make(net)
    with pytest.raises(SchemaError, match=r"needs input 0 \('x'\), which the op overwrites in place"):
        net.add_gradient_ops(["x"])


def test_stop_gradient_stops_the_gradient():
    net = Net("stop")
    net.Sqr("x", "y")
    net.StopGradient("y", "z")
    net.Mul(["z", "w"], "loss")
    grads = net.add_gradient_ops(["loss"])
    assert "w" in grads and "x" not in grads and "y" not in grads
    assert "Sqr" not in [op.type for op in net.Proto().op if op.is_gradient_op]


@pytest.mark.parametrize(
    ("to", "want"),
    [
        ("FLOAT", np.float32),
        ("float", np.float32),
        ("double", np.float64),
        ("float16", np.float16),
        ("INT32", np.int32),
        (TensorProto.INT64, np.int64),
        (TensorProto.BOOL, np.bool_),
        ("uint8", np.uint8),
    ],
)
def test_cast_takes_datatype_numbers_and_names(to, want):
    ws = Workspace()
    ws.feed_blob("x", np.array([-2.7, 0.0, 1.5, 3.9], np.float32))
    net = Net("cast")
    net.Cast("x", "y", to=to)
    ws.run_net_once(net)
    y = ws.fetch_blob("y")
    assert y.dtype == want
    if np.dtype(want).kind in "iu" and np.dtype(want) != np.uint8:
        assert y.tolist() == [-2, 0, 1, 3]  # toward zero, as C casts


@pytest.mark.parametrize("extra", [{}, {"from_type": "FLOAT"}])
def test_cast_gradient_comes_back_in_the_input_dtype(extra):
    net = Net("castg")
    net.Cast("x", "xd", to="DOUBLE", **extra)
    net.Sqr("xd", "y")
    net.SumElements("y", "loss")
    grads = net.add_gradient_ops({"loss": "seed"})
    assert [op.type for op in net.Proto().op][-1] == ("Cast" if extra else "CastGradient")
    ws = Workspace()
    ws.feed_blob("x", np.array([1.0, -2.0], np.float32))
    ws.feed_blob("seed", np.array(1.0))
    ws.run_net_once(net)
    g = ws.fetch_blob(str(grads["x"]))
    assert g.dtype == np.float32 and g.tolist() == [2.0, -4.0]


def test_clip_defaults_are_no_bounds_and_integers_clip_to_whole_bounds():
    ws = Workspace()
    ws.feed_blob("f", np.array([-1e30, 0.5, 1e30], np.float32))
    ws.feed_blob("i", np.arange(-4, 5, dtype=np.int32))
    net = Net("clip")
    net.Clip("f", "f2")
    net.Clip("i", "i2", min=-2.5, max=2.5)
    ws.run_net_once(net)
    np.testing.assert_array_equal(ws.fetch_blob("f2"), np.array([-1e30, 0.5, 1e30], np.float32))
    i2 = ws.fetch_blob("i2")
    assert i2.dtype == np.int32 and i2.tolist() == [-2, -2, -2, -1, 0, 1, 2, 2, 2]


@pytest.mark.parametrize(
    ("op", "inputs", "args", "error", "message"),
    [
        (
            "PRelu",
            [(2, 3, 4), (4,)],
            {},
            ShapeError,
            r"slope \[4\] must have 1 or C=3 elements for X \[2, 3, 4\]",
        ),
        ("PRelu", [(2, 3, 4), (3,)], {"order": "NHWC"}, ShapeError, r"must have 1 or C=4 elements"),
        ("PRelu", [(5,), (5,)], {}, ShapeError, r"X \[5\] needs a channel axis 1 \(order NCHW\)"),
        ("PRelu", [(2, 3), (3,)], {"order": "CHW"}, ShapeError, r"order must be NCHW or NHWC, got 'CHW'"),
        ("Pow", [(2, 3)], {}, ShapeError, r"give the exponent as the `exponent` argument or as input 1"),
        (
            "Pow",
            [(2, 3), (3,)],
            {"exponent": 2.0},
            ShapeError,
            r"either as the `exponent` argument or as input",
        ),
        ("Pow", [(2, 3), (4,)], {}, ShapeError, r"Pow: shapes \[2, 3\] and \[4\] do not broadcast"),
        ("Pow", [(2, 3), (2,)], {"broadcast": 1}, ShapeError, r"with broadcast=1, B \[2\] does not match A"),
        ("Cast", [(2,)], {}, ArgumentError, r"Cast requires argument 'to'"),
        ("Cast", [(2,)], {"to": "NOPE"}, ArgumentError, r"Cast: argument 'to'"),
        ("Cast", [(2,)], {"to": TensorProto.STRING}, ShapeError, r"Cast: cannot cast to object"),
    ],
)
def test_errors_name_the_problem(op, inputs, args, error, message):
    ws = Workspace()
    names = []
    for i, shape in enumerate(inputs):
        ws.feed_blob(f"in{i}", np.ones(shape, np.float32))
        names.append(f"in{i}")
    with pytest.raises(error, match=message):  # argument errors at op creation, shape errors at net creation
        net = Net("bad")
        getattr(net, op)(names, "out", **args)
        ws.create_net(net)

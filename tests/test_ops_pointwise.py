"""The pointwise family in whole nets: gradients through add_gradient_ops (Where's summed to broadcast
inputs; in-place uses refused where the gradient reads X), Mod's two forms and sign rules, BitShift
and bitwise ops on the small integer dtypes, shape inference, the argument and shape errors
conformance cases cannot show, and the ONNX translations."""

from __future__ import annotations

import numpy as np
import pytest
from optest import check_against_finite_differences, loss_and_grads

from kaffa import Net, Workspace
from kaffa.errors import ArgumentError, SchemaError, ShapeError
from kaffa.schema import SCHEMAS, TensorInfo


def _one(op: str, feeds: dict[str, np.ndarray], out: str = "y", **args):
    ws = Workspace()
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    net = Net(op)
    getattr(net, op)(list(feeds), out, **args)
    ws.run_net_once(net)
    return ws.fetch_blob(out)


# -- gradients -------------------------------------------------------------------------------------
def test_a_chain_of_pointwise_ops_differentiates():
    rng = np.random.default_rng(0)

    def build(net):
        net.Sin("x", "a")
        net.Cos("a", "b")
        net.Tan("b", "c")  # b = cos(sin x) in (0.54, 1]
        net.Atan("c", "d")
        net.Sinh("d", "e")
        net.Cosh("e", "f")
        net.Asinh("f", "g")
        net.Acosh("f", "g2")  # f = cosh(.) >= 1, and > 1 away from 0
        net.Erf("g", "h")
        net.Gelu("h", "i")
        net.Gelu("g2", "i2", fast_gelu=1)
        net.Reciprocal("i2", "i2")  # in place: the gradient reads Y
        net.Asin("h", "j")  # h = erf(.) in (-1, 1)
        net.Scale("j", "j2", scale=0.5)
        net.Acos("j2", "k")
        net.Atanh("j2", "k2")
        net.Sum(["i", "i2", "k", "k2"], "m")
        net.SumElements("m", "loss")

    feeds = {"x": rng.uniform(0.3, 1.2, size=(2, 3))}
    check_against_finite_differences(build, feeds, ["x"])


def test_where_gradient_sums_to_broadcast_inputs():
    rng = np.random.default_rng(1)
    c = rng.random((2, 3, 4)) < 0.5

    def build(net):
        net.Where(["c", "x", "y"], "z")
        net.Mul(["z", "w"], "zw")
        net.SumElements("zw", "loss")

    feeds = {
        "c": c,
        "x": rng.normal(size=(3, 1)),
        "y": rng.normal(size=(4,)),
        "w": rng.normal(size=(2, 3, 4)),
    }
    check_against_finite_differences(build, feeds, ["x", "y"])
    _, grads = loss_and_grads(build, feeds, ["x", "y"])
    w = feeds["w"]
    np.testing.assert_allclose(grads["x"], np.where(c, w, 0).sum(axis=(0, 2)).reshape(3, 1))
    np.testing.assert_allclose(grads["y"], np.where(c, 0, w).sum(axis=(0, 1)))


def test_where_broadcast_on_rows():
    c = np.array([True, False, True])
    x, y = np.arange(6.0).reshape(3, 2), -np.arange(6.0).reshape(3, 2)
    got = _one("Where", {"c": c, "x": x, "y": y}, broadcast_on_rows=1)
    np.testing.assert_array_equal(got, np.where(c[:, None], x, y))

    def build(net):
        net.Where(["c", "x", "y"], "z", broadcast_on_rows=1)
        net.SumElements("z", "loss")

    check_against_finite_differences(build, {"c": c, "x": x, "y": y}, ["x", "y"])


def test_where_has_no_gradient_for_the_condition():
    net = Net("w")
    net.Where(["c", "x", "y"], "z")
    grads = net.add_gradient_ops(["z"])
    assert "x" in grads and "y" in grads and "c" not in grads


@pytest.mark.parametrize("op", ["Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Erf", "Gelu"])
def test_gradients_that_need_an_overwritten_input_are_refused(op):
    net = Net("inplace")
    getattr(net, op)("x", "x")
    with pytest.raises(SchemaError, match=r"needs input 0 \('x'\), which the op overwrites in place"):
        net.add_gradient_ops(["x"])


@pytest.mark.parametrize("op", ["Ceil", "Floor", "Round", "BitwiseNot"])
def test_rounding_and_bitwise_ops_stop_gradients(op):
    net = Net("nd")
    net.Sqr("x", "a")
    getattr(net, op)("a", "y")
    grads = net.add_gradient_ops(["y"])
    assert "x" not in grads and "a" not in grads
    assert "SqrGradient" not in [o.type for o in net.Proto().op] and "Scale" not in [
        o.type for o in net.Proto().op
    ]


@pytest.mark.parametrize(
    ("op", "ins", "order"),
    [
        ("Sin", ["x"], ["x", "y_grad"]),
        ("Sinh", ["x"], ["y_grad", "x"]),
        ("Gelu", ["x"], ["y_grad", "x"]),
        ("Reciprocal", ["x"], ["y", "y_grad"]),
    ],
)
def test_gradient_ops_take_caffe2_input_orders(op, ins, order):
    net = Net("g")
    getattr(net, op)(ins, "y")
    net.add_gradient_ops({"y": "y_grad"})
    (gop,) = [o for o in net.Proto().op if o.is_gradient_op]
    assert gop.type == f"{op}Gradient" and list(gop.input) == order


# -- values ----------------------------------------------------------------------------------------
def test_round_halves_to_even_and_gelu_forms():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.6], np.float32)
    np.testing.assert_array_equal(_one("Round", {"x": x}), [-2, -2, -0, 0, 2, 2, 3])
    g = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    exact = _one("Gelu", {"x": g})
    fast = _one("Gelu", {"x": g}, fast_gelu=1)
    np.testing.assert_allclose(exact, [-0.0040496, -0.1586553, 0.0, 0.8413447, 2.9959503], atol=1e-7)
    np.testing.assert_allclose(fast, exact, atol=1e-3)
    assert not np.array_equal(fast, exact)


def test_mod_sign_rules():
    a = np.array([-7, -7, 7, 7, 5], np.int32)
    b = np.array([3, -3, 3, -3, 0], np.int32)
    assert _one("Mod", {"a": a, "b": b}).tolist() == [2, -1, 1, -2, 0]  # sign of B; x % 0 is 0
    assert _one("Mod", {"a": a, "b": b}, fmod=1).tolist() == [-1, -1, 1, 1, 0]  # sign of A
    # Caffe2's form: the divisor as an argument, the sign of X unless sign_follow_divisor.
    x = np.array([-7, 7], np.int64)
    assert _one("Mod", {"x": x}, divisor=3).tolist() == [-1, 1]
    assert _one("Mod", {"x": x}, divisor=3, sign_follow_divisor=1).tolist() == [2, 1]
    f = _one("Mod", {"a": np.array([-7.5, 7.5]), "b": np.array([2.0, -2.0])}, fmod=1)
    np.testing.assert_array_equal(f, [-1.5, 1.5])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_bitshift_unsigned(dtype):
    x = np.array([16, 4, 1, 255], dtype)
    s = np.array([1, 2, 3, 8], dtype)
    bits = np.dtype(dtype).itemsize * 8
    left = _one("BitShift", {"x": x, "s": s}, direction="LEFT")
    assert left.dtype == dtype
    want = [32, 16, 8, 0 if bits == 8 else 255 << 8]
    assert left.tolist() == want
    assert _one("BitShift", {"x": x, "s": s}, direction="RIGHT").tolist() == [8, 1, 0, 0]
    big = np.array([bits, bits + 1, 0, 1], dtype)
    assert _one("BitShift", {"x": x, "s": big}, direction="LEFT").tolist()[:2] == [0, 0]


def test_bitshift_signed_wraps_and_is_arithmetic():
    x = np.array([-8, 64, -1, 5], np.int8)
    s = np.array([1, 1, 9, -1], np.int8)
    assert _one("BitShift", {"x": x, "s": s}, direction="LEFT").tolist() == [-16, -128, 0, 0]
    assert _one("BitShift", {"x": x, "s": s}, direction="RIGHT").tolist() == [-4, 32, -1, 0]


def test_bitwise_ops_on_small_ints_and_bool():
    a = np.array([0b1100, 0b1010], np.uint8)
    b = np.array([0b1010, 0b0110], np.uint8)
    assert _one("BitwiseAnd", {"a": a, "b": b}).tolist() == [0b1000, 0b0010]
    assert _one("BitwiseOr", {"a": a, "b": b}).tolist() == [0b1110, 0b1110]
    assert _one("BitwiseXor", {"a": a, "b": b}).tolist() == [0b0110, 0b1100]
    assert _one("BitwiseNot", {"a": a}).tolist() == [0b11110011, 0b11110101]
    t = np.array([True, False])
    assert _one("BitwiseNot", {"t": t}).tolist() == [False, True]
    # Caffe2's legacy broadcast: B lines up at `axis`.
    m = np.arange(6, dtype=np.int16).reshape(2, 3)
    got = _one("BitwiseAnd", {"m": m, "k": np.array([1, 3], np.int16)}, broadcast=1, axis=0)
    assert got.tolist() == [[0, 1, 0], [3, 0, 1]]


# -- shape inference and errors --------------------------------------------------------------------
def _infer(op, infos, **args):
    schema = SCHEMAS.get(op)
    from kaffa.schema import make_argument

    parsed = schema.parse_args([make_argument(k, v) for k, v in args.items()])
    return schema.infer_outputs(parsed, infos, len(schema.output_docs))


F32, BOOL = np.dtype(np.float32), np.dtype(np.bool_)


def test_shape_inference():
    (z,) = _infer("Where", [TensorInfo((4,), BOOL), TensorInfo((3, 1), F32), TensorInfo((None, 1, 4), F32)])
    assert z == TensorInfo((None, 3, 4), F32)
    (z,) = _infer(
        "Where",
        [TensorInfo((3,), BOOL), TensorInfo((3, 5), F32), TensorInfo((3, 5), F32)],
        broadcast_on_rows=1,
    )
    assert z.shape == (3, 5)
    u8 = np.dtype(np.uint8)
    (y,) = _infer("BitShift", [TensorInfo((2, 3), u8), TensorInfo((3,), u8)], direction="LEFT")
    assert y == TensorInfo((2, 3), u8)
    (y,) = _infer("Mod", [TensorInfo((5,), np.dtype(np.int32))], divisor=2)
    assert y.shape == (5,)
    dx, dy = _infer(
        "WhereGradient",
        [TensorInfo((4,), BOOL), TensorInfo((3, 1), F32), TensorInfo((4,), F32), TensorInfo((3, 4), F32)],
    )
    assert dx.shape == (3, 1) and dy.shape == (4,)


@pytest.mark.parametrize(
    ("op", "infos", "args", "match"),
    [
        (
            "Where",
            [TensorInfo((3,), F32), TensorInfo((3,), F32), TensorInfo((3,), F32)],
            {},
            "condition C must be bool",
        ),
        (
            "Where",
            [TensorInfo((3,), BOOL), TensorInfo((3,), F32), TensorInfo((4,), F32)],
            {},
            r"\[3\] and \[4\] do not broadcast",
        ),
        (
            "Where",
            [TensorInfo((4,), BOOL), TensorInfo((3, 5), F32), TensorInfo((3, 5), F32)],
            {"broadcast_on_rows": 1},
            "one entry per row",
        ),
        (
            "Where",
            [TensorInfo((3,), BOOL), TensorInfo((3,), F32), TensorInfo((3,), np.dtype(np.float64))],
            {},
            "share one dtype",
        ),
        ("Mod", [TensorInfo((3,), F32)], {}, "give the divisor"),
        ("Mod", [TensorInfo((3,), np.dtype(np.int32))], {"divisor": 0}, "divisor must not be 0"),
        (
            "Mod",
            [TensorInfo((3,), np.dtype(np.int32)), TensorInfo((3,), np.dtype(np.int32))],
            {"divisor": 2},
            "not both",
        ),
        (
            "BitShift",
            [TensorInfo((3,), F32), TensorInfo((3,), F32)],
            {"direction": "LEFT"},
            "inputs must be one of",
        ),
        ("BitShift", [TensorInfo((3,), np.dtype(np.uint8))] * 2, {"direction": "UP"}, "LEFT or RIGHT"),
        ("BitwiseAnd", [TensorInfo((3,), F32)] * 2, {}, "inputs must be one of"),
        (
            "SinGradient",
            [TensorInfo((3,), F32), TensorInfo((4,), F32)],
            {},
            r"X \[3\] and dY \[4\] must have one shape",
        ),
        (
            "SinhGradient",
            [TensorInfo((4,), F32), TensorInfo((3,), F32)],
            {},
            r"X \[3\] and dY \[4\] must have one shape",
        ),
    ],
)
def test_shape_errors(op, infos, args, match):
    with pytest.raises(ShapeError, match=match):
        _infer(op, infos, **args)


def test_argument_errors():
    with pytest.raises(ArgumentError, match="BitShift requires argument 'direction'"):
        SCHEMAS.get("BitShift").parse_args([])
    with pytest.raises(ArgumentError, match="did you mean 'fast_gelu'"):
        _one("Gelu", {"x": np.zeros(2)}, fast_gel=1)


def test_runtime_errors_name_the_shapes():
    with pytest.raises(ShapeError, match="Where: shapes"):
        _one("Where", {"c": np.array([True, False]), "x": np.zeros(3), "y": np.zeros(3)})


# -- ONNX ------------------------------------------------------------------------------------------
onnx = pytest.importorskip("onnx")


def _onnx_run(node, inputs: dict[str, np.ndarray]):
    import kaffa.onnx.backend as kb

    return kb.run_node(node, list(inputs.values()))


@pytest.mark.parametrize(
    ("node", "inputs", "want"),
    [
        (
            onnx.helper.make_node("Gelu", ["x"], ["y"], approximate="tanh"),
            {"x": np.array([-1.0, 0.5], np.float32)},
            lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
        ),
        (
            onnx.helper.make_node("Reciprocal", ["x"], ["y"]),
            {"x": np.array([-4.0, 0.5], np.float32)},
            lambda x: 1 / x,
        ),
        (
            onnx.helper.make_node("Mod", ["a", "b"], ["y"]),
            {"a": np.array([-7, 7], np.int64), "b": np.array([3, -3], np.int64)},
            lambda a, b: np.mod(a, b),
        ),
        (
            onnx.helper.make_node("BitShift", ["a", "b"], ["y"], direction="RIGHT"),
            {"a": np.array([16, 255], np.uint8), "b": np.array([2, 4], np.uint8)},
            lambda a, b: a >> b,
        ),
        (
            onnx.helper.make_node("Where", ["c", "a", "b"], ["y"]),
            {"c": np.array([True, False]), "a": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)},
            lambda c, a, b: np.where(c, a, b),
        ),
    ],
)
def test_onnx_translations(node, inputs, want):
    (got,) = _onnx_run(node, inputs)
    np.testing.assert_allclose(got, want(*inputs.values()), rtol=1e-6)


def test_onnx_reciprocal_and_gelu_are_single_ops():
    from onnx import TensorProto as OT
    from onnx import helper

    from kaffa.onnx import import_model

    x = helper.make_tensor_value_info("x", OT.FLOAT, [2])
    y = helper.make_tensor_value_info("y", OT.FLOAT, [2])
    nodes = [helper.make_node("Reciprocal", ["x"], ["r"]), helper.make_node("Gelu", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    _, pred = import_model(model)
    assert [op.type for op in pred.op] == ["Reciprocal", "Gelu"]


def test_onnx_float_mod_without_fmod_takes_the_divisors_sign():
    # ONNX opset 28's tests define float Mod with fmod=0 as numpy.mod (Python's %).
    from onnx import TensorProto as OT
    from onnx import helper

    from kaffa.onnx import import_model

    a = helper.make_tensor_value_info("a", OT.FLOAT, [3])
    b = helper.make_tensor_value_info("b", OT.FLOAT, [3])
    y = helper.make_tensor_value_info("y", OT.FLOAT, [3])
    graph = helper.make_graph([helper.make_node("Mod", ["a", "b"], ["y"])], "g", [a, b], [y])
    _, pred = import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [op.type for op in pred.op] == ["Mod"]
    got = _one("Mod", {"a": np.array([-7.5, 7.5, 5.0]), "b": np.array([2.0, -2.0, 2.5])})
    assert got.tolist() == [0.5, -0.5, 0.0]

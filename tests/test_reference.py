"""The float64 references: they agree with shape inference on every case, a few hand-computed
values pin the Caffe-specific rules, and they are cross-checked against ``onnx.reference`` for
every op ONNX defines with the same meaning."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from kaffa.schema import SCHEMAS, TensorInfo, make_argument
from kaffa_conformance import cases, reference
from kaffa_conformance.cases import Case

OPS = [
    *("Relu", "Sigmoid", "Tanh", "Softmax"),
    *("FC", "Conv", "MaxPool", "AveragePool"),
    *("Add", "Sub", "Mul", "Div", "Sum", "MatMul"),
    *("Concat", "Split", "Reshape", "Transpose", "Flatten", "Copy"),
    *("ConstantFill", "GaussianFill", "UniformFill"),
    *("GivenTensorFill", "GivenTensorDoubleFill", "GivenTensorIntFill", "GivenTensorInt64Fill"),
    "GivenTensorBoolFill",
]


def _args(case: Case, dtype: np.dtype) -> dict:
    """Parsed arguments, as the runner builds them (fillers get the dtype under test)."""
    schema = SCHEMAS.get(case.op)
    raw = dict(case.args)
    if schema.type_input is None and "dtype" in schema.args and "dtype" not in raw:
        raw["dtype"] = dtype
    return schema.parse_args([make_argument(k, v) for k, v in raw.items()])


def _inputs(case: Case, dtype: np.dtype) -> list[np.ndarray]:
    """Inputs cast to ``dtype`` (fixed-dtype inputs keep theirs)."""
    return [np.asarray(x).astype(case.fixed_dtype_inputs.get(i, dtype)) for i, x in enumerate(case.inputs)]


def _view(x: np.ndarray) -> np.ndarray:
    """What the reference sees: float64, int64 or bool."""
    return x.astype(np.float64) if x.dtype.kind == "f" else x.astype(np.int64) if x.dtype.kind in "iu" else x


def _run_ref(case: Case, args: dict, inputs: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    fn = reference.get(case.op)
    assert fn is not None, f"no reference for {case.op}"
    extra = {"num_outputs": case.num_outputs} if "num_outputs" in inspect.signature(fn).parameters else {}
    return tuple(fn(args, *[_view(x) for x in inputs], **extra))


def _dtypes(case: Case) -> list[np.dtype]:
    """float64 and (where the op has them) int64 and bool: the reference's code paths."""
    allowed = [np.dtype(d) for d in (case.dtypes or SCHEMAS.get(case.op).dtypes)]
    picked = [d for d in map(np.dtype, ("float64", "int64", "bool")) if d in allowed]
    return picked or allowed[:1]


# -- consistency with the schemas ------------------------------------------------------------------
@pytest.mark.parametrize("op", OPS)
def test_reference_matches_shape_inference(op):
    schema = SCHEMAS.get(op)
    got = cases.for_op(op)
    assert 4 <= len(got) <= 20, f"{op} has {len(got)} cases"
    for case in got:
        for dtype in _dtypes(case):
            args, arrays = _args(case, dtype), _inputs(case, dtype)
            outs = _run_ref(case, args, arrays)
            assert len(outs) >= case.num_outputs, case.id
            inferred = schema.infer_outputs(args, [TensorInfo.of(a) for a in arrays], case.num_outputs)
            for j, (out, info) in enumerate(zip(outs, inferred)):
                where = f"{case.id} [{dtype.name}] output {j}"
                assert info.shape is not None, where
                assert out.ndim == len(info.shape), f"{where}: {out.shape} vs {info.shape}"
                assert all(d is None or d == g for d, g in zip(info.shape, out.shape)), (
                    f"{where}: {out.shape} vs {info.shape}"
                )
                if info.dtype is not None and info.dtype.kind in "biu":
                    # references compute every integer width in int64, so only the kind family counts
                    want = "b" if info.dtype.kind == "b" else "iu"
                    assert np.asarray(out).dtype.kind in want, f"{where}: {out.dtype}"
                assert case.op_class == cases.RANDOM or np.all(np.isfinite(out.astype(np.float64))), where
            if case.check is not None:
                assert case.check(list(outs), args, dtype) == [], case.id


def test_cases_are_deterministic():
    for op in ("Conv", "Div", "Split", "UniformFill"):
        first, second = cases.for_op(op), cases.for_op(op)
        for a, b in zip(first, second):
            assert all(np.array_equal(x, y) for x, y in zip(a.inputs, b.inputs)), a.id


# -- hand-computed values for the Caffe-specific rules ---------------------------------------------
def _ref(op, inputs, **raw):
    args = SCHEMAS.get(op).parse_args([make_argument(k, v) for k, v in raw.items()])
    return reference.get(op)(args, *inputs)


def test_integer_div_truncates_toward_zero():
    a, b = np.array([-7, 7, -7, 7, 6]), np.array([2, -2, -2, 2, -3])
    (y,) = _ref("Div", [a, b])
    assert y.tolist() == [-3, -3, 3, 3, -2]


def test_legacy_broadcast_lines_b_up_at_axis():
    a = np.zeros((2, 3, 4))
    (y,) = _ref("Add", [a, np.array([1.0, 2.0, 3.0])], broadcast=1, axis=1)
    assert y.shape == (2, 3, 4) and np.all(y[:, 1, :] == 2.0)
    (y,) = _ref("Sub", [a, np.array([1.0, 2.0, 3.0, 4.0])], broadcast=1)  # axis -1: trailing
    assert np.all(y[1, 2] == [-1, -2, -3, -4])


def test_caffe_ceil_mode_sizes_and_divisors():
    x = np.ones((1, 1, 6, 6))
    # ceil((6 + 2 - 3) / 2) + 1 = 4 windows; the last covers image col 5, pad col 6, overhang col 7.
    (y,) = _ref("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=3, count_include_pad=1)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)  # 2x2 image cells, 3x3 counted
    assert y[0, 0, 3, 3] == pytest.approx(1 / 4)  # 1x1 image cell, 2x2 counted (no overhang)
    (y,) = _ref("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=3)
    assert np.all(y == 1.0)
    # 7 + pad 1 + 1, kernel 2, stride 2: ceil(7 / 2) + 1 = 5, but window 5 would start in the end pad.
    (y,) = _ref("MaxPool", [np.arange(49.0).reshape(1, 1, 7, 7)], kernel=2, stride=2, pad=1, legacy_pad=3)
    assert y.shape == (1, 1, 4, 4) and y[0, 0, 3, 3] == 48.0
    # Without a begin pad the rule keeps the overhanging window: 8 -> 4 windows of 3, stride 2.
    (y,) = _ref("MaxPool", [np.arange(8.0).reshape(1, 1, 8)], kernels=[3], strides=[2], legacy_pad=3)
    assert y.ravel().tolist() == [2.0, 4.0, 6.0, 7.0]


def test_same_padding_puts_the_odd_cell_at_the_end():
    # in 7, stride 2, kernel 4: out 4, total pad 3 -> begin 1, end 2.
    x = np.arange(1.0, 8.0).reshape(1, 1, 7)
    (y,) = _ref("AveragePool", [x], kernels=[4], strides=[2], legacy_pad=2, count_include_pad=1)
    assert y.ravel().tolist() == pytest.approx([6 / 4, 14 / 4, 22 / 4, 13 / 4])


def test_split_equal_parts_needs_the_output_count():
    x = np.arange(6.0).reshape(1, 6)
    args = SCHEMAS.get("Split").parse_args([])
    parts = reference.get("Split")(args, x, num_outputs=3)
    assert [p.tolist() for p in parts] == [[[0, 1]], [[2, 3]], [[4, 5]]]
    with pytest.raises(TypeError, match="num_outputs"):
        reference.get("Split")(args, x)


# -- the random fillers' statistical checks --------------------------------------------------------
@pytest.mark.parametrize("op", ["GaussianFill", "UniformFill"])
def test_random_checks_reject_wrong_samples(op):
    for case in cases.for_op(op):
        args = _args(case, np.dtype("float32"))
        (good,) = _run_ref(case, args, _inputs(case, np.dtype("float32")))
        big = good.size >= 10_000
        assert case.check([good], args, np.dtype("float32")) == [], case.id
        scale = args["std"] if op == "GaussianFill" else args["max"] - args["min"]
        bad = {
            "wrong dtype": good.astype(np.float64),
            "wrong shape": good.reshape(-1)[:-1],
            "nan": np.where(np.arange(good.size).reshape(good.shape) == 0, np.nan, good).astype(good.dtype),
        }
        if big:
            bad["shifted"] = (good + 0.1 * scale).astype(good.dtype)
            bad["scaled"] = (good * 1.1 + (1 - 1.1) * good.mean()).astype(good.dtype)
            rng = np.random.default_rng(1)
            if op == "GaussianFill":  # a uniform with the right mean and std
                wrong = rng.uniform(-math.sqrt(3), math.sqrt(3), good.shape) * args["std"] + args["mean"]
            else:  # a triangular distribution on the right interval
                wrong = (rng.uniform(args["min"], args["max"], (2, *good.shape)).mean(axis=0)).astype(
                    good.dtype
                )
            bad["wrong distribution"] = wrong.astype(good.dtype)
        for what, y in bad.items():
            assert case.check([y], args, np.dtype("float32")) != [], f"{case.id}: {what} passed"


# -- cross-check against onnx.reference ------------------------------------------------------------
ONNX_OPSET = 21


def _per_axis(values, n):
    return list(values) * n if len(values) == 1 else list(values)


def _nchw(x):
    return np.moveaxis(x, -1, 1)


def _nhwc(y):
    return np.moveaxis(y, 1, -1)


class Skip(Exception):
    """This case has no ONNX equivalent (the reason is the message)."""


def _window_attrs(args, n, kernels, average=False):
    attrs = {"kernel_shape": list(kernels), "strides": _per_axis(args["strides"], n)}
    attrs["dilations"] = _per_axis(args["dilations"], n)
    if args["legacy_pad"] == 1:
        attrs["auto_pad"] = "VALID"
    elif args["legacy_pad"] == 2:
        attrs["auto_pad"] = "SAME_UPPER"  # the odd pad cell goes at the end, as in Caffe2
    else:
        attrs["pads"] = _per_axis(args["pads"], 2 * n)
    if args["legacy_pad"] == 3:
        if average and args["count_include_pad"]:
            raise Skip("onnx.reference counts the ceil-mode overhang with count_include_pad; Caffe2 does not")
        attrs["ceil_mode"] = 1
    return attrs


def _onnx_conv(args, x, w, b=None):
    if args["legacy_pad"] == 3:
        raise Skip("ONNX Conv has no ceil mode")
    nhwc = args["order"] == "NHWC"
    if nhwc:
        x, w = _nchw(x), _nchw(w)
    attrs = _window_attrs(args, x.ndim - 2, w.shape[2:])
    attrs["group"] = args["group"]
    post = _nhwc if nhwc else None
    return "Conv", [x, w] if b is None else [x, w, b], attrs, 1, post


def _onnx_pool(op):
    def convert(args, x):
        nhwc = args["order"] == "NHWC"
        if nhwc:
            x = _nchw(x)
        post = _nhwc if nhwc else None
        if args["global_pooling"]:
            return f"Global{op}", [x], {}, 1, post
        n = x.ndim - 2
        attrs = _window_attrs(args, n, _per_axis(args["kernels"], n), average=op == "AveragePool")
        if op == "AveragePool":
            attrs["count_include_pad"] = int(args["count_include_pad"])
        return op, [x], attrs, 1, post

    return convert


def _flat(x, axis):
    axis %= x.ndim
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _onnx_fc(args, x, w, b=None):
    axis = args["axis"] % x.ndim
    x2, w2 = _flat(x, axis), _flat(w, args["axis_w"])
    shape = (*x.shape[:axis], w2.shape[0])
    return "Gemm", [x2, w2] + ([] if b is None else [b]), {"transB": 1}, 1, lambda y: y.reshape(shape)


def _onnx_matmul(args, a, b):
    a2, b2 = _flat(a, args["axis_a"]), _flat(b, args["axis_b"])
    if not (args["trans_a"] or args["trans_b"]) and (a2.shape, b2.shape) == (a.shape, b.shape):
        return "MatMul", [a, b], {}, 1, None
    return "Gemm", [a2, b2], {"transA": int(args["trans_a"]), "transB": int(args["trans_b"])}, 1, None


def _onnx_binary(op):
    def convert(args, a, b):
        if args["broadcast"]:  # Caffe2 legacy: B's dims sit at A's dims axis..axis+B.ndim-1
            start = args["axis"] if args["axis"] != -1 else a.ndim - b.ndim
            b = b.reshape([*([1] * start), *b.shape, *([1] * (a.ndim - start - b.ndim))])
        return op, [a, b], {}, 1, None

    return convert


def _onnx_concat(args, *xs):
    if args["add_axis"]:
        axis = args["axis"] % (xs[0].ndim + 1)
        xs = tuple(np.expand_dims(x, axis) for x in xs)
    else:
        axis = args["axis"]
    return "Concat", list(xs), {"axis": axis}, 1, None


def _onnx_split(num_outputs):
    def convert(args, x, sizes=None):
        axis = args["axis"] % x.ndim
        if args["add_axis"]:
            split = np.ones(x.shape[axis], np.int64)
            return "Split", [x, split], {"axis": axis}, len(split), lambda y: np.squeeze(y, axis)
        if sizes is None and args["split"]:
            sizes = np.array(args["split"], np.int64)
        if sizes is None:
            return "Split", [x], {"axis": axis, "num_outputs": num_outputs}, num_outputs, None
        return "Split", [x, sizes.astype(np.int64)], {"axis": axis}, len(sizes), None

    return convert


def _onnx_reshape(args, x, shape=None):
    shape = np.array(args["shape"] if shape is None else shape, np.int64)
    return "Reshape", [x, shape], {}, 1, None


def _onnx_transpose(args, x):
    return "Transpose", [x], {"perm": args["axes"]} if args["axes"] else {}, 1, None


def _onnx_softmax(args, x):
    if x.ndim != 2 or args["axis"] % 2 != 1:
        raise Skip("ONNX Softmax (opset >= 13) normalizes one axis; the same only for 2-D, axis 1")
    return "Softmax", [x], {"axis": 1}, 1, None


def _same(op):
    return lambda args, *xs: (op, list(xs), {}, 1, None)


ONNX_EQUIVALENTS = {
    "Relu": lambda case: _same("Relu"),
    "Sigmoid": lambda case: _same("Sigmoid"),
    "Tanh": lambda case: _same("Tanh"),
    "Softmax": lambda case: _onnx_softmax,
    "FC": lambda case: _onnx_fc,
    "Conv": lambda case: _onnx_conv,
    "MaxPool": lambda case: _onnx_pool("MaxPool"),
    "AveragePool": lambda case: _onnx_pool("AveragePool"),
    "Add": lambda case: _onnx_binary("Add"),
    "Sub": lambda case: _onnx_binary("Sub"),
    "Mul": lambda case: _onnx_binary("Mul"),
    "Div": lambda case: _onnx_binary("Div"),
    "Sum": lambda case: _same("Sum"),
    "MatMul": lambda case: _onnx_matmul,
    "Concat": lambda case: _onnx_concat,
    "Split": lambda case: _onnx_split(case.num_outputs),
    "Reshape": lambda case: _onnx_reshape,
    "Transpose": lambda case: _onnx_transpose,
    "Flatten": lambda case: lambda args, x: ("Flatten", [x], {"axis": args["axis"]}, 1, None),
    "Copy": lambda case: _same("Identity"),
}


def _onnx_run(op_type, inputs, attrs, num_outputs):
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    names = [f"x{i}" for i in range(len(inputs))]
    outs = [f"y{j}" for j in range(num_outputs)]
    graph = helper.make_graph(
        [helper.make_node(op_type, names, outs, **attrs)],
        "one_op",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
            for n, x in zip(names, inputs)
        ],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))


@pytest.mark.parametrize("op", sorted(ONNX_EQUIVALENTS))
def test_reference_agrees_with_onnx(op):
    pytest.importorskip(
        "onnx", reason="onnx is not installed: the cross-check against onnx.reference is skipped"
    )
    checked, skipped = 0, []
    for case in cases.for_op(op):
        # float64; ops defined on integers also in int64 (Div's truncation among them).
        for dtype in [d for d in _dtypes(case) if d.kind != "b"]:
            args, arrays = _args(case, dtype), [_view(x) for x in _inputs(case, dtype)]
            try:
                op_type, ins, attrs, n_out, post = ONNX_EQUIVALENTS[op](case)(args, *arrays)
            except Skip as why:
                skipped.append(f"{case.name}: {why}")
                continue
            got = _onnx_run(op_type, ins, attrs, n_out)
            want = _run_ref(case, args, arrays)
            for j, g in enumerate(got[: case.num_outputs] if op != "Concat" else got[:1]):
                g = post(g) if post else g
                where = f"{case.id} [{dtype.name}] output {j} (onnx {op_type} {attrs})"
                assert g.shape == want[j].shape, f"{where}: {g.shape} vs {want[j].shape}"
                np.testing.assert_allclose(want[j], g, rtol=1e-10, atol=1e-12, err_msg=where)
            checked += 1
    assert checked >= 3, f"only {checked} cases of {op} cross-checked; skipped: {skipped}"

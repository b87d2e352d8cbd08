"""kaffa.onnx: every translator against onnxruntime, export round trips, errors, and Predictor."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as OT  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

import kaffa  # noqa: E402
from kaffa import brew, models, serialize  # noqa: E402
from kaffa.checkpoint import fill_op  # noqa: E402
from kaffa.model_helper import ModelHelper  # noqa: E402
from kaffa.onnx import OnnxExportError, UnsupportedOnnxOpError, export_model, import_model  # noqa: E402
from kaffa.proto import NetDef  # noqa: E402

R = np.random.default_rng(0)


def f32(*shape, lo=None):
    x = R.standard_normal(shape).astype(np.float32)
    return np.abs(x) + lo if lo is not None else x


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _model(nodes, inputs, inits=None, outputs=("y",), opset=17, out_types=None, sym=None):
    """A model whose graph inputs are ``inputs`` ({name: array}) and initializers ``inits``.
    ``sym`` names inputs whose first dim is symbolic (so nothing about it folds)."""
    out_types = out_types or {}
    sym = sym or ()
    g_inputs = []
    for name, value in inputs.items():
        shape = list(value.shape)
        if name in sym:
            shape[0] = "N"
        g_inputs.append(
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), shape)
        )
    g_outputs = [helper.make_tensor_value_info(o, out_types.get(o, OT.FLOAT), None) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "t", g_inputs, g_outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check(nodes, inputs, inits=None, outputs=("y",), opset=17, out_types=None, sym=None, rtol=1e-5):
    """Import, run on kaffa cpu and onnxruntime, compare (relative to the largest |ref|)."""
    m = _model(nodes, inputs, inits, outputs, opset, out_types, sym)
    ref = _ort(m, inputs)
    init, pred = import_model(m)
    got = kaffa.Predictor(init, pred).run(dict(inputs))
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        assert g.dtype == r.dtype
        if r.dtype == np.bool_ or r.dtype.kind == "i":
            np.testing.assert_array_equal(g, r)
        else:
            scale = max(float(np.max(np.abs(r))), 1e-30) if r.size else 1.0
            assert float(np.max(np.abs(g - r), initial=0.0)) / scale <= rtol
    return pred


N = helper.make_node


# -- layers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"pads": [0, 1, 2, 0], "strides": [2, 1]},  # asymmetric pads
        {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        {"auto_pad": "VALID"},
        {"group": 2, "kernel_shape": [3, 3]},
    ],
)
def test_conv(attrs):
    group = attrs.get("group", 1)
    w = f32(4, 4 // group, 3, 3)
    check([N("Conv", ["x", "w", "b"], ["y"], **attrs)], {"x": f32(2, 4, 9, 8)}, {"w": w, "b": f32(4)})


def test_conv_without_bias_and_1d():
    check([N("Conv", ["x", "w"], ["y"], pads=[1, 0])], {"x": f32(1, 3, 10)}, {"w": f32(5, 3, 3)})


def test_conv_transpose():
    node = N(
        "ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
    )
    check([node], {"x": f32(1, 3, 5, 5)}, {"w": f32(3, 2, 3, 3), "b": f32(2)})


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
        ("MaxPool", {"kernel_shape": [3, 3], "dilations": [2, 2]}),
        ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "count_include_pad": 1}),
        ("AveragePool", {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}),
    ],
)
def test_pool(op, attrs):
    check([N(op, ["x"], ["y"], **attrs)], {"x": f32(2, 3, 9, 7)})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    check([N(op, ["x"], ["y"])], {"x": f32(2, 3, 5, 4)})


def test_batch_norm():
    inits = {"s": f32(3), "b": f32(3), "m": f32(3), "v": f32(3, lo=0.5)}
    check(
        [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
        {"x": f32(2, 3, 4, 4)},
        inits,
    )


def test_layer_norm_and_lrn():
    check(
        [N("LayerNormalization", ["x", "g", "b"], ["y"], axis=-2, epsilon=1e-4)],
        {"x": f32(2, 3, 4, 5)},
        {"g": f32(4, 5), "b": f32(4, 5)},
    )
    check([N("LRN", ["x"], ["y"], size=3, alpha=1e-2, beta=0.75, bias=2.0)], {"x": f32(2, 5, 3, 3)})


@pytest.mark.parametrize(
    "attrs, b_shape, c_shape",
    [
        ({"transB": 1}, (5, 4), (5,)),
        ({"transB": 0, "alpha": 0.5, "beta": 2.0}, (4, 5), (1, 5)),
        ({"transB": 1}, (5, 4), (3, 5)),  # a full [M, N] C: FC then Add
    ],
)
def test_gemm_to_fc(attrs, b_shape, c_shape):
    check(
        [N("Gemm", ["a", "b", "c"], ["y"], **attrs)],
        {"a": f32(3, 4)},
        {"b": f32(*b_shape), "c": f32(*c_shape)},
    )


def test_gemm_dynamic_operands():
    node = N("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1, alpha=0.5, beta=0.25)
    check([node], {"a": f32(4, 3), "b": f32(5, 4), "c": f32(5)})
    check([N("Gemm", ["a", "b"], ["y"])], {"a": f32(3, 4), "b": f32(4, 2)})


@pytest.mark.parametrize(
    "a, b, b_const",
    [
        ((3, 4), (4, 5), False),
        ((2, 3, 4), (4, 5), True),
        ((2, 3, 4), (2, 4, 5), False),
        ((4,), (4, 5), False),
        ((2, 3, 4), (4,), False),
    ],
)
def test_matmul(a, b, b_const):
    inputs, inits = {"a": f32(*a)}, {}
    (inits if b_const else inputs)["b"] = f32(*b)
    check([N("MatMul", ["a", "b"], ["y"])], inputs, inits)


@pytest.mark.parametrize("opset, axis", [(11, 1), (11, -1), (13, 1), (13, -1), (13, 0)])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_axis_semantics(op, opset, axis):
    # opset < 13 coerces to 2-D at axis; opset 13 normalizes along one axis.
    check([N(op, ["x"], ["y"], axis=axis)], {"x": f32(2, 3, 4)}, opset=opset)


def test_dropout_identity_constant():
    nodes = [
        N("Constant", [], ["c"], value=numpy_helper.from_array(f32(3, 4), "c")),
        N("Dropout", ["x"], ["d"]),
        N("Identity", ["d"], ["i"]),
        N("Add", ["i", "c"], ["y"]),
    ]
    check(nodes, {"x": f32(2, 3, 4)})
    check([N("Dropout", ["x", "r"], ["y"])], {"x": f32(2, 3)}, {"r": np.array(0.3, np.float32)}, opset=13)


# -- elementwise -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "op, attrs",
    [
        ("Relu", {}),
        ("Sigmoid", {}),
        ("Tanh", {}),
        ("Exp", {}),
        ("Abs", {}),
        ("Neg", {}),
        ("Softplus", {}),
        ("LeakyRelu", {"alpha": 0.2}),
        ("Elu", {"alpha": 0.7}),
        ("Selu", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("HardSwish", {}),
    ],
)
def test_unary(op, attrs):
    check([N(op, ["x"], ["y"], **attrs)], {"x": f32(2, 3, 4) * 3})


@pytest.mark.parametrize("op", ["Log", "Sqrt"])
def test_unary_positive(op):
    check([N(op, ["x"], ["y"])], {"x": f32(3, 4, lo=0.1)})


def test_prelu():
    check([N("PRelu", ["x", "s"], ["y"])], {"x": f32(2, 3, 4, 4)}, {"s": f32(3, 1, 1)})
    check([N("PRelu", ["x", "s"], ["y"])], {"x": f32(2, 3)}, {"s": np.array([0.1], np.float32)})


def test_clip_opsets():
    x = {"x": f32(3, 5) * 4}
    lo, hi = np.array(-1.0, np.float32), np.array(2.0, np.float32)
    check([N("Clip", ["x", "lo", "hi"], ["y"])], x, {"lo": lo, "hi": hi}, opset=11)
    check([N("Clip", ["x", "lo"], ["y"])], x, {"lo": np.array(0.0, np.float32)}, opset=13)
    check([N("Clip", ["x", "", "hi"], ["y"])], x, {"hi": hi}, opset=13)
    check([N("Clip", ["x"], ["y"], min=-0.5, max=0.5)], x, opset=9)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_broadcast(op):
    check([N(op, ["a", "b"], ["y"])], {"a": f32(2, 3, 4), "b": f32(3, 1, lo=0.5)})


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater"])
def test_compare(op):
    a = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    check(
        [N(op, ["a", "b"], ["y"])], {"a": a, "b": np.array([2, 2, 7], np.float32)}, out_types={"y": OT.BOOL}
    )


def test_logic():
    a = np.array([True, False, True])
    b = np.array([True, True, False])
    nodes = [N("And", ["a", "b"], ["t"]), N("Or", ["t", "b"], ["u"]), N("Not", ["u"], ["y"])]
    check(nodes, {"a": a, "b": b}, out_types={"y": OT.BOOL})


def test_pow():
    check([N("Pow", ["x", "e"], ["y"])], {"x": f32(3, 4, lo=0.1)}, {"e": np.array(1.5, np.float32)})
    check([N("Pow", ["x", "e"], ["y"])], {"x": f32(3, 4)}, {"e": np.array(2.0, np.float32)})
    check([N("Pow", ["x", "e"], ["y"])], {"x": f32(3, 4, lo=0.1), "e": f32(4)})


@pytest.mark.parametrize("op", ["Sum", "Max", "Min", "Mean"])
def test_variadic(op):
    check([N(op, ["a", "b", "c"], ["y"])], {"a": f32(2, 3), "b": f32(2, 3), "c": f32(2, 3)})
    check([N(op, ["a", "b"], ["y"])], {"a": f32(2, 3), "b": f32(3)})


def test_cast():
    nodes = [N("Cast", ["x"], ["i"], to=OT.INT32), N("Cast", ["i"], ["y"], to=OT.FLOAT)]
    check(nodes, {"x": f32(3, 4) * 5})
    check([N("Cast", ["x"], ["y"], to=OT.INT64)], {"x": f32(3, 4) * 5}, out_types={"y": OT.INT64})


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("opset", [11, 18])
def test_reduce(op, opset):
    x = {"x": f32(2, 3, 4)}
    if opset >= 18 or (op == "ReduceSum" and opset >= 13):
        check([N(op, ["x", "ax"], ["y"], keepdims=0)], x, {"ax": np.array([-1, 0])}, opset=opset)
    else:
        check([N(op, ["x"], ["y"], axes=[-1, 0], keepdims=0)], x, opset=opset)
    check([N(op, ["x"], ["y"])], x, opset=opset)


# -- tensor plumbing -------------------------------------------------------------------------------
def test_flatten_reshape_transpose():
    check([N("Flatten", ["x"], ["y"], axis=2)], {"x": f32(2, 3, 4, 5)})
    check([N("Flatten", ["x"], ["y"], axis=-1)], {"x": f32(2, 3, 4)})
    check([N("Reshape", ["x", "s"], ["y"])], {"x": f32(2, 3, 4)}, {"s": np.array([0, -1, 2])})
    check([N("Transpose", ["x"], ["y"], perm=[2, 0, 1])], {"x": f32(2, 3, 4)})
    check([N("Transpose", ["x"], ["y"])], {"x": f32(2, 3, 4)})


def test_dynamic_shape_chain():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape on a symbolic batch: real kaffa ops."""
    nodes = [
        N("Shape", ["x"], ["s"]),
        N("Gather", ["s", "zero"], ["n"], axis=0),
        N("Unsqueeze", ["n", "ax0"], ["n1"]),
        N("Concat", ["n1", "minus1"], ["shape"], axis=0),
        N("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {"zero": np.array(0), "ax0": np.array([0]), "minus1": np.array([-1])}
    pred = check(nodes, {"x": f32(3, 2, 4)}, inits, sym={"x"})
    assert "Shape" in [op.type for op in pred.op]


def test_static_shape_chain_folds():
    nodes = [
        N("Shape", ["x"], ["s"]),
        N("Gather", ["s", "zero"], ["n"], axis=0),
        N("Unsqueeze", ["n", "ax0"], ["n1"]),
        N("Concat", ["n1", "minus1"], ["shape"], axis=0),
        N("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {"zero": np.array(0), "ax0": np.array([0]), "minus1": np.array([-1])}
    pred = check(nodes, {"x": f32(3, 2, 4)}, inits)
    assert [op.type for op in pred.op] == ["Reshape"]


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset):
    x = {"x": f32(2, 1, 3, 1)}
    if opset >= 13:
        nodes = [N("Squeeze", ["x", "a"], ["s"]), N("Unsqueeze", ["s", "b"], ["y"])]
        inits = {"a": np.array([1, -1]), "b": np.array([0, -1])}
    else:
        nodes = [N("Squeeze", ["x"], ["s"], axes=[1, -1]), N("Unsqueeze", ["s"], ["y"], axes=[0, -1])]
        inits = {}
    check(nodes, x, inits, opset=opset)
    check([N("Squeeze", ["x"], ["y"])], x, opset=opset)


def test_concat_split():
    check([N("Concat", ["a", "b"], ["y"], axis=-1)], {"a": f32(2, 3), "b": f32(2, 5)})
    nodes = [N("Split", ["x", "s"], ["p", "q"], axis=1), N("Sub", ["q", "p"], ["y"])]
    check(nodes, {"x": f32(2, 6)}, {"s": np.array([3, 3])}, opset=13)
    check([N("Split", ["x"], ["y", "z"], axis=0)], {"x": f32(4, 3)}, outputs=("y", "z"), opset=11)


def test_shape_gather_slice():
    x = {"x": f32(4, 5, 6)}
    check([N("Shape", ["x"], ["y"])], x, out_types={"y": OT.INT64}, sym={"x"})
    check([N("Shape", ["x"], ["y"], start=1)], x, out_types={"y": OT.INT64}, sym={"x"}, opset=15)
    check([N("Gather", ["x", "i"], ["y"], axis=0)], x, {"i": np.array([[0, 3], [-1, 1]])})
    check([N("Gather", ["x", "i"], ["y"], axis=1)], x, {"i": np.array([4, -2, 0])})
    check([N("Gather", ["x", "i"], ["y"], axis=2)], x, {"i": np.array(2)})
    starts, ends = np.array([1, -4]), np.array([-1, 2**62])
    check([N("Slice", ["x", "s", "e", "a"], ["y"])], x, {"s": starts, "e": ends, "a": np.array([0, 2])})
    check([N("Slice", ["x"], ["y"], starts=[1], ends=[3], axes=[1])], x, opset=9)


def test_tile_expand_pad():
    check([N("Tile", ["x", "r"], ["y"])], {"x": f32(2, 3)}, {"r": np.array([2, 3])})
    check([N("Expand", ["x", "s"], ["y"])], {"x": f32(3, 1)}, {"s": np.array([2, 3, 4])})
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 1])
    for mode in ("constant", "reflect", "edge"):
        check([N("Pad", ["x", "p"], ["y"], mode=mode)], {"x": f32(1, 2, 4, 5)}, {"p": pads})
    check(
        [N("Pad", ["x", "p", "v"], ["y"])],
        {"x": f32(1, 2, 4, 5)},
        {"p": pads, "v": np.array(1.5, np.float32)},
    )


def test_external_data_model_loads(tmp_path):
    inits = {"w": f32(64, 3, 3, 3), "b": f32(64)}
    m = _model([N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], {"x": f32(1, 3, 8, 8)}, inits)
    x = f32(1, 3, 8, 8)
    (ref,) = _ort(m, {"x": x})
    path = tmp_path / "model.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size >= inits["w"].nbytes
    init, pred = import_model(path)
    (got,) = kaffa.Predictor(init, pred).run([x])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert {op.output[0] for op in init.op} == {"w", "b"}
    assert [op.type for op in init.op] == ["GivenTensorFill", "GivenTensorFill"]
    assert list(pred.external_input) == ["x", "w", "b"]
    assert list(pred.external_output) == ["y"]


def test_unsupported_nodes_are_all_listed():
    nodes = [
        N("Relu", ["x"], ["r"], name="ok"),
        N("StringNormalizer", ["r"], ["h"], name="first_bad"),  # strings: out of kaffa's scope
        N("Relu", ["h"], ["r2"]),
        N("Bernoulli", ["r2"], ["y"], name="second_bad"),
    ]
    m = _model(nodes, {"x": f32(2, 3)})
    with pytest.raises(UnsupportedOnnxOpError) as info:
        import_model(m)
    err = info.value
    assert isinstance(err, kaffa.ModelFormatError)
    assert [(n[0], n[1], n[2]) for n in err.nodes] == [
        ("first_bad", "StringNormalizer", 17),
        ("second_bad", "Bernoulli", 17),
    ]
    assert "first_bad" in str(err) and "second_bad" in str(err) and "opset 17" in str(err)


def test_untranslatable_attribute_is_reported():
    m = _model([N("Reshape", ["x", "s"], ["y"], name="dyn")], {"x": f32(2, 3), "s": np.array([3, 2])})
    m.graph.node[0].attribute.append(helper.make_attribute("allowzero", 1))
    with pytest.raises(UnsupportedOnnxOpError, match="allowzero"):
        import_model(m)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00 not a model")
    with pytest.raises(kaffa.ModelFormatError):
        import_model(bad)
    with pytest.raises(kaffa.ModelFormatError):
        import_model(tmp_path / "missing.onnx")


# -- export ----------------------------------------------------------------------------------------
def _frozen_init(model: ModelHelper, seed: int = 1) -> NetDef:
    """The model's parameters as GivenTensorFills (random BN statistics, so BN does something)."""
    ws = kaffa.Workspace("freeze")
    ws.run_net_once(model.param_init_net.Proto())
    rng = np.random.default_rng(seed)
    init = NetDef(name="init")
    for op in model.param_init_net.Proto().op:
        for o in op.output:
            v = np.asarray(ws.fetch_blob(o))
            if o.endswith("_riv"):
                v = (rng.random(v.shape) + 0.5).astype(v.dtype)
            elif o.endswith(("_rm", "_s")) or (o.endswith("_b") and v.ndim == 1):
                v = (rng.standard_normal(v.shape) * 0.2).astype(v.dtype)
            init.op.append(fill_op(o, v))
    return init


def _round_trip(init, pred, feeds, inputs, rtol=1e-5):
    onnx_model = export_model(init, pred, inputs=inputs)
    ref = kaffa.Predictor(init, pred).run(feeds)
    got = _ort(onnx_model, feeds)
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * float(np.max(np.abs(r))))
    # ... and back into kaffa.
    i2, p2 = import_model(onnx_model)
    for r, g in zip(ref, kaffa.Predictor(i2, p2).run(feeds)):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * float(np.max(np.abs(r))))
    return onnx_model


def test_export_lenet_round_trip():
    model = ModelHelper("lenet")
    out = models.lenet(model, "data", num_classes=10, is_test=True, image_size=16, kernel=3, pad=1)
    pred = model.net.Proto()
    pred.external_output[:] = [str(out)]
    x = f32(3, 1, 16, 16)
    m = _round_trip(_frozen_init(model), pred, {"data": x}, {"data": (np.float32, ("N", 1, 16, 16))})
    assert {n.op_type for n in m.graph.node} >= {"Conv", "MaxPool", "Gemm", "Softmax"}


def _small_resnet() -> tuple[ModelHelper, str]:
    model = ModelHelper("small_resnet")
    h = brew.conv(model, "data", "conv1", dim_in=3, dim_out=8, kernel=3, pad=1, stride=2)
    h = brew.spatial_bn(model, h, "bn1", 8, is_test=True)
    h = brew.relu(model, h, "relu1")
    h = brew.max_pool(model, h, "pool1", kernel=3, stride=2, legacy_pad=3)
    b = brew.conv(model, h, "conv2", dim_in=8, dim_out=8, kernel=3, pad=1, no_bias=True)
    b = brew.spatial_bn(model, b, "bn2", 8, is_test=True)
    s = brew.sum(model, [b, h], "res")
    s = brew.relu(model, s, "res_relu")
    c = brew.conv(model, s, "conv3", dim_in=8, dim_out=4, kernel=1)
    cat = brew.concat(model, [s, c], "cat")
    cat = cat[0] if isinstance(cat, (list, tuple)) else cat
    p = brew.average_pool(model, cat, "gap", global_pooling=True)
    fc = brew.fc(model, p, "pred", dim_in=12, dim_out=5)
    d = brew.dropout(model, fc, "drop", ratio=0.5, is_test=True)
    return model, str(brew.softmax(model, d, "softmax"))


def test_export_small_resnet_round_trip():
    model, out = _small_resnet()
    pred = model.net.Proto()
    pred.external_output[:] = [out]
    x = f32(2, 3, 15, 15)
    m = _round_trip(_frozen_init(model), pred, {"data": x}, {"data": (np.float32, (None, 3, 15, 15))})
    types = {n.op_type for n in m.graph.node}
    assert types >= {"Conv", "BatchNormalization", "Relu", "MaxPool", "Sum", "Concat", "GlobalAveragePool"}


@pytest.mark.slow
def test_export_resnet18_round_trip():
    model = ModelHelper("resnet18")
    out = models.resnet18(model, "data", num_classes=7, is_test=True)
    pred = model.net.Proto()
    pred.external_output[:] = [str(out)]
    _round_trip(
        _frozen_init(model), pred, {"data": f32(1, 3, 32, 32)}, {"data": (np.float32, (1, 3, 32, 32))}
    )


def _net_round_trip(build, feeds, params, rtol=1e-5):
    net = kaffa.Net("ops")
    build(net)
    init = NetDef(name="init")
    for name, value in params.items():
        init.op.append(fill_op(name, value))
    pred = net.Proto()
    pred.external_input[:] = list(feeds) + list(params)
    inputs = {k: (v.dtype, v.shape) for k, v in feeds.items()}
    return _round_trip(init, pred, feeds, inputs, rtol)


def test_export_op_coverage():
    def build(net):
        net.FC(["x3", "w", "b"], ["fc"], axis=2)  # FC on a rank-3 input
        net.Softmax(["x4"], ["sm"], axis=1)  # coerced 2-D over dims 1.. of a 4-D input
        net.Add(["x4", "bias_c"], ["bc"], broadcast=1, axis=1)  # Caffe2's legacy broadcast
        net.Clip(["bc"], ["clip"], min=-0.5, max=0.5)
        net.Scale(["clip"], ["sc"], scale=3.0)
        net.Transpose(["sc"], ["tr"], axes=[0, 2, 3, 1])
        net.Flatten(["tr"], ["fl"], axis=2)
        net.Reshape(["fl"], ["rs", "old"], shape=[0, -1])
        net.ExpandDims(["rs"], ["ex"], dims=[1])
        net.Squeeze(["ex"], ["sq"], dims=[1])
        net.MatMul(["x2", "m"], ["mm"], trans_b=1)
        net.BatchMatMul(["x3", "x3"], ["bmm"], trans_b=1)
        net.ReduceMean(["x4"], ["rm"], axes=[2, 3], keepdims=0)
        net.ReduceSum(["x4"], ["rsum"], axes=[1], keepdims=1)
        net.Slice(["x4"], ["sl"], starts=[0, 1, 0], ends=[-1, -1, -2])
        net.PRelu(["x4", "slope"], ["pr"])
        net.LeakyRelu(["x4"], ["lr"], alpha=0.3)
        net.Sigmoid(["x4"], ["sg"])
        net.Sqr(["x4"], ["sqr"])
        net.Pow(["x2"], ["pw"], exponent=2.0)
        net.PadImage(["x4"], ["pad"], pads=[1, 2, 0, 1], mode="reflect")
        net.Tile(["x2"], ["tile"], tiles=3, axis=1)
        net.Split(["x4"], ["sp0", "sp1"], axis=1, split=[1, 2])
        net.LayerNorm(["x3", "ln_g", "ln_b"], ["ln", "ln_mean", "ln_std"], axis=2, elementwise_affine=1)
        net.Concat(["x4", "x4"], ["cat", "cat_info"], axis=1)
        net.AveragePool(["x4"], ["ap"], kernel=2, stride=1, pad=1, count_include_pad=1)
        net.MaxPool(["x4"], ["mp"], kernel=2, stride=2, legacy_pad=3)
        net.Conv(["x4", "cw"], ["conv"], kernel=3, legacy_pad=2, stride=2)
        net.ConvTranspose(["x4", "tw", "tb"], ["convt"], kernel=3, stride=2, pad=1, adj=1)
        net.Cast(["x2"], ["cast"], to="int32")
        net.add_external_output(
            "fc",
            "sm",
            "sq",
            "mm",
            "bmm",
            "rm",
            "rsum",
            "sl",
            "pr",
            "lr",
            "sg",
            "sqr",
            "pw",
            "pad",
            "tile",
            "sp0",
            "sp1",
            "ln",
            "cat",
            "cat_info",
            "ap",
            "mp",
            "conv",
            "convt",
            "cast",
            "old",
        )

    feeds = {"x2": f32(3, 4), "x3": f32(2, 3, 4), "x4": f32(2, 3, 5, 5)}
    params = {
        "w": f32(6, 4),
        "b": f32(6),
        "bias_c": f32(3),
        "m": f32(5, 4),
        "slope": f32(3),
        "ln_g": f32(4),
        "ln_b": f32(4),
        "cw": f32(4, 3, 3, 3),
        "tw": f32(3, 2, 3, 3),
        "tb": f32(2),
    }
    _net_round_trip(build, feeds, params)


def test_export_refuses_training_ops():
    model = ModelHelper("train")
    h = brew.fc(model, "data", "fc", dim_in=4, dim_out=3)
    brew.dropout(model, h, "drop", ratio=0.5, is_test=False)
    with pytest.raises(OnnxExportError, match="Dropout"):
        export_model(model.param_init_net, model.net, inputs={"data": (np.float32, (2, 4))})


# -- Predictor -------------------------------------------------------------------------------------
def _fc_nets():
    init = NetDef(name="init")
    init.op.append(fill_op("w", f32(3, 4)))
    init.op.append(fill_op("b", f32(3)))
    net = kaffa.Net("predict")
    net.FC(["x", "w", "b"], ["fc"])
    net.Relu(["fc"], ["y"])
    net.Add(["y", "z"], ["out"])
    net.add_external_output("y", "out")
    return init, net


def test_predictor_dict_and_list_inputs():
    init, net = _fc_nets()
    p = kaffa.Predictor(init, net)
    assert p.input_names == ["x", "z"]
    x, z = f32(2, 4), f32(2, 3)
    y, out = p.run([x, z])
    assert isinstance(y, np.ndarray) and y.shape == (2, 3)
    np.testing.assert_allclose(out, y + z, rtol=1e-6)
    _, out2 = p.run({"z": z, "x": x})
    np.testing.assert_array_equal(out2, out)
    with pytest.raises(kaffa.KaffaError, match="not inputs"):
        p.run({"nope": x})
    with pytest.raises(kaffa.KaffaError):
        p.run([x])


def test_predictor_from_pb_files(tmp_path):
    init, net = _fc_nets()
    serialize.save(init, tmp_path / "init_net.pb")
    serialize.save(net.Proto(), tmp_path / "predict_net.pb")
    x, z = f32(2, 4), f32(2, 3)
    ref = kaffa.Predictor(init, net.Proto()).run([x, z])
    for p in (
        kaffa.Predictor(tmp_path / "init_net.pb", tmp_path / "predict_net.pb"),
        kaffa.Predictor(str(tmp_path / "init_net.pb"), str(tmp_path / "predict_net.pb"), device="cpu"),
        kaffa.load_model(tmp_path),
    ):
        for r, g in zip(ref, p.run({"x": x, "z": z})):
            np.testing.assert_array_equal(g, r)
    with pytest.raises(TypeError, match="init_net"):
        kaffa.Predictor(42, net)


def test_predictor_on_imported_model():
    m = _model([N("Relu", ["x"], ["y"])], {"x": f32(2, 3)})
    p = kaffa.Predictor(*import_model(m))
    x = f32(2, 3)
    (y,) = p.run({"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_export_fused_conv_as_standard_nodes():
    """FusedConv (kaffa.passes' cpu fusion) exports as Conv [+ Add] [+ Relu | Clip]."""
    rng = np.random.default_rng(5)
    feeds = {"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    params = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "z": rng.standard_normal((1, 4, 6, 6)).astype(np.float32),
    }

    def build(net):
        net.FusedConv(["x", "w", "b"], ["relu"], pad=1, activation="Relu")
        net.FusedConv(["x", "w", "b", "z"], ["res_clip"], pad=1, activation="Clip", min=-0.5, max=1.0)
        net.FusedConv(["x", "w", "b", "z"], ["res"], pad=1)
        net.FusedConv(["x", "w"], ["plain"], pad=1, stride=2)
        net.add_external_output("relu", "res_clip", "res", "plain")

    model = _net_round_trip(build, feeds, params)
    kinds = [n.op_type for n in model.graph.node]
    assert "FusedConv" not in kinds and kinds.count("Conv") == 4
    assert kinds.count("Relu") == 1 and kinds.count("Clip") == 1 and kinds.count("Add") == 2

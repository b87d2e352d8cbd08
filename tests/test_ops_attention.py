"""The attention family beyond conformance: Attention, RotaryEmbedding, LinearAttention,
CausalConvWithState and TensorScatter against onnx's own reference evaluator through the ONNX
backend (over grids of their features), properties no single case shows (streaming a causal
convolution in chunks, linear attention as unnormalized causal attention, rotations undone by
their gradient), shape inference errors, and the importer changes that came with them (CastLike
folding, Pad on low-rank inputs, kaffa's inference filling ranks ONNX's lacks)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kaffa import Net, Workspace
from kaffa.core import create_operator
from kaffa.errors import KaffaError, ShapeError
from kaffa.gradients import make_gradient
from kaffa.schema import SCHEMAS, TensorInfo

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import kaffa.onnx.backend as kb  # noqa: E402
from kaffa.onnx import import_model  # noqa: E402

F32 = np.dtype(np.float32)


def _infer(op: str, shapes, n_out: int = 1, dtypes=None, **args) -> list[TensorInfo]:
    schema = SCHEMAS.get(op)
    o = create_operator(op, [f"in{k}" for k in range(len(shapes))], [f"out{j}" for j in range(n_out)], **args)
    infos = [TensorInfo(s, np.dtype(d)) for s, d in zip(shapes, dtypes or [F32] * len(shapes))]
    return schema.infer_outputs(schema.parse_args(o.arg), infos, n_out)


def _both(op_type: str, inputs: list[str], feeds: dict, n_out: int, opset: int, **attrs):
    """(onnx reference outputs, kaffa outputs through the ONNX backend) of one node."""
    outputs = [f"y{j}" for j in range(n_out)]
    node = helper.make_node(op_type, inputs, outputs, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in feeds.items()
    ]
    graph = helper.make_graph(
        [node], "g", graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outputs]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    want = ReferenceEvaluator(model).run(None, feeds)
    got = kb.prepare(model).run(feeds)
    return want, list(got)


# -- Attention -------------------------------------------------------------------------------------
ATTN_GRID = list(
    itertools.product(
        ("4d", "3d", "gqa"),
        ("none", "float", "bool", "short_float"),
        ({}, {"is_causal": 1}, {"softcap": 1.5, "scale": 0.4}, {"is_causal": 1, "left_window_size": 1}),
    )
)


@pytest.mark.parametrize(("layout", "mask", "attrs"), ATTN_GRID)
def test_attention_matches_onnx_reference(layout, mask, attrs):
    rng = np.random.default_rng(len(layout) * 7 + len(mask))
    b, sq, skv, d, dv = 2, 3, 5, 4, 3
    hq, hkv = (2, 2) if layout != "gqa" else (4, 2)
    if layout == "3d":
        shapes = [(b, sq, hq * d), (b, skv, hkv * d), (b, skv, hkv * dv)]
        attrs = {**attrs, "q_num_heads": hq, "kv_num_heads": hkv}
    else:
        shapes = [(b, hq, sq, d), (b, hkv, skv, d), (b, hkv, skv, dv)]
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in zip("QKV", shapes)}
    names = ["Q", "K", "V"]
    if mask != "none":
        keys = skv - 2 if mask == "short_float" else skv
        if mask == "bool":
            feeds["M"] = rng.uniform(size=(b, 1, sq, keys)) < 0.7
        else:
            feeds["M"] = rng.uniform(-2, 0, size=(sq, keys)).astype(np.float32)
        names.append("M")
    opset = 25 if "left_window_size" in attrs else 23
    want, got = _both("Attention", names, feeds, 1, opset, **attrs)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_past_present_and_qk_output(mode):
    rng = np.random.default_rng(mode)
    feeds = {
        "Q": rng.standard_normal((1, 2, 2, 4)).astype(np.float32),
        "K": rng.standard_normal((1, 1, 2, 4)).astype(np.float32),
        "V": rng.standard_normal((1, 1, 2, 3)).astype(np.float32),
        "M": rng.uniform(-1, 0, (2, 3)).astype(np.float32),  # shorter than the 4 keys
        "PK": rng.standard_normal((1, 1, 2, 4)).astype(np.float32),
        "PV": rng.standard_normal((1, 1, 2, 3)).astype(np.float32),
    }
    want, got = _both(
        "Attention",
        ["Q", "K", "V", "M", "PK", "PV"],
        feeds,
        4,
        24,
        is_causal=1,
        softcap=2.0,
        qk_matmul_output_mode=mode,
    )
    if mode == 0:
        # onnx's reference evaluator softcaps this output in place too; the spec and Attention's
        # function body (the _expanded graphs) give the raw scaled scores, as kaffa does.
        keys = np.concatenate([feeds["PK"], feeds["K"]], axis=2)
        want[3] = feeds["Q"] @ np.swapaxes(keys, -1, -2) / 2  # default scale 1/sqrt(4)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_attention_nonpad_kv_seqlen_zeroes_rows_without_keys():
    rng = np.random.default_rng(3)
    feeds = {
        "Q": rng.standard_normal((2, 1, 3, 4)).astype(np.float32),
        "K": rng.standard_normal((2, 1, 4, 4)).astype(np.float32),
        "V": rng.standard_normal((2, 1, 4, 2)).astype(np.float32),
        "N": np.array([4, 1], np.int64),  # batch 1: offset 1 - 3 = -2, rows 0 and 1 see nothing
    }
    want, got = _both("Attention", ["Q", "K", "V", "", "", "", "N"], feeds, 1, 24, is_causal=1)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert np.all(got[0][1, 0, :2] == 0) and np.any(got[0][1, 0, 2] != 0)


def test_attention_gradient_net_matches_finite_differences():
    rng = np.random.default_rng(5)
    vals = {
        "q": rng.standard_normal((1, 3, 8)),
        "k": rng.standard_normal((1, 2, 4)),
        "v": rng.standard_normal((1, 2, 4)),
        "pk": rng.standard_normal((1, 2, 1, 2)),
        "pv": rng.standard_normal((1, 2, 1, 2)),
    }
    args = dict(q_num_heads=4, kv_num_heads=2, is_causal=True, softcap=3.0, has_past_kv=True)

    def loss(values):
        ws = Workspace()
        for n, x in values.items():
            ws.feed_blob(n, x)
        net = Net("f")
        net.Attention(["q", "k", "v", "pk", "pv"], ["y", "present_k", "present_v"], **args)
        ws.create_net(net)
        ws.run_net("f")
        return float(np.sum(ws.fetch_blob("y") ** 2) + np.sum(ws.fetch_blob("present_k")))

    net = Net("train")
    net.Attention(["q", "k", "v", "pk", "pv"], ["y", "present_k", "present_v"], **args)
    net.Sqr(["y"], ["y2"])
    net.SumElements(["y2"], ["l1"])
    net.SumElements(["present_k"], ["l2"])
    net.Add(["l1", "l2"], ["loss"])
    net.add_gradient_ops({"loss": "seed"})  # a float64 seed: the whole net runs in float64
    ws = Workspace()
    ws.feed_blob("seed", np.array(1.0))
    for n, x in vals.items():
        ws.feed_blob(n, x)
    ws.create_net(net)
    ws.run_net("train")
    for name in vals:
        g = ws.fetch_blob(name + "_grad")
        x = vals[name]
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g)), x.shape))
        h = 1e-6
        plus, minus = dict(vals), dict(vals)
        plus[name], minus[name] = x.copy(), x.copy()
        plus[name][idx] += h
        minus[name][idx] -= h
        fd = (loss(plus) - loss(minus)) / (2 * h)
        assert g[idx] == pytest.approx(fd, rel=1e-5, abs=1e-7), name


def test_attention_shape_inference_and_errors():
    (y, pk, pv, qk) = _infer(
        "Attention",
        [(2, 3, 12), (2, 5, 6), (2, 5, 4), (2, 2, 4, 3), (2, 2, 4, 2)],
        4,
        q_num_heads=4,
        kv_num_heads=2,
        has_past_kv=True,
    )
    assert y.shape == (2, 3, 8) and pk.shape == (2, 2, 9, 3) and pv.shape == (2, 2, 9, 2)
    assert qk.shape == (2, 4, 3, 9)
    (y,) = _infer("Attention", [(2, 6, 3, 4), (2, 3, None, 4), (2, 3, None, 5)])
    assert y.shape == (2, 6, 3, 5)
    with pytest.raises(ShapeError, match="multiple of kv heads"):
        _infer("Attention", [(2, 4, 3, 4), (2, 3, 5, 4), (2, 3, 5, 4)])
    with pytest.raises(ShapeError, match="3-D Q, K, V need"):
        _infer("Attention", [(2, 3, 8), (2, 5, 8), (2, 5, 8)])
    with pytest.raises(ShapeError, match="one head size"):
        _infer("Attention", [(2, 2, 3, 4), (2, 2, 5, 3), (2, 2, 5, 4)])
    with pytest.raises(ShapeError, match="does not broadcast"):
        _infer("Attention", [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), (3, 1, 3, 5)], has_attn_mask=True)
    with pytest.raises(ShapeError, match="longer than"):
        _infer("Attention", [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), (3, 6)], has_attn_mask=True)
    with pytest.raises(ShapeError, match="must be bool or"):
        _infer(
            "Attention",
            [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), (3, 5)],
            dtypes=[F32, F32, F32, np.int32],
            has_attn_mask=True,
        )
    with pytest.raises(ShapeError, match="cannot be combined"):
        _infer(
            "Attention",
            [(1, 1, 1, 2), (1, 1, 1, 2), (1, 1, 1, 2), (1, 1, 1, 2), (1, 1, 1, 2), (1,)],
            dtypes=[F32] * 5 + [np.int64],
            has_past_kv=True,
            has_nonpad_kv_seqlen=True,
        )


def test_attention_mask_mismatch_at_run_time_is_a_typed_error():
    ws = Workspace()
    ws.feed_blob("q", np.zeros((1, 1, 2, 2), np.float32))
    ws.feed_blob("k", np.zeros((1, 1, 3, 2), np.float32))
    ws.feed_blob("m", np.zeros((4, 3), np.float32))  # 4 query rows for a query of 2
    net = Net("bad")
    net.Attention(["q", "k", "k", "m"], ["y"], has_attn_mask=True)
    with pytest.raises(KaffaError, match="attn_mask"):
        ws.create_net(net)
        ws.run_net("bad")


# -- RotaryEmbedding -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layout", "interleaved", "rot", "positions"),
    list(itertools.product(("4d", "3d"), (0, 1), (0, 4), (True, False))),
)
def test_rotary_embedding_matches_onnx_reference(layout, interleaved, rot, positions):
    rng = np.random.default_rng(interleaved + rot)
    b, h, s, size = 2, 2, 3, 8
    half = (rot or size) // 2
    x = rng.standard_normal((b, h, s, size) if layout == "4d" else (b, s, h * size)).astype(np.float32)
    cache = (11, half) if positions else (b, s, half)
    angles = rng.uniform(0, 6, cache)
    feeds = {"x": x, "c": np.cos(angles).astype(np.float32), "s": np.sin(angles).astype(np.float32)}
    names = ["x", "c", "s"]
    if positions:
        feeds["p"] = rng.integers(0, 11, (b, s)).astype(np.int64)
        names.append("p")
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot}
    if layout == "3d":
        attrs["num_heads"] = h
    want, got = _both("RotaryEmbedding", names, feeds, 1, 23, **attrs)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_rotary_gradient_undoes_the_rotation():
    # The rotation is orthogonal, so its gradient op applied to Y gives X back.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 3, 4))
    angles = rng.uniform(0, 6, (5, 2))
    ws = Workspace()
    for n, v in {"x": x, "c": np.cos(angles), "s": np.sin(angles), "p": np.array([[4, 0, 2]])}.items():
        ws.feed_blob(n, v)
    net = Net("rope")
    net.RotaryEmbedding(["x", "c", "s", "p"], ["y"], interleaved=True)
    net.Copy(["y"], ["y_grad"])
    made = make_gradient(net.Proto().op[0], ["y_grad"], ["x_back", "c_g", "s_g", "p_g"])
    assert made.g_inputs[1:] == [None, None, None]
    net.Proto().op.extend(made.ops)
    ws.create_net(net)
    ws.run_net("rope")
    assert not np.allclose(ws.fetch_blob("y"), x)
    np.testing.assert_allclose(ws.fetch_blob("x_back"), x, rtol=1e-12, atol=1e-12)


def test_rotary_shape_errors():
    with pytest.raises(ShapeError, match="needs num_heads"):
        _infer("RotaryEmbedding", [(1, 3, 8), (5, 4), (5, 4)])
    with pytest.raises(ShapeError, match="last dim must be"):
        _infer(
            "RotaryEmbedding",
            [(1, 2, 3, 8), (5, 3), (5, 3), (1, 3)],
            dtypes=[F32, F32, F32, np.int64],
            rotary_embedding_dim=4,
        )


# -- LinearAttention -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "heads", "past"),
    list(itertools.product(("linear", "gated", "delta", "gated_delta"), ((2, 2), (4, 1)), (False, True))),
)
def test_linear_attention_matches_onnx_reference(rule, heads, past):
    rng = np.random.default_rng(len(rule))
    b, t, dk, dv = 2, 4, 3, 2
    hq, hkv = heads
    feeds = {
        "q": rng.standard_normal((b, t, hq * dk)).astype(np.float32),
        "k": rng.standard_normal((b, t, hkv * dk)).astype(np.float32) * 0.5,
        "v": rng.standard_normal((b, t, hkv * dv)).astype(np.float32),
    }
    names = ["q", "k", "v", ""]
    if past:
        feeds["s"] = rng.standard_normal((b, hkv, dk, dv)).astype(np.float32)
        names[3] = "s"
    if rule in ("gated", "gated_delta"):
        feeds["g"] = rng.uniform(-1, 0, (b, t, hkv * dk)).astype(np.float32)
        names.append("g")
    if rule in ("delta", "gated_delta"):
        names += [""] * (5 - len(names))
        feeds["beta"] = rng.uniform(0, 1, (b, t, hkv)).astype(np.float32)
        names.append("beta")
    want, got = _both(
        "LinearAttention", names, feeds, 2, 27, q_num_heads=hq, kv_num_heads=hkv, update_rule=rule
    )
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_linear_rule_is_unnormalized_causal_attention():
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((1, 5, 3)), rng.standard_normal((1, 5, 3)), rng.standard_normal((1, 5, 2))
    ws = Workspace()
    for n, x in {"q": q, "k": k, "v": v}.items():
        ws.feed_blob(n, x)
    net = Net("la")
    net.LinearAttention(["q", "k", "v"], ["o", "s"], q_num_heads=1, kv_num_heads=1, update_rule="linear")
    ws.create_net(net)
    ws.run_net("la")
    scores = np.tril(q[0] @ k[0].T) / np.sqrt(3)
    np.testing.assert_allclose(ws.fetch_blob("o")[0], scores @ v[0], rtol=1e-12)
    np.testing.assert_allclose(ws.fetch_blob("s")[0, 0], k[0].T @ v[0], rtol=1e-12)


def test_linear_attention_input_count_must_fit_the_rule():
    with pytest.raises(ShapeError, match="takes 5 or 6 inputs"):
        _infer("LinearAttention", [(1, 2, 4)] * 4, 2, q_num_heads=2, kv_num_heads=2)


# -- CausalConvWithState ---------------------------------------------------------------------------
def _run_conv(x, w, bias, past, activation):
    ws = Workspace()
    ins = ["x", "w"]
    for n, v in (("x", x), ("w", w), ("b", bias), ("p", past)):
        if v is not None:
            ws.feed_blob(n, v)
            if n in "bp":
                ins.append(n)
    net = Net("cc")
    net.CausalConvWithState(ins, ["y", "state"], activation=activation, has_bias=bias is not None)
    ws.create_net(net)
    ws.run_net("cc")
    return ws.fetch_blob("y"), ws.fetch_blob("state")


@pytest.mark.parametrize("k", [1, 3, 5])
def test_causal_conv_streams_in_chunks(k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 3, 7))
    w = rng.standard_normal((3, 1, k))
    bias = rng.standard_normal(3)
    y_all, s_all = _run_conv(x, w, bias, None, "silu")
    y1, s1 = _run_conv(x[:, :, :2], w, bias, None, "silu")
    y2, s2 = _run_conv(x[:, :, 2:], w, bias, s1, "silu")
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=2), y_all, rtol=1e-12)
    np.testing.assert_array_equal(s2, s_all)
    assert s_all.shape == (2, 3, k - 1)


@pytest.mark.parametrize(("bias", "past", "act"), list(itertools.product((0, 1), (0, 1), ("none", "silu"))))
def test_causal_conv_matches_onnx_reference(bias, past, act):
    rng = np.random.default_rng(bias + 2 * past)
    feeds = {
        "x": rng.standard_normal((2, 3, 5)).astype(np.float32),
        "w": rng.standard_normal((3, 1, 3)).astype(np.float32),
    }
    names = ["x", "w", "", ""]
    if bias:
        feeds["b"] = rng.standard_normal(3).astype(np.float32)
        names[2] = "b"
    if past:
        feeds["p"] = rng.standard_normal((2, 3, 2)).astype(np.float32)
        names[3] = "p"
    while not names[-1]:
        names.pop()
    want, got = _both("CausalConvWithState", names, feeds, 2, 27, activation=act)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# -- TensorScatter ---------------------------------------------------------------------------------
def test_tensor_scatter_modes_and_bounds():
    cache = np.zeros((2, 4, 2), np.float32)
    update = np.arange(12, dtype=np.float32).reshape(2, 3, 2) + 1
    ws = Workspace()
    for n, v in {"c": cache, "u": update, "i": np.array([3, 0], np.int64)}.items():
        ws.feed_blob(n, v)
    net = Net("ts")
    net.TensorScatter(["c", "u", "i"], ["y"], mode="circular", axis=1)
    ws.create_net(net)
    ws.run_net("ts")
    y = ws.fetch_blob("y")
    np.testing.assert_array_equal(y[0, [3, 0, 1]], update[0])  # wraps around
    np.testing.assert_array_equal(y[0, 2], 0)
    np.testing.assert_array_equal(y[1, :3], update[1])
    bad = Net("ts_linear")
    bad.TensorScatter(["c", "u", "i"], ["y2"], mode="linear", axis=1)
    with pytest.raises(KaffaError, match="outside the cache"):
        ws.create_net(bad)
        ws.run_net("ts_linear")
    with pytest.raises(ShapeError, match="batch axis"):
        _infer("TensorScatter", [(2, 4), (2, 4)], axis=0)


# -- importer changes ------------------------------------------------------------------------------
def test_castlike_of_a_constant_is_folded_and_pads_low_rank_inputs():
    # Pad's constant_value comes from CastLike(constant, runtime tensor): still a constant.
    neg_inf = helper.make_node(
        "Constant", [], ["ninf"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [-np.inf])
    )
    cast = helper.make_node("CastLike", ["ninf", "x"], ["value"])
    pads = helper.make_node(
        "Constant", [], ["pads"], value=helper.make_tensor("p", TensorProto.INT64, [2], [0, 2])
    )
    axes = helper.make_node(
        "Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [-1])
    )
    pad = helper.make_node("Pad", ["x", "pads", "value", "axes"], ["y"])
    graph = helper.make_graph(
        [neg_inf, cast, pads, axes, pad],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    _, predict = import_model(model)
    assert "Cast" not in [op.type for op in predict.op]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = kb.prepare(model).run([x])
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (0, 2)], constant_values=-np.inf))


def test_importer_fills_ranks_onnx_inference_misses():
    # ONNX infers no shape for a Split whose sizes are computed (Shape -> Concat); kaffa's own
    # inference of the emitted Split gives later nodes (Concat, here) the rank they need.
    shape = helper.make_node("Shape", ["x"], ["n"], start=2, end=3)
    zero = helper.make_node("Constant", [], ["z"], value=helper.make_tensor("z", TensorProto.INT64, [1], [0]))
    sizes = helper.make_node("Concat", ["n", "z"], ["sizes"], axis=0)
    split = helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=-1)
    halves = helper.make_node("Split", ["a"], ["a1", "a2"], axis=-1, num_outputs=2)
    cat = helper.make_node("Concat", ["a2", "a1"], ["y"], axis=-1)
    graph = helper.make_graph(
        [shape, zero, sizes, split, halves, cat],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (y,) = kb.prepare(model).run([x])
    np.testing.assert_array_equal(y, np.concatenate([x[..., 2:], x[..., :2]], axis=-1))


def test_swiglu_composes():
    rng = np.random.default_rng(0)
    feeds = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal((3, 4)).astype(np.float32),
    }
    want, got = _both("SwiGLU", ["a", "b"], feeds, 1, 28, alpha=0.7)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize(
    ("shape", "pads"), [((6,), [2, 1]), ((3, 4), [1, 0, 1, 2]), ((3, 3, 4, 5), [0, 1, 1, 0, 0, 2, 0, 1])]
)
def test_pad_of_leading_axes(mode, shape, pads):
    # kaffa's PadImage pads axes 2...; Pad lifts inputs whose padded axes start before that.
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_empty_tensor_value_info("y")],
        initializer=[helper.make_tensor("p", TensorProto.INT64, [len(pads)], pads)],
    )
    (y,) = kb.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])).run([x])
    r = len(shape)
    np.testing.assert_array_equal(y, np.pad(x, list(zip(pads[:r], pads[r:])), mode=mode))

"""The nn family beyond conformance: a LeNet-style net trained through add_gradient_ops, gradient
ops' shape inference against their kernels, sample chunking in the conv gradients, and the
errors conformance cases cannot show."""

from __future__ import annotations

import numpy as np
import pytest

from kaffa import Net, Workspace
from kaffa.errors import KaffaError, ShapeError
from kaffa.schema import SCHEMAS, TensorInfo
from kaffa_conformance import cases, gradcheck


def _lenet(net: Net) -> None:
    net.Conv(["data", "w1", "b1"], "c1", kernel=3, pad=1)
    net.Relu("c1", "r1")
    net.MaxPool("r1", "p1", kernel=2, stride=2)
    net.Conv(["p1", "w2"], "c2", kernel=3, pad=1)  # no bias: ConvGradient with no_bias
    net.AveragePool("c2", "p2", kernel=2, stride=2)
    net.FC(["p2", "w3", "b3"], "fc")
    net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])


def _feeds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "data": rng.uniform(-1, 1, (4, 1, 8, 8)),
        "w1": rng.uniform(-0.5, 0.5, (3, 1, 3, 3)),
        "b1": rng.uniform(-0.1, 0.1, (3,)),
        "w2": rng.uniform(-0.5, 0.5, (4, 3, 3, 3)),
        "w3": rng.uniform(-0.5, 0.5, (5, 16)),
        "b3": rng.uniform(-0.1, 0.1, (5,)),
        "label": rng.integers(0, 5, (4,)).astype(np.int32),
    }


def _loss(feeds: dict[str, np.ndarray]) -> float:
    net = Net("lenet_fwd")
    _lenet(net)
    ws = Workspace()
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    ws.run_net_once(net)
    return float(ws.fetch_blob("loss"))


def test_lenet_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    feeds = _feeds(rng)
    net = Net("lenet")
    _lenet(net)
    grads = net.add_gradient_ops({"loss": "seed"})
    types = [op.type for op in net.Proto().op]
    for t in ("ConvGradient", "MaxPoolGradient", "AveragePoolGradient", "FCGradient"):
        assert t in types
    ws = Workspace()
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    ws.feed_blob("seed", np.array(1.0))
    ws.run_net_once(net)
    h = 1e-6
    for name in ("w1", "b1", "w2", "w3", "b3", "data"):
        g = ws.fetch_blob(str(grads[name]))
        assert g.shape == feeds[name].shape
        for idx in list(np.ndindex(*feeds[name].shape))[:: max(1, feeds[name].size // 6)]:
            plus, minus = dict(feeds), dict(feeds)
            plus[name], minus[name] = feeds[name].copy(), feeds[name].copy()
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (_loss(plus) - _loss(minus)) / (2 * h)
            assert abs(fd - g[idx]) <= 1e-6 + 1e-5 * abs(fd), (name, idx, fd, g[idx])


def test_a_training_step_on_float32_lowers_the_loss():
    rng = np.random.default_rng(1)
    feeds = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in _feeds(rng).items()}
    net = Net("lenet_sgd")
    _lenet(net)
    grads = net.add_gradient_ops(["loss"])
    ws = Workspace()
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    ws.create_net(net)
    losses = []
    for _ in range(20):
        ws.run_net("lenet_sgd")
        losses.append(float(ws.fetch_blob("loss")))
        for p in ("w1", "b1", "w2", "w3", "b3"):
            ws.feed_blob(p, ws.fetch_blob(p) - 0.5 * ws.fetch_blob(str(grads[p])))
    assert losses[-1] < 0.5 * losses[0], losses


def _grad_plans(op: str):
    for case in cases.for_op(op):
        if gradcheck.wants_grad(case):
            yield case, gradcheck.Plan(case, np.dtype(np.float32))


@pytest.mark.parametrize("op", ["FC", "Conv", "ConvTranspose", "MaxPool", "AveragePool", "PadImage"])
def test_gradient_op_inference_matches_the_kernel(op):
    for case, plan in _grad_plans(op):
        ws = Workspace()
        net = Net(f"{op}_{case.name}")
        for n, a in zip(plan.in_names, plan.inputs):
            ws.feed_blob(n, a)
        for j, g in plan.g_out.items():
            ws.feed_blob(f"out{j}_grad", g.astype(np.float32))
        proto = net.Proto()
        for o in [plan.forward, *plan.grad_ops]:
            proto.op.add().CopyFrom(o)
        ws.run_net_once(net)
        for o in plan.grad_ops:
            schema = SCHEMAS.get(o.type)
            infos = [TensorInfo.of(ws.fetch_blob(i)) for i in o.input]
            inferred = schema.infer_outputs(schema.parse_args(o.arg), infos, len(o.output))
            for name, info in zip(o.output, inferred):
                got = ws.fetch_blob(name)
                assert info.shape == got.shape and info.dtype == got.dtype, (case.name, name, info, got.shape)


@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
@pytest.mark.parametrize("op", ["ConvGradient", "ConvTransposeGradient"])
def test_conv_gradients_chunked_by_samples_agree(monkeypatch, op, order):
    from kaffa_cpu.kernels import nn

    rng = np.random.default_rng(2)
    nhwc = order == "NHWC"
    x = rng.standard_normal((5, 6, 7, 4) if nhwc else (5, 4, 6, 7))
    if op == "ConvGradient":
        w = rng.standard_normal((6, 3, 3, 2) if nhwc else (6, 2, 3, 3))
        y_shape = (5, 3, 4, 6) if nhwc else (5, 6, 3, 4)
    else:
        w = rng.standard_normal((4, 3, 3, 3))  # [C, M/g, *K] and [C, *K, M/g] alike
        y_shape = (5, 12, 14, 6) if nhwc else (5, 6, 12, 14)
    dy = rng.standard_normal(y_shape)
    args = {"group": 2, "pad": 1, "stride": 2, "order": order}
    if op == "ConvTransposeGradient":
        args["adj"] = 1

    def run():
        ws = Workspace()
        for n, a in zip("xwd", (x, w, dy)):
            ws.feed_blob(n, a)
        net = Net("g")
        getattr(net, op)(["x", "w", "d"], ["dw", "db", "dx"], **args)
        ws.run_net_once(net)
        return [ws.fetch_blob(n) for n in ("dw", "db", "dx")]

    whole = run()
    monkeypatch.setattr(nn, "COLS_BUDGET_BYTES", 1)  # one sample per GEMM
    for a, b in zip(whole, run()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_conv_gradient_without_dx_and_without_bias():
    net = Net("g")
    net.Conv(["x", "w"], "y", kernel=3, no_gradient_to_input=1)
    grads = net.add_gradient_ops(["y"])
    op = net.Proto().op[-1]
    assert op.type == "ConvGradient" and list(op.output) == ["w_grad"]
    assert "x" not in grads
    rng = np.random.default_rng(3)
    ws = Workspace()
    ws.feed_blob("x", rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    ws.feed_blob("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    ws.run_net_once(net)
    assert ws.fetch_blob("w_grad").shape == (4, 3, 3, 3)


def test_fc_without_bias_gets_a_scratch_bias_gradient():
    net = Net("g")
    net.FC(["x", "w"], "y")
    grads = net.add_gradient_ops(["y"])
    op = net.Proto().op[-1]
    outs = list(op.output)
    assert op.type == "FCGradient" and outs[0] == "w_grad" and outs[2] == "x_grad"
    assert set(grads) >= {"x", "w"}


def _infer(op: str, shapes, **args):
    net = Net("i")
    names = [f"in{k}" for k in range(len(shapes))]
    getattr(net, op)(names, ["out"], **args)
    o = net.Proto().op[0]
    schema = SCHEMAS.get(o.type)
    infos = [TensorInfo(s, np.dtype(np.float32)) for s in shapes]
    return schema.infer_outputs(schema.parse_args(o.arg), infos, 1)[0].shape


def test_conv_transpose_shapes_and_errors():
    assert _infer("ConvTranspose", [(2, 3, 5, 5), (3, 4, 3, 3)], stride=2, pad=1, adj=1) == (2, 4, 10, 10)
    assert _infer("ConvTranspose", [(2, 4, 4, 3), (3, 3, 3, 2)], group=1, stride=2, order="NHWC") == (
        2,
        9,
        9,
        2,
    )
    assert _infer("ConvTranspose", [(1, 4, 3, 3), (4, 3, 3, 3)], group=2) == (1, 6, 5, 5)
    assert _infer("ConvTranspose", [(1, 2, 4, 4), (2, 3, 3, 3)], stride=2, pad=1, legacy_pad=1) == (
        1,
        3,
        9,
        9,
    )
    with pytest.raises(ShapeError, match=r"adj must be in \[0, stride\); got adj 2 with stride 2"):
        _infer("ConvTranspose", [(1, 2, 4, 4), (2, 3, 3, 3)], stride=2, adj=2)
    with pytest.raises(ShapeError, match=r"X has 3 channels but the filter \[2, 3, 3, 3\] is for 2"):
        _infer("ConvTranspose", [(1, 3, 4, 4), (2, 3, 3, 3)])
    with pytest.raises(ShapeError, match="leaves no output"):
        _infer("ConvTranspose", [(1, 2, 1, 1), (2, 3, 2, 2)], pad=1)
    with pytest.raises(KaffaError, match="legacy_pad=3"):
        _infer("ConvTranspose", [(1, 2, 4, 4), (2, 3, 3, 3)], legacy_pad=3)


def test_pad_image_shapes_and_errors():
    assert _infer("PadImage", [(2, 3, 4, 5)], pad_t=1, pad_l=2, pad_b=3, pad_r=0) == (2, 3, 8, 7)
    assert _infer("PadImage", [(2, 4, 5, 3)], pad=2, order="NHWC") == (2, 8, 9, 3)
    with pytest.raises(ShapeError, match=r"reflect padding by 4\+1 needs a spatial size above 4, got 4"):
        _infer("PadImage", [(1, 1, 4, 9)], pads=[4, 0, 1, 0], mode="reflect")
    with pytest.raises(KaffaError, match="mode must be one of constant, reflect, edge, wrap, got 'sym'"):
        _infer("PadImage", [(1, 1, 4, 4)], pad=1, mode="sym")
    ws = Workspace()
    ws.feed_blob("x", np.zeros((1, 1, 2, 2), np.float32))
    net = Net("p")
    net.PadImage("x", "y", pad=2, mode="reflect")
    with pytest.raises(ShapeError, match="reflect padding"):
        ws.run_net_once(net)


def test_gradient_ops_name_mismatched_dy():
    with pytest.raises(ShapeError, match=r"FCGradient: dY has shape \[3, 4\], the forward output \[3, 5\]"):
        net = Net("f")
        net.FCGradient(["x", "w", "dy"], ["dw", "db", "dx"])
        o = net.Proto().op[0]
        s = SCHEMAS.get("FCGradient")
        s.infer_outputs(
            s.parse_args(o.arg),
            [TensorInfo(t, np.dtype(np.float32)) for t in [(3, 7), (5, 7), (3, 4)]],
            3,
        )
    rng = np.random.default_rng(4)
    ws = Workspace()
    ws.feed_blob("x", rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
    ws.feed_blob("y", rng.standard_normal((1, 2, 3, 3)).astype(np.float32))
    net = Net("m")
    net.MaxPoolGradient(["x", "y", "y"], ["dx"], kernel=2, stride=2)
    with pytest.raises(
        ShapeError, match=r"MaxPoolGradient: Y has shape \[1, 2, 3, 3\], the pooled X \[1, 2, 2, 2\]"
    ):
        ws.run_net_once(net)

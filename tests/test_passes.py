"""kaffa.passes: every rewrite keeps the outputs (before/after equality), removes what it claims
to remove, and leaves parameters other ops still read untouched."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import ModelHelper, passes
from kaffa.core import Net
from kaffa.models import resnet18


def _random_bn_stats(ws: kaffa.Workspace, rng: np.random.Generator) -> None:
    """Fresh SpatialBN statistics are 0/1, which would make folding trivially right."""
    for name in ws.blobs():
        v = ws.fetch_blob(name)
        if name.endswith(("_rm", "_running_mean")):
            ws.feed_blob(name, rng.normal(0, 0.5, v.shape).astype(v.dtype))
        elif name.endswith(("_riv", "_running_var")):
            ws.feed_blob(name, rng.uniform(0.5, 2.0, v.shape).astype(v.dtype))
        elif name.endswith(("_s", "_scale")) and v.ndim == 1:
            ws.feed_blob(name, rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
        elif name.endswith(("_b", "_bias")) and v.ndim == 1:
            ws.feed_blob(name, rng.normal(0, 0.2, v.shape).astype(v.dtype))


def test_batchnorm_folding_keeps_resnet18_outputs():
    model = ModelHelper("r18", init_params=True)
    resnet18(model, "data", num_classes=10, is_test=True)
    ws = kaffa.Workspace("passes")
    ws.run_net_once(model.param_init_net)
    rng = np.random.default_rng(0)
    _random_bn_stats(ws, rng)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    ws.feed_blob("data", x)
    proto = model.net.Proto()
    out = proto.external_output[-1] if proto.external_output else proto.op[-1].output[0]
    ws.run_net_once(proto)
    want = ws.fetch_blob(out).copy()

    params = {n: ws.fetch_blob(n) for n in ws.blobs() if n != "data"}
    before = {n: v.copy() for n, v in params.items()}
    new = passes.optimize(proto, params)
    n_bn = sum(op.type == "SpatialBN" for op in proto.op)
    assert n_bn == 20 and not any(op.type == "SpatialBN" for op in new.op)
    assert len(new.op) == len(proto.op) - n_bn
    for n, v in before.items():  # originals untouched: folded weights live under new names
        assert np.array_equal(params[n], v)

    ws2 = kaffa.Workspace("passes-after")
    for n, v in params.items():
        ws2.feed_blob(n, v)
    ws2.feed_blob("data", x)
    ws2.run_net_once(new)
    got = ws2.fetch_blob(out)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _conv_bn_net(in_place: bool, shared_weight: bool) -> tuple[Net, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    params = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "g": rng.uniform(0.5, 2, 4).astype(np.float32),
        "beta": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.uniform(0.5, 2, 4).astype(np.float32),
    }
    net = Net("conv_bn")
    net.Conv(["x", "w", "b"], "y", kernel=3, pad=1)
    bn_out = "y" if in_place else "z"
    net.SpatialBN(["y", "g", "beta", "mean", "var"], bn_out, is_test=1, epsilon=1e-3)
    net.Relu(bn_out, "out")
    if shared_weight:
        net.Conv(["x", "w", "b"], "other", kernel=3, pad=1)
        net.AddExternalOutput("other")
    net.AddExternalOutput("out")
    return net, params


def _run(net: Net | kaffa.proto.NetDef, params: dict[str, np.ndarray], x: np.ndarray, outs: list[str]):
    ws = kaffa.Workspace()
    for n, v in params.items():
        ws.feed_blob(n, v)
    ws.feed_blob("x", x)
    ws.run_net_once(net)
    return [ws.fetch_blob(o) for o in outs]


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("shared_weight", [False, True])
def test_conv_bn_fold_in_place_and_shared_weights(in_place, shared_weight):
    net, params = _conv_bn_net(in_place, shared_weight)
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 5)).astype(np.float32)
    outs = ["out", "other"] if shared_weight else ["out"]
    want = _run(net, params, x, outs)
    new_params = dict(params)
    new = passes.fold_batchnorm(net.Proto(), new_params)
    assert [op.type for op in new.op] == ["Conv", "Relu", *(["Conv"] if shared_weight else [])]
    assert new.op[0].input[1] != "w" and np.array_equal(new_params["w"], params["w"])
    got = _run(new, new_params, x, outs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_bn_output_read_twice_or_training_mode_is_left_alone():
    net, params = _conv_bn_net(False, False)
    net.Sigmoid("y", "y_again")  # the Conv output is read by a second op: no fold
    kept = passes.fold_batchnorm(net.Proto(), dict(params))
    assert [op.type for op in kept.op] == ["Conv", "SpatialBN", "Relu", "Sigmoid"]
    net2 = Net("train_bn")
    net2.Conv(["x", "w", "b"], "y", kernel=3, pad=1)
    net2.SpatialBN(["y", "g", "beta", "mean", "var"], ["z", "mean", "var", "sm", "siv"], is_test=0)
    new = passes.fold_batchnorm(net2.Proto(), dict(params))
    assert [op.type for op in new.op] == ["Conv", "SpatialBN"]


def test_bias_add_folds_into_conv_and_fc():
    rng = np.random.default_rng(3)
    params = {
        "w": rng.standard_normal((4, 3, 1, 1)).astype(np.float32),
        "cb": rng.standard_normal((1, 4, 1, 1)).astype(np.float32),
        "fw": rng.standard_normal((5, 4 * 36)).astype(np.float32),
        "fb": rng.standard_normal(5).astype(np.float32),
    }
    net = Net("bias_add")
    net.Conv(["x", "w"], "y", kernel=1)
    net.Add(["y", "cb"], "y2")
    net.Flatten("y2", "f")
    net.FC(["f", "fw", "fb"], "logits")  # already has a bias: untouched
    net.AddExternalOutput("logits")
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = _run(net, params, x, ["logits"])
    new_params = dict(params)
    new = passes.optimize(net.Proto(), new_params)
    assert [op.type for op in new.op] == ["Conv", "Flatten", "FC"]
    assert len(new.op[0].input) == 3
    np.testing.assert_allclose(_run(new, new_params, x, ["logits"])[0], want[0], rtol=1e-5, atol=1e-5)


def test_predictor_optimizes_by_default_and_can_be_told_not_to():
    net, params = _conv_bn_net(False, False)
    init = Net("init")
    for n, v in params.items():
        init.GivenTensorFill([], n, shape=list(v.shape), values=v.ravel().tolist())
    net.AddExternalInput("x")
    x = np.random.default_rng(4).standard_normal((1, 3, 5, 5)).astype(np.float32)
    fast = kaffa.Predictor(init, net)
    plain = kaffa.Predictor(init, net, optimize=False)
    assert [op.type for op in fast._proto.op] == ["Conv", "Relu"]
    assert [op.type for op in plain._proto.op] == ["Conv", "SpatialBN", "Relu"]
    np.testing.assert_allclose(fast.run([x])[0], plain.run([x])[0], rtol=1e-5, atol=1e-5)

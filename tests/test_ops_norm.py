"""The norm family beyond conformance: SpatialBN's running statistics across runs and its gradient
net, Dropout's seeding and its training-mode gradient, gradient ops' shape inference against their
kernels, and the errors conformance cases cannot show."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import Net, Workspace
from kaffa.core import create_operator
from kaffa.device import device_option
from kaffa.errors import KaffaError, SchemaError, ShapeError
from kaffa.schema import SCHEMAS, TensorInfo
from kaffa_conformance import cases, gradcheck

F32 = np.dtype(np.float32)


def _infer(op: str, shapes, n_out: int = 1, dtypes=None, **args) -> list[TensorInfo]:
    schema = SCHEMAS.get(op)
    ins, outs = [f"in{k}" for k in range(len(shapes))], [f"out{j}" for j in range(n_out)]
    for i, j in schema.enforce_inplace:
        if i < len(ins) and j < len(outs):
            outs[j] = ins[i]
    o = create_operator(op, ins, outs, **args)
    infos = [TensorInfo(s, np.dtype(d)) for s, d in zip(shapes, dtypes or [F32] * len(shapes))]
    return schema.infer_outputs(schema.parse_args(o.arg), infos, n_out)


# -- SpatialBN -------------------------------------------------------------------------------------
def test_spatial_bn_running_stats_update_in_place_across_runs():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (4, 3, 5, 5))
    ws = Workspace()
    for name, value in (
        ("x", x),
        ("s", np.ones(3)),
        ("b", np.zeros(3)),
        ("rm", np.zeros(3)),
        ("rv", np.ones(3)),
    ):
        ws.feed_blob(name, value)
    net = Net("bn")
    net.SpatialBN(["x", "s", "b", "rm", "rv"], ["y", "rm", "rv", "sm", "siv"], momentum=0.9)
    ws.create_net(net)
    ws.run_net("bn", 2)
    per_c = np.moveaxis(x, 1, 0).reshape(3, -1)
    m2 = float(np.float32(0.9)) ** 2  # float arguments are float32 in the protobuf
    mu, unbiased = per_c.mean(1), per_c.var(1, ddof=1)
    np.testing.assert_allclose(ws.fetch_blob("rm"), (1 - m2) * mu, rtol=1e-12)
    np.testing.assert_allclose(ws.fetch_blob("rv"), m2 + (1 - m2) * unbiased, rtol=1e-12)
    np.testing.assert_allclose(ws.fetch_blob("siv"), 1 / np.sqrt(per_c.var(1) + 1e-5), rtol=1e-12)
    y = ws.fetch_blob("y")
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)


def test_spatial_bn_gradient_net_skips_running_stats():
    net = Net("bn")
    net.SpatialBN(["x", "s", "b", "rm", "rv"], ["y", "rm", "rv", "sm", "siv"])
    net.SumElements("y", "loss")
    grads = net.add_gradient_ops(["loss"])
    assert set(grads) >= {"x", "s", "b"} and "rm" not in grads and "rv" not in grads
    bn_grad = next(o for o in net.Proto().op if o.type == "SpatialBNGradient")
    assert list(bn_grad.input) == ["x", "s", "y_grad", "sm", "siv"]
    test = Net("bn_test")
    test.SpatialBN(["x", "s", "b", "rm", "rv"], ["y"], is_test=1)
    test.add_gradient_ops(["y"])
    assert list(test.Proto().op[-1].input)[3:] == ["rm", "rv"]  # the running stats, as constants


def test_spatial_bn_errors():
    bn = ["SpatialBN", [(2, 3, 4, 4), (3,), (3,), (3,), (3,)]]
    assert [i.shape for i in _infer(*bn, n_out=5)] == [(2, 3, 4, 4)] + [(3,)] * 4
    assert _infer(*bn, is_test=1)[0].shape == (2, 3, 4, 4)
    with pytest.raises(ShapeError, match=r"SpatialBN: is_test=1 takes 1 output\(s\), got 5"):
        _infer(*bn, n_out=5, is_test=1)
    with pytest.raises(ShapeError, match=r"is_test=0 takes 5 output\(s\), got 1"):
        _infer(*bn)
    with pytest.raises(ShapeError, match=r"SpatialBN: bias \[4\] must be \[C\] = \[3\] for X \[2,3,4,4\]"):
        _infer("SpatialBN", [(2, 3, 4, 4), (3,), (4,), (3,), (3,)], is_test=1)
    with pytest.raises(ShapeError, match=r"scale \[3\] must be \[C\] = \[4\] .*order NHWC"):
        _infer(*bn, is_test=1, order="NHWC")
    with pytest.raises(ShapeError, match="more than one value per channel"):
        _infer("SpatialBN", [(1, 3, 1, 1), (3,), (3,), (3,), (3,)], n_out=5)
    with pytest.raises(ShapeError, match="order must be NCHW or NHWC, got 'CHWN'"):
        _infer(*bn, is_test=1, order="CHWN")
    with pytest.raises(SchemaError, match="must write input 3 in place"):
        Net("n").SpatialBN(["x", "s", "b", "rm", "rv"], ["y", "rm2", "rv", "sm", "siv"])
    ws = Workspace()
    for name, shape in (("x", (1, 2, 1, 1)), ("s", (2,)), ("b", (2,)), ("m", (2,)), ("v", (2,))):
        ws.feed_blob(name, np.ones(shape, np.float32))
    net = Net("one")
    net.SpatialBN(["x", "s", "b", "m", "v"], ["y", "m", "v", "sm", "siv"])
    with pytest.raises(KaffaError, match="more than one value per channel"):
        ws.run_net_once(net)


# -- Dropout ---------------------------------------------------------------------------------------
def _dropout_run(seed: int | None, x: np.ndarray, runs: int = 1) -> list[np.ndarray]:
    ws = Workspace()
    ws.feed_blob("x", x)
    net = Net("drop")
    opt = device_option("cpu", random_seed=seed) if seed is not None else None
    op = create_operator("Dropout", ["x"], ["y", "mask"], ratio=0.5, device_option=opt)
    net.Proto().op.append(op)
    ws.create_net(net)
    masks = []
    for _ in range(runs):
        ws.run_net("drop")
        masks.append(ws.fetch_blob("mask"))
    return masks


def test_dropout_is_reproducible_with_a_seed_and_fresh_every_run():
    x = np.ones((50, 40), np.float32)
    a, b = _dropout_run(7, x, runs=2), _dropout_run(7, x, runs=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])  # the stream moves on between runs
    assert not np.array_equal(a[0], _dropout_run(8, x)[0])
    kaffa.set_random_seed(3)
    c = _dropout_run(None, x)[0]
    kaffa.set_random_seed(3)
    np.testing.assert_array_equal(c, _dropout_run(None, x)[0])


def test_dropout_training_gradient_uses_the_mask():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, (30, 20)).astype(np.float32)
    net = Net("drop")
    net.Dropout("x", ["y", "mask"], ratio=0.25)
    net.SumElements("y", "loss")
    grads = net.add_gradient_ops(["loss"])
    op = net.Proto().op[-1]
    assert op.type == "DropoutGrad" and op.input[1] == "mask"
    ws = Workspace()
    ws.feed_blob("x", x)
    ws.run_net_once(net)
    mask = ws.fetch_blob("mask")
    assert mask.dtype == np.bool_ and 0 < mask.mean() < 1
    np.testing.assert_allclose(ws.fetch_blob("y"), np.where(mask, x / 0.75, 0), rtol=1e-6)
    np.testing.assert_allclose(ws.fetch_blob(str(grads["x"])), np.where(mask, 1 / 0.75, 0), rtol=1e-7)


def test_dropout_errors():
    assert [i.dtype for i in _infer("Dropout", [(2, 3)], n_out=2)] == [F32, np.dtype(np.bool_)]
    with pytest.raises(ShapeError, match=r"Dropout: ratio must be in \[0, 1\), got 1.0"):
        _infer("Dropout", [(2, 3)], ratio=1.0)
    with pytest.raises(ShapeError, match="DropoutGrad: is_test=0 needs the mask"):
        _infer("DropoutGrad", [(2, 3)])
    with pytest.raises(ShapeError, match=r"DropoutGrad: dY \[2,3\] and mask \[3,2\] must have one shape"):
        _infer("DropoutGrad", [(2, 3), (3, 2)], dtypes=[F32, np.bool_])
    with pytest.raises(ShapeError, match="mask must be bool"):
        _infer("DropoutGrad", [(2, 3), (2, 3)])
    net = Net("d")
    net.Dropout("x", "y")  # training without the mask output: forward only
    with pytest.raises(SchemaError, match="needs its mask output"):
        net.add_gradient_ops(["y"])


# -- LRN, LayerNorm --------------------------------------------------------------------------------
def test_lrn_and_layer_norm_errors():
    assert [i.shape for i in _infer("LRN", [(2, 5, 3, 3)], n_out=2, size=3)] == [(2, 5, 3, 3)] * 2
    with pytest.raises(ShapeError, match="LRN: size must be a positive odd number, got 4"):
        _infer("LRN", [(2, 5, 3, 3)], size=4)
    with pytest.raises(KaffaError, match="LRN requires argument 'size'"):
        _infer("LRN", [(2, 5, 3, 3)])
    with pytest.raises(ShapeError, match=r"LRN: X \[5\] needs at least 2 dims"):
        _infer("LRN", [(5,)], size=3)
    ln = _infer("LayerNorm", [(2, 3, 4)], n_out=3, axis=2)
    assert [i.shape for i in ln] == [(2, 3, 4), (2, 3, 1), (2, 3, 1)]
    assert _infer("LayerNorm", [(2, 3, 4)], n_out=3, axis=0)[1].shape == (1,)
    with pytest.raises(ShapeError, match=r"LayerNorm: gamma \[5\] must have 12 elements"):
        _infer("LayerNorm", [(2, 3, 4), (5,), (12,)], n_out=3, elementwise_affine=1)
    with pytest.raises(ShapeError, match=r"elementwise_affine=0 takes 1 input\(s\) \(X\), got 3"):
        _infer("LayerNorm", [(2, 3, 4), (12,), (12,)], n_out=3)
    with pytest.raises(ShapeError, match="axis 3 is out of range for a rank-3 input"):
        _infer("LayerNorm", [(2, 3, 4)], n_out=3, axis=3)


# -- gradient ops: inference agrees with the kernels -------------------------------------------------
@pytest.mark.parametrize("op", ["SpatialBN", "LRN", "LayerNorm", "Dropout"])
def test_gradient_op_inference_matches_the_kernel(op):
    for case in cases.for_op(op):
        if not gradcheck.wants_grad(case):
            continue
        plan = gradcheck.Plan(case, F32)
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

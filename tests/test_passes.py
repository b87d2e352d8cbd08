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


@pytest.mark.parametrize("fuse", [False, True])
def test_batchnorm_folding_keeps_resnet18_outputs(fuse):
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
    folds = (passes.fold_batchnorm, passes.fold_bias_add)
    new = passes.optimize(proto, params, passes.DEFAULT_PASSES if fuse else folds)
    n_bn = sum(op.type == "SpatialBN" for op in proto.op)
    assert n_bn == 20 and not any(op.type == "SpatialBN" for op in new.op)
    if fuse:  # every Relu (after a Conv, or after a block's Sum) and every Sum went into a FusedConv
        n_relu, n_sum = (sum(op.type == t for op in proto.op) for t in ("Relu", "Sum"))
        types = [op.type for op in new.op]
        assert (n_relu, n_sum) == (17, 8) and "Relu" not in types and "Sum" not in types
        assert types.count("FusedConv") == n_relu and types.count("Conv") == 3  # the projections
        assert len(new.op) == len(proto.op) - n_bn - n_relu - n_sum
    else:
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


def _compute(net: kaffa.proto.NetDef) -> list[str]:
    """The op types without the layout Transposes ``channels_last`` adds on a backend that runs
    NHWC (cpu with the ONEDNN engine)."""
    return [op.type for op in net.op if op.type != "Transpose"]


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
    assert _compute(fast._proto) == ["FusedConv"]  # BN folded, then Relu fused
    assert [op.type for op in plain._proto.op] == ["Conv", "SpatialBN", "Relu"]
    np.testing.assert_allclose(fast.run([x])[0], plain.run([x])[0], rtol=1e-5, atol=1e-5)


# -- fuse_conv_activation -----------------------------------------------------------------------------


def _fused(net: kaffa.proto.NetDef) -> list[tuple[str, str, int]]:
    """(type, activation, number of inputs) per op of the rewritten net."""
    out = []
    for op in net.op:
        act = next((a.s.decode() for a in op.arg if a.name == "activation"), "")
        out.append((op.type, act, len(op.input)))
    return out


def _check_fusion(
    net: Net, params: dict, x: np.ndarray, outs: list[str], want_ops: list, fed: dict | None = None
) -> kaffa.proto.NetDef:
    """Fuse, compare the op list with ``want_ops`` and the outputs with the unfused net's. ``fed``:
    net inputs besides x, fed at run time (their shapes unknown to the pass, as x's)."""
    fed = fed or {}
    want = _run(net, {**params, **fed}, x, outs)
    new_params = dict(params)
    new = passes.optimize(net.Proto(), new_params)
    assert _fused(new) == want_ops
    for n, v in params.items():  # nothing the unfused net reads was changed
        assert new_params[n] is v
    got = _run(new, {**new_params, **fed}, x, outs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max())
    return new


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("projection", [False, True])
def test_resnet_basic_block_fuses_relu_and_residual_add(projection):
    rng = np.random.default_rng(10)
    c_in, c = (4, 6) if projection else (6, 6)
    params = {
        "w1": _randn(rng, c, c_in, 3, 3) * 0.3,
        "b1": _randn(rng, c),
        "w2": _randn(rng, c, c, 3, 3) * 0.3,  # no bias: the pass adds a zero one for Z
        "wp": _randn(rng, c, c_in, 1, 1),
        "bp": _randn(rng, c),
    }
    net = Net("basic_block")
    net.Conv(["x", "w1", "b1"], "a", kernel=3, pad=1)
    net.Relu("a", "a")  # in place
    net.Conv(["a", "w2"], "c", kernel=3, pad=1)
    if projection:
        net.Conv(["x", "wp", "bp"], "p", kernel=1)
        net.Add(["p", "c"], "s")  # the Conv output second
    else:
        net.Add(["c", "x"], "s")
    net.Relu("s", "out")
    net.AddExternalOutput("out")
    fused_add = ("FusedConv", "Relu", 4)
    want_ops = [("FusedConv", "Relu", 3), *([("Conv", "", 3)] if projection else []), fused_add]
    x = _randn(rng, 2, c_in, 7, 9)
    new = _check_fusion(net, params, x, ["out"], want_ops)
    last = new.op[-1]
    assert list(last.output) == ["out"] and last.input[3] == ("p" if projection else "x")
    assert new.op[0].output[0] == "a"


def test_mobilenet_block_fuses_clip6_depthwise_and_linear_residual():
    rng = np.random.default_rng(11)
    c, e = 4, 12
    params = {
        "we": _randn(rng, e, c, 1, 1),
        "be": _randn(rng, e),
        "wd": _randn(rng, e, 1, 3, 3),
        "bd": _randn(rng, e),
        "wp": _randn(rng, c, e, 1, 1) * 0.3,
        "bp": _randn(rng, c),
    }
    net = Net("inverted_residual")
    net.Conv(["x", "we", "be"], "e", kernel=1)
    net.Clip("e", "e6", min=0.0, max=6.0)
    net.Conv(["e6", "wd", "bd"], "d", kernel=3, pad=1, group=e)
    net.Clip("d", "d6", min=0.0, max=6.0)
    net.Conv(["d6", "wp", "bp"], "p", kernel=1)
    net.Add(["x", "p"], "out")
    net.AddExternalOutput("out")
    x = _randn(rng, 2, c, 9, 7) * 3  # large enough that both Clip bounds are hit
    want_ops = [("FusedConv", "Clip", 3), ("FusedConv", "Clip", 3), ("FusedConv", "", 4)]
    new = _check_fusion(net, params, x, ["out"], want_ops)
    clip = {a.name: a.f for a in new.op[1].arg if a.name in ("min", "max")}
    assert clip == {"min": 0.0, "max": 6.0}
    assert _run(net, params, x, ["d6"])[0].max() == 6.0  # the upper bound mattered


def test_nhwc_and_1d_convs_fuse_too():
    rng = np.random.default_rng(12)
    params = {
        "w": _randn(rng, 5, 3, 3, 4),
        "b": _randn(rng, 5),
        "w1": _randn(rng, 5, 4, 3),
        "b1": _randn(rng, 5),
    }
    net = Net("nhwc")
    net.Conv(["x", "w", "b"], "y", kernel=3, pad=1, order="NHWC")
    net.Relu("y", "out")
    net.AddExternalOutput("out")
    _check_fusion(net, params, _randn(rng, 2, 6, 7, 4), ["out"], [("FusedConv", "Relu", 3)])
    net1 = Net("conv1d")
    net1.Conv(["x", "w1", "b1"], "y", kernels=[3], pads=[1, 1])
    net1.Clip("y", "out", min=-0.5, max=0.5)
    net1.AddExternalOutput("out")
    _check_fusion(net1, params, _randn(rng, 2, 4, 13), ["out"], [("FusedConv", "Clip", 3)])


def _conv_relu_net() -> tuple[Net, dict[str, np.ndarray]]:
    """Conv(x) -> y and its parameters; x and z (a residual of y's shape) are fed at run time."""
    rng = np.random.default_rng(13)
    net = Net("conv_relu")
    net.Conv(["x", "w", "b"], "y", kernel=3, pad=1)
    return net, {"w": _randn(rng, 4, 3, 3, 3), "b": _randn(rng, 4)}


_X = np.random.default_rng(14).standard_normal((2, 3, 5, 5)).astype(np.float32)
_Z = {"z": np.random.default_rng(15).standard_normal((2, 4, 5, 5)).astype(np.float32)}


def _types(net: Net, params: dict) -> list[str]:
    return [op.type for op in passes.optimize(net.Proto(), dict(params)).op]


def test_no_fusion_when_the_conv_output_is_read_twice_or_is_a_net_output():
    net, params = _conv_relu_net()
    net.Relu("y", "r")
    net.Sigmoid("y", "s")
    assert _types(net, params) == ["Conv", "Relu", "Sigmoid"]
    net, params = _conv_relu_net()
    net.Relu("y", "r")
    net.AddExternalOutput("y")
    assert _types(net, params) == ["Conv", "Relu"]
    net, params = _conv_relu_net()  # the Add's output is read twice: Conv + Add fuse, not the Relu
    net.Add(["y", "z"], "s")
    net.Relu("s", "r")
    net.Sigmoid("s", "t")
    net.AddExternalOutput("r")
    net.AddExternalOutput("t")
    want_ops = [("FusedConv", "", 4), ("Relu", "", 1), ("Sigmoid", "", 1)]
    _check_fusion(net, params, _X, ["r", "t"], want_ops, _Z)


def test_no_fusion_across_an_op_that_rewrites_the_conv_input_or_z():
    net, params = _conv_relu_net()
    net.Scale("x", "x", scale=2.0)  # in place, between the Conv and the Relu
    net.Relu("y", "out")
    net.AddExternalOutput("out")
    _check_fusion(net, params, _X, ["out"], [("Conv", "", 3), ("Scale", "", 1), ("Relu", "", 1)])
    net, params = _conv_relu_net()
    net.Add(["y", "z"], "s")
    net.Scale("z", "z", scale=2.0)  # Z changes after the Add: only Conv + Add may fuse
    net.Relu("s", "out")
    net.AddExternalOutput("out")
    want_ops = [("FusedConv", "", 4), ("Scale", "", 1), ("Relu", "", 1)]
    _check_fusion(net, params, _X, ["out"], want_ops, _Z)


def test_no_fusion_of_broadcasting_adds():
    net, params = _conv_relu_net()
    net.Add(["y", "z"], "s", broadcast=1, axis=0)  # Caffe2's legacy broadcast: never fused
    net.Relu("s", "out")
    assert _types(net, params) == ["Conv", "Add", "Relu"]
    net, params = _conv_relu_net()  # Z's shape known, y's not: Z might broadcast
    params["z"] = _Z["z"]
    net.Add(["y", "z"], "s")
    net.Relu("s", "out")
    assert _types(net, params) == ["Conv", "Add", "Relu"]
    # With X known too, shapes decide: a full-shape Z fuses, a [1, 4, 1, 1] one broadcasts.
    for z_shape, want in (((2, 4, 5, 5), ["FusedConv"]), ((1, 4, 1, 1), ["Conv", "Add", "Relu"])):
        net, params = _conv_relu_net()
        params["z"] = _Z["z"][tuple(slice(0, n) for n in z_shape)].copy()
        net.Add(["z", "y"], "s")
        net.Relu("s", "out")
        assert _types(net, {**params, "x": _X}) == want, z_shape


def test_in_place_add_over_z_fuses_with_y_overwriting_z():
    net, params = _conv_relu_net()
    net.Add(["y", "z"], "z")  # Add(conv, Z) -> Z
    net.Relu("z", "z")
    net.AddExternalOutput("z")
    new = _check_fusion(net, params, _X, ["z"], [("FusedConv", "Relu", 4)], _Z)
    assert list(new.op[0].output) == ["z"] and new.op[0].input[3] == "z"


def test_fusion_is_skipped_for_a_backend_without_a_fused_conv_kernel():
    from kaffa.plugins import registry

    net, params = _conv_relu_net()
    net.Relu("y", "out")
    proto = net.Proto()
    assert passes.has_kernels("cpu", ["FusedConv"])
    fused = passes.optimize(proto, dict(params), backend="cpu")
    assert _compute(fused) == ["FusedConv"]
    lacking = [b for b in registry().backends if not passes.has_kernels(b, ["FusedConv"])]
    for backend in lacking:
        kept = passes.optimize(proto, dict(params), backend=backend)
        assert [op.type for op in kept.op] == ["Conv", "Relu"], backend


def test_predictor_on_opencl_keeps_plain_convs():
    from kaffa.plugins import registry

    reg = registry()
    if "opencl" not in reg.backends or not reg.backends["opencl"].available:
        pytest.skip("no opencl backend here: Predictor(device='opencl') cannot run")
    if passes.has_kernels("opencl", ["FusedConv"]):
        pytest.skip("opencl has a FusedConv kernel now: fusion there is right")
    net, params = _conv_relu_net()
    net.Relu("y", "out")
    net.AddExternalInput("x")
    net.AddExternalOutput("out")
    init = Net("init")
    for n in ("w", "b"):
        init.GivenTensorFill([], n, shape=list(params[n].shape), values=params[n].ravel().tolist())
    x = _X
    on_opencl = kaffa.Predictor(init, net, device="opencl")
    on_cpu = kaffa.Predictor(init, net)
    assert [op.type for op in on_opencl._proto.op] == ["Conv", "Relu"]
    assert _compute(on_cpu._proto) == ["FusedConv"]
    np.testing.assert_allclose(on_opencl.run([x])[0], on_cpu.run([x])[0], rtol=1e-4, atol=1e-5)


def test_fused_conv_schema_rejects_bad_activation_and_z_shape():
    from kaffa.errors import ArgumentError, ShapeError

    ws = kaffa.Workspace()
    rng = np.random.default_rng(17)
    for n, v in {"x": _randn(rng, 1, 3, 5, 5), "w": _randn(rng, 4, 3, 3, 3), "b": _randn(rng, 4)}.items():
        ws.feed_blob(n, v)
    ws.feed_blob("z", _randn(rng, 1, 4, 5, 4))
    bad = Net("bad_activation")
    with pytest.raises(ArgumentError, match=r"FusedConv.*activation.*'Tanh'"):
        bad.FusedConv(["x", "w", "b"], "y", kernel=3, pad=1, activation="Tanh")
        ws.create_net(bad)
    wrong_z = Net("wrong_z")
    wrong_z.FusedConv(["x", "w", "b", "z"], "y", kernel=3, pad=1)
    with pytest.raises(ShapeError, match=r"FusedConv.*\[1, 4, 5, 4\].*\[1, 4, 5, 5\]"):
        ws.create_net(wrong_z)


def test_fused_net_has_the_unfused_nets_gradients():
    """FusedConv's gradient maker (activation gradient, then ConvGradient; dZ = dPre), Y over Z in place."""
    from kaffa.gradients import add_gradient_ops

    net, params = _conv_relu_net()
    net.Add(["y", "z"], "z")
    net.Clip("z", "z", min=0.0, max=1.0)
    net.AveragedLoss("z", "loss")
    fused = passes.optimize(net.Proto(), dict(params))
    assert [op.type for op in fused.op] == ["FusedConv", "AveragedLoss"]

    def grads(proto: kaffa.proto.NetDef) -> dict[str, np.ndarray]:
        ops, names = add_gradient_ops(list(proto.op), ["loss"])
        full = kaffa.proto.NetDef()
        full.CopyFrom(proto)
        full.op.extend(ops)
        ws = kaffa.Workspace()
        for n, v in {**params, **_Z, "x": _X}.items():
            ws.feed_blob(n, v)
        ws.run_net_once(full)
        return {k: ws.fetch_blob(names[k]) for k in ("x", "w", "b", "z")}

    want, got = grads(net.Proto()), grads(fused)
    for k in want:
        assert np.abs(want[k]).max() > 0, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


# -- channels_last ------------------------------------------------------------------------------------


def _block_net() -> tuple[Net, dict[str, np.ndarray]]:
    """A small ResNet-like net: stem Conv+Relu, MaxPool, a residual block, a depthwise Conv, an NCHW
    consumer in the middle (Sigmoid) and global pooling + FC at the end."""
    rng = np.random.default_rng(31)
    net = Net("block")
    net.Conv(["x", "w0", "b0"], "c0", kernel=3, pad=1, stride=2)
    net.Relu("c0", "r0")
    net.MaxPool("r0", "p0", kernel=3, stride=2, pad=1)
    net.Conv(["p0", "w1", "b1"], "c1", kernel=3, pad=1)
    net.Relu("c1", "r1")
    net.Conv(["r1", "w2", "b2"], "c2", kernel=3, pad=1)
    net.Add(["c2", "p0"], "s2")
    net.Relu("s2", "r2")
    net.Sigmoid("r2", "g")  # reads r2 in NCHW: r2's NCHW form must be kept
    net.Conv(["r2", "wd"], "d", kernel=3, pad=1, group=8)
    net.Mul(["d", "g"], "m")
    net.AveragePool("m", "pool", global_pooling=1)
    net.FC(["pool", "fw", "fb"], "logits")
    params = {
        "w0": _randn(rng, 8, 3, 3, 3),
        "b0": _randn(rng, 8),
        "w1": _randn(rng, 8, 8, 3, 3),
        "b1": _randn(rng, 8),
        "w2": _randn(rng, 8, 8, 3, 3),
        "b2": _randn(rng, 8),
        "wd": _randn(rng, 8, 1, 3, 3),
        "fw": _randn(rng, 5, 8),
        "fb": _randn(rng, 5),
    }
    return net, params


def test_channels_last_keeps_outputs_and_transposes_only_at_the_edges():
    net, params = _block_net()
    net.AddExternalOutput("logits")
    x = np.random.default_rng(32).standard_normal((2, 3, 16, 16)).astype(np.float32)
    want = _run(net, params, x, ["logits"])
    new_params = dict(params)
    fused = passes.fuse_conv_activation(net.Proto(), new_params)
    new = passes.channels_last(fused, new_params)
    for op in new.op:
        if op.type in ("Conv", "FusedConv", "MaxPool"):
            assert passes._args(op)["order"] == "NHWC"
    np.testing.assert_allclose(_run(new, new_params, x, ["logits"])[0], want[0], rtol=1e-4, atol=1e-5)
    # In: the data. Out: r2 for Sigmoid (its NHWC twin feeds the depthwise Conv) and d for Mul.
    transposes = [(op.input[0], op.output[0]) for op in new.op if op.type == "Transpose"]
    assert [t[0] for t in transposes] == ["x", "r2_nhwc", "d_nhwc"], transposes
    # the filters were transposed once into new parameters; the originals are untouched
    assert new_params["w1_nhwc"].shape == (8, 3, 3, 8) and new_params["w1"].shape == (8, 8, 3, 3)


def test_channels_last_on_a_net_without_declared_outputs_keeps_every_final_value():
    net, params = _conv_relu_net()
    x = _X
    new_params = dict(params)
    new = passes.channels_last(net.Proto(), new_params)
    assert [op.type for op in new.op] == ["Transpose", "Conv", "Transpose"]
    np.testing.assert_allclose(
        _run(new, new_params, x, ["y"])[0], _run(net, params, x, ["y"])[0], rtol=1e-4, atol=1e-5
    )


def test_channels_last_handles_in_place_convs_and_rewritten_inputs():
    rng = np.random.default_rng(33)
    net = Net("in_place")
    net.Conv(["x", "w", "b"], "a", kernel=3, pad=1)
    net.Conv(["a", "w", "b"], "c", kernel=3, pad=1)
    net.Conv(["c", "w", "b"], "a", kernel=3, pad=1)  # a written again: its twin must follow
    net.Relu("a", "a")  # an NCHW op rewrites a in place: the NHWC twin is stale after it
    net.Conv(["a", "w", "b"], "y", kernel=3, pad=1)
    net.AddExternalOutput("y")
    params = {"w": _randn(rng, 3, 3, 3, 3), "b": _randn(rng, 3)}
    want = _run(net, params, _X, ["y"])
    new_params = dict(params)
    new = passes.channels_last(net.Proto(), new_params)
    np.testing.assert_allclose(_run(new, new_params, _X, ["y"])[0], want[0], rtol=1e-4, atol=1e-5)
    assert _compute(new) == ["Conv", "Conv", "Conv", "Relu", "Conv"]


def test_channels_last_leaves_nets_it_cannot_rewrite():
    net, _ = _conv_relu_net()
    proto = net.Proto()
    # a filter that is no known parameter (fed at run time): nothing to transpose here
    assert passes.channels_last(proto, {}) is proto
    nhwc = Net("nhwc")
    nhwc.Conv(["x", "w"], "y", kernel=3, order="NHWC")
    assert (
        passes.channels_last(nhwc.Proto(), {"w": _randn(np.random.default_rng(0), 4, 3, 3, 3)})
        is nhwc.Proto()
    )


def test_channels_last_runs_only_for_a_backend_that_asks_for_nhwc():
    from kaffa.plugins import registry

    net, params = _conv_relu_net()
    proto = net.Proto()
    assert "Transpose" not in [op.type for op in passes.optimize(proto, dict(params)).op]  # no backend
    for name, backend in registry().backends.items():
        types = [op.type for op in passes.optimize(proto, dict(params), backend=name).op]
        assert ("Transpose" in types) == (backend.conv_order == "NHWC"), name


def test_predictor_output_is_the_same_with_and_without_channels_last():
    net, params = _block_net()
    net.AddExternalInput("x")
    net.AddExternalOutput("logits")
    init = Net("init")
    for n, v in params.items():
        init.GivenTensorFill([], n, shape=list(v.shape), values=v.ravel().tolist())
    x = np.random.default_rng(34).standard_normal((1, 3, 16, 16)).astype(np.float32)
    fast = kaffa.Predictor(init, net)
    plain = kaffa.Predictor(init, net, optimize=False)
    np.testing.assert_allclose(fast.run([x])[0], plain.run([x])[0], rtol=1e-4, atol=1e-5)

"""The training API: ModelHelper, brew, arg_scope, optimizers, predictor extraction."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import brew, optimizer
from kaffa.core import BlobReference
from kaffa.model_helper import ModelHelper, ParameterTags, extract_predictor_net
from kaffa.plugins import registry
from kaffa.schema import SCHEMAS
from kaffa.scope import NameScope


def needs(*ops: str, kernels: bool = True):
    """Skip until other families land these ops (schemas, and cpu kernels when the test runs them)."""
    cpu = registry().kernels
    missing = [op for op in ops if op not in SCHEMAS or (kernels and not cpu.engines("cpu", op))]
    return pytest.mark.skipif(bool(missing), reason=f"ops not available yet: {missing}")


def _arg(op, name):
    for a in op.arg:
        if a.name == name:
            for f in ("f", "i", "s"):
                if a.HasField(f):
                    return getattr(a, f)
            return list(a.ints) or list(a.floats) or list(a.strings)
    return None


def _toy_data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes, separable by the sign of x0*x1 (XOR-like): an MLP must use its hidden layer."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    x += 0.2 * np.sign(x)  # keep a margin around the axes
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int32)


def _mlp(name: str = "mlp", hidden: int = 16) -> tuple[ModelHelper, BlobReference, BlobReference]:
    model = ModelHelper(name)
    h = brew.fc(model, "data", "fc1", dim_in=2, dim_out=hidden)
    h = brew.relu(model, h, h)
    logits = brew.fc(model, h, "fc2", dim_in=hidden, dim_out=2)
    prob = brew.softmax(model, logits, "prob")
    xent = model.LabelCrossEntropy([prob, "label"], "xent")
    loss = model.AveragedLoss(xent, "loss")
    return model, prob, loss


def _train(
    model: ModelHelper, x: np.ndarray, y: np.ndarray, iters: int
) -> tuple[kaffa.Workspace, list[float]]:
    kaffa.set_random_seed(7)
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("data", x)
    ws.feed_blob("label", y)
    ws.create_net(model.net)
    losses = []
    for _ in range(iters):
        ws.run_net(model.net.name)
        losses.append(float(ws.fetch_blob("loss")))
    return ws, losses


# -- training ----------------------------------------------------------------------------------------
BUILDERS = {
    "sgd": lambda m: optimizer.build_sgd(m, base_learning_rate=0.5),
    "momentum": lambda m: optimizer.build_sgd(m, base_learning_rate=0.1, momentum=0.9),
    "nesterov": lambda m: optimizer.build_sgd(m, base_learning_rate=0.1, momentum=0.9, nesterov=True),
    "sgd_step_wd": lambda m: optimizer.build_sgd(
        m, base_learning_rate=0.5, policy="step", stepsize=100, gamma=0.9, weight_decay=1e-4
    ),
    "adam": lambda m: optimizer.build_adam(m, base_learning_rate=0.02),
    "adagrad": lambda m: optimizer.build_adagrad(m, base_learning_rate=0.2),
}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_mlp_trains_on_a_separable_toy_problem(kind):
    x, y = _toy_data()
    model, _, loss = _mlp()
    model.add_gradient_ops([loss])
    BUILDERS[kind](model)
    ws, losses = _train(model, x, y, 300)
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] / 50, (losses[0], losses[-1])
    accuracy = (ws.fetch_blob("prob").argmax(axis=1) == y).mean()
    assert accuracy == 1.0
    assert ws.fetch_blob("optimizer_iteration").tolist() == [300]
    assert ws.fetch_blob("optimizer_iteration").dtype == np.int64


@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
def test_small_cnn_trains_in_either_layout(order):
    """Conv, Relu, MaxPool, FC and SoftmaxWithLoss with momentum; the layout comes from the model."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=32).astype(np.int32)
    x = rng.normal(0, 0.3, size=(32, 1, 6, 6)).astype(np.float32)
    for i, label in enumerate(y):  # a bright patch on the left (0) or the right (1)
        x[i, 0, 1:4, 3 * label : 3 * label + 3] += 1.0
    if order == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    model = ModelHelper(f"cnn_{order}", arg_scope={"order": order})
    h = brew.conv(model, "data", "conv1", dim_in=1, dim_out=4, kernel=3, pad=1)
    h = brew.relu(model, h, h)
    h = brew.max_pool(model, h, "pool1", kernel=2, stride=2)
    logits = brew.fc(model, h, "fc", dim_in=4 * 3 * 3, dim_out=2)
    model.SoftmaxWithLoss([logits, "label"], ["prob", "loss"])
    model.add_gradient_ops(["loss"])
    optimizer.build_sgd(model, 0.1, momentum=0.9)
    assert model.get_param_info("conv1_w").shape == ([4, 1, 3, 3] if order == "NCHW" else [4, 3, 3, 1])
    ws, losses = _train(model, x, y, 60)
    assert losses[-1] < losses[0] / 50, (losses[0], losses[-1])
    assert (ws.fetch_blob("prob").argmax(axis=1) == y).all()


def test_sgd_step_matches_a_hand_computed_update():
    """One run of the net: param' = param - lr * grad (WeightedSum with LearningRate's negative rate)."""
    x, y = _toy_data(8)
    model, _, loss = _mlp(hidden=3)
    model.add_gradient_ops([loss])
    fwd_bwd = kaffa.core.Net(model.net.Proto())  # before the updates: gradients only
    optimizer.build_sgd(model, base_learning_rate=0.3)
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("data", x)
    ws.feed_blob("label", y)
    before = {str(p): ws.fetch_blob(p) for p in model.params}
    ws.run_net_once(fwd_bwd)
    grads = {str(p): ws.fetch_blob(g) for p, g in model.param_to_grad.items()}
    ws.run_net_once(model.net)
    for p in model.params:
        np.testing.assert_allclose(
            ws.fetch_blob(p), before[str(p)] - 0.3 * grads[str(p)], rtol=1e-5, atol=1e-6
        )
    assert float(ws.fetch_blob(model.net.ops[-1].input[3])) == pytest.approx(-0.3)


def test_momentum_uses_a_positive_rate_and_plain_sgd_a_negative_one():
    for momentum, sign in ((0.0, -1), (0.9, 1)):
        model, _, loss = _mlp()
        model.add_gradient_ops([loss])
        optimizer.build_sgd(model, base_learning_rate=0.25, momentum=momentum)
        lrs = [op for op in model.net.ops if op.type == "LearningRate"]
        assert len(lrs) == 1
        assert _arg(lrs[0], "base_lr") == pytest.approx(sign * 0.25)
        update = "MomentumSGDUpdate" if momentum else "WeightedSum"
        assert sum(op.type == update for op in model.net.ops) == len(model.params)
    model, _, loss = _mlp()
    model.add_gradient_ops([loss])
    optimizer.build_adam(model, 0.01)
    (lr,) = [op for op in model.net.ops if op.type == "LearningRate"]
    assert _arg(lr, "base_lr") == pytest.approx(-0.01)


def test_builders_share_one_int64_iteration_counter():
    model, _, loss = _mlp()
    model.add_gradient_ops([loss])
    params = model.get_params()
    optimizer.build_adagrad(model, 0.1, parameters=params[:2])
    optimizer.build_adagrad(model, 0.1, parameters=params[2:])
    fills = [op for op in model.param_init_net.ops if "optimizer_iteration" in op.output]
    assert len(fills) == 1
    assert fills[0].type == "ConstantFill" and _arg(fills[0], "dtype") == kaffa.proto.TensorProto.INT64
    assert fills[0].device_option.device_type == 0
    iters = [op for op in model.net.ops if op.type == "Iter"]
    assert len(iters) == 1 and list(iters[0].output) == ["optimizer_iteration"]
    assert sum(op.type == "Adagrad" for op in model.net.ops) == 4
    # Every update comes after every gradient op.
    kinds = [op.type for op in model.net.ops]
    last_grad = max(k for k, op in enumerate(model.net.ops) if op.is_gradient_op)
    assert all(k > last_grad for k, t in enumerate(kinds) if t == "Adagrad")


def test_optimizer_needs_gradients_first():
    model, _, _ = _mlp()
    with pytest.raises(RuntimeError, match="add_gradient_ops"):
        optimizer.build_sgd(model, 0.1)


# -- gradients ---------------------------------------------------------------------------------------
def _check_against_finite_differences(model: ModelHelper, forward, feeds: dict[str, np.ndarray]) -> None:
    """Run the model's net in float64 and compare every parameter gradient with central differences
    of the forward net's loss."""
    rng = np.random.default_rng(3)
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    for p in model.get_all_params():  # float64 so the finite differences are precise
        value = ws.fetch_blob(p).astype(np.float64)
        if p in model.params:
            value += rng.normal(0, 0.1, value.shape)
        ws.feed_blob(p, value)
    for name, value in feeds.items():
        ws.feed_blob(name, value)
    ws.run_net_once(model.net)
    analytic = {str(p): ws.fetch_blob(g) for p, g in model.param_to_grad.items()}
    assert set(analytic) == {str(p) for p in model.params}

    def loss_at(name, value):
        ws.feed_blob(name, value)
        ws.run_net_once(forward)
        return float(ws.fetch_blob("loss"))

    eps = 1e-6
    for name, grad in analytic.items():
        base = ws.fetch_blob(name)
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[idx] += eps
            minus[idx] -= eps
            numeric[idx] = (loss_at(name, plus) - loss_at(name, minus)) / (2 * eps)
        ws.feed_blob(name, base)
        assert grad.dtype == np.float64
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_add_gradient_ops_matches_finite_differences():
    rng = np.random.default_rng(3)
    model = ModelHelper("tiny")
    h = brew.fc(model, "data", "fc1", dim_in=3, dim_out=4)
    h = brew.tanh(model, h, "t1")
    out = brew.fc(model, h, "fc2", dim_in=4, dim_out=2)
    dist = model.SquaredL2Distance([out, "target"], "dist")
    loss = model.AveragedLoss(dist, "loss")
    forward = model.net.clone("tiny_forward")
    model.add_gradient_ops([loss])
    assert {str(p) for p in model.param_to_grad} == {"fc1_w", "fc1_b", "fc2_w", "fc2_b"}
    _check_against_finite_differences(
        model, forward, {"data": rng.normal(size=(5, 3)), "target": rng.normal(size=(5, 2))}
    )


@needs("SpatialBN", "LayerNorm")
def test_brew_layer_gradients_match_finite_differences():
    """conv, spatial_bn (training mode: batch statistics), max_pool, fc, layer_norm, prelu."""
    rng = np.random.default_rng(4)
    model = ModelHelper("layers", arg_scope={"use_cudnn": False})
    h = brew.conv(model, "data", "conv", 2, 3, kernel=3, pad=1)
    h = brew.spatial_bn(model, h, "bn", 3)
    h = brew.relu(model, h, "relu")
    h = brew.max_pool(model, h, "pool", kernel=2, stride=2)
    h = brew.fc(model, h, "fc", 3 * 2 * 2, 4)
    h, _, _ = brew.layer_norm(model, h, "ln", 4)
    h = brew.prelu(model, h, "prelu", num_channels=4)
    loss = model.AveragedLoss(model.SquaredL2Distance([h, "target"], "dist"), "loss")
    forward = model.net.clone("layers_forward")
    model.add_gradient_ops([loss])
    _check_against_finite_differences(
        model, forward, {"data": rng.normal(size=(3, 2, 4, 4)), "target": rng.normal(size=(3, 4))}
    )


# -- parameters --------------------------------------------------------------------------------------
def test_params_tags_and_param_to_grad():
    model, _, loss = _mlp()
    assert [str(p) for p in model.params] == ["fc1_w", "fc1_b", "fc2_w", "fc2_b"]
    assert [str(p) for p in model.get_weights()] == ["fc1_w", "fc2_w"]
    assert [str(p) for p in model.get_biases()] == ["fc1_b", "fc2_b"]
    assert model.get_param_info("fc1_w").tags == {ParameterTags.WEIGHT}
    assert model.get_param_info("fc1_w").shape == [16, 2]
    assert model.get_computed_params() == []
    init = {op.output[0]: op for op in model.param_init_net.ops}
    assert init["fc1_w"].type == "XavierFill" and _arg(init["fc1_w"], "shape") == [16, 2]
    assert init["fc1_b"].type == "ConstantFill" and _arg(init["fc1_b"], "shape") == [16]

    with pytest.raises(RuntimeError):
        model.get_param_to_grad(model.params)
    grad_map = model.add_gradient_ops([loss])
    assert {str(p): str(g) for p, g in model.param_to_grad.items()} == {
        p: p + "_grad" for p in ("fc1_w", "fc1_b", "fc2_w", "fc2_b")
    }
    assert "data" in grad_map  # the full map, not only the params
    assert all(info.grad is not None for info in model.get_optimization_param_info())
    assert model.GetParams() == model.get_params()
    with pytest.raises(RuntimeError, match="already"):
        model.AddGradientOperators([loss])


def test_create_param_scoping_sharing_and_initializers():
    model = ModelHelper("p")
    with NameScope("tower"):
        w = model.create_param("w", [2, 3], ("GaussianFill", {"std": 0.01}), tags=ParameterTags.WEIGHT)
        again = model.create_param("w", [2, 3], ("XavierFill", {}))
        with pytest.raises(ValueError, match="shape"):
            model.create_param("w", [3, 3], ("XavierFill", {}))
    assert str(w) == "tower/w" and again == w
    assert model.get_params("tower") == [w] and model.get_params("other") == []
    (fill,) = model.param_init_net.ops
    assert fill.type == "GaussianFill" and _arg(fill, "std") == pytest.approx(0.01)
    fc = brew.fc(
        model,
        "x",
        "fc",
        3,
        2,
        weight_init=("ConstantFill", {"value": 0.5}),
        bias_init=("ConstantFill", {"value": 2.0}),
    )
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    np.testing.assert_array_equal(ws.fetch_blob("fc_w"), np.full((2, 3), 0.5, np.float32))
    np.testing.assert_array_equal(ws.fetch_blob("fc_b"), [2.0, 2.0])
    ws.feed_blob("x", np.ones((1, 3), np.float32))
    ws.run_net_once(model.net)
    np.testing.assert_allclose(ws.fetch_blob(fc), [[3.5, 3.5]])


def test_brew_names_follow_the_namescope():
    model = ModelHelper("ns")
    with NameScope("gpu_0"):
        y = brew.fc(model, "x", "fc1", 4, 2)
        z = brew.fc(model, y, None, 2, 2)
    assert str(y) == "gpu_0/fc1"
    assert [str(p) for p in model.params][:2] == ["gpu_0/fc1_w", "gpu_0/fc1_b"]
    # An automatic output name is scoped once, not twice.
    assert str(z).startswith("gpu_0/") and not str(z).startswith("gpu_0/gpu_0/")
    assert str(model.params[2]) == str(z) + "_w"


def test_init_params_false_adds_no_fillers_and_param_model_shares():
    train, _, _ = _mlp("train")
    test = ModelHelper("test", init_params=False)
    h = brew.fc(test, "data", "fc1", 2, 16)
    assert len(test.param_init_net.ops) == 0
    assert [str(p) for p in test.params] == ["fc1_w", "fc1_b"]
    shared = ModelHelper("shared", param_model=train)
    assert shared.param_init_net is train.param_init_net and shared.params is train.params
    again = brew.fc(shared, "data", "fc1", 2, 16)  # same names: the existing params are reused
    assert len(train.params) == 4 and str(again) == "fc1" and h == again


def test_model_forwards_ops_to_its_net():
    model = ModelHelper("fwd")
    y = model.Relu("x", "y")
    assert isinstance(y, BlobReference) and model.net.ops[0].type == "Relu"
    with pytest.raises(AttributeError, match="Relu"):
        model.Relux  # noqa: B018
    assert model.Proto() is model.net.Proto() and model.InitProto() is model.param_init_net.Proto()


def test_weight_decay_touches_only_weights():
    rng = np.random.default_rng(5)
    x, y = _toy_data(16)
    shapes = {"fc1_w": (16, 2), "fc1_b": (16,), "fc2_w": (2, 16), "fc2_b": (2,)}
    values = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    grads = {}
    for wd in (0.0, 0.25):
        model, _, loss = _mlp(f"wd{wd}")
        model.add_gradient_ops([loss])
        optimizer.add_weight_decay(model, wd)
        ws = kaffa.Workspace()
        for name, value in values.items():
            ws.feed_blob(name, value)
        ws.feed_blob("data", x)
        ws.feed_blob("label", y)
        ws.run_net_once(model.param_init_net.Proto() if wd else kaffa.proto.NetDef(name="empty"))
        for name, value in values.items():  # the init net filled them again: the same values for both
            ws.feed_blob(name, value)
        ws.run_net_once(model.net)
        grads[wd] = {str(p): ws.fetch_blob(g) for p, g in model.param_to_grad.items()}
    for name in ("fc1_w", "fc2_w"):
        np.testing.assert_allclose(
            grads[0.25][name], grads[0.0][name] + 0.25 * values[name], rtol=1e-5, atol=1e-6
        )
    for name in ("fc1_b", "fc2_b"):
        np.testing.assert_array_equal(grads[0.25][name], grads[0.0][name])
    decays = [op for op in model.net.ops if op.type == "WeightedSum"]
    assert sorted(op.input[2] for op in decays) == ["fc1_w", "fc2_w"]
    assert all(op.input[0] == op.output[0] == op.input[2] + "_grad" for op in decays)


def test_weight_decay_in_build_sgd_comes_before_the_updates():
    model, _, loss = _mlp()
    model.add_gradient_ops([loss])
    optimizer.build_sgd(model, 0.1, momentum=0.9, weight_decay=1e-3)
    types = [op.type for op in model.net.ops]
    decay_at = [k for k, op in enumerate(model.net.ops) if op.type == "WeightedSum"]
    assert len(decay_at) == 2 and max(decay_at) < types.index("MomentumSGDUpdate")
    wd = [op for op in model.param_init_net.ops if op.output[0] == "wd"]
    assert len(wd) == 1 and _arg(wd[0], "value") == pytest.approx(1e-3)


# -- brew and arg_scope --------------------------------------------------------------------------------
def test_arg_scope_sets_composes_and_restores():
    model = ModelHelper("scope")
    assert brew.get_current_scope() == {}
    with brew.arg_scope([brew.conv], order="NHWC", stride=2):
        with brew.arg_scope(brew.conv, pad=1, stride=1):
            c1 = brew.conv(model, "x", "c1", 3, 8, kernel=3)
        c2 = brew.conv(model, c1, "c2", 8, 4, kernel=3, order="NCHW")  # the call wins
        c3 = brew.conv(model, c2, "c3", 4, 4, kernel=3)
    brew.conv(model, c3, "c4", 4, 4, kernel=3)
    assert brew.get_current_scope() == {}
    ops = {op.output[0]: op for op in model.net.ops}
    assert (_arg(ops["c1"], "order"), _arg(ops["c1"], "pad"), _arg(ops["c1"], "stride")) == (b"NHWC", 1, 1)
    assert (_arg(ops["c2"], "order"), _arg(ops["c2"], "stride")) == (b"NCHW", 2)
    assert (_arg(ops["c3"], "order"), _arg(ops["c3"], "pad"), _arg(ops["c3"], "stride")) == (b"NHWC", None, 2)
    assert (_arg(ops["c4"], "order"), _arg(ops["c4"], "stride")) == (b"NCHW", None)
    shapes = {str(p): model.get_param_info(p).shape for p in model.params}
    assert shapes["c1_w"] == [8, 3, 3, 3] and shapes["c2_w"] == [4, 8, 3, 3]
    with pytest.raises(KeyError), brew.arg_scope([brew.fc], axis=2):
        raise KeyError
    assert brew.get_current_scope() == {}


def test_model_arg_scope_reaches_helpers_that_name_the_key():
    model = ModelHelper("nhwc", arg_scope={"order": "NHWC", "use_cudnn": False})
    c = brew.conv(model, "x", "c", 3, 5, kernel=[2, 3])
    p = brew.max_pool(model, c, "p", kernel=2)
    f = brew.fc(model, p, "f", 5, 2)  # FC has no order argument: fc does not take it
    ops = {op.output[0]: op for op in model.net.ops}
    assert model.get_param_info("c_w").shape == [5, 2, 3, 3]
    assert _arg(ops["c"], "kernels") == [2, 3] and _arg(ops["c"], "order") == b"NHWC"
    assert _arg(ops["p"], "order") == b"NHWC" and not ops["p"].engine
    assert _arg(ops[str(f)], "order") is None
    default = ModelHelper("nchw")  # Caffe2's defaults: NCHW with the CUDNN engine preferred
    brew.conv(default, "x", "c", 3, 5, kernel=3)
    assert default.net.ops[0].engine == "CUDNN" and _arg(default.net.ops[0], "order") == b"NCHW"


def test_register_a_helper():
    def scaled_fc(model, blob_in, blob_out, dim_in, dim_out, scale=1.0, **kwargs):
        y = brew.fc(model, blob_in, blob_out + "_pre", dim_in, dim_out, **kwargs)
        return model.Scale(y, blob_out, scale=scale)

    if not brew.has_helper("scaled_fc"):
        brew.Register(scaled_fc)
    with pytest.raises(ValueError, match="already"):
        brew.Register(scaled_fc)
    model = ModelHelper("reg")
    with brew.arg_scope([brew.scaled_fc], scale=3.0):
        y = brew.scaled_fc(model, "x", "y", 2, 2)
    assert str(y) == "y" and _arg(model.net.ops[-1], "scale") == pytest.approx(3.0)
    assert [str(p) for p in model.params] == ["y_pre_w", "y_pre_b"]
    with pytest.raises(AttributeError):
        brew.not_a_helper  # noqa: B018
    with pytest.raises(TypeError, match="ModelHelper"):
        brew.fc("not a model", "x", "y", 1, 1)


def test_brew_helpers_build_the_caffe2_ops():
    model = ModelHelper("zoo", arg_scope={"use_cudnn": False})
    a = brew.conv(model, "x", "a", 3, 4, kernel=3, pad=1, no_bias=True)
    b = brew.conv_transpose(model, a, "b", 4, 2, kernel=2, stride=2)
    c = brew.average_pool(model, b, "c", kernel=2, stride=2)
    d = brew.concat(model, [c, c], "d")
    e = brew.transpose(model, d, "e", axes=[0, 2, 3, 1])
    s = brew.sum(model, [e, e], "s")
    t = brew.sigmoid(model, s, "t")
    u = brew.prelu(model, t, "u", num_channels=4)
    it = brew.iter(model, "it")
    types = [op.type for op in model.net.ops]
    assert types == [
        "Conv",
        "ConvTranspose",
        "AveragePool",
        "Concat",
        "Transpose",
        "Sum",
        "Sigmoid",
        "PRelu",
        "Iter",
    ]
    assert len(model.net.ops[0].input) == 2  # no bias
    assert model.get_param_info("b_w").shape == [4, 2, 2, 2]
    assert list(model.net.ops[3].output) == ["d", "_d_concat_dims"]
    assert model.get_param_info("u_slope").tags == set() and str(it) == "it"
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("x", np.ones((2, 3, 4, 4), np.float32))
    ws.run_net_once(model.net)
    assert ws.fetch_blob(u).shape == (2, 4, 4, 4)  # [2,2,4,4] twice on C, then NHWC
    assert ws.fetch_blob("it").tolist() == [1] and ws.fetch_blob("it").dtype == np.int64
    acc = brew.accuracy(model, ["prob", "label"], "acc", top_k=2)
    assert _arg(model.net.ops[-1], "top_k") == 2 and str(acc) == "acc"


@needs("SpatialBN", kernels=False)
def test_spatial_bn_params_and_is_test():
    model = ModelHelper("bn")
    y = brew.spatial_bn(model, "x", "bn", 3, epsilon=1e-3)
    op = model.net.ops[-1]
    assert list(op.input) == ["x", "bn_s", "bn_b", "bn_rm", "bn_riv"]
    assert list(op.output) == ["bn", "bn_rm", "bn_riv", "bn_sm", "bn_siv"] and str(y) == "bn"
    assert [str(p) for p in model.params] == ["bn_s", "bn_b"]
    assert [str(p) for p in model.get_computed_params()] == ["bn_rm", "bn_riv"]
    assert model.get_param_info("bn_rm").tags == {ParameterTags.COMPUTED_PARAM}
    with brew.arg_scope([brew.spatial_bn], is_test=True):
        brew.spatial_bn(model, "x", "bn2", 3)
    assert list(model.net.ops[-1].output) == ["bn2"] and _arg(model.net.ops[-1], "is_test") == 1
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    np.testing.assert_array_equal(ws.fetch_blob("bn_s"), [1, 1, 1])
    np.testing.assert_array_equal(ws.fetch_blob("bn_riv"), [1, 1, 1])
    loss = model.AveragedLoss(model.Sqr(y, "sq"), "loss")
    model.add_gradient_ops([loss])
    assert {str(p) for p in model.param_to_grad} == {"bn_s", "bn_b"}  # computed params get no gradient


@needs("Dropout", kernels=False)
def test_dropout_is_test_plumbing():
    model = ModelHelper("drop")
    brew.dropout(model, "x", "d", ratio=0.3)
    assert list(model.net.ops[-1].output) == ["d", "_d_mask"] and _arg(model.net.ops[-1], "is_test") == 0
    with brew.arg_scope([brew.dropout], is_test=True):
        brew.dropout(model, "x", "e")
    assert list(model.net.ops[-1].output) == ["e"] and _arg(model.net.ops[-1], "is_test") == 1


@needs("LayerNorm")
def test_layer_norm_helper():
    model = ModelHelper("ln")
    out, _mean, _std = brew.layer_norm(model, "x", "ln", 4, axis=1)
    assert str(out) == "ln_biased" and [str(p) for p in model.params] == ["ln_scale", "ln_bias"]
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    ws.feed_blob("x", x)
    ws.run_net_once(model.net)
    got = ws.fetch_blob(out)
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# -- predictor extraction ------------------------------------------------------------------------------
def test_extract_predictor_net_runs_standalone():
    x, y = _toy_data()
    model, prob, loss = _mlp()
    model.Accuracy([prob, "label"], "accuracy")
    model.add_gradient_ops([loss])
    optimizer.build_sgd(model, 0.5)
    train_ws, _ = _train(model, x, y, 50)

    predict, export = model.extract_predictor_net(["data"], [prob])
    types = [op.type for op in predict.ops]
    assert types == ["FC", "Relu", "FC", "Softmax"]
    assert not any(op.is_gradient_op for op in predict.ops)
    assert sorted(export) == ["fc1_b", "fc1_w", "fc2_b", "fc2_w"]
    assert predict.external_inputs[0] == "data" and predict.external_outputs == ["prob"]

    ws = kaffa.Workspace()
    for name in export:
        ws.feed_blob(name, train_ws.fetch_blob(name))
    ws.feed_blob("data", x[:5])
    ws.run_net_once(predict)
    train_ws.feed_blob("data", x[:5])
    train_ws.run_net_once(predict)  # the same values as the training workspace computes
    np.testing.assert_allclose(ws.fetch_blob("prob"), train_ws.fetch_blob("prob"), rtol=1e-6)
    assert ws.blobs() == sorted([*export, "data", "fc1", "fc2", "prob"])

    renamed, _ = extract_predictor_net(model.net, ["data"], [prob], renames={"data": "input", "prob": "out"})
    assert renamed.external_inputs[0] == "input" and renamed.external_outputs == ["out"]
    with pytest.raises(ValueError, match="outputs"):
        extract_predictor_net(model.net, ["data"], ["nonexistent"])


@needs("SpatialBN", "Dropout")
def test_extract_predictor_net_switches_to_test_mode():
    rng = np.random.default_rng(1)
    model = ModelHelper("cnn", arg_scope={"use_cudnn": False})
    h = brew.conv(model, "data", "conv", 1, 2, kernel=3, pad=1)
    h = brew.spatial_bn(model, h, "bn", 2, epsilon=1e-5)
    h = brew.relu(model, h, h)
    h = brew.dropout(model, h, "drop", ratio=0.5)
    logits = brew.fc(model, h, "fc", 2 * 4 * 4, 2)
    prob = brew.softmax(model, logits, "prob")
    loss = model.AveragedLoss(model.LabelCrossEntropy([prob, "label"], "xent"), "loss")
    model.add_gradient_ops([loss])
    optimizer.build_sgd(model, 0.05)
    ws = kaffa.Workspace()
    ws.run_net_once(model.param_init_net)
    x = rng.normal(size=(6, 1, 4, 4)).astype(np.float32)
    ws.feed_blob("data", x)
    ws.feed_blob("label", rng.integers(0, 2, size=6).astype(np.int32))
    ws.create_net(model.net)
    ws.run_net(model.net.name, 3)
    assert not np.allclose(ws.fetch_blob("bn_rm"), 0)  # training moved the running stats

    predict, export = model.extract_predictor_net(["data"], ["prob"])
    assert sorted(export) == sorted(["conv_w", "conv_b", "bn_s", "bn_b", "bn_rm", "bn_riv", "fc_w", "fc_b"])
    bn = next(op for op in predict.ops if op.type == "SpatialBN")
    drop = next(op for op in predict.ops if op.type == "Dropout")
    assert _arg(bn, "is_test") == 1 and list(bn.output) == ["bn"]
    assert _arg(drop, "is_test") == 1 and list(drop.output) == ["drop"]

    fresh = kaffa.Workspace()
    for name in export:
        fresh.feed_blob(name, ws.fetch_blob(name))
    fresh.feed_blob("data", x)
    fresh.run_net_once(predict)
    fresh.run_net_once(predict)  # deterministic: dropout is off, running stats are not updated
    p = fresh.fetch_blob("prob")
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(fresh.fetch_blob("bn_rm"), ws.fetch_blob("bn_rm"))

    # By hand: conv -> BN with running stats -> relu -> fc -> softmax.
    conv = fresh.fetch_blob("conv")
    s, b, rm, rv = (fresh.fetch_blob(n).reshape(1, -1, 1, 1) for n in ("bn_s", "bn_b", "bn_rm", "bn_riv"))
    h = np.maximum((conv - rm) / np.sqrt(rv + 1e-5) * s + b, 0).reshape(6, -1)
    logits = h @ fresh.fetch_blob("fc_w").T + fresh.fetch_blob("fc_b")
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p, want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-5)


@needs("LRN")
def test_lrn_keeps_caffe2s_scale_output_on_cpu():
    model = ModelHelper("lrn")
    y = brew.lrn(model, "x", "n", size=3, alpha=1e-4, beta=0.75)
    assert list(model.net.ops[-1].output) == ["n", "_n_scale"] and str(y) == "n"
    ws = kaffa.Workspace()
    ws.feed_blob("x", np.ones((1, 4, 2, 2), np.float32))
    ws.run_net_once(model.net)
    assert ws.fetch_blob(y).shape == (1, 4, 2, 2)


def test_an_optimizer_can_be_called_per_parameter():
    model, _, loss = _mlp()
    model.add_gradient_ops([loss])
    adam = optimizer.AdamOptimizer(alpha=0.01)
    adam(model.net, model.param_init_net, "fc2_w", "fc2_w_grad")
    (update,) = [op for op in model.net.ops if op.type == "Adam"]
    assert list(update.input[:4]) == ["fc2_w", "fc2_w_first_moment", "fc2_w_second_moment", "fc2_w_grad"]
    assert list(update.input[5:]) == ["optimizer_iteration"]
    aux = adam.get_auxiliary_parameters()
    assert [str(b) for b in aux.local] == ["fc2_w_first_moment", "fc2_w_second_moment"]
    assert [str(b) for b in aux.shared] == ["optimizer_iteration"]
    with pytest.raises(ValueError, match="grad"):
        adam(model.net, model.param_init_net, "fc2_w")

"""Losses, optimizers and the Xavier/MSRA fillers in whole nets: training loops that converge,
in-place state across runs, gradients through add_gradient_ops, and the errors conformance cases
cannot show."""

from __future__ import annotations

import numpy as np
import pytest

from kaffa import Net, Workspace
from kaffa.core import DeviceOption
from kaffa.errors import ArgumentError, ExecutionError, SchemaError, ShapeError


def _run(ws: Workspace, net: Net, times: int = 1) -> None:
    ws.create_net(net, overwrite=True)
    ws.run_net(net.name, num_iter=times)


# -- in-place state ----------------------------------------------------------------------------------


def test_iter_counts_in_place_across_runs():
    ws = Workspace()
    ws.feed_blob("it", np.array([0], np.int64))
    net = Net("count")
    net.Iter("it", "it")
    _run(ws, net, times=5)
    out = ws.fetch_blob("it")
    assert out.dtype == np.int64 and out.tolist() == [5]


def test_enforced_in_place_outputs_are_checked():
    # Caught when the op is made (and again at net creation, for NetDefs built elsewhere).
    with pytest.raises(SchemaError, match=r"Iter must write input 0 in place: output 0 must be 'it'"):
        Net("bad").Iter("it", "it2")
    with pytest.raises(SchemaError, match=r"MomentumSGDUpdate must write input 1 in place"):
        Net("bad").MomentumSGDUpdate(["g", "m", "lr", "w"], ["g", "m_new", "w"])
    # grad may be written in place or not; Adam and Adagrad may run out of place (Caffe2 allows it).
    Net("ok").MomentumSGDUpdate(["g", "m", "lr", "w"], ["g_adj", "m", "w"])
    Net("ok").Adagrad(["w", "h", "g", "lr"], ["w2", "h2"])


def test_iter_refuses_a_wrong_counter():
    ws = Workspace()
    ws.feed_blob("it", np.array([0, 1], np.int64))
    net = Net("two")
    net.Iter("it", "it")
    with pytest.raises(ShapeError, match=r"exactly one element, got shape \[2\]"):
        ws.create_net(net)
    ws.feed_blob("it", np.array([-3], np.int64))
    net = Net("negative")
    net.Iter("it", "it")
    ws.create_net(net)
    with pytest.raises(ShapeError, match="negative"):
        ws.run_net("negative")


# -- training loops ----------------------------------------------------------------------------------


def _regression_net(optimizer: str, base_lr: float, **opt_args) -> tuple[Workspace, Net]:
    """Fit w to a target with loss = mean(½‖w - target‖² per row); returns (ws, train net)."""
    rng = np.random.default_rng(0)
    ws = Workspace()
    ws.feed_blob("w", rng.uniform(-1, 1, (4, 3)).astype(np.float32))
    ws.feed_blob("target", rng.uniform(-1, 1, (4, 3)).astype(np.float32))
    ws.feed_blob("it", np.array([0], np.int64))
    for name in ("m1", "m2"):
        ws.feed_blob(name, np.zeros((4, 3), np.float32))
    net = Net("train_" + optimizer)
    net.SquaredL2Distance(["w", "target"], "dist")
    net.AveragedLoss("dist", "loss")
    grads = net.add_gradient_ops(["loss"])
    net.LearningRate("it", "lr", base_lr=base_lr, policy="step", stepsize=50, gamma=0.9)
    g = str(grads["w"])
    if optimizer == "MomentumSGDUpdate":
        net.MomentumSGDUpdate([g, "m1", "lr", "w"], [g, "m1", "w"], **opt_args)
    elif optimizer == "Adam":
        net.Adam(["w", "m1", "m2", g, "lr", "it"], ["w", "m1", "m2"], **opt_args)
    else:
        net.Adagrad(["w", "m1", g, "lr"], ["w", "m1"], **opt_args)
    net.Iter("it", "it")
    return ws, net


@pytest.mark.parametrize(
    "optimizer, base_lr, args",
    [
        ("MomentumSGDUpdate", 0.5, {"momentum": 0.9}),  # subtracts: positive lr
        ("MomentumSGDUpdate", 0.5, {"momentum": 0.9, "nesterov": 1}),
        ("Adam", -0.05, {}),  # adds lr * step: Caffe2's optimizers pass a negative lr
        ("Adagrad", -0.5, {}),
    ],
)
def test_optimizers_drive_the_loss_down(optimizer, base_lr, args):
    ws, net = _regression_net(optimizer, base_lr, **args)
    _run(ws, net)
    first = float(ws.fetch_blob("loss"))
    ws.run_net(net.name, num_iter=200)
    assert ws.fetch_blob("it").tolist() == [201]
    assert float(ws.fetch_blob("loss")) < 1e-3 * first
    np.testing.assert_allclose(ws.fetch_blob("w"), ws.fetch_blob("target"), atol=2e-2)


def test_momentum_sgd_update_matches_caffe2_formulas():
    g = np.array([0.5, -1.0, 2.0], np.float64)
    m = np.array([0.1, 0.2, -0.3], np.float64)
    w = np.array([1.0, 2.0, 3.0], np.float64)
    lr, mu = 0.1, float(np.float32(0.9))  # float arguments travel as float32 in the proto
    for nesterov in (0, 1):
        ws = Workspace()
        for name, v in (("g", g), ("m", m), ("lr", np.array([lr])), ("w", w)):
            ws.feed_blob(name, v)
        net = Net(f"msgd{nesterov}")
        net.MomentumSGDUpdate(["g", "m", "lr", "w"], ["g_out", "m", "w"], momentum=mu, nesterov=nesterov)
        _run(ws, net)
        m_new = mu * m + lr * g
        g_new = (1 + mu) * m_new - mu * m if nesterov else m_new
        np.testing.assert_allclose(ws.fetch_blob("m"), m_new, rtol=1e-12)
        np.testing.assert_allclose(ws.fetch_blob("g_out"), g_new, rtol=1e-12)
        np.testing.assert_allclose(ws.fetch_blob("w"), w - g_new, rtol=1e-12)


def test_softmax_classifier_learns_and_accuracy_reaches_one():
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2, 1, 0, 2], np.int32)
    ws = Workspace()
    ws.feed_blob("logits", rng.uniform(-0.1, 0.1, (6, 3)).astype(np.float32))
    ws.feed_blob("label", labels)
    ws.feed_blob("it", np.array([0], np.int64))
    ws.feed_blob("mom", np.zeros((6, 3), np.float32))
    net = Net("clf")
    net.SoftmaxWithLoss(["logits", "label"], ["P", "loss"])
    net.Accuracy(["P", "label"], "acc")
    grads = net.add_gradient_ops(["loss"])
    assert [op.type for op in net.Proto().op[-1:]] == ["SoftmaxWithLossGradient"]
    net.LearningRate("it", "lr", base_lr=1.0, policy="fixed")
    net.MomentumSGDUpdate(
        [grads["logits"], "mom", "lr", "logits"], [grads["logits"], "mom", "logits"], momentum=0.5
    )
    net.Iter("it", "it")
    _run(ws, net)
    first = float(ws.fetch_blob("loss"))
    # The first gradient is (P - onehot) / N.
    p = ws.fetch_blob("P")
    assert ws.fetch_blob("acc").dtype == np.float32 and ws.fetch_blob("acc").shape == ()
    ws.run_net("clf", num_iter=100)
    assert float(ws.fetch_blob("loss")) < 0.05 * first
    assert float(ws.fetch_blob("acc")) == 1.0
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_softmax_with_loss_gradient_through_add_gradient_ops():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, (4, 5))
    labels = np.array([1, 0, 4, 2], np.int32)
    w = np.array([1.0, 0.5, 2.0, 0.0])
    ws = Workspace()
    ws.feed_blob("x", x)
    ws.feed_blob("t", labels)
    ws.feed_blob("w", w)
    net = Net("swl")
    net.SoftmaxWithLoss(["x", "t", "w"], ["P", "loss"], scale=3.0)
    grads = net.add_gradient_ops(["loss"])
    assert "t" not in grads and "w" not in grads  # labels and weights get no gradient
    _run(ws, net)  # the float32 seed of 1.0 drives a float64 gradient
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = p.copy()
    want[np.arange(4), labels] -= 1
    want *= 3.0 * w[:, None] / w.sum()
    got = ws.fetch_blob(grads["x"])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# -- learning rate -----------------------------------------------------------------------------------


def test_learning_rate_is_a_float32_scalar_that_follows_the_counter():
    ws = Workspace()
    ws.feed_blob("it", np.array([0], np.int64))
    net = Net("lr")
    net.LearningRate("it", "lr", base_lr=-0.1, policy="step", stepsize=2, gamma=0.5)
    net.Iter("it", "it")
    ws.create_net(net)
    seen = []
    for _ in range(5):
        ws.run_net("lr")
        lr = ws.fetch_blob("lr")
        assert lr.dtype == np.float32 and lr.shape == ()
        seen.append(float(lr))
    np.testing.assert_allclose(seen, [-0.1, -0.1, -0.05, -0.05, -0.025], rtol=1e-6)


@pytest.mark.parametrize(
    "args, match",
    [
        ({"policy": "fixed"}, r"requires argument 'base_lr'"),
        ({"base_lr": 0.1}, r"requires argument 'policy'"),
        ({"base_lr": 0.1, "policy": "cosine"}, r"unknown policy 'cosine' \(known: fixed, step"),
        ({"base_lr": 0.1, "policy": "step", "gamma": 0.5}, r"policy 'step' needs stepsize > 0, got 0"),
        ({"base_lr": 0.1, "policy": "exp"}, r"policy 'exp' needs gamma > 0"),
        ({"base_lr": 0.1, "policy": "poly", "power": 1.0}, r"policy 'poly' needs max_iter > 0, got -1"),
    ],
)
def test_learning_rate_argument_errors(args, match):
    with pytest.raises(ArgumentError, match=match):
        Net("lr_bad").LearningRate("it", "lr", **args)


# -- loss errors -------------------------------------------------------------------------------------


def _create(op: str, inputs: dict[str, np.ndarray], outputs: list[str], **args) -> Workspace:
    ws = Workspace()
    for name, value in inputs.items():
        ws.feed_blob(name, value)
    net = Net("one")
    getattr(net, op)(list(inputs), outputs, **args)
    ws.create_net(net)
    return ws


def test_loss_shape_errors_name_the_shapes():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ShapeError, match=r"labels \[3\] do not have the N = 4 rows of X \[4, 5\]"):
        _create("SoftmaxWithLoss", {"x": x, "t": np.zeros(3, np.int32)}, ["p", "l"])
    with pytest.raises(ShapeError, match=r"labels must be an integer tensor \(int32\), got float32"):
        _create("SoftmaxWithLoss", {"x": x, "t": np.zeros(4, np.float32)}, ["p", "l"])
    with pytest.raises(ShapeError, match=r"weights \[5\] must have one element per row of X \[4, 5\]"):
        _create(
            "SoftmaxWithLoss",
            {"x": x, "t": np.zeros(4, np.int32), "w": np.ones(5, np.float32)},
            ["p", "l"],
        )
    with pytest.raises(ShapeError, match=r"probability labels \[4, 4\] must have 5 element"):
        _create("SoftmaxWithLoss", {"x": x, "t": np.zeros((4, 4), np.float32)}, ["p", "l"], label_prob=1)
    with pytest.raises(ShapeError, match=r"3 labels for the 4 rows of X \[4, 5\]"):
        _create("LabelCrossEntropy", {"x": x, "t": np.zeros(3, np.int32)}, ["y"])
    with pytest.raises(ShapeError, match=r"logits \[4, 5\] and targets \[4, 4\] must have the same shape"):
        _create("SigmoidCrossEntropyWithLogits", {"x": x, "t": np.zeros((4, 4), np.float32)}, ["y"])
    with pytest.raises(ShapeError, match=r"X \[4, 5\] and Y \[5, 4\] must have the same shape"):
        _create("SquaredL2Distance", {"x": x, "y": np.zeros((5, 4), np.float32)}, ["d"])
    with pytest.raises(ShapeError, match=r"predictions must be 2-D \[N, D\], got \[4, 5, 1\]"):
        _create("Accuracy", {"x": x[..., None], "t": np.zeros(4, np.int32)}, ["a"])
    with pytest.raises(ArgumentError, match=r"top_k must be >= 1, got 0"):
        Net("a").Accuracy(["x", "t"], ["a"], top_k=0)
    with pytest.raises(ArgumentError, match=r"spatial=1 .* not supported"):
        Net("s").SoftmaxWithLoss(["x", "t"], ["p", "l"], spatial=1)


@pytest.mark.parametrize(
    "op, inputs, outputs, args, match",
    [
        (
            "SoftmaxWithLoss",
            {"x": np.zeros((2, 3)), "t": np.array([0, 3], np.int32)},
            ["p", "l"],
            {},
            r"labels must lie in \[0, 3\), got values in \[0, 3\]",
        ),
        (
            "LabelCrossEntropy",
            {"x": np.ones((2, 3)), "t": np.array([-1, 0], np.int32)},
            ["y"],
            {},
            r"labels must lie in \[0, 3\)",
        ),
        (
            "Accuracy",
            {"x": np.ones((2, 3)), "t": np.array([0, 5], np.int32)},
            ["a"],
            {},
            r"labels must lie in \[0, 3\)",
        ),
        (
            "CrossEntropy",
            {"x": np.ones((2, 3)), "t": np.full((2, 3), 2.0)},
            ["y"],
            {},
            r"soft labels must be probabilities in \[0, 1\]",
        ),
        (
            "SoftmaxWithLoss",
            {"x": np.zeros((2, 3)), "t": np.full((2, 3), 0.5)},
            ["p", "l"],
            {"label_prob": 1},
            r"probability label rows must sum to 1",
        ),
        ("AveragedLoss", {"x": np.zeros((0, 3))}, ["l"], {}, r"mean of an empty X \[0, 3\] is undefined"),
    ],
)
def test_bad_label_values_fail_at_run_time(op, inputs, outputs, args, match):
    ws = _create(op, inputs, outputs, **args)
    with pytest.raises(ShapeError, match=match):
        ws.run_net("one")


def test_probability_labels_match_one_hot_integer_labels():
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (3, 4))
    labels = np.array([2, 0, 3], np.int32)
    ws = _create("SoftmaxWithLoss", {"x": x, "t": labels}, ["p", "l"])
    ws.run_net("one")
    hard = float(ws.fetch_blob("l"))
    ws = _create("SoftmaxWithLoss", {"x": x, "t": np.eye(4)[labels]}, ["p", "l"], label_prob=1)
    ws.run_net("one")
    assert float(ws.fetch_blob("l")) == pytest.approx(hard, rel=1e-12)


def test_update_size_mismatch_is_a_shape_error():
    ws = Workspace()
    for name, shape in (("w", (3,)), ("m", (4,)), ("g", (3,)), ("lr", (1,))):
        ws.feed_blob(name, np.zeros(shape, np.float32))
    net = Net("ada")
    net.Adagrad(["w", "m", "g", "lr"], ["w", "m"])
    with pytest.raises(ShapeError, match=r"param and moment must have the same number of elements"):
        ws.create_net(net)


# -- Xavier / MSRA -----------------------------------------------------------------------------------


def test_xavier_and_msra_scales_and_seeding():
    def fill(op: str, shape: list[int], seed: int) -> np.ndarray:
        ws = Workspace()
        net = Net("fill")
        net.add_op(op, [], ["y"], shape=shape, device_option=DeviceOption("cpu", random_seed=seed))
        ws.run_net_once(net)
        return ws.fetch_blob("y")

    x = fill("XavierFill", [300, 75], 7)  # fan_in = 75: uniform on ±0.2
    assert x.dtype == np.float32 and x.shape == (300, 75)
    assert 0.19 < np.abs(x).max() <= 0.2 and abs(x.std() - 0.2 / np.sqrt(3)) < 0.005
    np.testing.assert_array_equal(x, fill("XavierFill", [300, 75], 7))
    assert not np.array_equal(x, fill("XavierFill", [300, 75], 8))
    m = fill("MSRAFill", [64, 8, 3, 3], 7)  # fan_out = 64 * 9: std sqrt(2 / 576)
    assert abs(m.std() - np.sqrt(2 / 576)) < 0.003 and abs(m.mean()) < 0.003


@pytest.mark.parametrize("op, shape", [("XavierFill", []), ("MSRAFill", [5])])
def test_xavier_and_msra_need_a_fan(op, shape):
    net = Net("fill_bad")
    net.add_op(op, [], ["y"], shape=shape)
    with pytest.raises(ShapeError, match=rf"{op} needs an output of rank >= \d"):
        Workspace().create_net(net)


def test_loss_run_failures_are_not_wrapped_as_crashes():
    # A failing kernel check is an OperatorError at the op, not an ExecutionError about a crash.
    ws = _create("Accuracy", {"x": np.zeros((0, 3)), "t": np.zeros(0, np.int32)}, ["a"])
    with pytest.raises(ShapeError) as e:
        ws.run_net("one")
    assert not isinstance(e.value, ExecutionError) and "empty batch" in str(e.value)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_scalar_loss_gradients_take_the_float32_seed_in_any_net_dtype(dtype):
    # add_gradient_ops seeds every loss with a float32 1.0 (ConstantFill); the gradient keeps X's dtype.
    ws = Workspace()
    ws.feed_blob("x", np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], dtype))
    ws.feed_blob("t", np.array([2, 0], np.int32))
    net = Net("seeded")
    net.SoftmaxWithLoss(["x", "t"], ["p", "l1"])
    net.SquaredL2Distance(["x", "p"], "d")
    net.AveragedLoss("d", "l2")
    grads = net.add_gradient_ops(["l1", "l2"])
    _run(ws, net)
    assert ws.fetch_blob(grads["x"]).dtype == dtype

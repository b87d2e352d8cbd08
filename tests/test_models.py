"""kaffa.models: the builders build, infer the shapes of the real architectures, run, and have the
published parameter counts."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import Workspace, models, optimizer
from kaffa.model_helper import ModelHelper
from kaffa.proto import NetDef
from kaffa.schema import SCHEMAS, TensorInfo

needs_bn = pytest.mark.skipif(
    "SpatialBN" not in SCHEMAS, reason="SpatialBN (the norm op family) is not defined yet"
)

F32 = np.dtype(np.float32)

# Trained parameters at 1000 classes, as torchvision counts them (SpatialBN's running statistics are
# buffers there and COMPUTED_PARAMs here: not counted).
PUBLISHED = [
    pytest.param(models.resnet18, 11_689_512, marks=needs_bn, id="resnet18"),
    pytest.param(models.resnet50, 25_557_032, marks=needs_bn, id="resnet50"),
    pytest.param(models.mobilenet_v2, 3_504_872, marks=needs_bn, id="mobilenet_v2"),
    pytest.param(models.squeezenet1_1, 1_235_496, id="squeezenet1_1"),
]
IMAGENET = [pytest.param(p.values[0], marks=p.marks, id=p.id) for p in PUBLISHED]


def infer_shapes(nets: list[NetDef], known: dict[str, tuple[int, ...]]) -> dict[str, TensorInfo]:
    """Run shape inference over the nets in order, from the schemas alone (nothing is computed)."""
    info = {name: TensorInfo(tuple(shape), F32) for name, shape in known.items()}
    for net in nets:
        for op in net.op:
            schema = SCHEMAS.get(op.type)
            outs = schema.infer_outputs(
                schema.parse_args(op.arg), [info[i] for i in op.input], len(op.output)
            )
            info.update(zip(op.output, outs))
    return info


def forward(model: ModelHelper, out: str, x: np.ndarray) -> np.ndarray:
    ws = Workspace("models")
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("data", x)
    ws.create_net(model.net)
    ws.run_net(model.net.Proto().name)
    return ws.fetch_blob(str(out))


@pytest.mark.parametrize("build, count", PUBLISHED)
def test_parameter_counts_match_the_published_architectures(build, count):
    model = ModelHelper(build.__name__)
    build(model, "data", 1000, is_test=True)
    assert models.count_params(model) == count


@pytest.mark.parametrize("build", IMAGENET)
def test_imagenet_size_shapes_infer_to_one_row_of_classes(build):
    model = ModelHelper(build.__name__)
    out = build(model, "data", 1000, is_test=True)
    info = infer_shapes([model.param_init_net.Proto(), model.net.Proto()], {"data": (1, 3, 224, 224)})
    assert info[str(out)].shape == (1, 1000)
    assert info[str(out)].dtype == F32


@pytest.mark.parametrize("build", IMAGENET)
def test_forward_on_a_small_input_gives_softmax_rows(build):
    kaffa.set_random_seed(0)
    model = ModelHelper(build.__name__)
    out = build(model, "data", 10, is_test=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    prob = forward(model, out, x)
    assert prob.shape == (2, 10) and prob.dtype == np.float32
    assert np.all(prob >= 0)
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=1e-5)


def test_lenet_defaults_are_caffe2s_mnist_lenet():
    model = ModelHelper("lenet")
    out = models.lenet(model, "data", 10, is_test=True)
    assert models.count_params(model) == 431_080  # the Caffe2 MNIST tutorial's LeNet
    info = infer_shapes([model.param_init_net.Proto(), model.net.Proto()], {"data": (4, 1, 28, 28)})
    assert info["pool2"].shape == (4, 50, 4, 4)
    assert info[str(out)].shape == (4, 10)


def test_lenet_for_8x8_inputs_runs():
    model = ModelHelper("lenet8")
    out = models.lenet(model, "data", 10, image_size=8, kernel=3, pad=1, channels=(4, 8), hidden=16)
    prob = forward(model, out, np.random.default_rng(1).random((3, 1, 8, 8), np.float32))
    assert prob.shape == (3, 10)
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=1e-5)


def test_lenet_refuses_inputs_too_small_for_its_windows():
    with pytest.raises(ValueError, match="lenet conv2: a 2-wide input is too small for kernel 5"):
        models.lenet(ModelHelper("tiny"), "data", 10, image_size=8)


def test_mlp_builds_counts_and_runs():
    model = ModelHelper("mlp")
    out = models.mlp(model, "data", [5, 7, 3], activation="tanh")
    assert models.count_params(model) == 5 * 7 + 7 + 7 * 3 + 3
    assert [op.type for op in model.net.Proto().op] == ["FC", "Tanh", "FC", "Softmax"]
    prob = forward(model, out, np.ones((2, 5), np.float32))
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="dims must be"):
        models.mlp(ModelHelper("bad"), "data", [5])
    with pytest.raises(ValueError, match="activation must be one of"):
        models.mlp(ModelHelper("bad"), "data", [5, 2], activation="gelu")


def test_label_gives_softmax_and_loss_and_trains():
    """The training form: (softmax, loss) from SoftmaxWithLoss, through gradients and SGD."""
    kaffa.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = ModelHelper("mlp_train")
    softmax, loss = models.mlp(model, "data", [4, 8, 2], label="label")
    assert (str(softmax), str(loss)) == ("softmax", "loss")
    model.add_gradient_ops([loss])
    optimizer.build_sgd(model, 0.5)
    ws = Workspace("train")
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("data", x)
    ws.feed_blob("label", y)
    ws.create_net(model.net)
    ws.run_net(model.net.Proto().name)
    first = float(ws.fetch_blob("loss"))
    ws.run_net(model.net.Proto().name, 30)
    assert float(ws.fetch_blob("loss")) < first / 2


def test_return_logits_and_name_scopes():
    model = ModelHelper("two")
    with kaffa.NameScope("a"):
        a = models.mlp(model, "data", [3, 2], return_logits=True)
    with kaffa.NameScope("b"):
        b = models.mlp(model, "data", [3, 2])
    assert str(a) == "a/fc1"
    assert str(b) == "b/softmax"
    assert sorted(map(str, model.get_params(""))) == ["a/fc1_b", "a/fc1_w", "b/fc1_b", "b/fc1_w"]


@needs_bn
def test_is_test_switches_batch_norm_and_drops_dropout():
    train, test = ModelHelper("train"), ModelHelper("test")
    models.mobilenet_v2(train, "data", 10)
    models.mobilenet_v2(test, "data", 10, is_test=True)
    bn_outputs = {len(op.output) for op in train.net.Proto().op if op.type == "SpatialBN"}
    assert bn_outputs == {5}
    assert {len(op.output) for op in test.net.Proto().op if op.type == "SpatialBN"} == {1}
    assert any(op.type == "Dropout" for op in train.net.Proto().op)
    assert not any(op.type == "Dropout" for op in test.net.Proto().op)
    assert models.count_params(train) == models.count_params(test)
    assert models.count_params(test, include_computed=True) > models.count_params(test)


@pytest.mark.skipif("Dropout" not in SCHEMAS, reason="Dropout (the norm op family) is not defined yet")
def test_squeezenet_training_form_has_dropout():
    model = ModelHelper("sq")
    models.squeezenet1_1(model, "data", 10, label="label")
    assert [op.type for op in model.net.Proto().op if op.type == "Dropout"] == ["Dropout"]

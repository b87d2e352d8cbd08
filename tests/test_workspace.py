"""Workspace, Net builder, scopes and the executor on the cpu backend."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import workspace
from kaffa.core import BlobReference, Net, create_operator
from kaffa.proto import NetDef


def test_feed_fetch_has_remove(ws):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    ws.feed_blob("x", x)
    x[0, 0] = 99  # the workspace holds its own copy
    assert ws.has_blob("x") and "x" in ws and ws.blobs() == ["x"]
    got = ws.fetch_blob("x")
    assert got.dtype == np.float32 and got[0, 0] == 0
    got[0, 1] = 42  # and fetch hands out a copy
    assert ws.fetch_blob("x")[0, 1] == 1
    ws.remove_blob("x")
    assert not ws.has_blob("x")
    with pytest.raises(kaffa.MissingBlobError, match="'x' does not exist"):
        ws.fetch_blob("x")


def test_fetch_missing_suggests_close_name(ws):
    ws.feed_blob("data", np.zeros(2))
    with pytest.raises(kaffa.MissingBlobError, match="did you mean 'data'"):
        ws.fetch_blob("dat")


def test_feed_tensor_proto_and_strings(ws):
    from kaffa.tensor import from_numpy

    ws.feed_blob("t", from_numpy(np.array([1, 2, 3], dtype=np.int64)))
    assert ws.fetch_blob("t").dtype == np.int64
    ws.feed_blob("s", np.array(["a", "bc"]))
    assert list(ws.fetch_blob("s")) == ["a", "bc"]


def test_fluent_net_and_run(ws):
    net = Net("mlp")
    h = net.Relu("x", "h")
    assert isinstance(h, BlobReference) and str(h) == "h"
    y = h.Softmax([], "y")  # BlobReference sugar
    assert net.external_inputs == ["x"]
    ws.feed_blob("x", np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    ws.create_net(net)
    ws.run_net("mlp", num_iter=2)
    out = ws.fetch_blob(y)
    np.testing.assert_allclose(out, [np.exp([0, 0, 1]) / np.exp([0, 0, 1]).sum()], rtol=1e-6)
    assert ws.nets() == ["mlp"]


def test_auto_named_outputs_and_namescope():
    net = Net("n")
    with kaffa.NameScope("gpu_0"):
        y = net.Relu("x")
        z = net.Relu(y, "z")
    assert str(y).startswith("gpu_0/") and str(z) == "gpu_0/z"
    assert net.Proto().op[0].input[0] == "gpu_0/x"


def test_devicescope_stamps_ops():
    net = Net("n")
    with kaffa.DeviceScope("cpu"):
        net.Relu("x", "y")
    assert net.Proto().op[0].HasField("device_option")
    assert net.Proto().op[0].device_option.device_type == kaffa.CPU


def test_run_operator_once_and_net_once(ws):
    ws.feed_blob("x", np.array([-2.0, 3.0]))
    ws.run_operator_once(create_operator("Relu", ["x"], ["y"]))
    np.testing.assert_array_equal(ws.fetch_blob("y"), [0.0, 3.0])
    net = NetDef()
    net.op.append(create_operator("Tanh", ["y"], ["z"]))
    ws.run_net_once(net)
    np.testing.assert_allclose(ws.fetch_blob("z"), np.tanh([0.0, 3.0]))


def test_module_level_workspace_functions():
    workspace.switch_workspace("module-test")
    try:
        workspace.FeedBlob("a", np.ones(3, dtype=np.float32))
        workspace.RunOperatorOnce(create_operator("Relu", ["a"], ["b"]))
        assert workspace.HasBlob("b")
        np.testing.assert_array_equal(workspace.FetchBlob("b"), np.ones(3))
        workspace.ResetWorkspace()
        assert workspace.Blobs() == []
    finally:
        workspace.switch_workspace("default")


def test_external_input_declared_but_fed_later(ws):
    net = Net("late")
    net.Relu("x", "y")
    ws.create_net(net)  # x is declared external: creation must not need it yet
    with pytest.raises(kaffa.MissingBlobError, match="'x'"):
        ws.run_net("late")
    ws.feed_blob("x", np.array([-1.0, 1.0], dtype=np.float32))
    ws.run_net("late")
    assert ws.fetch_blob("y").tolist() == [0.0, 1.0]


def test_replans_when_input_dtype_changes(ws):
    net = Net("sig")
    net.Relu("x", "y")
    ws.feed_blob("x", np.array([-1.0, 2.0], dtype=np.float32))
    created = ws.create_net(net)
    ws.run_net("sig")
    assert ws.fetch_blob("y").dtype == np.float32
    ws.feed_blob("x", np.array([-1.0, 2.0], dtype=np.float64))
    ws.run_net("sig")
    assert ws.fetch_blob("y").dtype == np.float64
    assert len(created._plans) == 2


def test_failed_run_leaves_workspace_unchanged(ws):
    # op 0 succeeds and would overwrite 'y'; op 1 fails: neither write may land.
    net = NetDef(name="tx")
    net.op.append(create_operator("Relu", ["x"], ["y"]))
    net.op.append(create_operator("Add", ["y", "w"], ["z"]))
    net.external_input.extend(["x", "w"])
    ws.feed_blob("y", np.array([7.0], dtype=np.float32))
    ws.feed_blob("x", np.array([1.0, -1.0], dtype=np.float32))
    ws.feed_blob("w", np.array([1.0, 1.0], dtype=np.float32))
    ws.create_net(net)
    ws.feed_blob("w", np.array([1.0, 1.0, 1.0], dtype=np.float32))  # no longer broadcasts with x
    with pytest.raises(kaffa.ShapeError) as info:
        ws.run_net("tx")
    assert "op #1 Add" in str(info.value) and "float32[3]" in str(info.value)
    assert ws.fetch_blob("y").tolist() == [7.0]
    assert not ws.has_blob("z")


def test_duplicate_net_name_needs_overwrite(ws):
    net = Net("dup")
    net.Relu("x", "y")
    ws.feed_blob("x", np.zeros(1, dtype=np.float32))
    ws.create_net(net)
    with pytest.raises(ValueError, match="overwrite"):
        ws.create_net(net)
    ws.create_net(net, overwrite=True)


def test_unknown_executor_type(ws):
    net = NetDef(name="e", type="turbo")
    net.op.append(create_operator("Relu", ["x"], ["y"]))
    ws.feed_blob("x", np.zeros(1, dtype=np.float32))
    with pytest.raises(kaffa.SchemaError, match="executor type 'turbo'"):
        ws.create_net(net)

"""Placement: fallback to cpu with copies, strict mode, dtype claims, engines, device ids."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import engines
from kaffa.core import Net
from kaffa.kernels import KernelTable
from kaffa.plugins import registry


@pytest.fixture
def mock_net():
    dev = kaffa.DeviceOption("mock")
    net = Net("placed")
    net.Relu("x", "a", device_option=dev)  # mock has Relu
    net.Tanh("a", "b", device_option=dev)  # mock lacks Tanh: falls back to cpu
    net.Add(["b", "x"], "c", device_option=dev)  # back on mock
    return net


def test_fallback_runs_on_cpu_with_copies_and_reports_it(ws, mock, mock_net):
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    ws.feed_blob("x", x, "mock")
    with pytest.warns(kaffa.FallbackWarning, match=r"1 op\(s\) of net 'placed' fell back to cpu: #1 Tanh"):
        ws.create_net(mock_net)
    ws.run_net("placed")
    np.testing.assert_allclose(ws.fetch_blob("c"), np.tanh(np.maximum(x, 0)) + x, rtol=1e-6)
    report = ws.placement_report("placed")
    assert [(p.op_type, p.requested, p.ran_on) for p in report.placements] == [
        ("Relu", "mock:0", "mock:0"),
        ("Tanh", "mock:0", "cpu"),
        ("Add", "mock:0", "mock:0"),
    ]
    assert "no Tanh kernel" in report.fallbacks[0].reason
    assert [(c.blob, c.src, c.dst, c.before_op) for c in report.copies] == [
        ("a", "mock:0", "cpu", 1),
        ("b", "cpu", "mock:0", 2),
    ]
    assert str(ws.blob_device("c")) == "mock:0" and str(ws.blob_device("b")) == "cpu"
    assert "fell back from mock:0" in str(report)


def test_copies_are_reused_until_the_blob_changes(ws, mock):
    dev = kaffa.DeviceOption("mock")
    net = Net("reuse")
    net.Tanh("x", "t1")  # cpu ops reading the same mock blob twice: one copy
    net.Sigmoid("x", "t2")
    net.Relu("x", "x", device_option=dev)  # x rewritten on mock ...
    net.Tanh("x", "t3")  # ... so a fresh copy is needed
    ws.feed_blob("x", np.array([-1.0, 1.0], dtype=np.float32), "mock")
    created = ws.create_net(net)
    assert [(c.blob, c.before_op) for c in created.placement_report.copies] == [("x", 0), ("x", 3)]
    ws.run_net("reuse")
    np.testing.assert_allclose(ws.fetch_blob("t3"), np.tanh([0.0, 1.0]), rtol=1e-6)


def test_strict_policy_from_environment(ws, mock, mock_net, monkeypatch):
    monkeypatch.setenv("KAFFA_STRICT", "1")
    ws.feed_blob("x", np.ones(3, dtype=np.float32), "mock")
    with pytest.raises(kaffa.UnsupportedOperatorError, match="op #1 Tanh"):
        ws.create_net(mock_net)


def test_unclaimed_dtype_falls_back_with_the_reason(ws, mock):
    ws.feed_blob("x", np.array([-1.0, 2.0]), "mock")  # float64: mock claims float32 only
    net = Net("f64")
    net.Relu("x", "y", device_option=kaffa.DeviceOption("mock"))
    with pytest.warns(kaffa.FallbackWarning):
        created = ws.create_net(net)
    assert "dtype float64 is not claimed (claims: float32)" in created.placement_report.fallbacks[0].reason
    ws.run_net("f64")
    assert ws.fetch_blob("y").tolist() == [0.0, 2.0]


def test_device_id_out_of_range(ws, mock):
    ws.feed_blob("x", np.ones(2, dtype=np.float32))
    net = Net("dev")
    net.Relu("x", "y", device_option=kaffa.DeviceOption("mock", 3))
    with pytest.raises(kaffa.DeviceError, match=r"has 1 device.*device_id 3 does not exist"):
        ws.create_net(net)


@pytest.fixture
def engine_plugin():
    """Adds engine FAST for Relu on cpu; it refuses inputs named 'slow' through its predicate."""
    table = KernelTable("cpu", engine="FAST")

    @table.kernel(
        "Relu", dtypes=["float32"], supports=lambda ctx: "slow input" if ctx.op.input[0] == "slow" else None
    )
    def fast_relu(ctx):
        return lambda x: (np.maximum(x, 0) + 100,)  # marked, to see which kernel ran

    import types

    plugin = types.SimpleNamespace(kaffa_kernels=kaffa.hookimpl(lambda registry: table.install(registry)))
    registry().register(plugin, name="fast")
    yield
    registry().unregister("fast")
    engines.reset_engine_prefs()


def _relu(ws, inp, **kw):
    ws.feed_blob(inp, np.array([-1.0, 1.0], dtype=np.float32))
    net = Net(f"e_{inp}_{len(kw)}")
    net.Relu(inp, "y", **kw)
    created = ws.create_net(net, overwrite=True)
    ws.run_net(net.name)
    return created.placement_report.placements[0].engine, ws.fetch_blob("y").tolist()


def test_engine_choice_follows_caffe2_order(ws, engine_plugin):
    assert _relu(ws, "x") == ("", [0.0, 1.0])  # no preference: default kernel
    assert _relu(ws, "x", engine="FAST") == ("FAST", [100.0, 101.0])  # the op's own engine
    assert _relu(ws, "slow", engine="FAST") == ("", [0.0, 1.0])  # predicate rejects: next engine
    engines.set_per_op_engine_pref({"cpu": {"Relu": ["FAST"]}})
    assert _relu(ws, "x") == ("FAST", [100.0, 101.0])
    engines.reset_engine_prefs()
    engines.set_global_engine_pref({"cpu": ["FAST"]})
    assert _relu(ws, "x") == ("FAST", [100.0, 101.0])
    with engines.explicit_engines_only():
        assert _relu(ws, "x") == ("", [0.0, 1.0])


def test_engine_order_defaults():
    assert engines.engine_order("cuda", "Conv", "") == ["CUDNN", ""]
    assert engines.engine_order("cuda", "Conv", "fast, CUDNN") == ["FAST", "CUDNN", ""]
    assert engines.engine_order("cpu", "Conv", "") == ["ONEDNN", ""]  # declines when not installed

"""Net.benchmark / Workspace.benchmark_net / Predictor.benchmark (Caffe2's BenchmarkNet)."""

from __future__ import annotations

import numpy as np
import pytest

import kaffa
from kaffa import Workspace
from kaffa.checkpoint import fill_op
from kaffa.core import Net
from kaffa.proto import NetDef


def _workspace_with_mlp(net_type: str = "") -> tuple[Workspace, Net]:
    rng = np.random.default_rng(0)
    ws = Workspace()
    for name, shape in {"x": (8, 4), "w1": (16, 4), "b1": (16,), "w2": (3, 16), "b2": (3,)}.items():
        ws.feed_blob(name, rng.standard_normal(shape).astype(np.float32))
    net = Net("mlp")
    if net_type:
        net.Proto().type = net_type
    h = net.FC(["x", "w1", "b1"], "h")
    h = net.Relu(h, h)
    net.Softmax(net.FC([h, "w2", "b2"]), "y")
    ws.create_net(net)
    return ws, net


def test_whole_net_time_only():
    ws, _ = _workspace_with_mlp()
    bench = ws.benchmark_net("mlp", warmup=1, iters=5)
    assert bench.net == "mlp" and bench.iters == 5 and bench.total_ms > 0
    assert bench.ops == () and bench.as_caffe2() == [bench.total_ms]


@pytest.mark.parametrize("net_type", ["", "dag"])
def test_per_op_times_cover_every_op_and_leave_the_net_as_it_was(net_type):
    ws, net = _workspace_with_mlp(net_type)
    ws.run_net("mlp")
    before = ws.fetch_blob("y")
    bench = ws.benchmark_net("mlp", warmup=0, iters=3, per_op=True)
    assert [o.op_type for o in bench.ops] == [op.type for op in net.Proto().op]
    assert [o.index for o in bench.ops] == list(range(len(net.Proto().op)))
    assert all(o.ms > 0 and o.ran_on == "cpu" for o in bench.ops)
    assert bench.ops[0].input_shapes == ((8, 4), (16, 4), (16,))
    assert sum(o.ms for o in bench.ops) <= bench.total_ms * 50  # same order as a whole run
    by_type = dict((t, (n, ms)) for t, n, ms in bench.by_type())
    assert by_type["FC"][0] == 2 and by_type["Relu"][0] == 1
    assert len(bench.as_caffe2()) == 1 + len(net.Proto().op)
    text = str(bench)
    assert "per op type" in text and "slowest ops" in text and "FC" in text
    # The timers are gone: the bound kernels are the plain ones again, and results unchanged.
    plan = ws.get_net("mlp")._plan
    assert all(getattr(f[0], "__name__", "") != "call" for f in plan.fast)
    ws.run_net("mlp")
    np.testing.assert_array_equal(ws.fetch_blob("y"), before)


def test_bad_arguments_and_unknown_net():
    ws, _ = _workspace_with_mlp()
    with pytest.raises(ValueError, match="iters >= 1"):
        ws.benchmark_net("mlp", iters=0)
    with pytest.raises(kaffa.errors.KaffaError, match="no net named 'nope'"):
        ws.benchmark_net("nope")


def test_predictor_benchmark_times_the_predict_net():
    rng = np.random.default_rng(1)
    init = NetDef(name="init")
    init.op.append(fill_op("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)))
    net = Net("pred")
    y = net.Conv(["x", "w"], "c", pad=1)
    net.Relu(y, "y")
    pred = net.Proto()
    pred.external_input[:] = ["x", "w"]
    pred.external_output[:] = ["y"]
    p = kaffa.Predictor(init, pred)
    bench = p.benchmark([rng.standard_normal((1, 3, 8, 8)).astype(np.float32)], iters=3, per_op=True)
    # what the Predictor really runs (with the layout Transposes of a cpu that runs NHWC)
    assert [o.op_type for o in bench.ops if o.op_type != "Transpose"] == ["FusedConv"]

"""The cpu backend's ONEDNN engine (kaffa_cpu.onednn): every configuration it takes must match the
default numpy kernels, the ones it cannot take must fall back to them, and its caches must never
serve stale weights. The conformance suite's cpu/ONEDNN column checks the op cases against the
float64 references; these tests add breadth (random geometries) and the engine's own behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import kaffa
from kaffa import core, engines
from kaffa.errors import ShapeError
from kaffa_cpu import dnnl, onednn

pytestmark = pytest.mark.skipif(
    onednn.unavailable() is not None, reason=f"oneDNN not installed: {onednn.unavailable()}"
)


def _run(op_type: str, inputs: dict[str, np.ndarray], engine: str, **args) -> np.ndarray:
    ws = kaffa.Workspace()
    for name, value in inputs.items():
        ws.feed_blob(name, value)
    op = core.CreateOperator(op_type, list(inputs), ["y"], engine=engine, **args)
    if engine:
        ws.run_operator_once(op)
    else:
        with engines.explicit_engines_only():  # the default numpy kernel
            ws.run_operator_once(op)
    return ws.fetch_blob("y")


@pytest.fixture
def made(monkeypatch):
    """Counts the oneDNN plans built (a fallback to the default kernel builds none)."""
    counts = {"conv": 0, "pool": 0, "fc": 0}
    for key, cls in (("conv", onednn._ConvPlan), ("pool", onednn._PoolPlan), ("fc", onednn._FCPlan)):
        original = cls.__init__

        def init(self, *a, _original=original, _key=key, **k):
            _original(self, *a, **k)
            counts[_key] += 1

        monkeypatch.setattr(cls, "__init__", init)
    return counts


def _conv_inputs(rng, n, c, m, size, kern, group, nhwc, bias, z_shape=None):
    x_shape = (n, *size, c) if nhwc else (n, c, *size)
    w_shape = (m, *kern, c // group) if nhwc else (m, c // group, *kern)
    inputs = {
        "x": rng.uniform(-1, 1, x_shape).astype(np.float32),
        "w": rng.uniform(-1, 1, w_shape).astype(np.float32),
    }
    if bias or z_shape:
        inputs["b"] = rng.uniform(-1, 1, m).astype(np.float32)
    if z_shape:
        inputs["z"] = rng.uniform(-1, 1, z_shape).astype(np.float32)
    return inputs


GEOMETRIES = [
    # (channels in, out, group, size, kernel, args)
    (3, 8, 1, (9, 9), (3, 3), {"pad": 1}),
    (4, 6, 1, (8, 7), (2, 3), {"stride": 2}),
    (5, 5, 5, (9, 9), (3, 3), {"pad": 1, "stride": 2}),  # depthwise
    (6, 6, 6, (9, 8), (3, 3), {"pad": 2, "dilation": 2}),
    (4, 6, 2, (7, 7), (3, 3), {"pad": 1}),  # grouped
    (16, 24, 1, (10, 10), (1, 1), {"stride": 2}),  # 1x1 stride 2: a negative end pad
    (8, 4, 1, (7, 9), (3, 3), {"pads": [0, 1, 2, 0], "strides": [1, 2]}),  # asymmetric pads
    (3, 4, 1, (8, 8), (4, 4), {"stride": 2, "legacy_pad": 2}),  # SAME, even kernel
    (32, 32, 1, (14, 14), (3, 3), {"pad": 1}),
]


@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("geo", range(len(GEOMETRIES)))
def test_conv_matches_the_default_kernel(geo, nhwc, made):
    c, m, group, size, kern, args = GEOMETRIES[geo]
    rng = np.random.default_rng(geo)
    order = {"order": "NHWC" if nhwc else "NCHW", "group": group, **args}
    inputs = _conv_inputs(rng, 2, c, m, size, kern, group, nhwc, bias=geo % 2 == 0)
    want = _run("Conv", inputs, "", **order)
    got = _run("Conv", inputs, "ONEDNN", **order)
    assert made["conv"] == 1, "the engine fell back instead of running oneDNN"
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["", "Relu", "Clip"])
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("geo", [0, 2, 4, 5])
def test_fused_conv_residual_and_activation_are_post_ops(geo, nhwc, activation, made):
    c, m, group, size, kern, args = GEOMETRIES[geo]
    rng = np.random.default_rng(100 + geo)
    order = {"order": "NHWC" if nhwc else "NCHW", "group": group, **args}
    plain = _conv_inputs(rng, 2, c, m, size, kern, group, nhwc, bias=True)
    y_shape = _run("Conv", plain, "", **order).shape
    inputs = {**plain, "z": rng.uniform(-1, 1, y_shape).astype(np.float32)}
    fused = {**order, "activation": activation, "min": -0.3, "max": 0.5}
    want = _run("FusedConv", inputs, "", **fused)
    got = _run("FusedConv", inputs, "ONEDNN", **fused)
    assert made["conv"] == 1
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    if activation == "Clip":
        assert got.min() >= -0.3 and got.max() <= 0.5


def test_a_wrong_residual_is_a_typed_error_naming_the_shapes():
    rng = np.random.default_rng(1)
    inputs = _conv_inputs(rng, 1, 3, 4, (6, 6), (3, 3), 1, False, bias=True, z_shape=(1, 4, 5, 5))
    with pytest.raises(ShapeError, match=r"Z has shape \[1, 4, 5, 5\].*\[1, 4, 4, 4\]"):
        _run("FusedConv", inputs, "ONEDNN", activation="Relu")


def test_other_ranks_and_dtypes_run_the_default_kernel(made):
    rng = np.random.default_rng(2)
    x1 = {
        "x": rng.standard_normal((2, 3, 11)).astype(np.float32),
        "w": rng.standard_normal((4, 3, 3)).astype(np.float32),
    }
    np.testing.assert_allclose(_run("Conv", x1, "ONEDNN", pad=1), _run("Conv", x1, "", pad=1), rtol=1e-5)
    assert made["conv"] == 0
    # float64 is not claimed: the planner never binds the engine for it
    x64 = {
        k: v.astype(np.float64) for k, v in _conv_inputs(rng, 1, 3, 4, (5, 5), (3, 3), 1, False, True).items()
    }
    np.testing.assert_allclose(_run("Conv", x64, "ONEDNN"), _run("Conv", x64, ""), rtol=1e-12)
    assert made["conv"] == 0


def test_writable_weights_are_reordered_every_run_read_only_ones_once(monkeypatch):
    reorders = []
    original = onednn._Weights.__call__

    def count(self, w):
        hit = self._hit is not None and self._hit[0] is w
        reorders.append(not hit)
        return original(self, w)

    monkeypatch.setattr(onednn._Weights, "__call__", count)
    rng = np.random.default_rng(3)
    inputs = _conv_inputs(rng, 1, 4, 4, (6, 6), (3, 3), 1, True, bias=True)
    ws = kaffa.Workspace()
    for name, value in inputs.items():
        ws.feed_blob(name, value)
    net = core.Net("conv")
    net.Proto().op.append(
        core.CreateOperator("Conv", ["x", "w", "b"], ["y"], engine="ONEDNN", order="NHWC", pad=1)
    )
    ws.create_net(net)
    ws.run_net("conv")
    first = ws.fetch_blob("y")
    ws._blobs["w"] *= -1  # training updates the filter in place
    ws.run_net("conv")
    np.testing.assert_allclose(ws.fetch_blob("y") - inputs["b"], -(first - inputs["b"]), rtol=1e-4, atol=1e-5)
    assert reorders == [True, True]
    ws._blobs["w"].flags.writeable = False  # a Predictor's frozen parameter
    for _ in range(3):
        ws.run_net("conv")
    assert reorders == [True, True, True, False, False]


def test_predictor_parameters_made_by_passes_are_frozen():
    net = core.Net("pred")
    net.Conv(["x", "w"], "c", pad=1)
    net.Relu("c", "y")
    net.AddExternalInput("x", "w")
    net.AddExternalOutput("y")
    init = core.Net("init")
    w = np.random.default_rng(4).standard_normal((4, 3, 3, 3)).astype(np.float32)
    init.GivenTensorFill([], "w", shape=list(w.shape), values=w.ravel().tolist())
    p = kaffa.Predictor(init, net)
    made = p._pass_params
    assert made, "the passes made no parameters (no fusion bias, no NHWC filter)"
    for name in made:
        assert not p.workspace._blobs[name].flags.writeable, name


@pytest.mark.parametrize(
    "op_type,args",
    [
        ("MaxPool", {"kernel": 3, "stride": 2, "pad": 1}),
        ("MaxPool", {"kernel": 2, "stride": 2, "legacy_pad": 3}),  # Caffe's ceil mode
        ("MaxPool", {"kernels": [3, 2], "strides": [1, 2], "pads": [1, 0, 1, 1], "dilations": [2, 1]}),
        ("AveragePool", {"kernel": 3, "stride": 2, "pad": 1}),
        ("AveragePool", {"kernel": 3, "stride": 2, "pad": 1, "count_include_pad": 1}),
        ("AveragePool", {"kernel": 3, "stride": 2, "legacy_pad": 3}),
    ],
)
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_pools_match_the_default_kernel(op_type, args, nhwc, made):
    rng = np.random.default_rng(5)
    shape = (2, 9, 10, 6) if nhwc else (2, 6, 9, 10)
    inputs = {"x": rng.standard_normal(shape).astype(np.float32)}
    order = {"order": "NHWC" if nhwc else "NCHW", **args}
    np.testing.assert_allclose(
        _run(op_type, inputs, "ONEDNN", **order), _run(op_type, inputs, "", **order), rtol=1e-5, atol=1e-6
    )
    assert made["pool"] == 1


def test_include_pad_average_past_the_pads_falls_back(made):
    """Caffe's ceil mode with count_include_pad: kaffa divides by the declared pads only, oneDNN by
    the whole window, so the engine must hand it to the default kernel."""
    inputs = {"x": np.random.default_rng(6).standard_normal((1, 2, 6, 6)).astype(np.float32)}
    args = {"kernel": 3, "stride": 2, "pad": 1, "legacy_pad": 3, "count_include_pad": 1}
    np.testing.assert_allclose(
        _run("AveragePool", inputs, "ONEDNN", **args), _run("AveragePool", inputs, "", **args), rtol=1e-6
    )
    assert made["pool"] == 0


@pytest.mark.parametrize(
    "axis,x_shape,w_shape", [(1, (4, 20), (7, 20)), (1, (3, 2, 5, 2), (6, 20)), (2, (2, 3, 4, 5), (6, 20))]
)
def test_fc_matches_the_default_kernel(axis, x_shape, w_shape, made):
    rng = np.random.default_rng(7)
    inputs = {
        "x": rng.standard_normal(x_shape).astype(np.float32),
        "w": rng.standard_normal(w_shape).astype(np.float32),
        "b": rng.standard_normal(w_shape[0]).astype(np.float32),
    }
    got = _run("FC", inputs, "ONEDNN", axis=axis)
    np.testing.assert_allclose(got, _run("FC", inputs, "", axis=axis), rtol=1e-5, atol=1e-5)
    assert made["fc"] == 1


def test_one_plan_runs_correctly_from_many_threads():
    """The dag executor may run an op's kernel on any worker thread: one plan (one primitive, its
    scratchpad and bound memories) serves concurrent calls correctly."""
    from kaffa.launch.nn import ConvGeometry
    from kaffa.ops.geometry import Window

    rng = np.random.default_rng(8)
    inputs = _conv_inputs(rng, 1, 8, 8, (12, 12), (3, 3), 1, True, bias=True)
    want = _run("Conv", inputs, "", order="NHWC", pad=1)
    geo = ConvGeometry(8, (3, 3), Window((3, 3), (1, 1), (1, 1), (1, 1), (1, 1)), (12, 12), (12, 12), (1, 1))
    plan = onednn._ConvPlan(inputs["x"].shape, inputs["w"].shape, geo, 1, False, True, False, ("", 0.0, 0.0))
    errors = []

    def worker(seed):
        try:
            for i in range(50):
                scale = np.float32(seed + i)
                y = plan(inputs["x"] * scale, inputs["w"], inputs["b"] * scale, None)
                np.testing.assert_allclose(y, want * scale, rtol=1e-4, atol=1e-4 * scale)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_disabled_engine_declines_and_the_cpu_keeps_nchw():
    code = (
        "from kaffa.plugins import registry; from kaffa_cpu import onednn;"
        "print(onednn.unavailable()); print(registry().backends['cpu'].conv_order)"
    )
    env = {**os.environ, "KAFFA_DISABLE_ONEDNN": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["KAFFA_DISABLE_ONEDNN is set", "NCHW"]
    assert kaffa.plugins.registry().backends["cpu"].conv_order == "NHWC"


def test_a_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(dnnl, "_LIB", None)
    monkeypatch.setattr(dnnl, "_LIB_ERROR", None)
    monkeypatch.setenv("KAFFA_ONEDNN_LIB", "/nonexistent/libdnnl.so.3")
    reason = dnnl.unavailable()
    assert reason is not None and "pip install 'kaffa[onednn]'" in reason and "/nonexistent" in reason


def test_the_library_reports_its_version():
    info = onednn.describe()
    assert info["available"] and info["version"].startswith("3.")


@pytest.mark.parametrize("axes", [[0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2]])
def test_layout_transposes_are_reorders(axes, monkeypatch):
    built = []
    original = onednn._TransposePlan.__init__

    def init(self, *a, **k):
        original(self, *a, **k)
        built.append(a)

    monkeypatch.setattr(onednn._TransposePlan, "__init__", init)
    x = {"x": np.random.default_rng(9).standard_normal((2, 3, 5, 7)).astype(np.float32)}
    got = _run("Transpose", x, "ONEDNN", axes=axes)
    np.testing.assert_array_equal(got, x["x"].transpose(axes))
    assert len(built) == (axes != [0, 1, 3, 2])  # any other permutation: numpy's copy


def test_non_contiguous_inputs_stay_alive_while_oneDNN_reads_them():
    """A kernel may get a strided view (LRN's output is one); its contiguous copy must outlive the
    primitive that reads it (a bug here read freed memory: values like 1e36)."""
    import gc

    from kaffa.launch.nn import ConvGeometry
    from kaffa.ops.geometry import Window

    rng = np.random.default_rng(10)
    base = rng.standard_normal((2, 9, 9, 4)).astype(np.float32)
    x = base.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory: not C-contiguous
    for _ in range(3):
        gc.collect()
        t = onednn._TransposePlan(x.shape, True)(x)
        np.testing.assert_array_equal(t, base)
        pool = onednn._PoolPlan(
            x.shape,
            True,
            dnnl.POOLING_MAX,
            Window((2, 2), (2, 2), (1, 1), (0, 0), (0, 0)),
            (4, 4),
            (0, 0),
            (-1, -1),
        )
        np.testing.assert_array_equal(pool(x), x[:, :, :8, :8].reshape(2, 4, 4, 2, 4, 2).max(axis=(3, 5)))
        w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32).transpose(0, 3, 1, 2)  # strided filter
        geo = ConvGeometry(3, (3, 3), Window((3, 3), (1, 1), (1, 1), (1, 1), (1, 1)), (9, 9), (9, 9), (1, 1))
        y = onednn._ConvPlan(x.shape, w.shape, geo, 1, True, False, False, ("", 0.0, 0.0))(x, w, None, None)
        inputs = {"x": np.ascontiguousarray(x), "w": np.ascontiguousarray(w)}
        np.testing.assert_allclose(y, _run("Conv", inputs, "", pad=1), rtol=1e-4, atol=1e-5)


def test_openblas_runs_on_one_thread_once_the_engine_binds_an_op():
    code = (
        "import numpy as np, kaffa\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "before = blas()\n"
        "ws = kaffa.Workspace(); ws.feed_blob('x', np.ones((1, 2, 4, 4), np.float32))\n"
        "ws.feed_blob('w', np.ones((3, 2, 1, 1), np.float32))\n"
        "ws.run_operator_once(kaffa.core.CreateOperator('Conv', ['x', 'w'], ['y']))\n"
        "print(before, blas())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    before, after = out.stdout.strip().split("] [")
    assert after.rstrip("]") == "1", out.stdout
    if os.cpu_count() > 1:
        assert before.lstrip("[") != "1", out.stdout  # OpenBLAS's default: every core
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[2]"), out.stdout  # the user's own setting stands

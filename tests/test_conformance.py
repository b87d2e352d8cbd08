"""The conformance suite itself: runner outcomes, claims both ways, reports, goldens, CLI, pytest plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import kaffa
from kaffa.plugins import PLUGIN_API, hookimpl, registry
from kaffa.schema import SCHEMAS
from kaffa_conformance import cases, goldens, reference, report, runner
from kaffa_conformance.tolerance import Tolerance, measure, tolerance, within


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFFA_")}
    env.update(extra)
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kaffa", *args], capture_output=True, text=True, timeout=600, env=_env(**env)
    )


# -- tolerances ------------------------------------------------------------------------------------
def test_tolerances_scale_with_dtype_and_reduction():
    assert tolerance(np.dtype("int32"), cases.GEMM, 100) == Tolerance(0.0, 0.0)
    assert tolerance(np.dtype("float32"), cases.EXACT) == Tolerance(0.0, 0.0)
    f16, f32, f64 = (tolerance(np.dtype(d), cases.ELEMENTWISE) for d in ("float16", "float32", "float64"))
    assert f16.rtol > f32.rtol > f64.rtol
    small, big = (
        tolerance(np.dtype("float32"), cases.GEMM, 4),
        tolerance(np.dtype("float32"), cases.GEMM, 400),
    )
    assert big.rtol == pytest.approx(small.rtol * 10) and big.atol == pytest.approx(small.atol * 10)


def test_measure_and_within_handle_specials():
    assert measure(np.array([1.0, np.inf, np.nan]), np.array([1.0, np.inf, np.nan])) == (0.0, 0.0)
    a, _ = measure(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert a == np.inf
    assert not within(np.array([np.nan]), np.array([0.0]), Tolerance(1, 1))
    assert within(np.array([1.0 + 1e-7]), np.array([1.0]), Tolerance(1e-6, 0))


# -- runner outcomes -------------------------------------------------------------------------------
def _cell(result, op, dtype):
    (cell,) = [c for c in result.cells() if c.op == op and c.dtype == dtype]
    return cell


def test_mock_claims_are_verified_both_ways(mock):
    result = runner.run(["mock"], ["Relu", "Tanh"], strict=True)
    assert _cell(result, "Relu", "float32").outcome == runner.PASS
    unclaimed = _cell(result, "Relu", "float64")
    assert unclaimed.outcome == runner.UNSUPPORTED and "not claimed" in unclaimed.results[0].message
    assert _cell(result, "Tanh", "float32").outcome == runner.UNSUPPORTED
    assert result.ok
    fallback = runner.run(["mock"], ["Tanh"], strict=False)
    assert _cell(fallback, "Tanh", "float32").outcome == runner.FALLBACK_RAN


def test_wrong_kernel_fails_with_the_cell_named():
    from kaffa_conformance.mock import MockPlugin

    registry().register(MockPlugin(ops={"Relu"}, broken={"Sigmoid"}), name="mock")
    try:
        result = runner.run(["mock"], ["Relu", "Sigmoid"])
    finally:
        registry().unregister("mock")
    assert not result.ok
    bad = result.failures()
    assert [(c.op, c.dtype, c.target) for c in bad] == [("Sigmoid", "float32", "mock")]
    assert bad[0].max_abs == pytest.approx(0.5)
    assert "exceed" in bad[0].worst().message


def test_crashing_claimed_kernel_is_an_error_not_a_pass():
    table = kaffa.kernels.KernelTable("cpu", engine="CRASHY")

    @table.kernel("Relu", dtypes=["float32"])
    def crashy(ctx):
        def run(x):
            raise MemoryError("device fell over")

        return run

    plugin = types.SimpleNamespace(
        kaffa_plugin_api=hookimpl(lambda: PLUGIN_API),
        kaffa_kernels=hookimpl(lambda registry: table.install(registry)),
    )
    registry().register(plugin, name="crashy")
    try:
        labels = [t.label for t in runner.targets_for("cpu")]  # cpu also has engines (MPI)
        assert labels[0] == "cpu" and "cpu/CRASHY" in labels
        result = runner.run([runner.Target("cpu", "CRASHY")], ["Relu"])
    finally:
        registry().unregister("crashy")
    cell = _cell(result, "Relu", "float32")
    assert cell.outcome == runner.ERROR and "device fell over" in cell.worst().message
    assert _cell(result, "Relu", "float16").outcome == runner.UNSUPPORTED


def test_shape_inference_is_checked_against_the_kernel():
    table = kaffa.kernels.KernelTable("cpu", engine="WRONGSHAPE")

    @table.kernel("Relu", dtypes=["float32"])
    def wrong(ctx):
        return lambda x: (np.maximum(x, 0).reshape(-1),)  # flattens: right values, wrong shape

    plugin = types.SimpleNamespace(kaffa_kernels=hookimpl(lambda registry: table.install(registry)))
    registry().register(plugin, name="wrongshape")
    try:
        result = runner.run([runner.Target("cpu", "WRONGSHAPE")], ["Relu"])
    finally:
        registry().unregister("wrongshape")
    cell = _cell(result, "Relu", "float32")
    assert cell.outcome == runner.FAIL
    assert any("shape inference says" in r.message for r in cell.results)


# -- reports -----------------------------------------------------------------------------------------
def test_reports_are_written_and_self_contained(tmp_path, mock):
    result = runner.run(["mock"], ["Relu", "Tanh"])
    paths = report.write(result, tmp_path)
    assert sorted(p.name for p in paths) == ["conformance.html", "conformance.json", "conformance.md"]
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert data["ok"] is True and data["meta"]["strict"] is True
    relu = next(c for c in data["cells"] if c["op"] == "Relu" and c["dtype"] == "float32")
    assert relu["outcome"] == "pass" and relu["tolerance"]["rtol"] > 0 and relu["max_abs"] is not None
    md = (tmp_path / "conformance.md").read_text()
    assert "| Relu |" in md and "## Unsupported cells" in md
    page = (tmp_path / "conformance.html").read_text()
    assert page.startswith("<!doctype html>") and "<style>" in page
    assert "src=" not in page and "href=" not in page  # nothing to fetch: one file is the whole report


# -- goldens ----------------------------------------------------------------------------------------
def test_every_op_has_a_reference_cases_and_current_goldens():
    ops = runner.default_ops()
    for op in [
        "FC",
        "Conv",
        "MaxPool",
        "AveragePool",
        "Relu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "MatMul",
        "Concat",
        "Split",
        "Reshape",
        "Transpose",
        "Flatten",
        "Copy",
        "ConstantFill",
        "GivenTensorFill",
        "GaussianFill",
        "UniformFill",
    ]:
        assert op in ops, f"{op} lacks a reference or cases"
    problems = [p for op in ops for p in goldens.verify(op)]
    assert problems == []


# The operator library (issue 3): Caffe2's core set for CNNs and MLPs.
LIBRARY = [
    "SpatialBN",
    "LRN",
    "Dropout",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Softplus",
    "Exp",
    "Log",
    "Sqrt",
    "Sqr",
    "Pow",
    "Abs",
    "Negative",
    "Clip",
    "Max",
    "Min",
    "Mean",
    "Scale",
    "WeightedSum",
    "BatchMatMul",
    "ConvTranspose",
    "Squeeze",
    "ExpandDims",
    "Slice",
    "Gather",
    "Tile",
    "PadImage",
    "Cast",
    "Shape",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "SumElements",
    "LayerNorm",
    "SoftmaxWithLoss",
    "LabelCrossEntropy",
    "CrossEntropy",
    "SigmoidCrossEntropyWithLogits",
    "AveragedLoss",
    "SquaredL2Distance",
    "Accuracy",
    "EQ",
    "LT",
    "GT",
    "And",
    "Or",
    "Not",
    "StopGradient",
    "XavierFill",
    "MSRAFill",
    "Iter",
    "LearningRate",
    "MomentumSGDUpdate",
    "Adam",
    "Adagrad",
]


def test_the_operator_library_is_covered_by_conformance():
    ops = set(runner.default_ops())
    assert [op for op in LIBRARY if op not in ops] == []
    forward = [op for op in ops if not SCHEMAS.get(op).gradient_op]
    assert len(forward) >= 60, forward


def test_every_gradient_op_is_checked_and_every_differentiable_op_has_a_maker():
    from kaffa_conformance import gradcheck

    by_op = {op: cases.for_op(op) for op in runner.default_ops()}
    used = gradcheck.gradient_ops_covered(by_op)
    unchecked = [s.name for s in SCHEMAS.all() if s.gradient_op and s.name not in used]
    assert unchecked == [], "gradient ops no conformance case exercises"
    makerless = [
        s.name
        for s in SCHEMAS.all()
        if s.differentiable and not s.gradient_op and s.gradient is None and s.family != "fill"
    ]
    assert makerless == [], "differentiable ops without a gradient maker (mark them differentiable=False?)"
    unchecked_fwd = [
        op for op, cs in by_op.items() if SCHEMAS.get(op).gradient and not any(map(gradcheck.wants_grad, cs))
    ]
    assert unchecked_fwd == [], "ops with a gradient maker but no gradient-checked case"


def test_a_changed_reference_is_caught(monkeypatch):
    original = reference.REFERENCES["Tanh"]
    monkeypatch.setitem(reference.REFERENCES, "Tanh", lambda args, x: (original(args, x)[0] * (1 + 1e-6),))
    assert any("differs from the frozen golden" in p for p in goldens.verify("Tanh"))


def test_an_edited_golden_file_is_caught(tmp_path, monkeypatch):
    shutil.copytree(goldens.DIR, tmp_path / "g")
    monkeypatch.setattr(goldens, "DIR", tmp_path / "g")
    monkeypatch.setattr(goldens, "MANIFEST", tmp_path / "g" / "manifest.json")
    with np.load(tmp_path / "g" / "Relu.npz") as z:
        arrays = dict(z)
    key = next(k for k in arrays if k.endswith("/out0"))
    arrays[key] = arrays[key] + 1e-3  # a hand edit the manifest does not know about
    np.savez_compressed(tmp_path / "g" / "Relu.npz", **arrays)
    assert any("does not match the sha256" in p for p in goldens.verify("Relu"))


# -- command line and pytest plugin --------------------------------------------------------------------
def test_cli_conformance_cpu_passes_and_writes_reports(tmp_path):
    out = _cli("conformance", "--backend", "cpu", "--report", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "conformance: OK" in out.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"conformance.json", "conformance.md", "conformance.html"}
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert data["summary"]["cpu"]["fail"] == 0 and data["summary"]["cpu"]["error"] == 0
    assert data["summary"]["cpu"]["pass"] >= 24 * 2


def test_cli_conformance_exits_nonzero_on_a_wrong_kernel(tmp_path):
    out = _cli(
        "conformance",
        "--backend",
        "mock",
        "--op",
        "Relu",
        "--op",
        "Add",
        "--report",
        str(tmp_path),
        KAFFA_PLUGINS="kaffa_conformance.mock",
        KAFFA_MOCK_OPS="Relu",
        KAFFA_MOCK_BROKEN="Add",
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL: mock Add float32" in out.stdout and "conformance: FAILED" in out.stdout
    assert "Add" in (tmp_path / "conformance.md").read_text().split("## Failures")[1]


def test_cli_rejects_unknown_backend_and_op():
    assert _cli("conformance", "--backend", "nope").returncode == 2
    bad_op = _cli("conformance", "--backend", "cpu", "--op", "Rleu")
    assert bad_op.returncode == 2 and "did you mean 'Relu'" in bad_op.stderr


def test_pytest_plugin_runs_the_suite_for_a_backend(tmp_path):
    env = _env(KAFFA_PLUGINS="kaffa_conformance.mock", KAFFA_MOCK_OPS="Relu", KAFFA_MOCK_BROKEN="Tanh")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "kaffa_conformance.suite",
            "--kaffa-backend",
            "mock",
            "--kaffa-op",
            "Relu",
            "--kaffa-op",
            "Tanh",
            "-rN",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    tail = out.stdout.strip().splitlines()[-1]
    assert out.returncode == 1, out.stdout
    assert "failed" in tail and "passed" in tail and "skipped" in tail, tail
    assert "mock-Tanh-" in out.stdout and "float32" in out.stdout

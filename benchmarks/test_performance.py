"""kaffa's cpu backend beside onnxruntime (and PyTorch, for training), from the same run:

* ResNet-18 and MobileNetV2 inference at batch 1 and 8: the ONNX file imported with
  ``kaffa.onnx.import_model`` and run by ``kaffa.Predictor``, and the same file in onnxruntime.
  The files are ``../shared/models/{resnet18,mobilenet_v2}.onnx`` (or KAFFA_PERF_MODELS); where
  they are absent (or KAFFA_PERF_STANDIN=1) a stand-in is generated: kaffa.models' net of the same
  architecture on 3x64x64 inputs, 100 classes, random batch-norm statistics, exported with
  ``kaffa.onnx.export_model``. Before any timing, kaffa's output must match onnxruntime's:
  max |kaffa - ort| <= 1e-4 * max |ort|, per model and batch.
* Framework overhead: a chain of 1,000 ONNX Adds on 4-element tensors, per op.
* One LeNet training step (forward, backward, momentum SGD) on digits-sized batches (8x8, the
  architecture of examples/train_digits.py); PyTorch's equivalent step where torch is importable.

onnxruntime runs with intra_op_num_threads = the threads numpy's BLAS (kaffa's) uses, one
inter-op thread, sequential execution, all graph optimizations. Every timing is one call through
the public API (Predictor.run / InferenceSession.run, inputs fed and outputs fetched), medians of
``benchmark.pedantic`` rounds after warm-up. KAFFA_PERF_QUICK=1 runs fewer rounds.

    python benchmarks/performance.py [--quick]     # runs this file, writes docs/performance.{md,json}
    pytest benchmarks/test_performance.py --benchmark-only [-k resnet]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import kaffa  # noqa: E402
from kaffa.onnx import export_model, import_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("KAFFA_PERF_MODELS", ROOT.parent / "shared" / "models"))
FORCE_STANDIN = os.environ.get("KAFFA_PERF_STANDIN") == "1"
QUICK = os.environ.get("KAFFA_PERF_QUICK") == "1"

MODELS = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2"}
BATCHES = (1, 8)
OVERHEAD_OPS = 1000
LENET_BATCHES = (32, 256)
RTOL = 1e-4  # max |kaffa - ort| / max |ort|

# (rounds, warm-up rounds) per kind of measurement; --quick takes a few of each.
ROUNDS = {
    "infer_b1": (25, 3),
    "infer_b8": (9, 1),
    "overhead": (50, 5),
    "train": (50, 5),
}
if QUICK:
    ROUNDS = {k: (5, 1) for k in ROUNDS}

# (row, engine) -> median seconds, for the terminal summary (benchmarks/conftest.py).
RESULTS: dict[tuple[str, str], float] = {}


def blas_threads() -> int:
    """The threads numpy's BLAS (the one kaffa's cpu kernels call) runs with."""
    try:
        from threadpoolctl import threadpool_info

        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if counts:
            return int(max(counts))
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS = blas_threads()


def ort_session(model: Any) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(got.astype(np.float64) - want))) / scale


def _copy(proto: Any) -> Any:
    c = type(proto)()
    c.CopyFrom(proto)
    return c


# -- models -----------------------------------------------------------------------------------------


def _with_symbolic_batch(model: Any) -> Any:
    """The shared files fix the batch at 1; a symbolic first dim lets one file run every batch."""
    for v in list(model.graph.input) + list(model.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def _standin(name: str) -> Any:
    """kaffa.models' net of the same architecture, small (3x64x64, 100 classes), as ONNX, with
    random batch-norm parameters and statistics so every layer carries signal."""
    from onnx import numpy_helper

    from kaffa import ModelHelper, models

    kaffa.set_random_seed(0)
    mh = ModelHelper(f"{name}_standin")
    builder = models.resnet18 if name == "resnet18" else models.mobilenet_v2
    extra = {} if name == "resnet18" else {"width_mult": 0.5}
    out = builder(mh, "input", 100, is_test=True, return_logits=True, **extra)
    mh.net.Proto().external_output.append(str(out))
    model = export_model(mh.param_init_net, mh.net, {"input": (np.float32, ["N", 3, 64, 64])})
    rng = np.random.default_rng(0)
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        scale, bias, mean, var = (inits[n] for n in node.input[1:5])
        c = numpy_helper.to_array(scale).shape
        for t, v in (
            (scale, rng.uniform(0.5, 1.5, c)),
            (bias, rng.normal(0.0, 0.1, c)),
            (mean, rng.normal(0.0, 0.1, c)),
            (var, rng.uniform(0.5, 1.5, c)),
        ):
            t.CopyFrom(numpy_helper.from_array(v.astype(np.float32), t.name))
    return model


@dataclass
class Model:
    name: str
    source: str  # the file, or "stand-in: ..."
    onnx_model: Any
    input_name: str
    input_shape: tuple[int, ...]  # without the batch dim
    session: Any
    nets: tuple[Any, Any]  # kaffa (init_net, predict_net)
    predictors: dict[int, Any] = field(default_factory=dict)
    checked: dict[int, float] = field(default_factory=dict)  # batch -> relative error


@cache
def load(name: str) -> Model:
    path = MODELS_DIR / f"{name}.onnx"
    if path.is_file() and not FORCE_STANDIN:
        model = _with_symbolic_batch(onnx.load(str(path)))
        source = os.path.relpath(path, ROOT)
    else:
        model = _standin(name)
        width = "" if name == "resnet18" else ", width 0.5"
        source = f"stand-in: kaffa.models.{name} (3x64x64, 100 classes{width}), exported to ONNX"
    inp = model.graph.input[0]
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    return Model(name, source, model, inp.name, shape, ort_session(model), import_model(model))


def prepared(name: str, batch: int) -> tuple[Model, np.ndarray, Any]:
    """The model, an input of ``batch`` and kaffa's Predictor for it, checked against onnxruntime
    once (the first time) before anything is timed."""
    m = load(name)
    x = np.random.default_rng(batch).standard_normal((batch, *m.input_shape), dtype=np.float32)
    if batch not in m.predictors:
        init, predict = m.nets
        p = kaffa.Predictor(_copy(init), _copy(predict))
        (got,) = p.run({m.input_name: x})
        (want,) = m.session.run(None, {m.input_name: x})
        assert got.shape == want.shape, f"{name} b{batch}: kaffa {got.shape} vs onnxruntime {want.shape}"
        err = relative_error(got, want)
        assert err <= RTOL, (
            f"{name} b{batch}: kaffa differs from onnxruntime by {err:.3g} (relative, > {RTOL})"
        )
        m.predictors[batch] = p
        m.checked[batch] = err
    return m, x, m.predictors[batch]


def _record(benchmark: Any, row: str, engine: str, **info: Any) -> None:
    benchmark.extra_info.update(row=row, engine=engine, **info)
    RESULTS[(row, engine)] = benchmark.stats.stats.median


# -- inference --------------------------------------------------------------------------------------

INFERENCE = [(m, b, e) for m in MODELS for b in BATCHES for e in ("kaffa", "onnxruntime")]


@pytest.mark.parametrize(
    ("model", "batch", "engine"), INFERENCE, ids=[f"{m}-b{b}-{e}" for m, b, e in INFERENCE]
)
def test_inference(benchmark, model, batch, engine):
    m, x, predictor = prepared(model, batch)
    feeds = {m.input_name: x}
    fn = partial(predictor.run, feeds) if engine == "kaffa" else partial(m.session.run, None, feeds)
    rounds, warmup = ROUNDS[f"infer_b{1 if batch == 1 else 8}"]
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup)
    _record(
        benchmark,
        f"{model}_b{batch}",
        engine,
        model=MODELS[model],
        batch=batch,
        source=m.source,
        max_rel_err=m.checked[batch],
        threads=THREADS,
    )


# -- framework overhead -----------------------------------------------------------------------------


@cache
def overhead_graph() -> tuple[Any, Any, dict[str, np.ndarray]]:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node(
            "Add", ["x" if i == 0 else f"h{i - 1}", "c"], [f"h{i}" if i < OVERHEAD_OPS - 1 else "y"]
        )
        for i in range(OVERHEAD_OPS)
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "c", "y")]
    graph = helper.make_graph(nodes, "overhead", io[:2], io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": np.arange(4, dtype=np.float32), "c": np.full(4, 0.25, np.float32)}
    predictor = kaffa.Predictor(*import_model(model))
    (got,) = predictor.run(feeds)
    session = ort_session(model)
    (want,) = session.run(None, feeds)
    err = relative_error(got, want)
    assert err <= RTOL, f"overhead net: kaffa differs from onnxruntime by {err:.3g}"
    np.testing.assert_allclose(got, feeds["x"] + OVERHEAD_OPS * 0.25, rtol=1e-6)
    return predictor, session, feeds


@pytest.mark.parametrize("engine", ["kaffa", "onnxruntime"])
def test_overhead(benchmark, engine):
    predictor, session, feeds = overhead_graph()
    if engine == "kaffa":
        fn = partial(predictor.run, feeds)
        ops_run = len(predictor.placement_report.placements)  # a fusing pass would show here
    else:
        fn = partial(session.run, None, feeds)
        ops_run = OVERHEAD_OPS
    rounds, warmup = ROUNDS["overhead"]
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup)
    _record(benchmark, "overhead", engine, graph_ops=OVERHEAD_OPS, ops_run=ops_run, threads=THREADS)


# -- LeNet training step ----------------------------------------------------------------------------

# examples/train_digits.py's LeNet for 8x8 digits.
LENET = {"image_size": 8, "kernel": 3, "pad": 1, "channels": (16, 32), "hidden": 64}


def _digits_batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(batch)
    return rng.random((batch, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, batch).astype(np.int32)


def _kaffa_step(batch: int):
    from kaffa import ModelHelper, Workspace, models, optimizer

    kaffa.set_random_seed(0)
    train = ModelHelper(f"perf_lenet_b{batch}")
    _, loss = models.lenet(train, "data", 10, label="label", **LENET)
    train.add_gradient_ops([loss])
    optimizer.build_sgd(train, base_learning_rate=0.05, momentum=0.9, weight_decay=1e-4)
    ws = Workspace(f"perf_lenet_b{batch}")
    ws.run_net_once(train.param_init_net)
    x, y = _digits_batch(batch)
    ws.feed_blob("data", x)
    ws.feed_blob("label", y)
    ws.create_net(train.net)
    name = train.net.Proto().name

    def step():
        ws.run_net(name)
        return float(ws.fetch_blob("loss"))

    first = step()
    assert np.isfinite(first), "kaffa LeNet step: non-finite loss"
    return step


def _torch_step(batch: int):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no PyTorch column")
    nn = torch.nn
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    c1, c2 = LENET["channels"]
    net = nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 2 * 2, LENET["hidden"]),
        nn.ReLU(),
        nn.Linear(LENET["hidden"], 10),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    xs, ys = _digits_batch(batch)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys).long()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.item())

    assert np.isfinite(step()), "PyTorch LeNet step: non-finite loss"
    return step


LENET_CASES = [(b, e) for b in LENET_BATCHES for e in ("kaffa", "pytorch")]


@pytest.mark.parametrize(("batch", "engine"), LENET_CASES, ids=[f"b{b}-{e}" for b, e in LENET_CASES])
def test_lenet_step(benchmark, batch, engine):
    step = _kaffa_step(batch) if engine == "kaffa" else _torch_step(batch)
    rounds, warmup = ROUNDS["train"]
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup)
    info: dict[str, Any] = {"batch": batch, "threads": THREADS}
    if engine == "pytorch":
        import torch

        info["torch_version"] = torch.__version__
    _record(benchmark, f"lenet_b{batch}", engine, **info)


# -- terminal summary (called from benchmarks/conftest.py) ------------------------------------------


def summary_lines() -> list[str]:
    """kaffa's median beside the other engine's, and the ratio, for each row measured."""
    lines = []
    for row in dict.fromkeys(r for r, _ in RESULTS):
        k = RESULTS.get((row, "kaffa"))
        other = next(((e, t) for (r, e), t in RESULTS.items() if r == row and e != "kaffa"), None)
        scale, unit = (1e6 / OVERHEAD_OPS, "us/op") if row == "overhead" else (1e3, "ms")
        line = f"{row:>16}  kaffa " + (f"{k * scale:9.2f} {unit}" if k is not None else "      n/a")
        if other is not None:
            line += f"   {other[0]} {other[1] * scale:9.2f} {unit}"
            if k is not None:
                line += f"   ratio {k / other[1]:6.2f}x"
        lines.append(line)
    return lines

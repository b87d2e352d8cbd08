"""A small train-and-predict demo: a softmax classifier on three Gaussian clusters.

It shows the whole path a model takes: built with brew, trained with kaffa's gradient ops and
SGD, exported as Caffe2-style ``init_net.pb`` (GivenTensorFill ops) + ``predict_net.pb`` (FC ->
Softmax), both real protobuf files written and read back, then run on every backend available
here, with its placement report.

    python examples/demo.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

import kaffa
from kaffa import ModelHelper, Net, Workspace, brew, checkpoint, optimizer, serialize
from kaffa.plugins import registry

CLASSES, FEATURES, PER_CLASS = 3, 4, 200
STEPS, BATCH = 200, 50


def make_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(0, 4, (CLASSES, FEATURES))
    x = np.concatenate([rng.normal(c, 1.0, (PER_CLASS, FEATURES)) for c in centers])
    y = np.repeat(np.arange(CLASSES), PER_CLASS)
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order].astype(np.int32)


def train(x: np.ndarray, y: np.ndarray, out: Path) -> None:
    """Train FC -> SoftmaxWithLoss with momentum SGD on cpu, then export the inference net."""
    kaffa.set_random_seed(0)  # the weight fillers are seeded when their net is created
    model = ModelHelper("demo")
    logits = brew.fc(model, "x", "logits", dim_in=FEATURES, dim_out=CLASSES)
    _, loss = model.net.SoftmaxWithLoss([logits, "label"], ["softmax", "loss"])
    model.add_gradient_ops([loss])
    optimizer.build_sgd(model, base_learning_rate=0.1, momentum=0.9)

    ws = Workspace("train")
    ws.run_net_once(model.param_init_net)
    rng = np.random.default_rng(0)
    ws.feed_blob("x", x[:BATCH])
    ws.feed_blob("label", y[:BATCH])
    ws.create_net(model.net)
    for step in range(STEPS):
        batch = rng.choice(len(y), BATCH, replace=False)
        ws.feed_blob("x", x[batch])
        ws.feed_blob("label", y[batch])
        ws.run_net("demo")
        if step % 50 == 0 or step == STEPS - 1:
            print(f"step {step:3d}: loss {float(ws.fetch_blob('loss')):.4f}")

    # The predictor is FC -> Softmax: the loss (and its label input) is not part of it.
    infer = ModelHelper("demo", init_params=False)
    infer.net.Softmax(brew.fc(infer, "x", "logits", dim_in=FEATURES, dim_out=CLASSES), "prob")
    checkpoint.export_model(infer, ws, out, ["x"], ["prob"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for init_net.pb and predict_net.pb (default: a temp dir)")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="kaffa-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(7)
    x, y = make_data(rng)
    split = len(y) * 3 // 4
    train(x[:split], y[:split], out)
    print(f"kaffa {kaffa.__version__}: wrote {out / 'init_net.pb'} and {out / 'predict_net.pb'}")

    init_def = serialize.load_netdef(out / "init_net.pb")
    predict_def = serialize.load_netdef(out / "predict_net.pb")
    results = {}
    for name, backend in registry().backends.items():
        if backend.unavailable_reason() is not None:
            continue
        ws = Workspace(name)
        ws.run_net_once(init_def)
        ws.feed_blob("x", x[split:])
        net = Net(predict_def)
        net.run_all_on(name)  # ops this backend lacks run on cpu, with copies, and the report says so
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", kaffa.FallbackWarning)
            ws.create_net(net)
        ws.run_net(net.Proto().name)
        prob = np.asarray(ws.fetch_blob("prob"))
        results[name] = prob
        acc = float((prob.argmax(1) == y[split:]).mean())
        print(f"\n[{name}] held-out accuracy {acc:.1%} on {len(prob)} samples")
        print(ws.placement_report(net.Proto().name))

    ref = results["cpu"]
    for name, prob in results.items():
        if name != "cpu":
            print(f"{name} vs cpu: max |diff| {np.abs(prob - ref).max():.2e}")
    acc = float((ref.argmax(1) == y[split:]).mean())
    if acc < 0.9:
        print(f"demo: accuracy {acc:.1%} is below 90%: something is wrong")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

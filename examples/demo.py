"""A small fit-and-predict demo: a softmax classifier on three Gaussian clusters.

It shows the pieces a deployment uses: weights in an ``init_net.pb`` (GivenTensorFill ops), the
model in a ``predict_net.pb`` (FC -> Softmax), both real protobuf files written and read back,
then the same net run on every backend available here, with its placement report.

Until kaffa's optimizers land, the weights are fit in closed form (ridge regression on one-hot
targets, in numpy); the prediction itself is all kaffa.

    python examples/demo.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

import kaffa
from kaffa import Net, Workspace, serialize
from kaffa.plugins import registry

CLASSES, FEATURES, PER_CLASS = 3, 4, 200


def make_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(0, 4, (CLASSES, FEATURES))
    x = np.concatenate([rng.normal(c, 1.0, (PER_CLASS, FEATURES)) for c in centers])
    y = np.repeat(np.arange(CLASSES), PER_CLASS)
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def fit(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge regression onto one-hot targets: W [CLASSES, FEATURES], b [CLASSES]."""
    xb = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
    t = np.eye(CLASSES)[y] * 4.0 - 2.0  # scaled one-hot, so the softmax is confident
    wb = np.linalg.solve(xb.T @ xb + ridge * np.eye(xb.shape[1]), xb.T @ t)
    return wb[:-1].T.astype(np.float32), wb[-1].astype(np.float32)


def build(w: np.ndarray, b: np.ndarray) -> tuple[Net, Net]:
    init = Net("init")
    init.GivenTensorFill([], "w", shape=list(w.shape), values=w.ravel().tolist())
    init.GivenTensorFill([], "b", shape=list(b.shape), values=b.ravel().tolist())
    predict = Net("predict")
    predict.Softmax(predict.FC(["x", "w", "b"], "logits"), "prob")
    predict.Proto().external_input.extend(["x", "w", "b"])
    predict.Proto().external_output.append("prob")
    return init, predict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for init_net.pb and predict_net.pb (default: a temp dir)")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="kaffa-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(7)
    x, y = make_data(rng)
    split = len(y) * 3 // 4
    w, b = fit(x[:split], y[:split])
    init, predict = build(w, b)
    serialize.save(init.Proto(), out / "init_net.pb")
    serialize.save(predict.Proto(), out / "predict_net.pb")
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
        ws.run_net("predict")
        prob = np.asarray(ws.fetch_blob("prob"))
        results[name] = prob
        acc = float((prob.argmax(1) == y[split:]).mean())
        print(f"\n[{name}] held-out accuracy {acc:.1%} on {len(prob)} samples")
        print(ws.placement_report("predict"))

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

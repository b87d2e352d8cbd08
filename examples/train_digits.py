"""Train LeNet on scikit-learn's 8x8 digits (1797 images, bundled: no download), then checkpoint it.

An 80/20 split seeded by ``--seed``; the weights are seeded too, so a second run with the same
seed prints the same accuracy. Writes ``checkpoint.pb`` (parameters and optimizer state, see
kaffa.checkpoint) and the deployable ``init_net.pb`` + ``predict_net.pb`` to ``--out``.

    pip install scikit-learn tqdm      # or: pip install -e .[examples]
    python examples/train_digits.py --seed 0 [--epochs 12] [--backend cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

import kaffa
from kaffa import Workspace, checkpoint, models, optimizer
from kaffa.device import device_option
from kaffa.model_helper import ModelHelper
from kaffa.plugins import registry
from kaffa.scope import DeviceScope

# LeNet sized for 8x8 inputs: 3x3 convs with pad 1, so 8 -> pool 4 -> pool 2.
ARCH = {"image_size": 8, "kernel": 3, "pad": 1, "channels": (16, 32), "hidden": 64}


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_train = round(0.8 * len(y))
    train, test = order[:n_train], order[n_train:]
    return x[train], y[train], x[test], y[test]


def build(
    args: argparse.Namespace, steps_per_epoch: int
) -> tuple[ModelHelper, ModelHelper, optimizer.Optimizer]:
    """The training model (forward, backward, SGD), a test model sharing its parameters, and the
    optimizer (whose momenta and iteration counter a resumable checkpoint needs)."""
    train = ModelHelper("digits_train")
    _, loss = models.lenet(train, "data", 10, label="label", **ARCH)
    train.add_gradient_ops([loss])
    opt = optimizer.build_sgd(
        train,
        base_learning_rate=args.lr,
        policy="step",
        stepsize=steps_per_epoch * max(1, args.epochs // 2),
        gamma=0.1,
        momentum=0.9,
        weight_decay=1e-4,
    )
    test = ModelHelper("digits_test", init_params=False)
    models.lenet(test, "data", 10, is_test=True, **ARCH)
    return train, test, opt


def placement_summary(ws: Workspace, net: str) -> str:
    """One line per net: where its ops ran, and which op types fell back to cpu."""
    report = ws.placement_report(net)
    where = Counter(p.ran_on for p in report.placements)
    text = f"{net}: " + ", ".join(f"{n} op(s) on {dev}" for dev, n in sorted(where.items()))
    if report.fallbacks:
        types = Counter(p.op_type for p in report.fallbacks)
        requested = sorted({p.requested for p in report.fallbacks})
        text += f"; {len(report.fallbacks)} fell back from {'/'.join(requested)} to cpu: " + ", ".join(
            f"{t} x{n}" if n > 1 else t for t, n in sorted(types.items())
        )
    if report.copies:
        text += f"; {len(report.copies)} cross-device copies"
    return text


def predict(ws: Workspace, test: ModelHelper, x: np.ndarray) -> np.ndarray:
    ws.feed_blob("data", x)
    ws.run_net(test.net.Proto().name)
    return np.asarray(ws.fetch_blob("softmax"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="split and weight seed (default 0)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05, help="base learning rate (x0.1 halfway)")
    p.add_argument("--backend", default="cpu", help="cpu (default), opencl, cuda, metal")
    p.add_argument("--out", type=Path, help="folder for the checkpoint and the exported model")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = p.parse_args(argv)

    try:
        reason = registry().backend(args.backend).unavailable_reason()
    except kaffa.DeviceError as e:  # an unknown name: the message lists the loaded backends
        reason = str(e)
    if reason is not None:
        print(f"train_digits: backend {args.backend} is unavailable: {reason}", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="kaffa-digits-"))

    x_train, y_train, x_test, y_test = load_data(args.seed)
    kaffa.set_random_seed(args.seed)  # the weight fillers are seeded when their net is created
    with DeviceScope(device_option(args.backend)):
        train, test, opt = build(args, len(y_train) // args.batch_size)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kaffa.FallbackWarning)  # summarized instead, see below
        return run(args, out, train, test, opt, (x_train, y_train, x_test, y_test))


def run(
    args: argparse.Namespace,
    out: Path,
    train: ModelHelper,
    test: ModelHelper,
    opt: optimizer.Optimizer,
    data: tuple[np.ndarray, ...],
) -> int:
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = data
    steps = len(y_train) // args.batch_size
    ws = Workspace("digits")
    started = time.perf_counter()
    ws.run_net_once(train.param_init_net)
    ws.feed_blob("data", x_train[: args.batch_size])
    ws.feed_blob("label", y_train[: args.batch_size])
    ws.create_net(train.net)
    ws.feed_blob("data", x_test)
    ws.create_net(test.net)
    if args.backend != "cpu":
        for net in (train.net, test.net):
            print("placement " + placement_summary(ws, net.Proto().name))

    order_rng = np.random.default_rng(args.seed + 1)
    bar = tqdm(total=args.epochs * steps, unit="it", disable=args.no_progress, file=sys.stderr)
    train_name = train.net.Proto().name
    for epoch in range(1, args.epochs + 1):
        order = order_rng.permutation(len(y_train))
        losses = []
        for k in range(steps):
            batch = order[k * args.batch_size : (k + 1) * args.batch_size]
            ws.feed_blob("data", x_train[batch])
            ws.feed_blob("label", y_train[batch])
            ws.run_net(train_name)
            losses.append(float(ws.fetch_blob("loss")))
            bar.set_postfix(
                epoch=f"{epoch}/{args.epochs}", loss=f"{np.mean(losses[-20:]):.4f}", refresh=False
            )
            bar.update()
        bar.write(f"epoch {epoch}/{args.epochs}: mean loss {np.mean(losses):.4f}", file=sys.stdout)
    bar.close()
    elapsed = time.perf_counter() - started

    prob = predict(ws, test, x_test)
    correct = int((prob.argmax(1) == y_test).sum())
    print(f"trained {args.epochs} epochs ({args.epochs * steps} iterations) in {elapsed:.1f}s")
    print(f"test accuracy: {correct / len(y_test):.2%} ({correct}/{len(y_test)})")

    # Parameters (SpatialBN statistics included, if any), momenta and the iteration counter:
    # enough to resume training, or to predict with the test model.
    aux = opt.get_auxiliary_parameters()
    names = [str(b) for b in [*train.get_all_params(), *aux.local, *aux.shared]]
    ckpt = checkpoint.save(out / "checkpoint.pb", ws, names)
    init_path, predict_path = checkpoint.export_model(test, ws, out, ["data"], ["softmax"])
    print(f"saved {ckpt} ({len(names)} blobs), {init_path.name} and {predict_path.name}")

    # The files are the model: reload both in fresh workspaces and check they predict the same.
    ws2 = Workspace("reload")
    checkpoint.load_into(ws2, ckpt)
    ws2.create_net(test.net)
    same = np.array_equal(predict(ws2, test, x_test), prob)
    exported = np.array_equal(checkpoint.load_model(out, device=args.backend).run([x_test])[0], prob)
    print(f"reloaded checkpoint predicts identically: {same}; exported model: {exported}")
    return 0 if same and exported else 1


if __name__ == "__main__":
    raise SystemExit(main())

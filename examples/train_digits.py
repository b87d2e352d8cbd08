"""Train LeNet on scikit-learn's 8x8 digits (1797 images, bundled: no download), then checkpoint it.

An 80/20 split seeded by ``--seed``; the weights are seeded too, so a second run with the same
seed prints the same accuracy. Writes ``checkpoint.pb`` (parameters and optimizer state, see
kaffa.checkpoint) and the deployable ``init_net.pb`` + ``predict_net.pb`` to ``--out``.

    pip install scikit-learn tqdm      # or: pip install -e .[examples]
    python examples/train_digits.py --seed 0 [--epochs 12] [--backend cpu] [--out DIR]

Data-parallel over MPI ranks (see docs/distributed.md): each rank takes its share of every batch of
``--batch-size`` (the global batch), gradients are averaged, rank 0 prints and writes the files:

    mpiexec -n 2 python examples/train_digits.py --seed 0 --distributed    # or: kaffa launch -n 2 ...
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def forward(model: ModelHelper) -> Any:
    """LeNet with its loss; returns the loss blob."""
    _, loss = models.lenet(model, "data", 10, label="label", **ARCH)
    return loss


def sgd(args: argparse.Namespace, steps_per_epoch: int) -> Callable[[ModelHelper], optimizer.Optimizer]:
    """Momentum SGD with weight decay, the rate divided by 10 halfway."""

    def build_optimizer(model: ModelHelper) -> optimizer.Optimizer:
        return optimizer.build_sgd(
            model,
            base_learning_rate=args.lr,
            policy="step",
            stepsize=steps_per_epoch * max(1, args.epochs // 2),
            gamma=0.1,
            momentum=0.9,
            weight_decay=1e-4,
        )

    return build_optimizer


def build(
    args: argparse.Namespace, steps_per_epoch: int
) -> tuple[ModelHelper, ModelHelper, optimizer.Optimizer, Any]:
    """The training model (forward, backward, SGD), a test model sharing its parameters, the
    optimizer (whose momenta and iteration counter a resumable checkpoint needs) and, with
    --distributed, the kaffa.distributed.DataParallel replica that owns the training model."""
    dp = None
    if args.distributed:
        from kaffa.distributed import DataParallel

        dp = DataParallel(forward, sgd(args, steps_per_epoch), name="digits_train", device=args.backend)
        train, opt = dp.model, dp.optimizer
    else:
        train = ModelHelper("digits_train")
        train.add_gradient_ops([forward(train)])
        opt = sgd(args, steps_per_epoch)(train)
    test = ModelHelper("digits_test", init_params=False)
    models.lenet(test, "data", 10, is_test=True, **ARCH)
    return train, test, opt, dp


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
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the MPI ranks (run under mpiexec or kaffa launch); --batch-size is global",
    )
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
        train, test, opt, dp = build(args, len(y_train) // args.batch_size)
    if dp is not None and args.batch_size % dp.size:
        print(
            f"train_digits: --batch-size {args.batch_size} does not split over {dp.size} ranks",
            file=sys.stderr,
        )
        return 2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kaffa.FallbackWarning)  # summarized instead, see below
        return run(args, out, train, test, opt, (x_train, y_train, x_test, y_test), dp)


def run(
    args: argparse.Namespace,
    out: Path,
    train: ModelHelper,
    test: ModelHelper,
    opt: optimizer.Optimizer,
    data: tuple[np.ndarray, ...],
    dp: Any = None,
) -> int:
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = data
    steps = len(y_train) // args.batch_size
    # With --distributed every rank trains; rank 0 alone reports and writes files.
    lead = dp is None or dp.rank == 0
    say = print if lead else (lambda *a, **k: None)
    mine = slice(None) if dp is None else dp.shard(args.batch_size)  # this rank's part of a batch
    ws = Workspace("digits")
    started = time.perf_counter()
    first = {"data": x_train[: args.batch_size][mine], "label": y_train[: args.batch_size][mine]}
    if dp is None:
        ws.run_net_once(train.param_init_net)
        for name, value in first.items():
            ws.feed_blob(name, value)
        ws.create_net(train.net)
    else:
        dp.init(ws, first)  # rank 0's initial weights on every rank
        per_rank = args.batch_size // dp.size
        say(f"distributed: {dp.size} rank(s), global batch {args.batch_size} ({per_rank} per rank)")
    ws.feed_blob("data", x_test)
    ws.create_net(test.net)
    if args.backend != "cpu":
        for net in (train.net, test.net):
            say("placement " + placement_summary(ws, net.Proto().name))

    order_rng = np.random.default_rng(args.seed + 1)
    bar = tqdm(total=args.epochs * steps, unit="it", disable=args.no_progress or not lead, file=sys.stderr)
    train_name = train.net.Proto().name
    for epoch in range(1, args.epochs + 1):
        order = order_rng.permutation(len(y_train))
        losses = []
        for k in range(steps):
            batch = order[k * args.batch_size : (k + 1) * args.batch_size][mine]
            ws.feed_blob("data", x_train[batch])
            ws.feed_blob("label", y_train[batch])
            ws.run_net(train_name)
            losses.append(float(ws.fetch_blob("loss")))  # distributed: the mean over the ranks
            bar.set_postfix(
                epoch=f"{epoch}/{args.epochs}", loss=f"{np.mean(losses[-20:]):.4f}", refresh=False
            )
            bar.update()
        if lead:
            bar.write(f"epoch {epoch}/{args.epochs}: mean loss {np.mean(losses):.4f}", file=sys.stdout)
    bar.close()
    elapsed = time.perf_counter() - started

    prob = predict(ws, test, x_test)
    correct = int((prob.argmax(1) == y_test).sum())
    say(f"trained {args.epochs} epochs ({args.epochs * steps} iterations) in {elapsed:.1f}s")
    say(f"test accuracy: {correct / len(y_test):.2%} ({correct}/{len(y_test)})")

    # Parameters (SpatialBN statistics included, if any), momenta and the iteration counter:
    # enough to resume training, or to predict with the test model.
    aux = opt.get_auxiliary_parameters()
    names = [str(b) for b in [*train.get_all_params(), *aux.local, *aux.shared]]
    if dp is None:
        ckpt = checkpoint.save(out / "checkpoint.pb", ws, names)
    else:  # rank 0 writes (atomically); the others wait until the file is there, then are done
        ckpt = dp.save(out / "checkpoint.pb", ws, names)
        if not lead:
            return 0
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

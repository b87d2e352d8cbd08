"""Train an LSTM to predict the next value of noisy sine waves (kaffa.rnn on RecurrentNetwork).

Every sequence is ``a * sin(w * t + phi)`` plus Gaussian noise, with its own amplitude, frequency
and phase, so the model must infer them from what it has seen so far. The model is an LSTM over the
sequence (time-major ``[T, N, 1]``) and an FC read-out at every step (``FC`` with ``axis=2``); the
loss is the mean squared error of the prediction of ``x[t + 1]`` from ``x[0..t]``, trained with Adam
through RecurrentNetwork's gradient (a backward step net over time).

At the end it prints the test MSE next to the baseline of always predicting the mean of the
training targets, and says whether the model beat that baseline by at least 10x (the exit status
is 1 if not). Everything is seeded by ``--seed``.

    python examples/train_sequence.py --seed 0 [--steps 300] [--hidden 24] [--backend cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

import kaffa
from kaffa import ModelHelper, Workspace, optimizer, rnn
from kaffa.device import device_option
from kaffa.scope import DeviceScope

TARGET_RATIO = 10.0  # acceptance: test MSE at least this many times below the mean baseline


@dataclass
class Data:
    x_train: np.ndarray  # [T, N, 1] inputs
    y_train: np.ndarray  # [T, N, 1] next values
    x_test: np.ndarray
    y_test: np.ndarray


def make_waves(rng: np.random.Generator, n: int, length: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy sine waves of ``length + 1`` samples: inputs x[0..T-1], targets x[1..T]."""
    t = np.arange(length + 1)[:, None]
    amp = rng.uniform(0.5, 1.5, size=(1, n))
    freq = rng.uniform(0.15, 0.45, size=(1, n))
    phase = rng.uniform(0, 2 * np.pi, size=(1, n))
    waves = amp * np.sin(freq * t + phase) + rng.normal(0, noise, size=(length + 1, n))
    waves = waves.astype(np.float32)[..., None]  # [T + 1, n, 1]
    return waves[:-1], waves[1:]


def load_data(seed: int, length: int, n_train: int, n_test: int, noise: float) -> Data:
    rng = np.random.default_rng(seed)
    x_train, y_train = make_waves(rng, n_train, length, noise)
    x_test, y_test = make_waves(rng, n_test, length, noise)
    return Data(x_train, y_train, x_test, y_test)


def build(hidden: int) -> tuple[ModelHelper, str, str]:
    """The training model; returns (model, prediction blob, loss blob)."""
    model = ModelHelper("sequence")
    out = rnn.lstm(model, "x", dim_in=1, dim_out=hidden, scope="lstm", forget_bias=1.0)
    w = model.create_param("readout_w", [1, hidden], ("XavierFill", {}), "WEIGHT")
    b = model.create_param("readout_b", [1], ("ConstantFill", {}), "BIAS")
    pred = model.net.FC([out.output, w, b], "pred", axis=2)  # [T, N, 1]
    err = model.net.Sub([pred, "y"], "err")
    loss = model.net.AveragedLoss([model.net.Sqr([err], "sq_err")], "loss")  # mean squared error
    return model, str(pred), str(loss)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300, help="training iterations")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=24)
    ap.add_argument("--length", type=int, default=30, help="timesteps per sequence")
    ap.add_argument("--noise", type=float, default=0.05, help="std of the noise added to every sample")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args(argv)

    kaffa.set_random_seed(args.seed)
    data = load_data(args.seed, args.length, n_train=1024, n_test=256, noise=args.noise)
    with DeviceScope(device_option(args.backend)):
        model, pred, loss = build(args.hidden)
        model.add_gradient_ops([loss])
        optimizer.build_adam(
            model, base_learning_rate=args.lr, policy="step", stepsize=args.steps // 2, gamma=0.3
        )

    ws = Workspace()
    ws.run_net_once(model.param_init_net)
    rng = np.random.default_rng(args.seed + 1)
    n_train = data.x_train.shape[1]

    def feed(cols: np.ndarray | slice, x: np.ndarray, y: np.ndarray) -> None:
        ws.feed_blob("x", x[:, cols])
        ws.feed_blob("y", y[:, cols])

    feed(slice(0, args.batch_size), data.x_train, data.y_train)
    ws.create_net(model.net)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        feed(rng.choice(n_train, args.batch_size, replace=False), data.x_train, data.y_train)
        ws.run_net(model.net.name)
        if step % 50 == 0 or step == 1:
            print(f"step {step:4d}  train mse {float(ws.fetch_blob(loss)):.5f}", flush=True)
    elapsed = time.perf_counter() - start

    # Test: the forward part only (the training net would also take an optimizer step).
    test = model.net.clone("sequence_test")
    keep = [
        op
        for op in test.Proto().op
        if not op.is_gradient_op and op.type not in ("Adam", "LearningRate", "Iter")
    ]
    del test.Proto().op[:]
    test.Proto().op.extend(keep)
    feed(slice(None), data.x_test, data.y_test)
    ws.run_net_once(test.Proto())
    got = np.asarray(ws.fetch_blob(pred), np.float64)
    mse = float(np.mean((got - data.y_test) ** 2))
    baseline = float(np.mean((data.y_test - data.y_train.mean()) ** 2))
    ratio = baseline / mse
    print(f"trained {args.steps} steps in {elapsed:.1f} s")
    print(f"final test mse {mse:.5f}  baseline (predict the mean) {baseline:.5f}  ratio {ratio:.1f}x")
    ok = ratio >= TARGET_RATIO
    verdict = "reaches" if ok else "does NOT reach"
    print(f"{verdict} the target: at least {TARGET_RATIO:.0f}x below the baseline")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

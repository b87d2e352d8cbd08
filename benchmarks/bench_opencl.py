"""opencl backend vs numpy/cpu on this machine, in one run:

* GEMM GFLOP/s (float32, square 1024 and 2048): kaffa_opencl.kernels.blas.gemm vs numpy's matmul
  (its BLAS), with the ratio opencl / numpy.
* One LeNet training step (forward, backward, SGD; examples/train_digits.py's model) built once
  on cpu and once under DeviceScope(device_option("opencl")): ms per ws.run_net, and the ratio
  opencl / cpu. Ops the opencl backend lacks run on cpu (FallbackWarning); their count is printed.

    python benchmarks/bench_opencl.py [--sizes 1024 2048] [--steps 20] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter

import numpy as np


def _best(fn, reps: int) -> float:
    """Best wall time of ``reps`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_gemm(sizes: list[int]) -> list[tuple[int, float, float]]:
    from kaffa_opencl.device import BACKEND
    from kaffa_opencl.kernels.blas import gemm

    dev = BACKEND.device(0)
    alloc = dev.allocator
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        da, db = alloc.copyin(a), alloc.copyin(b)
        reps = 3 if n <= 1024 else 2

        def run_cl(da=da, db=db):
            gemm(dev, da, db)
            dev.synchronize()

        t_cl = _best(run_cl, reps)
        err = float(np.abs(gemm(dev, da, db).get() - a @ b).max())
        t_np = _best(lambda a=a, b=b: a @ b, reps)
        flops = 2.0 * n**3
        rows.append((n, flops / t_cl / 1e9, flops / t_np / 1e9))
        if err > 1e-2 * n:
            print(f"warning: opencl GEMM {n}: max abs error {err:.3g}", file=sys.stderr)
    return rows


def _lenet_step(backend: str, steps: int, batch: int) -> tuple[float, int, Counter]:
    """ms per training step on ``backend``, and the ops that fell back to cpu."""
    import kaffa
    from kaffa import Workspace, models, optimizer
    from kaffa.device import device_option
    from kaffa.model_helper import ModelHelper
    from kaffa.scope import DeviceScope

    kaffa.set_random_seed(0)
    with DeviceScope(device_option(backend)):
        train = ModelHelper(f"lenet_{backend}")
        _, loss = models.lenet(train, "data", 10, label="label")
        train.add_gradient_ops([loss])
        optimizer.build_sgd(train, base_learning_rate=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    ws = Workspace(f"bench_{backend}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kaffa.FallbackWarning)  # counted below instead
        ws.run_net_once(train.param_init_net)
        ws.feed_blob("data", x)
        ws.feed_blob("label", y)
        ws.create_net(train.net)
        name = train.net.Proto().name
        report = ws.placement_report(name)
        fallbacks = Counter(p.op_type for p in report.fallbacks)

        def step():
            ws.run_net(name)
            float(ws.fetch_blob("loss"))  # waits for the device

        t = _best(step, steps)
    return t * 1e3, len(report.fallbacks), fallbacks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--steps", type=int, default=10, help="timed LeNet steps (best of)")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)

    from kaffa.plugins import registry

    reason = registry().backend("opencl").unavailable_reason()
    if reason is not None:
        print(f"bench_opencl: opencl is unavailable: {reason}", file=sys.stderr)
        return 2

    print("GEMM float32 (square), GFLOP/s")
    print(f"{'n':>6} {'opencl':>9} {'numpy':>9} {'ratio':>7}")
    for n, g_cl, g_np in bench_gemm(args.sizes):
        print(f"{n:>6} {g_cl:>9.1f} {g_np:>9.1f} {g_cl / g_np:>7.1%}")

    print(f"\nLeNet training step (MNIST-sized, batch {args.batch}), ms per run_net (best of {args.steps})")
    t_cpu, _, _ = _lenet_step("cpu", args.steps, args.batch)
    t_cl, n_fb, fb = _lenet_step("opencl", args.steps, args.batch)
    print(f"{'cpu':>8} {t_cpu:>9.2f}")
    print(f"{'opencl':>8} {t_cl:>9.2f}   ratio opencl/cpu time {t_cl / t_cpu:.2f}x")
    if n_fb:
        print(f"  {n_fb} op(s) fell back to cpu: " + ", ".join(f"{k} x{v}" for k, v in sorted(fb.items())))
    else:
        print("  no op fell back to cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())

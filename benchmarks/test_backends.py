"""Device backends beside numpy / cpu on this machine, in one pytest-benchmark run:

* GEMM (float32, square n x n): numpy's matmul (its BLAS) vs the opencl and metal GEMM kernels.
* One LeNet training step (forward, backward, momentum SGD; MNIST-sized, batch 64): cpu vs opencl
  vs metal, built with DeviceScope(device_option(backend)).

The summary at the end prints GFLOP/s and each backend's ratio to numpy (GEMM) or to cpu (LeNet
step time). Backends unavailable here are skipped with the reason.

    pytest benchmarks/test_backends.py --benchmark-only [-k gemm] [--benchmark-min-rounds 3]

Sizes: KAFFA_BENCH_SIZES (default "1024 2048"); metal's GEMM on lavapipe (a CPU Vulkan driver)
runs at about 1 GFLOP/s, so it takes 1024 only unless KAFFA_BENCH_METAL_ALL=1.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from kaffa.plugins import registry

SIZES = [int(s) for s in os.environ.get("KAFFA_BENCH_SIZES", "1024 2048").split()]
RESULTS: dict[tuple[str, str], float] = {}  # (what, backend) -> best seconds


def _available(backend: str) -> None:
    if backend == "numpy":
        return
    reason = registry().backend(backend).unavailable_reason()
    if reason is not None:
        pytest.skip(f"{backend} is unavailable here: {reason}")


def _gemm_fn(backend: str, a: np.ndarray, b: np.ndarray):
    if backend == "numpy":
        return lambda: a @ b
    dev = registry().backend(backend).device(0)
    da, db = dev.allocator.copyin(a), dev.allocator.copyin(b)
    if backend == "opencl":
        from kaffa_opencl.kernels.blas import gemm

        def run():
            gemm(dev, da, db)
            dev.synchronize()

        check = gemm(dev, da, db).get()
    else:
        from kaffa_metal.kernels.blas import gemm

        n = a.shape[0]

        def run():
            gemm(dev, da, db, n, n, n)
            dev.synchronize()

        check = dev.allocator.copyout(gemm(dev, da, db, n, n, n))
    np.testing.assert_allclose(check, a @ b, rtol=1e-3, atol=1e-2 * a.shape[0] ** 0.5)
    return run


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", ["numpy", "opencl", "metal"])
def test_gemm(benchmark, backend, n):
    _available(backend)
    if backend == "metal" and n > 1024 and not os.environ.get("KAFFA_BENCH_METAL_ALL"):
        pytest.skip("metal GEMM on lavapipe above 1024 takes minutes (KAFFA_BENCH_METAL_ALL=1 runs it)")
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    fn = _gemm_fn(backend, a, b)
    benchmark.pedantic(fn, rounds=3 if n <= 1024 else 2, warmup_rounds=1)
    RESULTS[(f"gemm{n}", backend)] = benchmark.stats.stats.min
    benchmark.extra_info["gflops"] = 2.0 * n**3 / benchmark.stats.stats.min / 1e9


@pytest.mark.parametrize("backend", ["cpu", "opencl", "metal"])
def test_lenet_training_step(benchmark, backend):
    _available(backend)
    import kaffa
    from kaffa import ModelHelper, Workspace, models, optimizer
    from kaffa.device import device_option
    from kaffa.scope import DeviceScope

    kaffa.set_random_seed(0)
    with DeviceScope(device_option(backend)):
        train = ModelHelper(f"lenet_{backend}")
        _, loss = models.lenet(train, "data", 10, label="label")
        train.add_gradient_ops([loss])
        optimizer.build_sgd(train, base_learning_rate=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    ws = Workspace(f"bench_{backend}")
    ws.run_net_once(train.param_init_net)
    ws.feed_blob("data", rng.random((64, 1, 28, 28), dtype=np.float32))
    ws.feed_blob("label", rng.integers(0, 10, 64).astype(np.int32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kaffa.FallbackWarning)
        ws.create_net(train.net)
    name = train.net.Proto().name
    fallbacks = ws.placement_report(name).fallbacks
    benchmark.extra_info["fallbacks"] = len(fallbacks)

    def step():
        ws.run_net(name)
        float(ws.fetch_blob("loss"))  # waits for the device

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    RESULTS[("lenet_step", backend)] = benchmark.stats.stats.min

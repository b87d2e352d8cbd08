"""metal backend vs numpy on this machine, in one run:

GEMM GFLOP/s (float32, square): kaffa_metal.kernels.blas.gemm (the tiled WGSL kernel) vs numpy's
matmul (its BLAS), with the ratio metal / numpy. On lavapipe (Mesa's CPU Vulkan driver) the metal
GEMM runs on the same cores as numpy; 2048 takes about half a minute there, so it is opt-in.

    python benchmarks/bench_metal.py [--sizes 1024 [2048]] [--reps 3]
"""

from __future__ import annotations

import argparse
import sys
import time

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


def bench_gemm(sizes: list[int], reps: int) -> list[tuple[int, float, float]]:
    from kaffa_metal.device import BACKEND
    from kaffa_metal.kernels.blas import gemm

    dev = BACKEND.device(0)
    alloc = dev.allocator
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        da, db = alloc.copyin(a), alloc.copyin(b)
        dc = gemm(dev, da, db, n, n, n)

        def run_metal(da=da, db=db, dc=dc, n=n):
            gemm(dev, da, db, n, n, n, out=dc)
            dev.synchronize()

        t_metal = _best(run_metal, reps)
        err = float(np.abs(alloc.copyout(dc) - a @ b).max())
        t_np = _best(lambda a=a, b=b: a @ b, reps)
        flops = 2.0 * n**3
        rows.append((n, flops / t_metal / 1e9, flops / t_np / 1e9))
        if err > 1e-2 * n:
            print(f"warning: metal GEMM {n}: max abs error {err:.3g}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024])
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per size (best of)")
    args = p.parse_args(argv)

    from kaffa.plugins import registry

    backend = registry().backend("metal")
    reason = backend.unavailable_reason()
    if reason is not None:
        print(f"bench_metal: metal is unavailable: {reason}", file=sys.stderr)
        return 2

    from kaffa_metal.device import BACKEND

    info = BACKEND.device(0).info
    print(f"metal:0 = {info.name} ({info.api})")
    print("GEMM float32 (square), GFLOP/s")
    print(f"{'n':>6} {'metal':>9} {'numpy':>9} {'ratio':>7}")
    for n, g_metal, g_np in bench_gemm(args.sizes, args.reps):
        print(f"{n:>6} {g_metal:>9.2f} {g_np:>9.1f} {g_metal / g_np:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

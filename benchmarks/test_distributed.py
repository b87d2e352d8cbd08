"""Distributed data-parallel on this machine: allreduce latency and bandwidth by message size, and
the training-step scaling from 1 to 2 ranks.

MPI needs its processes started by mpiexec, so each measurement is this file run as a script
under ``mpiexec -n N`` (``python benchmarks/test_distributed.py allreduce OUT.json`` etc.); the
pytest wrappers start those runs, print a table, and put the figures in pytest-benchmark's
``extra_info``. The ``benchmark`` fixture itself times the one-process path (an Allreduce op at
world size 1, an identity) so ``--benchmark-only`` keeps these tests.

    pytest benchmarks/test_distributed.py --benchmark-only -s

Figures on a 2-core machine are what they are: two ranks share the two cores with everything
else, so the scaling numbers say little about a real cluster (see docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
SIZES = [4, 64, 1024, 16 << 10, 256 << 10, 4 << 20, 32 << 20]  # bytes per rank
GLOBAL_BATCH, STEPS = 64, 40


def _mpiexec() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    from kaffa.distributed.launcher import find_mpiexec

    return find_mpiexec()


def _launch(n: int, *args: str, timeout: float = 300) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "KAFFA_COLLECTIVE"))}
    proc = subprocess.run(
        [str(_mpiexec()), "-n", str(n), sys.executable, str(HERE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


needs_mpi = pytest.mark.skipif(
    _mpiexec() is None, reason="mpi4py / mpiexec missing (pip install -e .[distributed])"
)


@needs_mpi
def test_allreduce_latency_and_bandwidth(benchmark, capsys):
    from kaffa.distributed import comm

    x = [np.ones(1024, np.float32)]
    benchmark(comm.Communicator().allreduce, x, "mean")  # the single-process path: an identity
    res = _launch(2, "allreduce")
    benchmark.extra_info["allreduce_2_ranks"] = res
    with _terminal(capsys) as say:
        say("\nallreduce, float32 sum over 2 ranks (kaffa = non-blocking + deadline; raw = mpi4py Allreduce)")
        say(f"{'bytes':>10} {'kaffa us':>10} {'raw us':>10} {'kaffa MB/s':>11} {'busbw MB/s':>11}")
        for row in res["rows"]:
            say(
                f"{row['bytes']:>10} {row['kaffa_s'] * 1e6:>10.1f} {row['raw_s'] * 1e6:>10.1f} "
                f"{row['algbw'] / 1e6:>11.1f} {row['busbw'] / 1e6:>11.1f}"
            )
    assert all(r["kaffa_s"] > 0 for r in res["rows"])


@needs_mpi
def test_training_step_scaling(benchmark, capsys):
    from kaffa.distributed import comm

    benchmark(comm.Communicator().barrier)
    one = _launch(1, "train", str(GLOBAL_BATCH), str(STEPS))
    strong = _launch(2, "train", str(GLOBAL_BATCH), str(STEPS))
    weak = _launch(2, "train", str(2 * GLOBAL_BATCH), str(STEPS))
    benchmark.extra_info.update({"1_rank": one, "2_ranks_same_global_batch": strong, "2_ranks_double": weak})
    with _terminal(capsys) as say:
        say(f"\nLeNet (digits-sized, 8x8) training step on cpu, {STEPS} steps, median step time")
        for label, r in (("1 rank", one), ("2 ranks (strong)", strong), ("2 ranks (weak)", weak)):
            say(
                f"{label:>17}: global batch {r['global_batch']:>4}, {r['step_s'] * 1e3:7.2f} ms/step, "
                f"{r['samples_per_s']:8.0f} samples/s, allreduce {r['allreduce_s'] * 1e3:.2f} ms/step"
            )
        say(f"strong-scaling speedup {one['step_s'] / strong['step_s']:.2f}x (ideal 2x)")
        say(f"weak-scaling throughput {weak['samples_per_s'] / one['samples_per_s']:.2f}x (ideal 2x)")


class _terminal:
    """Prints past pytest's capture (the figures are the point of the run)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __enter__(self):
        self.lines: list[str] = []
        return self.lines.append

    def __exit__(self, *exc):
        with self.capsys.disabled():
            print("\n".join(self.lines), flush=True)


# -- under mpiexec ------------------------------------------------------------------------------


def _time(fn, repeat: int) -> float:
    """Median seconds per call, every rank starting each call together."""
    from kaffa.distributed import comm

    c = comm.world()
    times = []
    for _ in range(repeat):
        c.barrier()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_allreduce() -> dict:
    from kaffa.distributed import comm

    c = comm.world()
    MPI = comm.import_mpi("the benchmark")
    rows = []
    for nbytes in SIZES:
        x = np.ones(nbytes // 4, np.float32)
        out = np.empty_like(x)
        repeat = 200 if nbytes < (1 << 20) else 20
        for _ in range(3):  # warm up (connections, buffers)
            c.allreduce([x])
        kaffa_s = _time(lambda x=x: c.allreduce([x]), repeat)
        raw_s = _time(lambda x=x, out=out: c.mpi.Allreduce(x, out, op=MPI.SUM), repeat)
        algbw = nbytes / kaffa_s
        rows.append(
            {
                "bytes": nbytes,
                "kaffa_s": kaffa_s,
                "raw_s": raw_s,
                "algbw": algbw,
                "busbw": algbw * 2 * (c.size - 1) / c.size,
            }
        )
    return {"ranks": c.size, "rows": rows}


def bench_train(global_batch: int, steps: int) -> dict:
    import warnings

    import kaffa
    from kaffa import Workspace, models, optimizer
    from kaffa.distributed import DataParallel

    warnings.simplefilter("ignore")
    kaffa.set_random_seed(0)

    def forward(model):
        return models.lenet(
            model, "data", 10, label="label", image_size=8, kernel=3, pad=1, channels=(16, 32), hidden=64
        )[1]

    dp = DataParallel(forward, lambda m: optimizer.build_sgd(m, base_learning_rate=0.05, momentum=0.9))
    rng = np.random.default_rng(0)
    per = global_batch // dp.size
    x = rng.random((per, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, per).astype(np.int32)
    ws = Workspace()
    dp.init(ws, {"data": x, "label": y})
    for _ in range(5):
        dp.step(ws)
    step_s = _time(lambda: dp.step(ws), steps)
    grads = [np.asarray(ws.fetch_blob(g)) for g in dp.grads]
    allreduce_s = _time(lambda: dp.comm.allreduce(grads, "mean"), steps)
    return {
        "ranks": dp.size,
        "global_batch": global_batch,
        "step_s": step_s,
        "samples_per_s": global_batch / step_s,
        "allreduce_s": allreduce_s,
        "gradient_bytes": int(sum(g.nbytes for g in grads)),
    }


if __name__ == "__main__":
    mode = sys.argv[1]
    result = bench_allreduce() if mode == "allreduce" else bench_train(int(sys.argv[2]), int(sys.argv[3]))
    from kaffa.distributed import comm

    if comm.world().rank == 0:
        print(json.dumps(result))

"""kaffa.distributed and the collective ops: in one process, and with real MPI processes on this
machine (mpiexec from the mpich wheel, the `distributed` extra).

The multi-process tests run this file as the worker: ``mpiexec -n 2 python tests/test_distributed.py
train OUT B STEPS`` (see ``worker`` at the bottom). Every subprocess has a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
B, STEPS = 6, 12  # per-rank batch, training steps


def _mpiexec() -> str | None:
    from kaffa.distributed.launcher import find_mpiexec

    return find_mpiexec()


def _have_mpi() -> str | None:
    """Why the multi-process tests cannot run here, or None."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e .[distributed])"
    if _mpiexec() is None:
        return "no mpiexec found (the mpich wheel of the distributed extra provides one)"
    return None


needs_mpi = pytest.mark.skipif(_have_mpi() is not None, reason=str(_have_mpi()))


def _env(**extra: str) -> dict[str, str]:
    # A clean environment: no launcher variables from an outer job, no collective timeout override.
    drop = ("PMI_", "OMPI_", "MPI_LOCALRANKID", "KAFFA_WORLD_SIZE", "KAFFA_COLLECTIVE_TIMEOUT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _mpi_run(
    n: int, *args: str, timeout: float = 60, **env: str
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(_mpiexec()), "-n", str(n), sys.executable, str(HERE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
    )
    return proc, time.monotonic() - start


# -- one process: schemas, kernels, communicators ------------------------------------------------


def _run_op(op_type: str, inputs: dict[str, np.ndarray], outputs: list[str], **args):
    from kaffa import Workspace
    from kaffa.core import create_operator
    from kaffa.proto import NetDef

    ws = Workspace(f"t-{op_type}")
    for k, v in inputs.items():
        ws.feed_blob(k, v)
    net = NetDef(name=f"t-{op_type}")
    net.op.append(create_operator(op_type, list(inputs), outputs, **args))
    ws.create_net(net).run()
    return [ws.fetch_blob(o) for o in outputs]


def test_single_process_collectives_are_identities():
    from kaffa.distributed import comm

    assert comm.world().size == 1 and comm.world().rank == 0
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    i = np.arange(4, dtype=np.int64)
    y, j = _run_op("Allreduce", {"x": x, "i": i}, ["y", "j"])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(j, i)
    (m,) = _run_op("Allreduce", {"x": x}, ["x"], reduction="mean")
    np.testing.assert_array_equal(m, x)
    (g,) = _run_op("Allgather", {"x": x}, ["g"])
    assert g.shape == (2, 3)
    (b,) = _run_op("Broadcast", {"x": x}, ["b"], root=0)
    np.testing.assert_array_equal(b, x)
    assert _run_op("Barrier", {"x": x}, ["x"])[0].shape == (2, 3)


def test_collective_errors_are_typed_and_name_the_op():
    from kaffa.distributed import DistributedError
    from kaffa.errors import ArgumentError, ExecutionError, SchemaError, ShapeError

    x = np.ones(3, np.float32)
    with pytest.raises(ShapeError, match="reduction 'mean' needs float inputs, got int32"):
        _run_op("Allreduce", {"i": np.ones(3, np.int32)}, ["o"], reduction="mean")
    with pytest.raises(ArgumentError, match="reduction must be one of sum, mean, got 'max'"):
        _run_op("Allreduce", {"x": x}, ["o"], reduction="max")
    with pytest.raises(SchemaError, match="Allreduce takes one output per input, got 1 inputs and 2 outputs"):
        _run_op("Allreduce", {"x": x}, ["o", "p"])
    with pytest.raises(ShapeError, match="Allgather: X must have at least one dim"):
        _run_op("Allgather", {"s": np.float32(1)}, ["o"])
    with pytest.raises(ExecutionError, match="no communicator named 'nosuch'") as e:
        _run_op("Allreduce", {"x": x}, ["o"], comm="nosuch")
    assert isinstance(e.value.__cause__, DistributedError) and "op #0 Allreduce" in str(e.value)
    with pytest.raises(ExecutionError, match="Broadcast: root 1 is not a rank of communicator 'world'"):
        _run_op("Broadcast", {"x": x}, ["o"], root=1)


def test_named_and_default_communicators():
    from kaffa.distributed import comm

    class Doubling(comm.Communicator):  # a fake 2-rank group: the ops must use the one named
        def allreduce(self, arrays, reduction="sum", timeout=None):
            return [a * (1 if reduction == "mean" else 2) for a in arrays]

    try:
        comm.register("pair", Doubling("pair", 0, 2))
        x = np.ones(3, np.float32)
        assert _run_op("Allreduce", {"x": x}, ["o"], comm="pair")[0].tolist() == [2, 2, 2]
        assert _run_op("Allreduce", {"x": x}, ["o"])[0].tolist() == [1, 1, 1]  # default: world
        comm.set_default("pair")
        assert _run_op("Allreduce", {"x": x}, ["o"])[0].tolist() == [2, 2, 2]
        (g,) = _run_op("Allgather", {"x": np.ones((2, 1), np.float32)}, ["g"], comm="self")
        assert g.shape == (2, 1)
        with pytest.raises(comm.DistributedError, match="reserved"):
            comm.register("world", Doubling())
    finally:
        comm.reset()
    assert comm.get().name == "world"


def test_mpi_engine_is_selectable_and_declined_without_mpi4py():
    from kaffa.plugins import registry

    engines = registry().kernels.engines("cpu", "Allreduce")
    assert set(engines) == {"", "MPI"}
    assert "NCCL" in registry().kernels.engines("cuda", "Allreduce")  # registered; untested without a GPU
    reason = engines["MPI"].supports(None)  # type: ignore[misc]
    if _have_mpi() is None:
        assert reason is None
    else:
        assert "mpi4py is not installed" in reason


def test_shard_splits_a_global_batch_evenly():
    from kaffa.distributed import shard

    assert [shard(12, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    with pytest.raises(ValueError, match="does not split evenly over 5 ranks"):
        shard(12, 0, 5)


def test_device_replica_stages_collectives_through_host():
    """opencl has no collective kernels: DataParallel puts them on cpu (copies, no fallback) and the
    parameters stay on the device."""
    import warnings

    import kaffa
    from kaffa import Workspace, brew, optimizer
    from kaffa.distributed import DataParallel
    from kaffa.plugins import registry

    reason = registry().backend("opencl").unavailable_reason()
    if reason is not None:
        pytest.skip(f"opencl is unavailable here: {reason}")

    def build(model):
        pred = brew.fc(model, "data", "pred", 8, 3)
        return model.net.SoftmaxWithLoss([pred, "label"], ["softmax", "loss"])[1]

    dp = DataParallel(build, lambda m: optimizer.build_sgd(m, base_learning_rate=0.1), device="opencl")
    rng = np.random.default_rng(0)
    feeds = {"data": rng.normal(size=(4, 8)).astype(np.float32), "label": np.array([0, 1, 2, 0], np.int32)}
    ws = Workspace("dp-opencl")
    with warnings.catch_warnings():
        warnings.simplefilter("error", kaffa.FallbackWarning)
        dp.init(ws, feeds)
        dp.step(ws, feeds)
    ran = {p.op_type: p.ran_on for p in ws.placement_report(dp.net_name).placements}
    assert ran["Allreduce"] == "cpu" and ran["FC"].startswith("opencl")
    assert str(ws.blob_device("pred_w")).startswith("opencl")
    assert dp.divergence(ws) == 0.0


def test_nccl_engine_plumbing_with_a_fake_cupy(monkeypatch):
    """No GPU here: the NCCL engine's own logic (fusion per dtype, splits, aligned broadcast views,
    gather layout) runs against a stand-in for CuPy and NCCL that moves host memory. It says
    nothing about real NCCL; it catches mistakes in the code around the calls."""
    import contextlib
    import ctypes
    import types

    class Arr(np.ndarray):
        @property
        def data(self):
            return types.SimpleNamespace(ptr=self.ctypes.data)

    def arr(x):
        return np.asarray(x).view(Arr)

    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    cuda = types.SimpleNamespace(Device=lambda i: contextlib.nullcontext(), get_current_stream=lambda: stream)
    cp = types.SimpleNamespace(
        concatenate=lambda xs: arr(np.concatenate([np.asarray(x) for x in xs])),
        ascontiguousarray=lambda x: arr(np.ascontiguousarray(x)),
        zeros=lambda n, dt: arr(np.zeros(n, dt)),
        empty=lambda s, dt: arr(np.empty(s, dt)),
        float32=np.float32,
        uint8=np.uint8,
        cuda=cuda,
    )
    calls = []

    class FakeNccl:
        def __init__(self, n, uid, rank):
            assert (n, uid, rank) == (1, b"uid", 0)

        def allReduce(self, send, recv, count, dtype, op, stream):
            calls.append(("allReduce", count, dtype))

        def bcast(self, buf, count, dtype, root, stream):
            calls.append(("bcast", count, dtype))

        def allGather(self, send, recv, count, dtype, stream):
            ctypes.memmove(recv, send, count)  # one rank: its own block

    names = ["INT8", "UINT8", "INT32", "UINT32", "INT64", "UINT64", "FLOAT16", "FLOAT32", "FLOAT64"]
    lib = types.SimpleNamespace(
        available=True, NCCL_SUM=0, get_unique_id=lambda: b"uid", NcclCommunicator=FakeNccl
    )
    for i, n in enumerate(names):
        setattr(lib, f"NCCL_{n}", i)
    cuda.nccl = lib
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", lib)
    from kaffa.distributed import comm
    from kaffa_cuda import nccl as engine

    monkeypatch.setattr(engine, "_comms", {})
    c = engine.communicator(comm.world(), 0)
    assert engine._unavailable(None) is None
    xs = (
        arr(np.arange(6, dtype=np.float32).reshape(2, 3)),
        arr(np.arange(3, dtype=np.int64)),
        arr(np.ones(5, np.float32)),
    )
    out = c.allreduce(xs, "sum")
    assert [(o.shape, o.dtype) for o in out] == [(x.shape, x.dtype) for x in xs]
    assert all(np.array_equal(o, x) for o, x in zip(out, xs))
    assert sorted(calls) == [("allReduce", 3, lib.NCCL_INT64), ("allReduce", 11, lib.NCCL_FLOAT32)]  # fused
    with pytest.raises(comm.DistributedError, match="a mean needs float arrays"):
        c.allreduce(xs, "mean")
    ys = (arr(np.arange(3, dtype=np.float64)), arr(np.array([True, False])), arr(np.float32(2.5).reshape(())))
    assert all(np.array_equal(o, y) for o, y in zip(c.broadcast(ys, 0), ys))
    c.rank = 1  # a receiving rank reads typed views out of the aligned byte buffer
    got = c.broadcast(ys, 0)
    assert [(o.shape, o.dtype) for o in got] == [(y.shape, y.dtype) for y in ys]
    c.rank = 0
    g = c.allgather(arr(np.arange(6, dtype=np.float16).reshape(3, 2)))
    assert g.shape == (3, 2) and np.array_equal(g, np.arange(6).reshape(3, 2))
    c.barrier()


def test_launch_builds_an_mpiexec_command(tmp_path):
    from kaffa.cli import main

    if _mpiexec() is None:
        assert main(["launch", "-n", "2", "x.py"]) == 2
        return
    out = subprocess.run(
        [sys.executable, "-m", "kaffa", "launch", "-n", "3", "--print-command", "train.py", "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [_mpiexec(), "-n", "3", sys.executable, "train.py", "--epochs", "2"]


# -- real processes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """One 2-rank run (batch B per rank) and one 1-process run (batch 2B) of the worker."""
    out2, out1 = tmp_path_factory.mktemp("ranks2"), tmp_path_factory.mktemp("ranks1")
    proc, elapsed = _mpi_run(2, "train", str(out2), str(B), str(STEPS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    single = subprocess.run(
        [sys.executable, str(HERE), "train", str(out1), str(2 * B), str(STEPS)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert single.returncode == 0, single.stdout + single.stderr
    return {"out2": out2, "out1": out1, "elapsed": elapsed}


@needs_mpi
def test_collective_ops_over_two_ranks(two_ranks):
    for r in range(2):
        got = json.loads((two_ranks["out2"] / f"ops{r}.json").read_text())
        assert got["size"] == 2 and got["rank"] == r
        assert got["sum"] == [[3.0, 3.0], [3.0, 3.0]]  # (rank + 1) summed: 1 + 2
        assert got["mean"] == [1.5, 1.5, 1.5]
        assert got["int_sum"] == [0, 3, 6]
        assert got["half_mean"] == [1.5, 1.5]
        assert got["bcast_root1"] == [1.0, 1.0, 1.0]
        assert got["bcast_bool"] == [False, True]
        assert got["gather"] == [[0.0, 0.0], [1.0, 1.0]]
        assert got["mpi_engine_sum"] == [3.0, 3.0]
        assert got["inferred_gather_shape"] == [2, 2]


@needs_mpi
def test_parameters_identical_on_both_ranks_after_every_step(two_ranks):
    for r in range(2):
        got = json.loads((two_ranks["out2"] / f"train{r}.json").read_text())
        assert got["initial_divergence"] == 0.0  # ranks seeded differently: the broadcast aligned them
        assert len(got["divergence"]) == STEPS and max(got["divergence"]) == 0.0
        assert got["seeded_differently"] is True


@needs_mpi
def test_two_ranks_match_one_process_with_the_double_batch(two_ranks):
    from kaffa import checkpoint

    two = checkpoint.load(two_ranks["out2"] / "ckpt.pb")
    one = checkpoint.load(two_ranks["out1"] / "ckpt.pb")
    assert sorted(two) == sorted(one) and "fc1_w" in two and "fc1_w_momentum" in two
    assert int(two["optimizer_iteration"][0]) == STEPS
    moved = max(
        float(np.max(np.abs(two[k] - np.load(two_ranks["out2"] / "init.npz")[k]))) for k in ("fc1_w",)
    )
    assert moved > 1e-3  # training changed the weights, so agreeing is not trivial
    for k in two:
        np.testing.assert_allclose(two[k], one[k], atol=1e-5, rtol=0, err_msg=k)
    losses2 = json.loads((two_ranks["out2"] / "train0.json").read_text())["losses"]
    losses1 = json.loads((two_ranks["out1"] / "train0.json").read_text())["losses"]
    np.testing.assert_allclose(losses2, losses1, atol=1e-5)  # the averaged loss is the 2B batch's


@needs_mpi
@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        ("raise", "uncaught RuntimeError; aborting all ranks"),  # excepthook -> MPI_Abort
        ("exit", "did not complete within 2s"),  # a rank leaves quietly: the other times out
        ("kill", "BAD TERMINATION"),  # SIGKILL: mpiexec tears the job down
    ],
)
def test_a_dying_rank_ends_the_job_with_a_clear_error(mode, expect, tmp_path):
    proc, elapsed = _mpi_run(2, "die", mode, timeout=45, KAFFA_COLLECTIVE_TIMEOUT="2")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "rank 1 dies" in text and expect in text, text
    assert "finished" not in text
    assert elapsed < 20, (elapsed, text)


@needs_mpi
def test_kaffa_launch_runs_the_job_and_reports_failure(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kaffa", "launch", "-n", "2", "--timeout", "2", str(HERE), "die", "raise"],
        capture_output=True,
        text=True,
        timeout=45,
        env=_env(),
    )
    assert proc.returncode != 0
    assert "uncaught RuntimeError; aborting all ranks" in proc.stderr
    assert "kaffa launch: the job of 2 rank(s) failed" in proc.stderr


@needs_mpi
def test_train_digits_distributed_reports_once_and_writes_one_checkpoint(tmp_path):
    pytest.importorskip("sklearn", reason="the example needs scikit-learn")
    pytest.importorskip("tqdm")
    script = ROOT / "examples" / "train_digits.py"
    args = ["--distributed", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    proc = subprocess.run(
        [str(_mpiexec()), "-n", "2", sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("distributed: 2 rank(s), global batch 32 (16 per rank)") == 1, out
    assert out.count("test accuracy:") == 1 and out.count("epoch 1/1: mean loss") == 1, out
    acc = float(out.split("test accuracy: ")[1].split("%")[0]) / 100
    assert acc > 0.5, out  # one epoch: far above chance (10%)
    assert "reloaded checkpoint predicts identically: True; exported model: True" in out
    from kaffa import checkpoint

    blobs = checkpoint.load(tmp_path / "checkpoint.pb")
    assert int(blobs["optimizer_iteration"][0]) == 1438 // 32  # steps counted once per global batch
    assert not list(tmp_path.glob("*.tmp*"))


# -- the worker (run under mpiexec, or alone as one rank) ----------------------------------------


def _ops_check(out: Path) -> None:
    """The collective ops with rank-dependent values, results to ops<rank>.json."""
    import kaffa.distributed as dist
    from kaffa import Net, Workspace

    r = dist.rank()
    ws = Workspace("ops")
    ws.feed_blob("a", np.full((2, 2), r + 1, np.float32))
    ws.feed_blob("m", np.full(3, r + 1, np.float64))
    ws.feed_blob("i", np.arange(3, dtype=np.int64) * (r + 1))
    ws.feed_blob("h", np.full(2, r + 1, np.float16))
    ws.feed_blob("b", np.full(3, r, np.float32))
    ws.feed_blob("f", np.array([r == 0, True]))
    ws.feed_blob("g", np.full((1, 2), r, np.float32))
    ws.feed_blob("e", np.full(2, r + 1, np.float32))
    net = Net("ops")
    net.Allreduce(["a", "i"], ["sum", "int_sum"])
    net.Allreduce(["m", "h"], ["mean", "half_mean"], reduction="mean")
    net.Broadcast(["b", "f"], ["bcast_root1", "bcast_bool"], root=1)
    gathered = net.Allgather(["g"], ["gather"])
    net.Barrier([gathered], [gathered])
    net.Allreduce(["e"], ["mpi_engine_sum"], engine="MPI")
    created = ws.create_net(net)
    created.run()
    got = {k: ws.fetch_blob(k).tolist() for k in ("sum", "int_sum", "mean", "half_mean", "gather")}
    got |= {k: ws.fetch_blob(k).tolist() for k in ("bcast_root1", "bcast_bool", "mpi_engine_sum")}
    engines = [p.engine for p in created.placement_report.placements if p.op_type == "Allreduce"]
    assert engines == ["", "", "MPI"], engines
    from kaffa.schema import SCHEMAS, TensorInfo

    allgather = SCHEMAS.get("Allgather")
    info = allgather.infer_outputs(allgather.parse_args([]), [TensorInfo((1, 2), np.dtype(np.float32))], 1)
    got |= {"inferred_gather_shape": list(info[0].shape), "rank": r, "size": dist.size()}
    (out / f"ops{r}.json").write_text(json.dumps(got))


def _train(out: Path, batch: int, steps: int) -> None:
    """A small MLP trained with DataParallel on a fixed data stream: the global batch of each step
    is split over the ranks. Divergence after every step and the losses to train<rank>.json; the
    checkpoint (rank 0) to ckpt.pb."""
    import kaffa
    import kaffa.distributed as dist
    from kaffa import Workspace, brew, optimizer
    from kaffa.distributed import DataParallel

    r, n = dist.rank(), dist.size()
    kaffa.set_random_seed(7 + r)  # different initial weights per rank: the broadcast must fix that

    def build(model):
        h = brew.fc(model, "data", "fc1", 10, 16)
        h = brew.relu(model, h, h)
        pred = brew.fc(model, h, "fc2", 16, 4)
        _, loss = model.net.SoftmaxWithLoss([pred, "label"], ["softmax", "loss"])
        return loss

    def sgd(model):
        return optimizer.build_sgd(model, base_learning_rate=0.2, momentum=0.9, weight_decay=1e-4)

    dp = DataParallel(build, sgd, name="mlp")
    rng = np.random.default_rng(0)
    total = batch * n
    xs = rng.normal(size=(steps, total, 10)).astype(np.float32)
    ys = rng.integers(0, 4, size=(steps, total)).astype(np.int32)
    mine = dp.shard(total)
    ws = Workspace("train")
    ws.run_net_once(dp.model.param_init_net)
    own = ws.fetch_blob("fc1_w")
    seeded = dp.comm.allgather_object(float(own.sum()))
    dp.init(ws, {"data": xs[0][mine], "label": ys[0][mine]})
    if r == 0:
        np.savez(out / "init.npz", fc1_w=ws.fetch_blob("fc1_w"))
    record = {"initial_divergence": dp.divergence(ws), "divergence": [], "losses": []}
    record["seeded_differently"] = n == 1 or len(set(seeded)) == n
    for k in range(steps):
        dp.step(ws, {"data": xs[k][mine], "label": ys[k][mine]})
        record["divergence"].append(dp.divergence(ws))
        record["losses"].append(float(ws.fetch_blob("loss")))
    dp.save(out / "ckpt.pb", ws)
    (out / f"train{r}.json").write_text(json.dumps(record))


def _die(mode: str) -> None:
    """Train; at step 3 rank 1 fails in the way ``mode`` says."""
    import signal

    from kaffa import Workspace, brew, optimizer
    from kaffa.distributed import DataParallel

    def build(model):
        pred = brew.fc(model, "data", "pred", 8, 3)
        return model.net.SoftmaxWithLoss([pred, "label"], ["softmax", "loss"])[1]

    dp = DataParallel(build, lambda m: optimizer.build_sgd(m, base_learning_rate=0.1))
    rng = np.random.default_rng(0)
    ws = Workspace()

    def feeds():
        return {
            "data": rng.normal(size=(4, 8)).astype(np.float32),
            "label": rng.integers(0, 3, 4).astype(np.int32),
        }

    dp.init(ws, feeds())
    for k in range(200):
        if k == 3 and dp.rank == 1:
            print(f"rank 1 dies ({mode})", flush=True)
            if mode == "raise":
                raise RuntimeError("rank 1 fails on purpose")
            if mode == "exit":
                sys.exit(0)
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        dp.step(ws, feeds())
    print("finished", dp.rank)


def worker(argv: list[str]) -> None:
    if argv[0] == "train":
        out = Path(argv[1])
        import kaffa.distributed as dist

        if dist.size() > 1:
            _ops_check(out)
        _train(out, int(argv[2]), int(argv[3]))
    elif argv[0] == "die":
        _die(argv[1])
    else:
        raise SystemExit(f"unknown worker mode {argv[0]!r}")


if __name__ == "__main__":
    worker(sys.argv[1:])

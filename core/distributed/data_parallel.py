"""Data-parallel training: one replica of a model per rank, kept identical.

    def build_model(model):            # forward pass; returns the loss blob(s)
        _, loss = models.lenet(model, "data", 10, label="label", image_size=8)
        return loss

    def build_optimizer(model):
        return optimizer.build_sgd(model, base_learning_rate=0.05, momentum=0.9)

    dp = DataParallel(build_model, build_optimizer)
    ws = Workspace()
    dp.init(ws, {"data": x[:b], "label": y[:b]})     # fill, broadcast from rank 0, create the net
    for batch in batches:                            # each rank feeds its own shard of the batch
        dp.step(ws, {"data": x[batch][dp.shard(len(batch))], ...})
    dp.save("ckpt.pb", ws)                           # rank 0 writes, the others wait for it

How: ``build_model`` adds the forward pass to a ModelHelper, then the gradient ops are added, then
one fused ``Allreduce(reduction="mean")`` over every gradient (and the computed parameters, such as
SpatialBN's running statistics, and the losses), then ``build_optimizer`` appends the updates. As
every rank starts from rank 0's parameters (``Broadcast`` after the init net) and applies the same
averaged gradients, the replicas stay identical, and N ranks with batch B each follow one process
with batch N*B over the same samples (losses averaged over the batch; the mean of N equal-sized
batch means is the mean over their union).

The collectives run on the model's device when its backend has a kernel for them (cuda: the NCCL
engine), else on cpu: device arrays are then staged through host memory by the planner's copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaffa import checkpoint
from kaffa.core import BlobReference, Net
from kaffa.device import Device, device_option
from kaffa.distributed import comm as _comm
from kaffa.model_helper import ModelHelper
from kaffa.optimizer import Optimizer
from kaffa.plugins import registry
from kaffa.scope import DeviceScope
from kaffa.workspace import Workspace

ModelBuilder = Callable[[ModelHelper], Any]
OptimizerBuilder = Callable[[ModelHelper], Optimizer | None]

LOCAL_RANK_VARS = (
    "MPI_LOCALRANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
)


def local_rank() -> int:
    """This process's index among the ranks on its machine (picks its GPU); 0 without a launcher."""
    for var in LOCAL_RANK_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def shard(n: int, rank: int | None = None, size: int | None = None, comm: str = "") -> slice:
    """The contiguous part of a global batch of ``n`` items that ``rank`` (default: this rank) of
    ``size`` takes; ``n`` must divide evenly, so every rank's gradient weighs the same."""
    c = _comm.get(comm) if rank is None or size is None else None
    rank = c.rank if rank is None else rank  # type: ignore[union-attr]
    size = c.size if size is None else size  # type: ignore[union-attr]
    if n % size:
        raise ValueError(f"a global batch of {n} does not split evenly over {size} ranks")
    per = n // size
    return slice(rank * per, (rank + 1) * per)


def _has_kernel(backend: str, op: str) -> bool:
    return bool(registry().kernels.engines(backend, op))


def _names(blobs: Iterable[Any]) -> list[str]:
    seen: list[str] = []
    for b in blobs:
        if str(b) not in seen:
            seen.append(str(b))
    return seen


class DataParallel:
    """A model replicated over the ranks of a communicator (see the module doc).

    ``device``: where the replica runs ("cpu", "opencl", "cuda", ...); a backend with several
    devices gets device ``local_rank() % count`` unless the name has an index ("cuda:1"). ``comm``:
    a communicator or its name ("" the default: COMM_WORLD under mpiexec). ``engine``: the
    collectives' engine ("" picks: NCCL on cuda, the default host kernels elsewhere).
    ``average_losses``: the loss blobs end each step holding their mean over the ranks.
    """

    def __init__(
        self,
        build_model: ModelBuilder,
        build_optimizer: OptimizerBuilder,
        *,
        name: str = "train",
        device: str = "cpu",
        comm: str | _comm.Communicator = "",
        engine: str = "",
        average_losses: bool = True,
        timeout: float | None = None,
    ) -> None:
        if isinstance(comm, _comm.Communicator):
            self.comm_name = f"{name}_comm"
            _comm.register(self.comm_name, comm)
        else:
            self.comm_name = comm
        self.comm = _comm.get(self.comm_name)
        self.device = self._place(device)
        self.timeout = float(timeout or 0.0)
        self.model = ModelHelper(name)
        with DeviceScope(device_option(self.device.backend, self.device.index)):
            losses = build_model(self.model)
            self.losses = _names(losses if isinstance(losses, (list, tuple)) else [losses])
            if not self.losses:
                raise ValueError("build_model must return the loss blob(s) to train on")
            self.model.add_gradient_ops(self.losses)
            params = self.model.get_params()
            self.grads = _names(self.model.param_to_grad[p] for p in params if p in self.model.param_to_grad)
            self.computed = _names(self.model.get_computed_params())
            synced = self.grads + self.computed + (self.losses if average_losses else [])
            self.sync_op = self._collective("Allreduce", synced, engine, reduction="mean")
            self.optimizer = build_optimizer(self.model)
        self._engine = engine
        self._initialized = False

    # -- construction ---------------------------------------------------------------------------
    def _place(self, device: str) -> Device:
        dev = Device.parse(device)
        if ":" not in device and dev.backend != "cpu":
            count = len(registry().backend(dev.backend).devices())
            dev = Device(dev.backend, local_rank() % max(1, count))
        return dev

    def _collective(self, op: str, blobs: Sequence[str], engine: str, net: Net | None = None, **args: Any):
        """Add ``op`` over ``blobs`` in place to ``net`` (default: the training net), on the replica's
        device if its backend has a kernel for it, else on cpu (staged through host memory)."""
        net = net if net is not None else self.model.net
        if not blobs:
            return None
        backend = self.device.backend
        where = (
            device_option(backend, self.device.index)
            if backend == "cpu" or _has_kernel(backend, op)
            else device_option("cpu")
        )
        engine = engine or ("NCCL" if backend == "cuda" and where.device_type != 0 else "")
        with DeviceScope(where):
            return net.add_op(
                op,
                [BlobReference(b, net) for b in blobs],
                [BlobReference(b, net) for b in blobs],
                comm=self.comm_name,
                timeout=self.timeout,
                engine=engine or None,
                **args,
            )

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    @property
    def net_name(self) -> str:
        return self.model.net.Proto().name

    def shard(self, n: int) -> slice:
        """This rank's part of a global batch of ``n`` items."""
        return shard(n, self.rank, self.size)

    def state_names(self) -> list[str]:
        """Parameters, computed parameters and optimizer state: what a checkpoint holds."""
        names = [str(p) for p in self.model.get_all_params()]
        if self.optimizer is not None:
            aux = self.optimizer.get_auxiliary_parameters()
            names += [str(b) for b in [*aux.local, *aux.shared]]
        return _names(names)

    # -- running --------------------------------------------------------------------------------
    def init(self, ws: Workspace, feeds: Mapping[str, Any] | None = None) -> None:
        """Run the init net, make every rank hold rank 0's values, feed ``feeds`` (one batch, for
        planning) and create the training net."""
        ws.run_net_once(self.model.param_init_net)
        self.broadcast_state(ws)
        for k, v in (feeds or {}).items():
            ws.feed_blob(k, v)
        ws.create_net(self.model.net, overwrite=True)
        self._initialized = True

    def broadcast_state(self, ws: Workspace, root: int = 0) -> None:
        """Every blob the init net fills (parameters, optimizer state) takes rank ``root``'s value;
        blobs keep their devices."""
        init = self.model.param_init_net
        names = _names(o for op in init.Proto().op for o in op.output)
        devices = {n: ws.blob_device(n) for n in names}
        net = Net(f"{self.net_name}_broadcast")
        by_device: dict[Device, list[str]] = {}
        for n in names:
            by_device.setdefault(devices[n], []).append(n)
        for dev, group in by_device.items():
            saved, self.device = self.device, dev
            try:
                self._collective("Broadcast", group, self._engine, net=net, root=root)
            finally:
                self.device = saved
        ws.run_net_once(net)
        for n, dev in devices.items():  # a broadcast staged through the host leaves blobs there
            if ws.blob_device(n) != dev:
                ws.feed_blob(n, ws.fetch_blob(n), dev)

    def step(self, ws: Workspace, feeds: Mapping[str, Any] | None = None) -> None:
        """Feed this rank's batch and run one training step (forward, backward, averaged
        gradients, update)."""
        if not self._initialized:
            raise RuntimeError("call DataParallel.init(ws, feeds) before step")
        for k, v in (feeds or {}).items():
            ws.feed_blob(k, v)
        ws.run_net(self.net_name)

    def save(self, path: str | Path, ws: Workspace, names: Iterable[Any] | None = None) -> Path:
        """Rank 0 writes the checkpoint (atomically, kaffa.checkpoint); every rank returns once it
        is on disk. The replicas are identical, so one copy is the model."""
        p = Path(path)
        error = None
        if self.rank == 0:
            try:
                checkpoint.save(p, ws, [str(n) for n in names] if names is not None else self.state_names())
            except Exception as e:  # tell the other ranks instead of leaving them at the barrier
                error = f"{type(e).__name__}: {e}"
        error = self.comm.broadcast_object(error, 0)
        if error is not None:
            raise checkpoint.CheckpointError(f"rank 0 could not write {p}: {error}", p)
        return p

    def divergence(self, ws: Workspace, names: Iterable[str] | None = None) -> float:
        """The largest absolute difference between any rank's state and rank 0's (collective; 0.0
        when the replicas are identical)."""
        names = list(names) if names is not None else self.state_names()
        mine = [np.asarray(_host(ws, n)) for n in names]
        ref = self.comm.broadcast(mine, 0)
        local = max(
            (float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(mine, ref) if a.size),
            default=0.0,
        )
        return max(self.comm.allgather_object(local))


def _host(ws: Workspace, name: str) -> np.ndarray:
    value = ws.fetch_blob(name)
    return value if isinstance(value, np.ndarray) else np.asarray(value)

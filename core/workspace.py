"""Workspaces: named blobs and the nets created over them.

Use a ``Workspace`` object, or the module-level functions that act on the *current* workspace
as Caffe2's ``workspace`` module did (``feed_blob``, ``fetch_blob``, ``run_net_once``, ... and
the CamelCase aliases ``FeedBlob``, ``FetchBlob``, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from kaffa import tensor as _tensor
from kaffa.device import HOST, Device
from kaffa.errors import DeviceError, KaffaError, MissingBlobError, ModelFormatError
from kaffa.net import FALLBACK, STRICT, Net, NetBenchmark, PlacementReport
from kaffa.plugins import registry
from kaffa.proto import DeviceOption, NetDef, OperatorDef, TensorProto
from kaffa.schema import TensorInfo
from kaffa.scope import current_device_scope

_default_policy = FALLBACK


def set_default_policy(policy: str) -> None:
    """'fallback' (default: ops a backend lacks run on cpu, and the placement report says so) or
    'strict' (net creation fails, listing every unsupported op). Env: KAFFA_STRICT=1."""
    global _default_policy
    if policy not in (FALLBACK, STRICT):
        raise ValueError(f"policy must be '{FALLBACK}' or '{STRICT}', got {policy!r}")
    _default_policy = policy


def default_policy() -> str:
    import os

    return STRICT if os.environ.get("KAFFA_STRICT", "") in ("1", "true") else _default_policy


def _to_device(device: Any) -> Device:
    """Accept None (current DeviceScope or cpu), a name ("cuda:1"), a Device or a DeviceOption."""
    if device is None:
        device = current_device_scope()
        if device is None:
            return HOST
    if isinstance(device, DeviceOption):
        backend = registry().backend_for_type(device.device_type)
        return Device(backend.name, device.device_id)
    return Device.parse(device)


def _as_netdef(net: Any) -> NetDef:
    if isinstance(net, NetDef):
        return net
    if hasattr(net, "Proto"):
        return net.Proto()
    if isinstance(net, (bytes, bytearray)):
        from kaffa.serialize import parse_netdef

        return parse_netdef(bytes(net))
    raise TypeError(f"expected a NetDef, a kaffa.core.Net or serialized bytes, got {type(net).__name__}")


class Workspace:
    """Named blobs (arrays on some device) and named, created nets."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._blobs: dict[str, Any] = {}
        self._devices: dict[str, Device] = {}
        self._nets: dict[str, Net] = {}

    # -- blobs --------------------------------------------------------------------------------------
    def feed_blob(self, name: str, value: Any, device: Any = None) -> None:
        """Copy ``value`` (array-like or TensorProto) into blob ``name`` on ``device`` (a name like
        "cuda:0", a DeviceOption, or None for the current DeviceScope / cpu)."""
        name = str(name)
        dev = _to_device(device)
        if isinstance(value, TensorProto):
            arr = _tensor.to_numpy(value)
        else:
            arr = np.array(value, copy=True)
            if arr.dtype.kind == "U":
                arr = arr.astype(object)
        backend = registry().backend(dev.backend)
        if dev != HOST:
            reason = backend.unavailable_reason()
            if reason is not None:
                raise DeviceError(f"cannot feed '{name}' to {dev}: backend unavailable: {reason}")
            if arr.dtype == object:
                raise DeviceError(f"cannot feed string blob '{name}' to {dev}: strings live on cpu only")
        self._blobs[name] = backend.from_host(
            np.asarray(arr, order="C") if arr.dtype != object else arr, dev.index
        )
        self._devices[name] = dev

    def fetch_blob(self, name: str) -> Any:
        """A numpy copy of blob ``name`` (non-tensor blobs are returned as they are)."""
        value = self._get(name)
        dev = self._devices.get(name, HOST)
        if dev == HOST:
            return value.copy() if isinstance(value, np.ndarray) else value
        out = registry().backend(dev.backend).to_host(value, dev.index)
        return out.copy() if out is value else out

    def _get(self, name: str) -> Any:
        try:
            return self._blobs[str(name)]
        except KeyError:
            raise MissingBlobError(
                f"blob '{name}' does not exist in workspace '{self.name}'" + _closest(str(name), self._blobs)
            ) from None

    def has_blob(self, name: str) -> bool:
        return str(name) in self._blobs

    def remove_blob(self, name: str) -> None:
        self._get(name)
        del self._blobs[str(name)]
        self._devices.pop(str(name), None)

    def blobs(self) -> list[str]:
        return sorted(self._blobs)

    def blob_device(self, name: str) -> Device:
        self._get(name)
        return self._devices.get(str(name), HOST)

    def blob_info(self, name: str) -> TensorInfo:
        return TensorInfo.of(self._get(name))

    def __contains__(self, name: object) -> bool:
        return str(name) in self._blobs

    def __iter__(self) -> Iterator[str]:
        return iter(self.blobs())

    # -- nets ----------------------------------------------------------------------------------------
    def create_net(self, net: Any, overwrite: bool = False, policy: str | None = None) -> Net:
        """Plan and bind ``net`` (NetDef, kaffa.core.Net, or serialized bytes) under its name."""
        netdef = _as_netdef(net)
        if not netdef.name:
            raise ValueError(
                "a net needs a name to be created in a workspace (use run_net_once for anonymous nets)"
            )
        if netdef.name in self._nets and not overwrite:
            raise ValueError(
                f"workspace '{self.name}' already has a net named '{netdef.name}' (pass overwrite=True)"
            )
        created = Net(netdef, self, policy or default_policy())
        self._nets[netdef.name] = created
        return created

    def run_net(self, name: Any, num_iter: int = 1) -> None:
        net = self.get_net(name)
        for _ in range(num_iter):
            net.run()

    def benchmark_net(
        self, name: Any, warmup: int = 1, iters: int = 10, per_op: bool = False
    ) -> NetBenchmark:
        """Time a created net (Caffe2's ``workspace.BenchmarkNet``): mean ms per run and, with
        ``per_op``, per op; print the result for a table by op type and the slowest ops."""
        return self.get_net(name).benchmark(warmup, iters, per_op)

    def get_net(self, name: Any) -> Net:
        key = name if isinstance(name, str) else _as_netdef(name).name
        try:
            return self._nets[key]
        except KeyError:
            raise KaffaError(
                f"workspace '{self.name}' has no net named '{key}'" + _closest(key, self._nets)
            ) from None

    def nets(self) -> list[str]:
        return sorted(self._nets)

    def delete_net(self, name: str) -> None:
        self.get_net(name)
        del self._nets[name]

    def run_net_once(self, net: Any, policy: str | None = None) -> None:
        """Create, run and forget a net."""
        netdef = _as_netdef(net)
        if not netdef.name:
            netdef = NetDef()
            netdef.CopyFrom(_as_netdef(net))
            netdef.name = "run_net_once"
        Net(netdef, self, policy or default_policy()).run()

    def run_operator_once(self, op: OperatorDef, policy: str | None = None) -> None:
        netdef = NetDef(name=f"run_operator_once:{op.type}")
        netdef.op.add().CopyFrom(op)
        Net(netdef, self, policy or default_policy()).run()

    def placement_report(self, name: str) -> PlacementReport:
        return self.get_net(name).placement_report

    def reset(self) -> None:
        self._blobs.clear()
        self._devices.clear()
        self._nets.clear()


def _closest(name: str, names: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# -- the current workspace, Caffe2 style ---------------------------------------------------------------
_workspaces: dict[str, Workspace] = {"default": Workspace("default")}
_current = threading.local()


def current_workspace() -> Workspace:
    return _workspaces[getattr(_current, "name", "default")]


def switch_workspace(name: str, create_if_missing: bool = True) -> Workspace:
    if name not in _workspaces:
        if not create_if_missing:
            raise KaffaError(f"no workspace named '{name}'")
        _workspaces[name] = Workspace(name)
    _current.name = name
    return _workspaces[name]


def reset_workspace() -> None:
    current_workspace().reset()


def feed_blob(name: str, value: Any, device: Any = None) -> None:
    current_workspace().feed_blob(name, value, device)


def fetch_blob(name: str) -> Any:
    return current_workspace().fetch_blob(name)


def has_blob(name: str) -> bool:
    return current_workspace().has_blob(name)


def remove_blob(name: str) -> None:
    current_workspace().remove_blob(name)


def blobs() -> list[str]:
    return current_workspace().blobs()


def create_net(net: Any, overwrite: bool = False, policy: str | None = None) -> Net:
    return current_workspace().create_net(net, overwrite, policy)


def benchmark_net(name: Any, warmup: int = 1, iters: int = 10, per_op: bool = False) -> NetBenchmark:
    return current_workspace().benchmark_net(name, warmup, iters, per_op)


def run_net(name: Any, num_iter: int = 1) -> None:
    current_workspace().run_net(name, num_iter)


def run_net_once(net: Any, policy: str | None = None) -> None:
    current_workspace().run_net_once(net, policy)


def run_operator_once(op: OperatorDef, policy: str | None = None) -> None:
    current_workspace().run_operator_once(op, policy)


# Caffe2 spellings, for code moving over.
FeedBlob, FetchBlob, HasBlob, Blobs = feed_blob, fetch_blob, has_blob, blobs
CreateNet, RunNet, RunNetOnce, RunOperatorOnce = create_net, run_net, run_net_once, run_operator_once
ResetWorkspace, SwitchWorkspace, CurrentWorkspace = reset_workspace, switch_workspace, current_workspace

__all__ = [
    "FALLBACK",
    "STRICT",
    "ModelFormatError",
    "Workspace",
    "blobs",
    "create_net",
    "current_workspace",
    "feed_blob",
    "fetch_blob",
    "has_blob",
    "remove_blob",
    "reset_workspace",
    "run_net",
    "run_net_once",
    "run_operator_once",
    "set_default_policy",
    "switch_workspace",
]

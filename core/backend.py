"""The backend object a plugin hands to kaffa: what device type it serves, which devices it sees
(or why it sees none), and how its arrays move to and from host memory.

Kernels never copy between devices themselves: the planner inserts copies built from
``to_host``/``from_host`` (or ``copy_between`` for two devices of one backend) wherever a blob
crosses devices, and lists them in the placement report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DeviceInfo:
    """One device a backend can run on."""

    index: int
    name: str
    kind: str = "cpu"  # "cpu", "gpu", "accelerator" or "other"
    memory: int | None = None  # bytes
    api: str = ""  # the native API underneath, e.g. "OpenCL 3.0 PoCL 6.0", "Vulkan (lavapipe)"
    details: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        mem = f", {self.memory / 2**30:.1f} GiB" if self.memory else ""
        api = f", {self.api}" if self.api else ""
        return f"[{self.index}] {self.name} ({self.kind}{mem}{api})"


class Backend:
    """Subclass this in a plugin. Only ``name``, ``device_type``, ``devices`` and the two copies are
    required; the defaults suit a host-memory backend."""

    name: str = ""
    device_type: int = -1
    version: str = ""
    # Types of the arrays this backend keeps in blobs (for clear errors about misplaced blobs).
    array_types: tuple[type, ...] = (np.ndarray,)
    # The activation layout its fastest Conv kernels read: "NHWC" makes kaffa.passes.channels_last
    # rewrite predict nets for it (a property where it depends on an optional library).
    conv_order: str = "NCHW"

    def devices(self) -> list[DeviceInfo]:
        """The devices this backend sees now, in a stable order (index = DeviceOption.device_id)."""
        return []

    def unavailable_reason(self) -> str | None:
        """None if usable, else one line saying why not ("no OpenCL platform", "no CUDA driver")."""
        return None if self.devices() else "no devices found"

    @property
    def available(self) -> bool:
        return self.unavailable_reason() is None

    # -- memory ------------------------------------------------------------------------------------
    def to_host(self, array: Any, device_index: int = 0) -> np.ndarray:
        """Copy a device array into a new (or shared, if already on the host) numpy array."""
        raise NotImplementedError

    def from_host(self, array: np.ndarray, device_index: int = 0) -> Any:
        """Copy a numpy array onto device ``device_index``."""
        raise NotImplementedError

    def copy_between(self, array: Any, src_index: int, dst_index: int) -> Any:
        """Copy between two devices of this backend; by default through host memory."""
        return self.from_host(self.to_host(array, src_index), dst_index)

    def synchronize(self, device_index: int = 0) -> None:
        """Wait until queued work on the device has finished."""

    def describe(self) -> str:
        reason = self.unavailable_reason()
        state = "available" if reason is None else f"unavailable: {reason}"
        version = f", {self.version}" if self.version else ""
        return f"{self.name} (device type {self.device_type}{version}): {state}"


class HostBackend(Backend):
    """A backend whose arrays are numpy arrays in host memory (cpu, and plugins built on it)."""

    def to_host(self, array: Any, device_index: int = 0) -> np.ndarray:
        return array

    def from_host(self, array: np.ndarray, device_index: int = 0) -> np.ndarray:
        return array

"""NameScope and DeviceScope: thread-local defaults the Net builder applies to new ops, as in
Caffe2 (``with NameScope("gpu_0"), DeviceScope(DeviceOption(CUDA, 0)): ...``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from kaffa.proto import DeviceOption

SEPARATOR = "/"
_state = threading.local()


def _names() -> list[str]:
    if not hasattr(_state, "names"):
        _state.names = []
    return _state.names


def _devices() -> list[DeviceOption | None]:
    if not hasattr(_state, "devices"):
        _state.devices = []
    return _state.devices


def current_name_scope() -> str:
    """The prefix new blob names get, with a trailing separator ("gpu_0/"), or ""."""
    names = _names()
    return (SEPARATOR.join(names) + SEPARATOR) if names else ""


def current_device_scope() -> DeviceOption | None:
    devices = _devices()
    return devices[-1] if devices else None


@contextlib.contextmanager
def NameScope(prefix: str | None, reset: bool = False) -> Iterator[None]:
    """Prefix blob names created inside the block with ``prefix/`` (nested scopes join)."""
    names = _names()
    saved = list(names)
    if reset:
        names.clear()
    if prefix:
        names.append(str(prefix).rstrip(SEPARATOR))
    try:
        yield
    finally:
        names[:] = saved


@contextlib.contextmanager
def DeviceScope(device: DeviceOption | str | None) -> Iterator[None]:
    """Ops created inside the block (and blobs fed) go to ``device`` unless they say otherwise.
    Accepts a DeviceOption or a name such as "cuda:1"."""
    from kaffa.device import device_option

    opt = device if isinstance(device, DeviceOption) or device is None else device_option(device)
    devices = _devices()
    devices.append(opt)
    try:
        yield
    finally:
        devices.pop()


def scoped_name(name: str) -> str:
    return current_name_scope() + name

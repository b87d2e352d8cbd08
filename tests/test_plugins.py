"""Plugin discovery, quarantine, selection and the API-version check."""

from __future__ import annotations

import types

import numpy as np
import pytest

import kaffa
from kaffa import plugins
from kaffa.backend import DeviceInfo, HostBackend
from kaffa.plugins import PLUGIN_API, Registry, hookimpl, registry

pytestmark = pytest.mark.filterwarnings("ignore::kaffa.plugins.PluginWarning")


def test_builtins_come_through_entry_points():
    reg = registry()
    for name in ("cpu", "opencl", "cuda", "metal"):
        assert name in reg.plugins, f"{name} plugin not discovered"
        info = reg.plugins[name]
        assert info.source.startswith("entry point kaffa_"), info.source
        assert not info.quarantined, info.error
        assert name in reg.backends
    assert list(reg.plugins)[:4] == ["cpu", "opencl", "cuda", "metal"]  # built-ins load first, in order


def test_kaffa_backends_selects_plugins(monkeypatch):
    monkeypatch.setenv("KAFFA_BACKENDS", "metal")
    reg = Registry().load()
    assert sorted(reg.plugins) == ["cpu", "metal"]  # cpu always stays: it is the host and the fallback
    with pytest.raises(kaffa.DeviceError, match="KAFFA_BACKENDS excludes it"):
        reg.backend("opencl")


class _Backend(HostBackend):
    def __init__(self, name: str, device_type: int):
        self.name, self.device_type = name, device_type

    def devices(self):
        return [DeviceInfo(0, self.name)]


def _plugin(**hooks) -> types.SimpleNamespace:
    ns = types.SimpleNamespace()
    for name, fn in hooks.items():
        setattr(ns, name, hookimpl(fn))
    return ns


def test_incompatible_api_version_is_quarantined():
    reg = Registry().load()
    bad = _plugin(kaffa_plugin_api=lambda: "2.0", kaffa_backends=lambda: [_Backend("future", 900)])
    info = reg._load_one("future", "test", lambda: bad)
    assert info.quarantined
    assert "built for kaffa plugin API 2.0" in info.error and f"supports 1.0 to {PLUGIN_API}" in info.error
    assert "future" not in reg.backends


def test_hook_that_raises_is_quarantined_and_rolled_back():
    reg = Registry().load()

    def kernels(registry):
        registry.add("half", "Relu", lambda ctx: lambda x: (x,))
        raise RuntimeError("boom in kaffa_kernels")

    bad = _plugin(
        kaffa_plugin_api=lambda: PLUGIN_API,
        kaffa_backends=lambda: [_Backend("half", 901)],
        kaffa_kernels=kernels,
    )
    info = reg._load_one("half", "test", lambda: bad)
    assert info.quarantined and "boom in kaffa_kernels" in info.error
    assert "half" not in reg.backends and reg.kernels.get("half", "Relu") is None
    assert "cpu" in reg.backends and reg.kernels.get("cpu", "Relu") is not None  # the others are unharmed


def test_misspelled_hook_is_caught_by_check_pending():
    reg = Registry().load()
    bad = _plugin(kaffa_plugin_api=lambda: PLUGIN_API, kaffa_kernelz=lambda registry: None)
    info = reg._load_one("typo", "test", lambda: bad)
    assert info.quarantined and "kaffa_kernelz" in info.error


def test_duplicate_backend_name_is_quarantined():
    reg = Registry().load()
    dup = _plugin(kaffa_plugin_api=lambda: PLUGIN_API, kaffa_backends=lambda: [_Backend("cpu", 902)])
    info = reg._load_one("dup", "test", lambda: dup)
    assert info.quarantined and "already provided by plugin 'cpu'" in info.error


def test_strict_plugins_env_makes_failures_fatal(monkeypatch):
    monkeypatch.setenv("KAFFA_STRICT_PLUGINS", "1")
    reg = Registry().load()
    bad = _plugin(kaffa_plugin_api=lambda: "0.1")
    with pytest.raises(kaffa.PluginError, match="failed to load"):
        reg._load_one("old", "test", lambda: bad)


def test_register_at_runtime_and_run_on_new_backend(ws):
    from kaffa.kernels import KernelTable

    table = KernelTable("twice")

    @table.kernel("Relu", dtypes=["float32"])
    def relu(ctx):
        return lambda x: (np.maximum(x, 0) * 2,)  # a deliberately different kernel, to see it ran

    plugin = _plugin(
        kaffa_plugin_api=lambda: PLUGIN_API,
        kaffa_backends=lambda: [_Backend("twice", 903)],
        kaffa_kernels=lambda registry: table.install(registry),
    )
    registry().register(plugin, name="twice")
    try:
        ws.feed_blob("x", np.array([-1.0, 3.0], dtype=np.float32), "twice")
        ws.run_operator_once(
            kaffa.create_operator("Relu", ["x"], ["y"], device_option=kaffa.DeviceOption("twice"))
        )
        assert ws.fetch_blob("y").tolist() == [0.0, 6.0]
        assert str(ws.blob_device("y")) == "twice:0"
        with pytest.raises(kaffa.PluginError, match="already registered"):
            registry().register(plugin, name="twice")
    finally:
        registry().unregister("twice")
    assert "twice" not in registry().backends


def test_unknown_device_type_is_a_clear_error(ws):
    ws.feed_blob("x", np.zeros(2, dtype=np.float32))
    opt = kaffa.proto.DeviceOption(device_type=7)
    with pytest.raises(kaffa.DeviceError, match=r"no backend serves device type 7 \(fpga\).*op #0 Relu"):
        ws.run_operator_once(kaffa.create_operator("Relu", ["x"], ["y"], device_option=opt))


def test_reset_reloads(monkeypatch):
    before = registry()
    plugins.reset()
    after = registry()
    assert after is not before and "cpu" in after.backends

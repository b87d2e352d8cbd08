"""Plugin discovery and the process-wide registry of schemas, backends and kernels.

Built-in plugins (cpu, opencl, cuda, metal) come through the ``kaffa.backends`` entry-point
group like any third-party plugin; they are loaded first, in that order. Each plugin is loaded
in its own try/except and, if anything about it fails, quarantined: its contributions are
removed and the error is kept for ``kaffa info``. See ``kaffa.hookspecs`` for the contract.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from kaffa import hookspecs
from kaffa.backend import Backend
from kaffa.device import WELL_KNOWN
from kaffa.errors import DeviceError, PluginError
from kaffa.kernels import KernelRegistry
from kaffa.schema import SCHEMAS, OpSchema

PLUGIN_API = "1.0"
ENTRY_POINT_GROUP = "kaffa.backends"
BUILTIN_ORDER = ("cpu", "opencl", "cuda", "metal")

hookimpl = pluggy.HookimplMarker("kaffa")
log = logging.getLogger("kaffa.plugins")


class PluginWarning(UserWarning):
    """A plugin was quarantined (or loaded with a caveat)."""


@dataclass
class PluginInfo:
    name: str
    source: str  # "entry point kaffa_cpu (kaffa 0.1.0)", "KAFFA_PLUGINS", "register()"
    module: Any = None
    api: str | None = None
    error: str | None = None  # set when quarantined
    traceback: str | None = None
    backends: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def quarantined(self) -> bool:
        return self.error is not None


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _compatible(declared: str) -> str | None:
    """None if a plugin built for API ``declared`` works here, else why not."""
    try:
        major, minor = (int(p) for p in [*str(declared).split("."), "0"][:2])
    except ValueError:
        return f"declares plugin API {declared!r}, which is not a version number"
    ours_major, ours_minor = (int(p) for p in PLUGIN_API.split("."))
    if major != ours_major or minor > ours_minor:
        return (
            f"was built for kaffa plugin API {declared}; this kaffa supports "
            f"{ours_major}.0 to {PLUGIN_API} (update the plugin or kaffa)"
        )
    return None


class Registry:
    """Everything plugins contribute. Use ``kaffa.plugins.registry()`` for the process-wide one."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("kaffa")
        self.pm.add_hookspecs(hookspecs)
        if _truthy("KAFFA_TRACE_PLUGINS"):
            _enable_trace()
        self.backends: dict[str, Backend] = {}
        self.kernels = KernelRegistry()
        self.plugins: dict[str, PluginInfo] = {}
        self._backend_owner: dict[str, str] = {}
        self._lock = threading.RLock()
        self._loaded = False

    # -- loading ------------------------------------------------------------------------------------
    def load(self) -> Registry:
        """Discover and load plugins once (entry points, then KAFFA_PLUGINS)."""
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            selected = {
                s.strip().lower() for s in os.environ.get("KAFFA_BACKENDS", "").split(",") if s.strip()
            }
            if selected:
                selected.add("cpu")
            eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))

            def order(ep: metadata.EntryPoint) -> tuple[int, str]:
                return (
                    BUILTIN_ORDER.index(ep.name) if ep.name in BUILTIN_ORDER else len(BUILTIN_ORDER),
                    ep.name,
                )

            seen: set[str] = set()
            for ep in sorted(eps, key=order):
                if ep.name in seen or (selected and ep.name not in selected):
                    continue
                seen.add(ep.name)
                dist = getattr(ep, "dist", None)
                where = f"entry point {ep.value}" + (f" ({dist.name} {dist.version})" if dist else "")
                self._load_one(ep.name, where, ep.load)
            for modname in filter(None, (m.strip() for m in os.environ.get("KAFFA_PLUGINS", "").split(","))):
                name = modname.rsplit(".", 1)[-1]
                if name not in self.plugins:
                    self._load_one(name, "KAFFA_PLUGINS", lambda m=modname: importlib.import_module(m))
            return self

    def register(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a plugin object or module at run time (tests, notebooks). Raises PluginError if
        it fails, instead of quarantining it."""
        self.load()
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        with self._lock:
            if name in self.plugins and not self.plugins[name].quarantined:
                raise PluginError(f"a plugin named '{name}' is already registered")
            self.plugins.pop(name, None)
            info = self._load_one(name, "register()", lambda: plugin, fatal=True)
            return info

    def unregister(self, name: str) -> None:
        with self._lock:
            info = self.plugins.pop(name, None)
            if info is None:
                return
            self._remove_contributions(info)
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)

    def _load_one(self, name: str, source: str, load: Any, fatal: bool = False) -> PluginInfo:
        log.debug("loading plugin '%s' (%s)", name, source)
        info = PluginInfo(name, source)
        self.plugins[name] = info
        try:
            module = load()
            info.module = module
            self.pm.register(module, name=name)
            self.pm.check_pending()
            self._contribute(info)
        except Exception as e:  # a broken plugin must never take the others down
            info.error = f"{type(e).__name__}: {e}"
            info.traceback = traceback.format_exc()
            self._remove_contributions(info)
            if info.module is not None and self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            if fatal or _truthy("KAFFA_STRICT_PLUGINS"):
                self.plugins.pop(name, None) if fatal else None
                raise PluginError(f"plugin '{name}' ({source}) failed to load: {info.error}") from e
            log.debug("plugin '%s' quarantined: %s", name, info.error)
            warnings.warn(f"kaffa: plugin '{name}' quarantined: {info.error}", PluginWarning, stacklevel=3)
        return info

    def _impls(self, hook: str, name: str) -> list[Any]:
        fns = [i.function for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin_name == name]
        return [_traced(hook, name, fn) for fn in fns] if log.isEnabledFor(logging.DEBUG) else fns

    def _contribute(self, info: PluginInfo) -> None:
        name = info.name
        for fn in self._impls("kaffa_plugin_api", name):
            info.api = str(fn())
            problem = _compatible(info.api)
            if problem:
                raise PluginError(f"plugin '{name}' {problem}")
        if info.api is None:
            info.notes.append(f"declares no plugin API version (assumed {PLUGIN_API})")
        for fn in self._impls("kaffa_op_schemas", name):
            for schema in fn() or ():
                if not isinstance(schema, OpSchema):
                    raise PluginError(f"kaffa_op_schemas returned {type(schema).__name__}, not OpSchema")
                SCHEMAS.register(schema)
                info.schemas.append(schema.name)
        for fn in self._impls("kaffa_backends", name):
            for backend in fn() or ():
                if not isinstance(backend, Backend) or not backend.name:
                    raise PluginError(
                        f"kaffa_backends returned {backend!r}, not a named kaffa.backend.Backend"
                    )
                if backend.name in self.backends:
                    raise PluginError(
                        f"backend '{backend.name}' is already provided by plugin "
                        f"'{self._backend_owner[backend.name]}'"
                    )
                clash = [b.name for b in self.backends.values() if b.device_type == backend.device_type]
                if clash:
                    raise PluginError(
                        f"backend '{backend.name}' claims device type {backend.device_type}, "
                        f"already used by '{clash[0]}'"
                    )
                self.backends[backend.name] = backend
                self._backend_owner[backend.name] = name
                info.backends.append(backend.name)
        impls = self._impls("kaffa_kernels", name)
        if impls:
            self.kernels._plugin = name
            try:
                for fn in impls:
                    fn(registry=_BackendFilter(self.kernels, self.backends))
            finally:
                self.kernels._plugin = ""

    def _remove_contributions(self, info: PluginInfo) -> None:
        self.kernels.remove_plugin(info.name)
        for b in info.backends:
            self.backends.pop(b, None)
            self._backend_owner.pop(b, None)
            self.kernels.remove_backend(b)
        for s in info.schemas:
            SCHEMAS._schemas.pop(s, None)
        info.backends, info.schemas = [], []

    # -- lookups --------------------------------------------------------------------------------------
    def backend(self, name: str) -> Backend:
        self.load()
        try:
            return self.backends[name]
        except KeyError:
            raise DeviceError(self._missing(name)) from None

    def _missing(self, name: str) -> str:
        q = self.plugins.get(name)
        if q is not None and q.quarantined:
            return f"backend '{name}' is not available: its plugin was quarantined ({q.error})"
        have = ", ".join(sorted(self.backends)) or "none"
        hint = " (KAFFA_BACKENDS excludes it)" if os.environ.get("KAFFA_BACKENDS") else ""
        return f"no backend named '{name}' is loaded{hint}; loaded backends: {have}"

    def backend_for_type(self, device_type: int) -> Backend:
        self.load()
        for b in self.backends.values():
            if b.device_type == device_type:
                return b
        known = WELL_KNOWN.get(device_type)
        label = f"{device_type} ({known})" if known else str(device_type)
        raise DeviceError(
            f"no backend serves device type {label}; " + self._missing(known or label).split("; ")[-1]
        )

    def device_type_of(self, name: str) -> int:
        return self.backend(name).device_type


def _enable_trace() -> None:
    """KAFFA_TRACE_PLUGINS=1: log plugin discovery and every hook call (plugin, result or error)
    on the ``kaffa.plugins`` logger, to stderr unless the application configured logging itself."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("kaffa.plugins: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def _traced(hook: str, plugin: str, fn: Any) -> Any:
    def call(**kwargs: Any) -> Any:
        args = ", ".join(f"{k}={type(v).__name__}" for k, v in kwargs.items())
        log.debug("%s: %s(%s)", plugin, hook, args)
        try:
            result = fn(**kwargs)
        except Exception as e:
            log.debug("%s: %s raised %s: %s", plugin, hook, type(e).__name__, e)
            raise
        if result is not None:
            log.debug("%s: %s returned %s", plugin, hook, _summary(result))
        return result

    return call


def _summary(result: Any) -> str:
    if isinstance(result, (list, tuple)):
        return "[" + ", ".join(getattr(x, "name", None) or type(x).__name__ for x in result) + "]"
    return repr(result)


class _BackendFilter:
    """The registry a kaffa_kernels hook sees: kernels for backends that are not loaded (excluded by
    KAFFA_BACKENDS, or quarantined) are dropped instead of failing the plugin."""

    def __init__(self, kernels: KernelRegistry, backends: dict[str, Backend]):
        self._kernels = kernels
        self._backends = backends

    def add(self, backend: str, op: str, build: Any, **kw: Any) -> Any:
        if backend not in self._backends:
            return None
        return self._kernels.add(backend, op, build, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernels, name)


_REGISTRY: Registry | None = None
_REGISTRY_LOCK = threading.Lock()


def registry() -> Registry:
    """The process-wide registry, loading plugins on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        with _REGISTRY_LOCK:
            if _REGISTRY is None:
                _REGISTRY = Registry()
    return _REGISTRY.load()


def reset() -> None:
    """Forget all plugins (tests use this after changing KAFFA_* variables)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is not None:
            for info in list(_REGISTRY.plugins.values()):
                _REGISTRY._remove_contributions(info)
        _REGISTRY = None

"""The whole plugin / backend / kernel table as plain data, for tools (``kaffa info --json``)."""

from __future__ import annotations

from typing import Any

import kaffa
from kaffa.plugins import PLUGIN_API, Registry, registry


def _backend_entry(reg: Registry, name: str) -> dict[str, Any]:
    backend = reg.backends[name]
    try:
        reason = backend.unavailable_reason()
        devices = backend.devices() if reason is None else []
    except Exception as e:  # discovery must never take introspection down
        reason, devices = f"discovery raised {type(e).__name__}: {e}", []
    kernels = {}
    for op in sorted(reg.kernels.ops(name)):
        kernels[op] = {
            (engine or "DEFAULT"): {
                "plugin": kdef.plugin,
                "dtypes": None if kdef.dtypes is None else sorted(d.name for d in kdef.dtypes),
                "has_supports_predicate": kdef.supports is not None,
            }
            for engine, kdef in sorted(reg.kernels.engines(name, op).items())
        }
    return {
        "device_type": backend.device_type,
        "version": backend.version,
        "plugin": reg._backend_owner.get(name),
        "available": reason is None,
        "unavailable_reason": reason,
        "devices": [
            {"index": d.index, "name": d.name, "kind": d.kind, "memory": d.memory, "api": d.api}
            for d in devices
        ],
        "kernels": kernels,
    }


def table(reg: Registry | None = None) -> dict[str, Any]:
    """Version, plugins (quarantined ones with their error), backends with devices and every kernel
    (op -> engine -> claimed dtypes). JSON-serializable; the shape is stable for tools."""
    reg = reg or registry()
    return {
        "kaffa": kaffa.__version__,
        "plugin_api": PLUGIN_API,
        "plugins": {
            info.name: {
                "source": info.source,
                "api": info.api,
                "quarantined": info.quarantined,
                "error": info.error,
                "backends": list(info.backends),
                "schemas": list(info.schemas),
                "notes": list(info.notes),
            }
            for info in reg.plugins.values()
        },
        "backends": {name: _backend_entry(reg, name) for name in reg.backends},
    }

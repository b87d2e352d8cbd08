"""The plugin contract. Read this first if you are writing a backend.

A kaffa plugin is a Python module (or any object) with functions named after the hooks below,
marked with ``@kaffa.hookimpl``. Make it discoverable with an entry point in the group
``kaffa.backends`` (the built-in cpu, opencl, cuda and metal plugins are found this way too)::

    [project.entry-points."kaffa.backends"]
    mychip = "kaffa_mychip"

or, while developing, name the module in ``KAFFA_PLUGINS=kaffa_mychip``.

Loading: every plugin is loaded on its own; one that fails to import, declares an incompatible
plugin API, or raises from a hook is *quarantined*: kaffa warns, ``kaffa info`` shows the error,
and every other plugin keeps working. ``KAFFA_STRICT_PLUGINS=1`` makes such a failure fatal.
``KAFFA_BACKENDS=cpu,mychip`` loads only the named plugins (cpu is always loaded: it is the host
and the fallback).

Hooks are called in this order for each plugin: ``kaffa_plugin_api``, ``kaffa_op_schemas``,
``kaffa_backends``, ``kaffa_kernels``. None is on the hot path: kaffa binds kernels when a net
is created and then calls them directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kaffa.backend import Backend
    from kaffa.kernels import KernelRegistry
    from kaffa.schema import OpSchema

hookspec = pluggy.HookspecMarker("kaffa")


@hookspec
def kaffa_plugin_api() -> str:
    """Return the kaffa plugin-API version this plugin was written for, e.g. ``"1.0"``.

    A plugin whose major version differs from ``kaffa.plugins.PLUGIN_API``, or whose minor
    version is newer, is quarantined with a message naming the versions that fit."""


@hookspec
def kaffa_op_schemas() -> list[OpSchema]:
    """Return new operator schemas (``kaffa.schema.OpSchema``) this plugin brings.

    Optional. Ops a plugin adds need a float64 reference before the conformance suite can
    check them (``kaffa_conformance.reference.register``)."""


@hookspec
def kaffa_backends() -> list[Backend]:
    """Return the backend objects (``kaffa.backend.Backend``) this plugin provides.

    A backend that finds no usable device must still be returned, with
    ``unavailable_reason()`` saying why ("no OpenCL platform", "no CUDA driver"), so that users
    see the reason in ``kaffa info`` instead of a missing name."""


@hookspec
def kaffa_kernels(registry: KernelRegistry) -> None:
    """Add kernels with ``registry.add(backend, op, build, engine=..., dtypes=..., supports=...)``
    (or a ``kaffa.kernels.KernelTable``'s ``install``).

    A plugin may add kernels to any loaded backend, e.g. an engine ``CUDNN`` for ``cuda`` or
    ``WINOGRAD`` for ``cpu``. ``dtypes`` is a claim the conformance suite verifies both ways:
    claimed dtypes must pass, unclaimed ones must be refused."""

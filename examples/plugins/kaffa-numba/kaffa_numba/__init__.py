"""kaffa backend plugin 'numba': elementwise kernels compiled by numba on first use.

Everything it does not claim falls back to kaffa's cpu backend (see a net's placement report).
"""

from __future__ import annotations

from kaffa.plugins import hookimpl
from kaffa_numba.backend import NumbaBackend
from kaffa_numba.kernels import table

PLUGIN_API = "1.0"


@hookimpl
def kaffa_plugin_api() -> str:
    return PLUGIN_API


@hookimpl
def kaffa_backends() -> list:
    return [NumbaBackend()]


@hookimpl
def kaffa_kernels(registry) -> None:
    table.install(registry)

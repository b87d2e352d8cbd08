"""Engine preference, as in Caffe2: an op's own ``engine`` list first, then the per-op preference
for its backend, then the global preference for its backend, then the default kernel.

The global default is ``{"cuda": ["CUDNN"], "cpu": ["ONEDNN"]}`` (an engine that cannot run an op,
or is not installed, declines and the default kernel runs). ``KAFFA_DISABLE_IMPLICIT_ENGINE_PREF=1`` turns
both preferences off (only the op's own engine list is used).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence

_DEFAULT = {"cuda": ["CUDNN"], "cpu": ["ONEDNN"]}
_GLOBAL: dict[str, list[str]] = {k: list(v) for k, v in _DEFAULT.items()}
_PER_OP: dict[str, dict[str, list[str]]] = {}
_implicit = True


def set_global_engine_pref(prefs: Mapping[str, Sequence[str]]) -> None:
    """``{"cuda": ["CUDNN"]}``: try these engines first for every op on that backend."""
    for backend, engines in prefs.items():
        _GLOBAL[backend] = [e.upper() for e in engines]


def set_per_op_engine_pref(prefs: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
    """``{"cpu": {"Conv": ["WINOGRAD"]}}``: try these engines first for one op type on a backend."""
    for backend, per_op in prefs.items():
        for op, engines in per_op.items():
            _PER_OP.setdefault(backend, {})[op] = [e.upper() for e in engines]


def reset_engine_prefs() -> None:
    _GLOBAL.clear()
    _GLOBAL.update({k: list(v) for k, v in _DEFAULT.items()})
    _PER_OP.clear()


@contextlib.contextmanager
def explicit_engines_only() -> Iterator[None]:
    """Within the block only an op's own engine list counts (the conformance suite uses this to
    test the default kernels of a backend that prefers an engine)."""
    global _implicit
    saved, _implicit = _implicit, False
    try:
        yield
    finally:
        _implicit = saved


def engine_order(backend: str, op_type: str, op_engine: str) -> list[str]:
    """The engines to try, in order, ending with "" (the default kernel)."""
    order = [e.strip().upper() for e in op_engine.split(",") if e.strip()]
    if _implicit and os.environ.get("KAFFA_DISABLE_IMPLICIT_ENGINE_PREF", "") not in ("1", "true"):
        order += _PER_OP.get(backend, {}).get(op_type, [])
        order += _GLOBAL.get(backend, [])
    seen: list[str] = []
    for e in [*order, ""]:
        if e not in seen:
            seen.append(e)
    return seen

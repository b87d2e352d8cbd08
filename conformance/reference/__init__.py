"""The float64 reference: one small, obviously correct numpy function per operator.

A reference takes the op's parsed arguments (``OpSchema.parse_args``: every argument present,
defaults filled, spellings canonicalized) and the inputs, and returns a tuple with one array per
output. Float inputs arrive as float64, integer inputs as int64, bool as bool. It imports nothing
from any backend plugin; it is written for clarity, not speed.

Plugins that add operators register references for them with ``register``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

RefFn = Callable[..., tuple[np.ndarray, ...]]
REFERENCES: dict[str, RefFn] = {}


def reference(*ops: str) -> Callable[[RefFn], RefFn]:
    """Decorator: ``@reference("Relu") def relu(args, x): return (np.maximum(x, 0),)``."""

    def deco(fn: RefFn) -> RefFn:
        for op in ops:
            if op in REFERENCES:
                raise ValueError(f"a reference for {op} is already registered")
            REFERENCES[op] = fn
        return fn

    return deco


register = reference


def get(op: str) -> RefFn | None:
    _load()
    return REFERENCES.get(op)


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from kaffa.ops import FAMILIES

        for family in FAMILIES:  # one module per op family, as kaffa.ops
            importlib.import_module(f"kaffa_conformance.reference.{family}")


def run(
    op: str, args: dict[str, Any], inputs: list[np.ndarray], num_outputs: int | None = None
) -> tuple[np.ndarray, ...]:
    """Run the reference; ``num_outputs`` reaches those that take it (Split into equal parts)."""
    fn = get(op)
    if fn is None:
        raise KeyError(f"no reference for operator {op}")
    if num_outputs is not None and "num_outputs" in inspect.signature(fn).parameters:
        return tuple(fn(args, *inputs, num_outputs=num_outputs))
    return tuple(fn(args, *inputs))

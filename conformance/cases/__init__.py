"""Conformance cases: seeded inputs and argument variants for every operator.

Each op has a generator ``@cases("Relu") def relu(rng) -> list[Case]`` that draws its inputs from
``rng`` (a numpy Generator seeded from the op's name, so cases are the same on every machine).
Inputs are "master" values in float64 (or int64 for index inputs); the runner casts them to each
dtype under test and gives the reference the cast values back in float64, so rounding of the
inputs never counts as kernel error.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Op classes decide the tolerance (see kaffa_conformance.tolerance).
EXACT = "exact"  # data movement: must match bit for bit
ELEMENTWISE = "elementwise"  # one rounding (or a few ulps for transcendentals) per element
REDUCTION = "reduction"  # sums over `reduction` elements
GEMM = "gemm"  # dot products of length `reduction` (FC, MatMul, Conv)
RANDOM = "random"  # checked by statistics (Case.check)


@dataclass
class Case:
    op: str
    name: str  # unique within the op, e.g. "2d_stride2_pad1"
    inputs: list[np.ndarray]
    args: dict[str, Any] = field(default_factory=dict)
    num_outputs: int = 1
    op_class: str = ELEMENTWISE
    reduction: int = 1  # length of the longest sum behind one output element
    # Dtypes to run (default: every dtype the schema defines the op for).
    dtypes: Sequence[Any] | None = None
    # Inputs that keep their own dtype instead of the dtype under test (e.g. int64 shapes).
    fixed_dtype_inputs: dict[int, Any] = field(default_factory=dict)
    # (input, output) pairs to also run in place, the output taking the input's name.
    inplace: Sequence[tuple[int, int]] = ()
    # Outputs to compare (default all); others are only checked for shape and dtype.
    compare: Sequence[int] | None = None
    # For RANDOM ops: check(outputs, args, dtype) -> list of problems (empty when fine).
    check: Callable[[list[np.ndarray], dict[str, Any], np.dtype], list[str]] | None = None
    # Gradient check (see kaffa_conformance.gradcheck): None = whenever the op has a gradient maker
    # and is not stochastic; False to opt a case out (say why in a comment).
    grad: bool | None = None
    # Inputs whose gradients are checked (default: every float input not in fixed_dtype_inputs).
    grad_inputs: Sequence[int] | None = None

    @property
    def id(self) -> str:
        return f"{self.op}/{self.name}"


CaseFn = Callable[[np.random.Generator], list[Case]]
GENERATORS: dict[str, CaseFn] = {}


def cases(*ops: str) -> Callable[[CaseFn], CaseFn]:
    def deco(fn: CaseFn) -> CaseFn:
        for op in ops:
            GENERATORS[op] = fn
        return fn

    return deco


def rng_for(op: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(op.encode()))


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from kaffa.ops import FAMILIES

        for family in FAMILIES:  # one module per op family, as kaffa.ops
            importlib.import_module(f"kaffa_conformance.cases.{family}")


def for_op(op: str) -> list[Case]:
    """The cases of ``op`` (freshly generated, deterministic)."""
    _load()
    gen = GENERATORS.get(op)
    if gen is None:
        return []
    out = gen(rng_for(op))
    for c in out:
        if c.op != op:
            raise ValueError(f"case generator for {op} produced a case for {c.op}")
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate case names for {op}: {names}")
    return out


def ops_with_cases() -> list[str]:
    _load()
    return sorted(GENERATORS)


# -- helpers for generators ------------------------------------------------------------------------
def uniform(
    rng: np.random.Generator, shape: Sequence[int], low: float = -1.0, high: float = 1.0
) -> np.ndarray:
    return rng.uniform(low, high, size=tuple(shape))


def ints(rng: np.random.Generator, shape: Sequence[int], low: int = -8, high: int = 8) -> np.ndarray:
    """Integer-valued float64 data: exact in every dtype under test, float16 included."""
    return rng.integers(low, high, size=tuple(shape)).astype(np.float64)

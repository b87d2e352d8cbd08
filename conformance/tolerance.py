"""Tolerances from dtype x op class, scaled by the reduction length.

A result passes when every element satisfies ``|got - want| <= atol + rtol * |want|``, with
``want`` the float64 reference on the same (already rounded) inputs. The numbers are a few ulps
of the dtype for one rounding, and grow with sqrt(K) for sums of K terms (random rounding
errors add like a random walk); GEMM and reductions also scale atol by the magnitude of the
terms, since cancellation makes relative error meaningless near zero.

Every cell of the conformance matrix records the tolerance it was held to and the error measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kaffa_conformance.cases import ELEMENTWISE, EXACT, GEMM, RANDOM, REDUCTION

# (rtol, atol) for one elementwise op. float32: ~80 ulps, leaves room for fast-math exp/tanh on GPUs.
_BASE: dict[str, tuple[float, float]] = {
    "float16": (2e-3, 1e-3),
    "bfloat16": (1.6e-2, 1e-2),
    "float32": (1e-5, 1e-6),
    "float64": (1e-12, 1e-13),
}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def __str__(self) -> str:
        return f"rtol={self.rtol:.1e} atol={self.atol:.1e}"

    def to_dict(self) -> dict[str, float]:
        return {"rtol": self.rtol, "atol": self.atol}


def tolerance(dtype: np.dtype, op_class: str, reduction: int = 1, magnitude: float = 1.0) -> Tolerance:
    """The tolerance for one output. ``magnitude`` is the largest |input term| (for GEMM/reductions)."""
    dt = np.dtype(dtype)
    if op_class == EXACT or dt.kind in "biu":
        return Tolerance(0.0, 0.0)
    rtol, atol = _BASE.get(dt.name, _BASE["float32"])
    if op_class in (ELEMENTWISE, RANDOM):
        return Tolerance(rtol, atol)
    if op_class in (REDUCTION, GEMM):
        k = math.sqrt(max(int(reduction), 1))
        return Tolerance(rtol * k, atol * k * max(magnitude, 1.0))
    raise ValueError(f"unknown op class {op_class!r}")


def measure(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(max abs error, max relative error) between two same-shaped arrays, nan/inf-aware."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    if g.size == 0:
        return 0.0, 0.0
    same_special = (np.isnan(g) & np.isnan(w)) | (np.isinf(g) & (g == w))
    with np.errstate(invalid="ignore"):  # inf - inf: handled by same_special / the nan map below
        diff = np.where(same_special, 0.0, np.abs(g - w))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = diff / np.maximum(np.abs(w), np.finfo(np.float64).tiny)
    rel = np.where(diff == 0, 0.0, rel)
    return float(diff.max()), float(rel.max())


def within(got: np.ndarray, want: np.ndarray, tol: Tolerance) -> bool:
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    same_special = (np.isnan(g) & np.isnan(w)) | (np.isinf(g) & (g == w))
    ok = np.abs(g - w) <= tol.atol + tol.rtol * np.abs(w)
    return bool(np.all(ok | same_special))

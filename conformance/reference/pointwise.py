"""float64 references for the pointwise family (see kaffa.ops.pointwise)."""

from __future__ import annotations

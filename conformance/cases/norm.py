"""Cases for SpatialBN, LRN, LayerNorm, Dropout."""

from __future__ import annotations

from kaffa_conformance.cases import Case, cases  # noqa: F401

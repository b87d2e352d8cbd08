"""Cases for EQ, LT, GT, And, Or, Not."""

from __future__ import annotations

from kaffa_conformance.cases import Case, cases  # noqa: F401

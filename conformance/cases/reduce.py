"""Cases for ReduceSum, ReduceMean, ReduceMax, SumElements."""

from __future__ import annotations

from kaffa_conformance.cases import Case, cases  # noqa: F401

"""Cases for Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient."""

from __future__ import annotations

from kaffa_conformance.cases import Case, cases  # noqa: F401

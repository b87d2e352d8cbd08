"""Cases for Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad."""

from __future__ import annotations

from kaffa_conformance.cases import Case, cases  # noqa: F401

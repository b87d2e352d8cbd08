"""Comparisons and logic: EQ, LT, GT, And, Or, Not (schemas, shape inference, gradient makers)."""

from __future__ import annotations

"""Conformance cases for the pointwise family (see kaffa.ops.pointwise)."""

from __future__ import annotations

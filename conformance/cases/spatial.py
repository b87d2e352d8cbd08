"""Conformance cases for the spatial family (see kaffa.ops.spatial)."""

from __future__ import annotations

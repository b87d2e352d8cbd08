"""ONNX translators onto the spatial family (see kaffa.ops.spatial)."""

from __future__ import annotations

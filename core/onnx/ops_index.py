"""ONNX translators onto the index family (see kaffa.ops.index)."""

from __future__ import annotations

"""Normalization and regularization: SpatialBN, LRN, LayerNorm, Dropout (schemas, shape inference,
gradient makers).
"""

from __future__ import annotations

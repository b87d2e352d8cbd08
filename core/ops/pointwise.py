"""Elementwise functions ONNX needs beyond the core set: Where, Mod, trigonometric and hyperbolic
functions, rounding, Erf, Gelu, bitwise ops and BitShift (schemas, shape inference, gradients).
"""

from __future__ import annotations

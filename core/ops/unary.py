"""Unary math: Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient (schemas,
shape inference, gradient makers).
"""

from __future__ import annotations

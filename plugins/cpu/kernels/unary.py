"""Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

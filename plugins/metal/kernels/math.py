"""metal kernels for the math family (see kaffa.ops.math)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

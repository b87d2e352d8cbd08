"""metal kernels for the unary family (see kaffa.ops.unary)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

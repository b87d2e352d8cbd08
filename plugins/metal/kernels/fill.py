"""metal kernels for the fill family (see kaffa.ops.fill)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

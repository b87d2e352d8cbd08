"""metal kernels for the reduce family (see kaffa.ops.reduce)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

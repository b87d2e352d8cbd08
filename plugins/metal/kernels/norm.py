"""metal kernels for the norm family (see kaffa.ops.norm)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

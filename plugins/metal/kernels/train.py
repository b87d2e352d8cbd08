"""metal kernels for the train family (see kaffa.ops.train)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

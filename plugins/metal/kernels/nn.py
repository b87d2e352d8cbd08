"""metal kernels for the nn family (see kaffa.ops.nn)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

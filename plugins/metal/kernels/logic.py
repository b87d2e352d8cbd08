"""metal kernels for the logic family (see kaffa.ops.logic)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

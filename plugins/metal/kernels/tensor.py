"""metal kernels for the tensor family (see kaffa.ops.tensor)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

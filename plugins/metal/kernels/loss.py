"""metal kernels for the loss family (see kaffa.ops.loss)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("metal")

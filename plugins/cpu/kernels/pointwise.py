"""cpu kernels for the pointwise family (see kaffa.ops.pointwise)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

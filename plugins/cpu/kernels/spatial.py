"""cpu kernels for the spatial family (see kaffa.ops.spatial)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

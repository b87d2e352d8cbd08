"""cpu kernels for the index family (see kaffa.ops.index)."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

"""EQ, LT, GT, And, Or, Not."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

"""ReduceSum, ReduceMean, ReduceMax, SumElements."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

"""Reductions: ReduceSum, ReduceMean, ReduceMax, SumElements (schemas, shape inference, gradient makers)."""

from __future__ import annotations

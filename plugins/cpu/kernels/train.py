"""Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad."""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

"""The cpu kernels, one module per op family (the same families as kaffa.ops)."""

import importlib

from kaffa.ops import FAMILIES

TABLES = [importlib.import_module(f"kaffa_cpu.kernels.{family}").table for family in FAMILIES]

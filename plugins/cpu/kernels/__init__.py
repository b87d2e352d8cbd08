"""The cpu kernels, one module per op family (the same families as kaffa.ops)."""

from kaffa_cpu.kernels import activation, fill, math, nn, tensor

TABLES = [activation.table, fill.table, math.table, nn.table, tensor.table]

"""The cpu kernels, one module per op family (the same families as kaffa.ops)."""

from kaffa_cpu.kernels import (
    activation,
    fill,
    index,
    logic,
    loss,
    math,
    nn,
    norm,
    pointwise,
    reduce,
    spatial,
    tensor,
    train,
    unary,
)

TABLES = [
    activation.table,
    fill.table,
    index.table,
    logic.table,
    loss.table,
    math.table,
    nn.table,
    norm.table,
    pointwise.table,
    reduce.table,
    spatial.table,
    tensor.table,
    train.table,
    unary.table,
]

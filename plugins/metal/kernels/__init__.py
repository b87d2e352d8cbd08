"""The metal kernels, one module per op family (the same families as kaffa.ops), each with its
WGSL source in wgsl/<family>.wgsl. Host helpers live in ``common``."""

from kaffa_metal.kernels import (
    activation,
    blas,
    fill,
    logic,
    loss,
    math,
    nn,
    norm,
    pool,
    reduce,
    tensor,
    train,
    unary,
)

TABLES = [
    activation.table,
    blas.table,
    fill.table,
    logic.table,
    loss.table,
    math.table,
    nn.table,
    norm.table,
    pool.table,
    reduce.table,
    tensor.table,
    train.table,
    unary.table,
]

"""The cuda kernels, one module per op family (the same families as kaffa.ops): CuPy array code
(cuBLAS GEMMs, CuPy's elementwise and reduction kernels) and raw CUDA C in cu/<family>.cu.
Host helpers live in ``common``; the CUDNN engine in kaffa_cuda.cudnn."""

from kaffa_cuda.kernels import (
    activation,
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

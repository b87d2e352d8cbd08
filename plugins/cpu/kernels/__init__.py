"""The cpu kernels, one module per op family (the same families as kaffa.ops)."""

from kaffa_cpu.kernels import activation, fill, logic, loss, math, nn, norm, reduce, tensor, train, unary

TABLES = [
    activation.table,
    fill.table,
    logic.table,
    loss.table,
    math.table,
    nn.table,
    norm.table,
    reduce.table,
    tensor.table,
    train.table,
    unary.table,
]

"""The built-in operator schemas, one module per op family. Importing this package registers them."""

from kaffa.ops import (
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

__all__ = [
    "activation",
    "fill",
    "index",
    "logic",
    "loss",
    "math",
    "nn",
    "norm",
    "pointwise",
    "reduce",
    "spatial",
    "tensor",
    "train",
    "unary",
]

"""The built-in operator schemas, one module per op family. Importing this package registers them."""

from kaffa.ops import activation, fill, logic, loss, math, nn, norm, reduce, tensor, train, unary

__all__ = ["activation", "fill", "logic", "loss", "math", "nn", "norm", "reduce", "tensor", "train", "unary"]

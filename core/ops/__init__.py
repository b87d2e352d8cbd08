"""The built-in operator schemas, one module per op family. Importing this package registers them."""

from kaffa.ops import activation, fill, math, nn, tensor

__all__ = ["activation", "fill", "math", "nn", "tensor"]

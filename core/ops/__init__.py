"""The built-in operator schemas, one module per op family. Importing this package registers them.

``FAMILIES`` is the one list of families: the cpu kernels (``kaffa_cpu.kernels``), the conformance
references and the conformance cases have one module per family under the same name and load
them from this list, so a new family is registered here alone.
"""

import importlib

FAMILIES: tuple[str, ...] = (
    "activation",
    "attention",
    "collective",
    "control",
    "detection",
    "fill",
    "index",
    "linalg",
    "logic",
    "loss",
    "math",
    "nn",
    "norm",
    "pointwise",
    "preprocess",
    "quant",
    "recurrent",
    "reduce",
    "sampling",
    "signal",
    "spatial",
    "tensor",
    "train",
    "unary",
)

for _family in FAMILIES:
    importlib.import_module(f"kaffa.ops.{_family}")

__all__ = ["FAMILIES", *FAMILIES]

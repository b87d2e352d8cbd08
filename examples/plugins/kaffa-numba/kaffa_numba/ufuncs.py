"""The scalar functions, compiled into numpy ufuncs by numba on first use.

Each function gets two compiled forms, for float32 and float64 (the signatures fix the output
type, so float32 math stays float32): a single-threaded ufunc (lowest call overhead) for small
tensors, and a ``target="parallel"`` ufunc that splits large tensors across numba's threads. They
are compiled when an op first needs them and cached on disk (``cache=True``), so a second process
does not recompile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

# Tensors at least this large run on all threads; below it the thread start-up costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16


def _relu(x):
    return x if x > 0 else x * 0


def _sigmoid(x):
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def _tanh(x):
    return math.tanh(x)


def _exp(x):
    return math.exp(x)


def _log(x):
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _sqrt(x):
    return math.sqrt(x) if x >= 0 else math.nan


def _sqr(x):
    return x * x


def _abs(x):
    return abs(x)


def _negative(x):
    return -x


def _softplus(x):
    # log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)
    return max(x, 0) + math.log1p(math.exp(-abs(x)))


def _elu(x, alpha):
    return x if x > 0 else alpha * math.expm1(x)


def _leaky_relu(x, alpha):
    return x if x > 0 else x * alpha


def _add(a, b):
    return a + b


def _sub(a, b):
    return a - b


def _mul(a, b):
    return a * b


def _div(a, b):
    return a / b


def _relu_grad(y, dy):
    return dy if y > 0 else dy * 0


def _sigmoid_grad(y, dy):
    return dy * y * (1 - y)


def _tanh_grad(y, dy):
    return dy * (1 - y * y)


def _leaky_relu_grad(y, dy, alpha):
    return dy if y > 0 else dy * alpha


SCALAR: dict[str, tuple[Callable[..., Any], int]] = {
    "Relu": (_relu, 1),
    "Sigmoid": (_sigmoid, 1),
    "Tanh": (_tanh, 1),
    "Exp": (_exp, 1),
    "Log": (_log, 1),
    "Sqrt": (_sqrt, 1),
    "Sqr": (_sqr, 1),
    "Abs": (_abs, 1),
    "Negative": (_negative, 1),
    "Softplus": (_softplus, 1),
    "Elu": (_elu, 2),
    "LeakyRelu": (_leaky_relu, 2),
    "Add": (_add, 2),
    "Sub": (_sub, 2),
    "Mul": (_mul, 2),
    "Div": (_div, 2),
    "ReluGradient": (_relu_grad, 2),
    "SigmoidGradient": (_sigmoid_grad, 2),
    "TanhGradient": (_tanh_grad, 2),
    "LeakyReluGradient": (_leaky_relu_grad, 3),
}

TYPES = (np.float32, np.float64)


def _compile(op: str, target: str) -> Any:
    import numba

    fn, nargs = SCALAR[op]
    sigs = [f"{t}({', '.join([t] * nargs)})" for t in ("float32", "float64")]
    return numba.vectorize(sigs, target=target, cache=True)(fn)


@cache
def serial(op: str) -> Any:
    return _compile(op, "cpu")


@cache
def parallel(op: str) -> Any:
    return _compile(op, "parallel")


def call(op: str, *args: np.ndarray) -> np.ndarray:
    """Apply ``op``'s ufunc with numpy broadcasting; the result has the first argument's dtype."""
    size = max(a.size for a in args)
    uf = parallel(op) if size >= PARALLEL_MIN_SIZE else serial(op)
    return np.asarray(uf(*args))

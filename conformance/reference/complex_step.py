"""Reference gradients by the complex step: d f(x)/dx = Im f(x + ih) / h, exact to rounding for
any f written with analytic numpy operations (no abs, no comparisons on the perturbed value)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

H = 1e-30


def vjp(
    fn: Callable[..., np.ndarray], inputs: list[np.ndarray], dy: np.ndarray, wrt: list[int]
) -> list[np.ndarray]:
    """For each input index in ``wrt``: sum(dy * d fn(*inputs) / d input). Non-float inputs
    (indices, flags) are passed through unperturbed."""
    out = []
    for i in wrt:
        base = inputs[i].astype(np.complex128)
        grad = np.zeros(base.shape)
        for j in np.ndindex(base.shape):
            pert = [v.astype(np.complex128) if v.dtype.kind == "f" else v for v in inputs]
            pert[i] = base.copy()
            pert[i][j] += 1j * H
            grad[j] = np.sum(np.imag(fn(*pert)) / H * dy)
        out.append(grad)
    return out

"""References for Einsum, Det and their gradient ops.

The gradients are computed from linearity, not from a formula: Einsum is linear in each input, so
dX_i[e] = sum(dY * einsum(..., unit_e, ...)) for every element e; Det's gradient is the cofactor
matrix, from explicit minors.
"""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference


@reference("Einsum")
def einsum(args, *xs):
    return (np.asarray(np.einsum(args["equation"].replace(" ", ""), *xs)),)


@reference("EinsumGradient")
def einsum_gradient(args, dy, *xs):
    eq = args["equation"].replace(" ", "")
    grads = []
    for i, x in enumerate(xs):
        g = np.zeros(x.shape)
        for e in np.ndindex(*x.shape):
            unit = np.zeros(x.shape)
            unit[e] = 1.0
            ins = [*xs[:i], unit, *xs[i + 1 :]]
            g[e] = np.sum(dy * np.einsum(eq, *ins))
        grads.append(g)
    return tuple(grads)


@reference("Det")
def det(args, x):
    return (np.asarray(np.linalg.det(x)),)


def _cofactors(a):
    m = a.shape[0]
    c = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            minor = np.delete(np.delete(a, i, axis=0), j, axis=1)
            c[i, j] = (-1) ** (i + j) * (np.linalg.det(minor) if minor.size else 1.0)
    return c


@reference("DetGradient")
def det_gradient(args, dy, x):
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape[:-2]):
        out[idx] = dy[idx] * _cofactors(x[idx])
    return (out,)

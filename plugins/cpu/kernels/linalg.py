"""Einsum, Det and their gradient ops.

Einsum runs numpy.einsum on the equation with its ellipses expanded (``parse_einsum``), float16 in
float32. Det runs numpy.linalg.det in float64. DetGradient uses the adjugate from the SVD,
adj(X) = det(U) det(V) V diag(prod_{j != i} s_j) U^T, which is defined for singular X too.
"""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.math import work_dtype
from kaffa.ops.linalg import einsum_sizes, parse_einsum
from kaffa.schema import check

table = KernelTable("cpu")


def _work(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False) if x.dtype.kind == "f" else x


@table.kernel("Einsum", dtypes=NUMERIC_TYPES)
def einsum(ctx: KernelContext) -> RunFn:
    equation = ctx.args["equation"]

    def run(*xs: np.ndarray) -> tuple[np.ndarray]:
        subs, out = parse_einsum(equation, [x.ndim for x in xs])
        einsum_sizes(subs, [x.shape for x in xs])  # ShapeError naming the letter, before numpy's
        y = np.einsum(f"{','.join(subs)}->{out}", *(_work(x) for x in xs))
        return (np.asarray(y).astype(xs[0].dtype, copy=False),)

    return run


def einsum_input_gradient(
    dy: np.ndarray, xs: list[np.ndarray], subs: list[str], out: str, i: int
) -> np.ndarray:
    """d(sum(dY * einsum(xs)))/d xs[i] for einsum ``subs -> out``."""
    x, t = xs[i], subs[i]
    letters = list(dict.fromkeys(t))  # X_i's distinct letters, in order
    size = {c: x.shape[t.index(c)] for c in letters}
    others = [j for j in range(len(xs)) if j != i]
    reach = set(out).union(*(subs[j] for j in others))
    kept = [c for c in letters if c in reach]
    g = np.einsum(
        f"{','.join([out, *(subs[j] for j in others)])}->{''.join(kept)}", dy, *(xs[j] for j in others)
    )
    # Letters only X_i has were summed inside it: the gradient is constant along them.
    g = g.reshape([g.shape[kept.index(c)] if c in kept else 1 for c in letters])
    # Where X_i broadcast (size 1 against a larger size), its gradient sums over the broadcast.
    axes = tuple(k for k, c in enumerate(letters) if size[c] == 1 and g.shape[k] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    g = np.broadcast_to(g, [size[c] for c in letters])
    if len(letters) == len(t):
        return np.array(g)  # a copy (ascontiguousarray would make a 0-d gradient 1-d)
    # A repeated letter reads a diagonal: write the gradient there, zero elsewhere.
    dx = np.zeros(x.shape, dtype=g.dtype)
    strides = [sum(dx.strides[k] for k, c2 in enumerate(t) if c2 == c) for c in letters]
    diag = np.lib.stride_tricks.as_strided(dx, shape=g.shape, strides=strides, writeable=True)
    diag[...] = g
    return dx


@table.kernel("EinsumGradient", dtypes=FLOAT_TYPES)
def einsum_gradient(ctx: KernelContext) -> RunFn:
    equation = ctx.args["equation"]

    def run(dy: np.ndarray, *xs: np.ndarray) -> tuple[np.ndarray, ...]:
        subs, out = parse_einsum(equation, [x.ndim for x in xs])
        sizes = einsum_sizes(subs, [x.shape for x in xs])
        want = tuple(sizes[c] for c in out)
        check(dy.shape == want, f"EinsumGradient: dY {list(dy.shape)} is not the output shape {list(want)}")
        work = [_work(x) for x in xs]
        return tuple(
            einsum_input_gradient(_work(dy), work, subs, out, i).astype(dy.dtype) for i in range(len(xs))
        )

    return run


def _square(op: str, x: np.ndarray) -> None:
    check(x.ndim >= 2 and x.shape[-1] == x.shape[-2], f"{op}: X must be [..., M, M], got {list(x.shape)}")


@table.kernel("Det", dtypes=FLOAT_TYPES)
def det(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        _square("Det", x)
        return (np.asarray(np.linalg.det(x.astype(np.float64))).astype(x.dtype),)

    return run


def adjugate_t(x: np.ndarray) -> np.ndarray:
    """adj(X)^T (the cofactor matrix) of each matrix of x, float64, singular matrices included."""
    m = x.shape[-1]
    if m == 0:
        return np.zeros(x.shape)
    u, s, vt = np.linalg.svd(x)
    # prod_{j != i} s_j without dividing (s may hold zeros).
    left = np.concatenate([np.ones((*s.shape[:-1], 1)), np.cumprod(s, axis=-1)[..., :-1]], axis=-1)
    right = np.concatenate(
        [np.cumprod(s[..., ::-1], axis=-1)[..., -2::-1], np.ones((*s.shape[:-1], 1))], axis=-1
    )
    sign = np.linalg.det(u) * np.linalg.det(vt)
    adj = np.einsum("...ji,...j,...kj->...ik", vt, left * right, u)  # V diag(.) U^T
    return np.swapaxes(adj * sign[..., None, None], -1, -2)


@table.kernel("DetGradient", dtypes=FLOAT_TYPES)
def det_gradient(ctx: KernelContext) -> RunFn:
    def run(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
        _square("DetGradient", x)
        check(
            dy.shape == x.shape[:-2],
            f"DetGradient: dY {list(dy.shape)} is not Det(X {list(x.shape)})'s shape",
        )
        g = adjugate_t(x.astype(np.float64)) * dy.astype(np.float64)[..., None, None]
        return (g.astype(dy.dtype),)

    return run

"""SpatialBN, LRN, LayerNorm, Dropout and their gradient ops.

float16 is computed in float32 and rounded once per output.
"""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.norm import channel_axis
from kaffa.schema import check, norm_axis
from kaffa_cpu.kernels.nn import work_dtype

table = KernelTable("cpu")


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False)


# -- SpatialBN -------------------------------------------------------------------------------------


def _bn_layout(
    op: str, x: np.ndarray, order: str, **vectors: np.ndarray
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(axes to reduce, shape a [C] vector broadcasts as, values per channel M); checks that every
    vector in ``vectors`` is [C]."""
    c_ax = channel_axis(op, x.shape, order)
    c = x.shape[c_ax]
    for name, v in vectors.items():
        check(v.shape == (c,), f"{op}: {name} {list(v.shape)} must be [C] = [{c}] for X {list(x.shape)}")
    red = tuple(a for a in range(x.ndim) if a != c_ax)
    bshape = tuple(c if a == c_ax else 1 for a in range(x.ndim))
    return red, bshape, (x.size // c if c else 0)


@table.kernel("SpatialBN", dtypes=FLOAT_TYPES)
def spatial_bn(ctx: KernelContext) -> RunFn:
    eps, momentum, order = ctx.args["epsilon"], ctx.args["momentum"], ctx.args["order"]

    def run_test(x, scale, bias, mean, var):
        _, bshape, _ = _bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        a = _wide(scale) / np.sqrt(_wide(var) + eps)
        b = _wide(bias) - _wide(mean) * a
        return ((_wide(x) * a.reshape(bshape) + b.reshape(bshape)).astype(x.dtype, copy=False),)

    def run_train(x, scale, bias, mean, var):
        red, bshape, m = _bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        check(m > 1, f"SpatialBN: training needs more than one value per channel, X {list(x.shape)} has {m}")
        xw = _wide(x)
        mu = xw.mean(axis=red)
        d = xw - mu.reshape(bshape)
        v = np.mean(d * d, axis=red)
        inv = 1 / np.sqrt(v + eps)
        y = d * (_wide(scale) * inv).reshape(bshape) + _wide(bias).reshape(bshape)
        rm = momentum * _wide(mean) + (1 - momentum) * mu
        rv = momentum * _wide(var) + (1 - momentum) * (m / (m - 1)) * v  # unbiased, as Caffe2/cuDNN
        dt = x.dtype
        return tuple(a.astype(dt, copy=False) for a in (y, rm, rv, mu, inv))

    return run_test if ctx.args["is_test"] else run_train


@table.kernel("SpatialBNGradient", dtypes=FLOAT_TYPES)
def spatial_bn_gradient(ctx: KernelContext) -> RunFn:
    eps, order, is_test = ctx.args["epsilon"], ctx.args["order"], ctx.args["is_test"]

    def run(x, scale, dy, mean, stat):
        check(x.shape == dy.shape, f"SpatialBNGradient: X {list(x.shape)} and dY {list(dy.shape)} differ")
        red, bshape, m = _bn_layout("SpatialBNGradient", x, order, scale=scale, mean=mean, stat=stat)
        inv = 1 / np.sqrt(_wide(stat) + eps) if is_test else _wide(stat)
        dyw = _wide(dy)
        xhat = (_wide(x) - _wide(mean).reshape(bshape)) * inv.reshape(bshape)
        dbias = dyw.sum(axis=red)
        dscale = (dyw * xhat).sum(axis=red)
        k = (_wide(scale) * inv).reshape(bshape)
        if is_test:  # the statistics are constants
            dx = dyw * k
        else:
            dx = (k / m) * (m * dyw - dbias.reshape(bshape) - xhat * dscale.reshape(bshape))
        dt = x.dtype
        return dx.astype(dt, copy=False), dscale.astype(dt, copy=False), dbias.astype(dt, copy=False)

    return run


# -- LRN -------------------------------------------------------------------------------------------


def _window_sum(v: np.ndarray, size: int) -> np.ndarray:
    """Sum over the window of ``size`` channels centred on each channel of the last axis."""
    pre = (size - 1) // 2
    c = v.shape[-1]
    pad = np.zeros((*v.shape[:-1], c + size - 1), v.dtype)
    pad[..., pre : pre + c] = v
    out = pad[..., 0:c].copy()
    for k in range(1, size):
        out += pad[..., k : k + c]
    return out


def _lrn_parts(ctx: KernelContext):
    size, alpha, beta, bias = (ctx.args[k] for k in ("size", "alpha", "beta", "bias"))
    order, op = ctx.args["order"], ctx.op_type

    def last(x: np.ndarray) -> tuple[np.ndarray, int]:
        """x with its channel axis moved last (a view), and that axis."""
        ax = channel_axis(op, x.shape, order)
        return np.moveaxis(x, ax, -1), ax

    def scale_of(xl: np.ndarray) -> np.ndarray:
        return bias + (alpha / size) * _window_sum(xl * xl, size)

    return size, alpha, beta, last, scale_of


@table.kernel("LRN", dtypes=FLOAT_TYPES)
def lrn(ctx: KernelContext) -> RunFn:
    _, _, beta, last, scale_of = _lrn_parts(ctx)
    with_scale = ctx.num_outputs > 1

    def run(x):
        xl, ax = last(_wide(x))
        s = scale_of(xl)
        y = np.moveaxis(xl * s ** (-beta), -1, ax).astype(x.dtype, copy=False)
        return (y, np.moveaxis(s, -1, ax).astype(x.dtype, copy=False)) if with_scale else (y,)

    return run


@table.kernel("LRNGradient", dtypes=FLOAT_TYPES)
def lrn_gradient(ctx: KernelContext) -> RunFn:
    size, alpha, beta, last, scale_of = _lrn_parts(ctx)

    def run(x, y, dy, *given):
        for name, a in (("Y", y), ("dY", dy), *(("scale", g) for g in given)):
            check(a.shape == x.shape, f"LRNGradient: X {list(x.shape)} and {name} {list(a.shape)} differ")
        xl, ax = last(_wide(x))
        yl, dyl = last(_wide(y))[0], last(_wide(dy))[0]
        s = last(_wide(given[0]))[0] if given else scale_of(xl)
        # The window is symmetric, so the sum over the outputs that see channel j is a window sum.
        dx = dyl * s ** (-beta) - (2 * alpha * beta / size) * xl * _window_sum(dyl * yl / s, size)
        return (np.moveaxis(dx, -1, ax).astype(x.dtype, copy=False),)

    return run


# -- LayerNorm -------------------------------------------------------------------------------------


def _rows(x: np.ndarray, axis: int, op: str) -> tuple[np.ndarray, int]:
    """X as [rows, D] at ``axis``, and the canonical axis."""
    check(x.ndim >= 1, f"{op}: X must have at least one dim, got a scalar")
    ax = norm_axis(axis, x.ndim, op)
    return x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1), ax


@table.kernel("LayerNorm", dtypes=FLOAT_TYPES)
def layer_norm(ctx: KernelContext) -> RunFn:
    axis, eps = ctx.args["axis"], ctx.args["epsilon"]

    def run(x, *affine):
        x2, ax = _rows(_wide(x), axis, "LayerNorm")
        mean = x2.mean(axis=1, keepdims=True)
        d = x2 - mean
        std = np.sqrt(np.mean(d * d, axis=1, keepdims=True) + eps)
        y = d / std
        if affine:
            gamma, beta = affine
            for name, v in (("gamma", gamma), ("beta", beta)):
                check(
                    v.size == y.shape[1], f"LayerNorm: {name} {list(v.shape)} must have {y.shape[1]} elements"
                )
            y = y * _wide(gamma).reshape(-1) + _wide(beta).reshape(-1)
        stat = (*x.shape[:ax], 1)
        dt = x.dtype
        return (
            y.reshape(x.shape).astype(dt, copy=False),
            mean.reshape(stat).astype(dt),
            std.reshape(stat).astype(dt),
        )

    return run


@table.kernel("LayerNormGradient", dtypes=FLOAT_TYPES)
def layer_norm_gradient(ctx: KernelContext) -> RunFn:
    axis = ctx.args["axis"]

    def run(dy, y, mean, std, x, *gamma):
        check(dy.shape == x.shape, f"LayerNormGradient: X {list(x.shape)} and dY {list(dy.shape)} differ")
        x2, _ = _rows(_wide(x), axis, "LayerNormGradient")
        dy2 = _wide(dy).reshape(x2.shape)
        mu, sd = _wide(mean).reshape(-1, 1), _wide(std).reshape(-1, 1)
        check(
            mu.shape[0] == x2.shape[0],
            f"LayerNormGradient: mean {list(mean.shape)} does not fit X {list(x.shape)}",
        )
        xhat = (x2 - mu) / sd
        g = dy2 * _wide(gamma[0]).reshape(-1) if gamma else dy2
        dx = (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)) / sd
        dt = x.dtype
        out = (dx.reshape(x.shape).astype(dt, copy=False),)
        if gamma:
            shape = gamma[0].shape
            dgamma = (dy2 * xhat).sum(axis=0).reshape(shape).astype(dt, copy=False)
            out += (dgamma, dy2.sum(axis=0).reshape(shape).astype(dt, copy=False))
        return out

    return run


# -- Dropout ---------------------------------------------------------------------------------------


@table.kernel("Dropout", dtypes=FLOAT_TYPES)
def dropout(ctx: KernelContext) -> RunFn:
    ratio = ctx.args["ratio"]
    with_mask = ctx.num_outputs > 1
    if ctx.args["is_test"]:

        def run_test(x):
            return (x.copy(), np.ones(x.shape, np.bool_)) if with_mask else (x.copy(),)

        return run_test

    rng = np.random.default_rng(ctx.seed)
    scale = 1.0 / (1.0 - ratio)

    def run(x):
        keep = rng.random(x.shape) >= ratio
        y = np.where(keep, _wide(x) * scale, 0).astype(x.dtype, copy=False)
        return (y, keep) if with_mask else (y,)

    return run


@table.kernel("DropoutGrad", dtypes=FLOAT_TYPES)
def dropout_grad(ctx: KernelContext) -> RunFn:
    scale = 1.0 / (1.0 - ctx.args["ratio"])
    if ctx.args["is_test"]:
        return lambda dy, *mask: (dy.copy(),)

    def run(dy, mask):
        check(mask.shape == dy.shape, f"DropoutGrad: dY {list(dy.shape)} and mask {list(mask.shape)} differ")
        return (np.where(mask, _wide(dy) * scale, 0).astype(dy.dtype, copy=False),)

    return run

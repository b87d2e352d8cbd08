"""SpatialBN (training and test), LRN, LayerNorm, Dropout and their gradient ops, as CuPy array
code: per-channel / per-row statistics are CuPy reductions over X viewed as (outer, C, inner)
(kaffa.launch.norm's layouts and checks), so NCHW and NHWC of any rank take the same path.
float16 computes in float32 and rounds once per output.

Dropout draws from the op's cuRAND generator (common.Rng; numpy's on cudasim), as the random
fillers: a seeded net is reproducible, and every run gets a new mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import norm as shared
from kaffa.launch import split_axis
from kaffa.ops.norm import channel_axis
from kaffa.schema import check
from kaffa_cuda.kernels.common import FLOATS, Rng, Table, wide, xp

table = Table()

# -- SpatialBN -------------------------------------------------------------------------------------


@table.kernel("SpatialBN", dtypes=FLOATS)
def spatial_bn(ctx: KernelContext) -> RunFn:
    eps, momentum, order = float(ctx.args["epsilon"]), float(ctx.args["momentum"]), ctx.args["order"]
    cp = xp(ctx)

    def run_test(x, scale, bias, mean, var):
        outer, c, inner = shared.bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        a = wide(cp, scale) / cp.sqrt(wide(cp, var) + eps)
        b = wide(cp, bias) - wide(cp, mean) * a
        y = wide(cp, x).reshape(outer, c, inner) * a[:, None] + b[:, None]
        return (y.reshape(x.shape).astype(x.dtype, copy=False),)

    def run_train(x, scale, bias, mean, var):
        outer, c, inner = shared.bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        m = outer * inner
        shared.check_bn_train(x, m)
        x3 = wide(cp, x).reshape(outer, c, inner)
        mu = x3.mean(axis=(0, 2))
        d = x3 - mu[:, None]
        v = (d * d).mean(axis=(0, 2))
        inv = 1 / cp.sqrt(v + eps)
        y = d * (wide(cp, scale) * inv)[:, None] + wide(cp, bias)[:, None]
        rm = momentum * wide(cp, mean) + (1 - momentum) * mu
        rv = momentum * wide(cp, var) + (1 - momentum) * (m / (m - 1)) * v  # unbiased, as Caffe2/cuDNN
        dt = x.dtype
        return y.reshape(x.shape).astype(dt), rm.astype(dt), rv.astype(dt), mu.astype(dt), inv.astype(dt)

    return run_test if ctx.args["is_test"] else run_train


@table.kernel("SpatialBNGradient", dtypes=FLOATS)
def spatial_bn_gradient(ctx: KernelContext) -> RunFn:
    eps, order, is_test = float(ctx.args["epsilon"]), ctx.args["order"], bool(ctx.args["is_test"])
    cp = xp(ctx)

    def run(x, scale, dy, mean, stat):
        shared.check_same_x("SpatialBNGradient", x, dy)
        outer, c, inner = shared.bn_layout("SpatialBNGradient", x, order, scale=scale, mean=mean, stat=stat)
        m = outer * inner
        inv = 1 / cp.sqrt(wide(cp, stat) + eps) if is_test else wide(cp, stat)
        dy3 = wide(cp, dy).reshape(outer, c, inner)
        xhat = (wide(cp, x).reshape(outer, c, inner) - wide(cp, mean)[:, None]) * inv[:, None]
        dbias = dy3.sum(axis=(0, 2))
        dscale = (dy3 * xhat).sum(axis=(0, 2))
        k = (wide(cp, scale) * inv)[:, None]
        if is_test:  # the statistics are constants
            dx = dy3 * k
        else:
            dx = (k / m) * (m * dy3 - dbias[:, None] - xhat * dscale[:, None])
        dt = x.dtype
        return dx.reshape(x.shape).astype(dt), dscale.astype(dt), dbias.astype(dt)

    return run


# -- LRN -------------------------------------------------------------------------------------------


def _window_sum(cp: Any, v: Any, size: int) -> Any:
    """Sum over the window of ``size`` channels centred on each channel of axis 1 of (outer, C,
    inner): ``size`` shifted adds of a zero-padded copy (no cumulative-sum cancellation)."""
    pre, c = (size - 1) // 2, v.shape[1]
    pad = cp.zeros((v.shape[0], c + size - 1, v.shape[2]), v.dtype)
    pad[:, pre : pre + c] = v
    out = pad[:, 0:c].copy()
    for k in range(1, size):
        out += pad[:, k : k + c]
    return out


def _lrn_parts(ctx: KernelContext):
    a = ctx.args
    return int(a["size"]), float(a["alpha"]), float(a["beta"]), float(a["bias"]), a["order"]


def _lrn_view(op: str, x: Any, order: str) -> tuple[int, int, int]:
    return split_axis(x.shape, channel_axis(op, x.shape, order))


@table.kernel("LRN", dtypes=FLOATS)
def lrn(ctx: KernelContext) -> RunFn:
    size, alpha, beta, bias, order = _lrn_parts(ctx)
    with_scale, cp = ctx.num_outputs > 1, xp(ctx)

    def run(x):
        x3 = wide(cp, x).reshape(_lrn_view("LRN", x, order))
        s = bias + (alpha / size) * _window_sum(cp, x3 * x3, size)
        y = (x3 * s ** (-beta)).reshape(x.shape).astype(x.dtype)
        return (y, s.reshape(x.shape).astype(x.dtype)) if with_scale else (y,)

    return run


@table.kernel("LRNGradient", dtypes=FLOATS)
def lrn_gradient(ctx: KernelContext) -> RunFn:
    size, alpha, beta, bias, order = _lrn_parts(ctx)
    cp = xp(ctx)

    def run(x, y, dy, *given):
        shared.check_lrn_grad(x, y, dy, given)
        shape = _lrn_view("LRNGradient", x, order)
        x3, y3, dy3 = (wide(cp, a).reshape(shape) for a in (x, y, dy))
        s = (
            wide(cp, given[0]).reshape(shape)
            if given
            else bias + (alpha / size) * _window_sum(cp, x3 * x3, size)
        )
        # The window is symmetric, so the sum over the outputs that see channel j is a window sum.
        dx = dy3 * s ** (-beta) - (2 * alpha * beta / size) * x3 * _window_sum(cp, dy3 * y3 / s, size)
        return (dx.reshape(x.shape).astype(x.dtype),)

    return run


# -- LayerNorm -------------------------------------------------------------------------------------


@table.kernel("LayerNorm", dtypes=FLOATS)
def layer_norm(ctx: KernelContext) -> RunFn:
    axis, eps, cp = ctx.args["axis"], float(ctx.args["epsilon"]), xp(ctx)

    def run(x, *affine):
        rows, d, ax = shared.layer_norm_rows("LayerNorm", x, axis)
        shared.check_layer_norm_affine(affine, d)
        x2 = wide(cp, x).reshape(rows, d)
        mean = x2.mean(axis=1, keepdims=True)
        dev = x2 - mean
        std = cp.sqrt((dev * dev).mean(axis=1, keepdims=True) + eps)
        y = dev / std
        if affine:
            y = y * wide(cp, affine[0]).reshape(-1) + wide(cp, affine[1]).reshape(-1)
        stat, dt = (*x.shape[:ax], 1), x.dtype
        return y.reshape(x.shape).astype(dt), mean.reshape(stat).astype(dt), std.reshape(stat).astype(dt)

    return run


@table.kernel("LayerNormGradient", dtypes=FLOATS)
def layer_norm_gradient(ctx: KernelContext) -> RunFn:
    axis, cp = ctx.args["axis"], xp(ctx)

    def run(dy, y, mean, std, x, *gamma):
        rows, d = shared.layer_norm_grad_rows(dy, x, mean, std, axis)
        x2, dy2 = wide(cp, x).reshape(rows, d), wide(cp, dy).reshape(rows, d)
        mu, sd = wide(cp, mean).reshape(rows, 1), wide(cp, std).reshape(rows, 1)
        xhat = (x2 - mu) / sd
        g = dy2 * wide(cp, gamma[0]).reshape(-1) if gamma else dy2
        dx = (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)) / sd
        dt = x.dtype
        out = (dx.reshape(x.shape).astype(dt),)
        if gamma:
            shape = gamma[0].shape
            out += (
                (dy2 * xhat).sum(axis=0).reshape(shape).astype(dt),
                dy2.sum(axis=0).reshape(shape).astype(dt),
            )
        return out

    return run


# -- Dropout ---------------------------------------------------------------------------------------


@table.kernel("Dropout", dtypes=FLOATS)
def dropout(ctx: KernelContext) -> RunFn:
    with_mask, cp = ctx.num_outputs > 1, xp(ctx)
    if ctx.args["is_test"]:
        return lambda x: (x.copy(), cp.ones(x.shape, np.bool_)) if with_mask else (x.copy(),)
    ratio = float(ctx.args["ratio"])
    scale = 1.0 / (1.0 - ratio)
    rng = Rng(ctx)  # advances per run: a new mask

    def run(x):
        keep = rng.uniform(tuple(x.shape), np.float32) >= ratio
        y = cp.where(keep, wide(cp, x) * scale, 0).astype(x.dtype)
        return (y, keep) if with_mask else (y,)

    return run


@table.kernel("DropoutGrad", dtypes=FLOATS)
def dropout_grad(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)
    if ctx.args["is_test"]:
        return lambda dy, *mask: (dy.copy(),)
    scale = 1.0 / (1.0 - float(ctx.args["ratio"]))

    def run(dy, mask):
        check(mask.shape == dy.shape, f"DropoutGrad: dY {list(dy.shape)} and mask {list(mask.shape)} differ")
        return (cp.where(mask, wide(cp, dy) * scale, 0).astype(dy.dtype),)

    return run

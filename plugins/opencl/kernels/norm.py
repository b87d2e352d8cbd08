"""SpatialBN, LRN, LayerNorm, Dropout and their gradient ops (see kaffa.ops.norm).

Statistics are reduced by one work-group per channel (SpatialBN) or row (LayerNorm) in A (float
for float16), and kept unrounded in a small A scratch buffer for the elementwise pass, so float16
is rounded once per output as on cpu. Dropout draws kaffa_uniform01(ctx.seed, run number, index):
a seeded net is reproducible, and every run gets a new mask.
"""

from __future__ import annotations

import itertools

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import norm as shared
from kaffa.launch import split_axis
from kaffa.ops.norm import channel_axis
from kaffa.schema import check
from kaffa_opencl.kernels.common import FLOATS, empty, f32, i32, i64, kernel

table = KernelTable("opencl")

WG = 128  # work-group size of the reductions (WG in cl/norm.cl)


def _a(dtype: np.dtype) -> type:
    """The numpy type of the kernels' arithmetic type A (float for float16)."""
    return np.float64 if np.dtype(dtype) == np.float64 else f32


# -- SpatialBN -------------------------------------------------------------------------------------


@table.kernel("SpatialBN", dtypes=FLOATS)
def spatial_bn(ctx: KernelContext) -> RunFn:
    a = _a(ctx.dtype)
    eps, momentum, order = a(ctx.args["epsilon"]), a(ctx.args["momentum"]), ctx.args["order"]
    stats, test_coef = kernel(ctx, "norm", "bn_stats"), kernel(ctx, "norm", "bn_test_coef")
    apply = kernel(ctx, "norm", "bn_apply")
    dev = apply.dev

    def normalize(x, scale, bias, coef, c, inner):
        y = empty(dev, x.shape, x.dtype)
        apply(x.size, x, scale, bias, coef, y, i64(x.size), i32(c), i64(inner))
        return y

    def run_test(x, scale, bias, mean, var):
        _, c, inner = shared.bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        coef = empty(dev, (2 * c,), a)
        test_coef(c, mean, var, coef, i32(c), eps)
        return (normalize(x, scale, bias, coef, c, inner),)

    def run_train(x, scale, bias, mean, var):
        outer, c, inner = shared.bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        m = outer * inner
        shared.check_bn_train(x, m)
        coef = empty(dev, (2 * c,), a)
        rm, rv, mu, inv = (empty(dev, (c,), x.dtype) for _ in range(4))
        geom = (i64(outer), i32(c), i64(inner))
        stats(c * WG, x, mean, var, coef, rm, rv, mu, inv, *geom, eps, momentum, local=(WG,))
        return normalize(x, scale, bias, coef, c, inner), rm, rv, mu, inv

    return run_test if ctx.args["is_test"] else run_train


@table.kernel("SpatialBNGradient", dtypes=FLOATS)
def spatial_bn_gradient(ctx: KernelContext) -> RunFn:
    a = _a(ctx.dtype)
    eps, order, is_test = a(ctx.args["epsilon"]), ctx.args["order"], i32(ctx.args["is_test"])
    stats, apply = kernel(ctx, "norm", "bn_grad_stats"), kernel(ctx, "norm", "bn_grad_apply")
    dev = apply.dev

    def run(x, scale, dy, mean, stat):
        shared.check_same_x("SpatialBNGradient", x, dy)
        outer, c, inner = shared.bn_layout("SpatialBNGradient", x, order, scale=scale, mean=mean, stat=stat)
        coef = empty(dev, (5 * c,), a)
        dscale, dbias = empty(dev, (c,), x.dtype), empty(dev, (c,), x.dtype)
        geom = (i64(outer), i32(c), i64(inner))
        stats(c * WG, x, scale, dy, mean, stat, coef, dscale, dbias, *geom, eps, is_test, local=(WG,))
        dx = empty(dev, x.shape, x.dtype)
        apply(x.size, x, dy, coef, dx, i64(x.size), i32(c), i64(inner))
        return dx, dscale, dbias

    return run


# -- LRN -------------------------------------------------------------------------------------------


def _lrn_args(ctx: KernelContext) -> tuple:
    a = _a(ctx.dtype)
    return i32(ctx.args["size"]), a(ctx.args["alpha"]), a(ctx.args["beta"]), a(ctx.args["bias"])


def _lrn_layout(op: str, x, order: str) -> tuple[int, int]:
    """(C, inner) of X's channel axis."""
    _, c, inner = split_axis(x.shape, channel_axis(op, x.shape, order))
    return c, inner


@table.kernel("LRN", dtypes=FLOATS)
def lrn(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "norm", "lrn")
    size, alpha, beta, bias = _lrn_args(ctx)
    order, with_scale = ctx.args["order"], ctx.num_outputs > 1

    def run(x):
        c, inner = _lrn_layout("LRN", x, order)
        y = empty(k.dev, x.shape, x.dtype)
        s = empty(k.dev, x.shape, x.dtype) if with_scale else None
        k(x.size, x, y, s, i64(x.size), i32(c), i64(inner), size, alpha, beta, bias, i32(with_scale))
        return (y, s) if with_scale else (y,)

    return run


@table.kernel("LRNGradient", dtypes=FLOATS)
def lrn_gradient(ctx: KernelContext) -> RunFn:
    size, alpha, beta, bias = _lrn_args(ctx)
    order, given = ctx.args["order"], ctx.num_inputs > 3
    # The scale is read as T when it is LRN's output, else as lrn_scale's unrounded A.
    grad = kernel(ctx, "norm", "lrn_gradient", SCALE_T=1) if given else kernel(ctx, "norm", "lrn_gradient")
    scale_of = kernel(ctx, "norm", "lrn_scale")
    dev = grad.dev

    def run(x, y, dy, *scale):
        shared.check_lrn_grad(x, y, dy, scale)
        c, inner = _lrn_layout("LRNGradient", x, order)
        n = i64(x.size)
        if scale:
            s = scale[0]
        else:
            s = empty(dev, x.shape, _a(x.dtype))
            scale_of(x.size, x, s, n, i32(c), i64(inner), size, alpha, bias)
        dx = empty(dev, x.shape, x.dtype)
        grad(x.size, x, y, dy, s, dx, n, i32(c), i64(inner), size, alpha, beta)
        return (dx,)

    return run


# -- LayerNorm -------------------------------------------------------------------------------------


@table.kernel("LayerNorm", dtypes=FLOATS)
def layer_norm(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "norm", "layer_norm")
    axis, eps = ctx.args["axis"], _a(ctx.dtype)(ctx.args["epsilon"])

    def run(x, *affine):
        rows, d, ax = shared.layer_norm_rows("LayerNorm", x, axis)
        shared.check_layer_norm_affine(affine, d)
        gamma, beta = affine or (None, None)
        y = empty(k.dev, x.shape, x.dtype)
        mean, std = (empty(k.dev, (*x.shape[:ax], 1), x.dtype) for _ in range(2))
        k(rows * WG, x, gamma, beta, y, mean, std, i64(d), eps, i32(bool(affine)), local=(WG,))
        return y, mean, std

    return run


@table.kernel("LayerNormGradient", dtypes=FLOATS)
def layer_norm_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "norm", "layer_norm_gradient")
    k_affine = kernel(ctx, "norm", "layer_norm_affine_gradient")
    axis = ctx.args["axis"]

    def run(dy, y, mean, std, x, *gamma):
        rows, d = shared.layer_norm_grad_rows(dy, x, mean, std, axis)
        g = gamma[0] if gamma else None
        dx = empty(k.dev, x.shape, x.dtype)
        k(rows * WG, dy, x, mean, std, g, dx, i64(d), i32(bool(gamma)), local=(WG,))
        if not gamma:
            return (dx,)
        dgamma, dbeta = empty(k.dev, g.shape, x.dtype), empty(k.dev, g.shape, x.dtype)
        k_affine(d, dy, x, mean, std, dgamma, dbeta, i64(rows), i64(d))
        return dx, dgamma, dbeta

    return run


# -- Dropout ---------------------------------------------------------------------------------------


@table.kernel("Dropout", dtypes=FLOATS)
def dropout(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "norm", "dropout")
    with_mask = ctx.num_outputs > 1
    # is_test is the identity: ratio 0 and scale 1 keep everything (u > 0), exactly.
    ratio = 0.0 if ctx.args["is_test"] else ctx.args["ratio"]
    seed = np.uint32(shared.dropout_seed(ctx.seed))
    runs = itertools.count()  # the stream: each run draws a fresh mask
    scale = _a(ctx.dtype)(1.0 / (1.0 - ratio))

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        mask = empty(k.dev, x.shape, np.bool_) if with_mask else None
        stream = np.uint32(next(runs) & 0xFFFFFFFF)
        k(x.size, x, y, mask, i64(x.size), seed, stream, f32(ratio), scale, i32(with_mask))
        return (y, mask) if with_mask else (y,)

    return run


@table.kernel("DropoutGrad", dtypes=FLOATS)
def dropout_grad(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "norm", "dropout_grad")
    scale = _a(ctx.dtype)(1.0 / (1.0 - ctx.args["ratio"]))
    if ctx.args["is_test"]:
        return lambda dy, *mask: (dy.copy(),)

    def run(dy, mask):
        check(mask.shape == dy.shape, f"DropoutGrad: dY {list(dy.shape)} and mask {list(mask.shape)} differ")
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dy.size, dy, mask, dx, i64(dy.size), scale)
        return (dx,)

    return run

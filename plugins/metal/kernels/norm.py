"""SpatialBN, LRN, LayerNorm, Dropout and their gradient ops (see kaffa.ops.norm).

Statistics are reduced by one workgroup per channel (SpatialBN) or row (LayerNorm) in f32 and kept
unrounded in a small f32 scratch buffer for the elementwise pass, so float16 is rounded once per
output as on cpu. Entry points bind at most 8 storage buffers (WebGPU's default per-stage limit,
which is what the device gets), hence SpatialBN's statistics take two launches.

Dropout draws uniform01(seed, run number, index) (wgsl/norm.wgsl, the hash of the OpenCL backend):
a seeded net is reproducible and every run gets a new mask. Its mask is bool, which WGSL cannot
store: Dropout with a mask output and DropoutGrad with a mask input are refused, not faked.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import norm as shared
from kaffa.launch import split_axis
from kaffa.ops.norm import channel_axis
from kaffa_metal.kernels.common import FLOATS, WG, empty, kernel
from kaffa_metal.kernels.elementwise import holds_outputs

table = KernelTable("metal")


def _k(ctx: KernelContext, entry: str, scale_type: Any = None):
    """An entry of wgsl/norm.wgsl; S (LRN's scale type) defaults to the op's type."""
    s = scale_type if scale_type is not None else ctx.dtype
    return kernel(ctx, "norm", entry, S=np.float32 if s is None else s)


# -- SpatialBN -------------------------------------------------------------------------------------


@table.kernel("SpatialBN", dtypes=FLOATS)
def spatial_bn(ctx: KernelContext) -> RunFn:
    eps, momentum, order = float(ctx.args["epsilon"]), float(ctx.args["momentum"]), ctx.args["order"]
    stats, running = _k(ctx, "bn_stats"), _k(ctx, "bn_running")
    test_coef, apply = _k(ctx, "bn_test_coef"), _k(ctx, "bn_apply")
    dev = apply.dev

    def normalize(x, scale, bias, coef, c, inner):
        y = empty(dev, x.shape, x.dtype)
        apply(x.size, x, scale, bias, coef, y, params=[x.size, c, inner])
        return y

    def run_test(x, scale, bias, mean, var):
        _, c, inner = shared.bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        coef = empty(dev, (2 * c,), np.float32)
        test_coef(c, mean, var, coef, params=[c, eps])
        return (normalize(x, scale, bias, coef, c, inner),)

    def run_train(x, scale, bias, mean, var):
        outer, c, inner = shared.bn_layout("SpatialBN", x, order, scale=scale, bias=bias, mean=mean, var=var)
        m = outer * inner
        shared.check_bn_train(x, m)
        coef = empty(dev, (3 * c,), np.float32)  # [mean, inv_std] per channel, then the variances
        stats(c * WG, x, coef, params=[outer, c, inner, eps])
        rm, rv, mu, inv = (empty(dev, (c,), x.dtype) for _ in range(4))
        running(c, coef, mean, var, rm, rv, mu, inv, params=[c, m, momentum])
        return normalize(x, scale, bias, coef, c, inner), rm, rv, mu, inv

    return run_test if ctx.args["is_test"] else run_train


@table.kernel("SpatialBNGradient", dtypes=FLOATS)
def spatial_bn_gradient(ctx: KernelContext) -> RunFn:
    eps, order, is_test = float(ctx.args["epsilon"]), ctx.args["order"], bool(ctx.args["is_test"])
    stats, apply = _k(ctx, "bn_grad_stats"), _k(ctx, "bn_grad_apply")
    dev = apply.dev

    def run(x, scale, dy, mean, stat):
        shared.check_same_x("SpatialBNGradient", x, dy)
        outer, c, inner = shared.bn_layout("SpatialBNGradient", x, order, scale=scale, mean=mean, stat=stat)
        coef = empty(dev, (5 * c,), np.float32)
        stats(c * WG, x, scale, dy, mean, stat, coef, params=[outer, c, inner, eps, is_test])
        dx, dscale, dbias = empty(dev, x.shape, x.dtype), empty(dev, (c,), x.dtype), empty(dev, (c,), x.dtype)
        w = 0.0 if is_test or not x.size else 1.0 / (outer * inner)  # inference: constant statistics
        apply(max(x.size, c), x, dy, coef, dx, dscale, dbias, params=[x.size, c, inner, w])
        return dx, dscale, dbias

    return run


# -- LRN -------------------------------------------------------------------------------------------


def _lrn_params(ctx: KernelContext, x) -> list:
    """[n, C, inner, size, alpha, beta, bias] for X."""
    _, c, inner = split_axis(x.shape, channel_axis(ctx.op_type, x.shape, ctx.args["order"]))
    a = ctx.args
    return [x.size, c, inner, a["size"], float(a["alpha"]), float(a["beta"]), float(a["bias"])]


@table.kernel("LRN", dtypes=FLOATS)
def lrn(ctx: KernelContext) -> RunFn:
    k = _k(ctx, "lrn")
    with_scale = ctx.num_outputs > 1

    def run(x):
        y, s = empty(k.dev, x.shape, x.dtype), empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, s, params=_lrn_params(ctx, x))
        return (y, s) if with_scale else (y,)  # one kernel writes both; the scale is cheap

    return run


@table.kernel("LRNGradient", dtypes=FLOATS)
def lrn_gradient(ctx: KernelContext) -> RunFn:
    given = ctx.num_inputs > 3
    # The scale is read as T when it is LRN's output, else computed unrounded (f32) by lrn.
    grad = _k(ctx, "lrn_gradient", None if given else np.float32)
    scale_of = _k(ctx, "lrn", np.float32)

    def run(x, y, dy, *scale):
        shared.check_lrn_grad(x, y, dy, scale)
        params = _lrn_params(ctx, x)
        if scale:
            s = scale[0]
        else:
            s = empty(grad.dev, x.shape, np.float32)
            scale_of(x.size, x, empty(grad.dev, x.shape, x.dtype), s, params=params)
        dx = empty(grad.dev, x.shape, x.dtype)
        grad(x.size, x, y, dy, s, dx, params=params[:6])
        return (dx,)

    return run


# -- LayerNorm -------------------------------------------------------------------------------------


@table.kernel("LayerNorm", dtypes=FLOATS)
def layer_norm(ctx: KernelContext) -> RunFn:
    k = _k(ctx, "layer_norm")
    axis, eps = ctx.args["axis"], float(ctx.args["epsilon"])

    def run(x, *affine):
        rows, d, ax = shared.layer_norm_rows("LayerNorm", x, axis)
        shared.check_layer_norm_affine(affine, d)
        gamma, beta = affine or (x, x)  # unread stand-ins: every binding needs a buffer
        y = empty(k.dev, x.shape, x.dtype)
        mean, std = (empty(k.dev, (*x.shape[:ax], 1), x.dtype) for _ in range(2))
        k(rows * WG, x, gamma, beta, y, mean, std, params=[rows, d, eps, bool(affine)])
        return y, mean, std

    return run


@table.kernel("LayerNormGradient", dtypes=FLOATS)
def layer_norm_gradient(ctx: KernelContext) -> RunFn:
    k, k_affine = _k(ctx, "layer_norm_gradient"), _k(ctx, "layer_norm_affine_gradient")
    axis = ctx.args["axis"]

    def run(dy, y, mean, std, x, *gamma):
        rows, d = shared.layer_norm_grad_rows(dy, x, mean, std, axis)
        dx = empty(k.dev, x.shape, x.dtype)
        k(rows * WG, dy, x, mean, std, gamma[0] if gamma else x, dx, params=[rows, d, bool(gamma)])
        if not gamma:
            return (dx,)
        dgamma, dbeta = empty(k.dev, gamma[0].shape, x.dtype), empty(k.dev, gamma[0].shape, x.dtype)
        k_affine(d, dy, x, mean, std, dgamma, dbeta, params=[rows, d])
        return dx, dgamma, dbeta

    return run


# -- Dropout ---------------------------------------------------------------------------------------


def _no_mask_input(ctx: KernelContext) -> str | None:
    if ctx.num_inputs > 1:
        return "the mask input is bool, which metal cannot hold (WGSL bool cannot be stored in a buffer)"
    return None


@table.kernel("Dropout", dtypes=FLOATS, supports=holds_outputs)
def dropout(ctx: KernelContext) -> RunFn:
    k = _k(ctx, "dropout")
    # is_test is the identity: ratio 0 and scale 1 keep everything (u > 0), exactly.
    ratio = 0.0 if ctx.args["is_test"] else float(ctx.args["ratio"])
    seed = shared.dropout_seed(ctx.seed)
    runs = itertools.count()  # the stream: each run draws a fresh mask

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, params=[x.size, seed, next(runs) & 0xFFFFFFFF, ratio, 1.0 / (1.0 - ratio)])
        return (y,)

    return run


@table.kernel("DropoutGrad", dtypes=FLOATS, supports=_no_mask_input)
def dropout_grad(ctx: KernelContext) -> RunFn:
    k = _k(ctx, "dropout")  # only is_test gets here (training needs the mask): the identity

    def run(dy):
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dy.size, dy, dx, params=[dy.size, 0, 0, 0.0, 1.0])
        return (dx,)

    return run

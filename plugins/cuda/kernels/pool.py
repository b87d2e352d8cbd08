"""MaxPool, AveragePool, PadImage and their gradients, over any number of spatial axes, NCHW or
NHWC. Window geometry (output sizes, SAME/VALID, Caffe's ceil mode, what count_include_pad counts)
comes from kaffa.launch.pool, as on the other backends: X is viewed as [outer, *sizes, inner]
(inner: the channels for NHWC, 1 for NCHW), so one code path serves both layouts.

2-D NCHW pooling without dilation launches cu/pool.cu (one thread per output, or per dX element
for the gradients, which gather). Other ranks, NHWC and dilated windows pool with CuPy strided
slices, one per kernel tap, as the cpu kernels do; cudasim runs that path for every shape, so its
geometry and gradient logic are checked on any machine (the raw kernels by ``nvcc -ptx``).
PadImage (constant, reflect, edge, wrap) is CuPy's ``pad``; its gradient folds the pads back.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.math import work_dtype
from kaffa.launch.pool import (
    PoolGeometry,
    check_pool_gradient,
    pad_image_geometry,
    pad_image_gradient_geometry,
    pool_setup,
)
from kaffa.ops.geometry import split_pads
from kaffa_cuda.kernels.common import FLOATS, Launcher, Table, is_sim, xp

table = Table()


def _raw_fits(nchw: bool, geo: PoolGeometry) -> bool:
    """cu/pool.cu takes 2-D NCHW windows without dilation."""
    sizes, dilations = geo.fields[0], geo.fields[4]
    return nchw and len(sizes) == 2 and all(d == 1 for d in dilations)


def _raw_args(shape, geo: PoolGeometry) -> tuple[tuple, tuple]:
    sizes, outs, kern, strides, _, begins, lo, hi = geo.fields
    nc = np.int64(int(shape[0]) * int(shape[1]))
    base = (nc, *(np.int32(v) for v in (*sizes, *outs, *kern, *strides, *begins)))
    return base, tuple(np.int32(v) for v in (lo[0], hi[0], lo[1], hi[1]))


# -- the strided-slice path --------------------------------------------------------------------------


class _Slices:
    """One X shape's pooling as strided slices of X padded to [outer, *extent, inner]."""

    def __init__(self, x_shape: tuple[int, ...], geo: PoolGeometry):
        sizes, outs, kern, strides, dil, begins, lo, hi = geo.fields
        self.inner = geo.inner
        self.outer = math.prod(x_shape) // max(1, math.prod(sizes) * geo.inner)
        self.sizes, self.outs = sizes, outs
        self.ext = tuple(
            max(s + b, (o - 1) * t + (k - 1) * d + 1)
            for s, b, o, t, k, d in zip(sizes, begins, outs, strides, kern, dil)
        )
        self.crop = (slice(None), *(slice(b, b + s) for b, s in zip(begins, sizes)), slice(None))
        self.taps = [
            (
                slice(None),
                *(slice(i * d, i * d + (o - 1) * t + 1, t) for i, d, o, t in zip(tap, dil, outs, strides)),
                slice(None),
            )
            for tap in itertools.product(*(range(k) for k in kern))
        ]
        self.divisor = _divisor(
            tuple(outs), tuple(kern), tuple(strides), tuple(dil), tuple(begins), tuple(lo), tuple(hi)
        )

    def padded(self, cp: Any, x: Any, fill: float, dtype: Any) -> Any:
        p = cp.full((self.outer, *self.ext, self.inner), fill, dtype)
        p[self.crop] = x.reshape(self.outer, *self.sizes, self.inner)
        return p


@functools.lru_cache(maxsize=256)
def _divisor(outs, kern, strides, dil, begins, lo, hi) -> np.ndarray:
    """[1, *outs, 1]: the window cells with lo <= index < hi (kaffa.launch.pool.pool_fields), per
    output; 0 where a window holds none (its average is 0, as in cu/pool.cu)."""
    per_axis = []
    for o, k, t, d, b, lo_, hi_ in zip(outs, kern, strides, dil, begins, lo, hi):
        idx = np.arange(o)[:, None] * t - b + np.arange(k)[None, :] * d
        per_axis.append(((idx >= lo_) & (idx < hi_)).sum(axis=1))
    div = functools.reduce(np.multiply.outer, per_axis, np.ones((), np.int64))
    return div.reshape(1, *outs, 1)


def _slices_pool(cp: Any, x: Any, geo: PoolGeometry, average: bool) -> Any:
    s = _Slices(tuple(x.shape), geo)
    wt = work_dtype(x.dtype)
    p = s.padded(cp, x, 0.0 if average else -np.inf, wt)
    y = p[s.taps[0]].copy()
    for tap in s.taps[1:]:
        y = y + p[tap] if average else cp.maximum(y, p[tap])
    if average:
        div = cp.asarray(s.divisor.astype(wt))
        y = cp.where(div > 0, y / cp.maximum(div, 1), 0)
    return y.reshape(geo.out_shape).astype(x.dtype)


def _slices_pool_gradient(cp: Any, x: Any, y: Any, dy: Any, geo: PoolGeometry, average: bool) -> Any:
    """dX: each tap adds its share of every window's gradient into a strided slice of the padded
    dX. MaxPool: every cell equal to its window's max takes the window's gradient (ties share, as
    Caffe2 and the reference)."""
    s = _Slices(tuple(x.shape), geo)
    wt = work_dtype(x.dtype)
    dxp = cp.zeros((s.outer, *s.ext, s.inner), wt)
    g = dy.astype(wt).reshape(s.outer, *s.outs, s.inner)
    if average:
        div = cp.asarray(s.divisor.astype(wt))
        g = cp.where(div > 0, g / cp.maximum(div, 1), 0)
        for tap in s.taps:
            dxp[tap] += g
    else:
        p = s.padded(cp, x, -np.inf, wt)  # -inf pads never equal a max
        yw = y.astype(wt).reshape(g.shape)
        for tap in s.taps:
            dxp[tap] += cp.where(p[tap] == yw, g, 0)
    return cp.ascontiguousarray(dxp[s.crop]).reshape(x.shape).astype(x.dtype)


# -- MaxPool, AveragePool ----------------------------------------------------------------------------


@table.kernel("MaxPool", "AveragePool", dtypes=FLOATS)
def pool(ctx: KernelContext) -> RunFn:
    setup, average = pool_setup(ctx)
    cp, sim, nchw = xp(ctx), is_sim(ctx), ctx.args["order"] == "NCHW"
    raw = None if sim else Launcher(ctx, "pool", "avg_pool" if average else "max_pool")

    def run(x):
        geo = setup(tuple(x.shape))
        if raw is None or not _raw_fits(nchw, geo):
            return (_slices_pool(cp, x, geo, average),)
        x = cp.ascontiguousarray(x)
        y = cp.empty(geo.out_shape, x.dtype)
        base, bounds = _raw_args(x.shape, geo)
        raw(y.size, x, y, *base, *(bounds if average else ()))
        return (y,)

    return run


@table.kernel("MaxPoolGradient", "AveragePoolGradient", dtypes=FLOATS)
def pool_gradient(ctx: KernelContext) -> RunFn:
    setup, average = pool_setup(ctx)
    cp, op, sim, nchw = xp(ctx), ctx.op_type, is_sim(ctx), ctx.args["order"] == "NCHW"
    raw = None if sim else Launcher(ctx, "pool", "avg_pool_gradient" if average else "max_pool_gradient")

    def run(x, y, dy):
        geo = setup(tuple(x.shape))
        check_pool_gradient(op, y, dy, geo.out_shape)
        if raw is None or not _raw_fits(nchw, geo):
            return (_slices_pool_gradient(cp, x, y, dy, geo, average),)
        x, y, dy = cp.ascontiguousarray(x), cp.ascontiguousarray(y), cp.ascontiguousarray(dy)
        dx = cp.empty(x.shape, dy.dtype)
        base, bounds = _raw_args(x.shape, geo)
        if average:
            raw(dx.size, dy, dx, *base, *bounds)
        else:
            raw(dx.size, x, y, dy, dx, *base)
        return (dx,)

    return run


# -- PadImage ----------------------------------------------------------------------------------------


def _pad_widths(ctx: KernelContext, ndim: int) -> list[tuple[int, int]]:
    nsp = ndim - 2
    first = 2 if ctx.args["order"] == "NCHW" else 1
    begins, ends = split_pads(ctx.args["pads"], nsp)
    width = [(0, 0)] * ndim
    for i, (b, e) in enumerate(zip(begins, ends)):
        width[first + i] = (int(b), int(e))
    return width


@table.kernel("PadImage", dtypes=FLOATS)
def pad_image(ctx: KernelContext) -> RunFn:
    nchw, mode, pads, cp = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"], xp(ctx)
    value = float(ctx.args["value"])

    def run(x):
        pad_image_geometry(x.shape, nchw, mode, pads)  # the rank and reflect-size checks
        width = _pad_widths(ctx, x.ndim)
        if mode == "constant":
            return (cp.pad(x, width, mode="constant", constant_values=x.dtype.type(value)),)
        return (cp.pad(x, width, mode=mode),)  # CuPy's reflect, edge and wrap are Caffe2's / ONNX's

    return run


@table.kernel("PadImageGradient", dtypes=FLOATS)
def pad_image_gradient(ctx: KernelContext) -> RunFn:
    """Folds the padding back axis by axis (padding is separable): each pad's gradient is added to
    the cells it copied (mirrored for reflect, the border cell for edge), then cut off."""
    nchw, mode, pads, cp = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"], xp(ctx)

    def run(dy):
        geo = pad_image_gradient_geometry(dy.shape, nchw, mode, pads)
        width = _pad_widths(ctx, dy.ndim)
        g = dy.astype(work_dtype(dy.dtype), copy=True)
        for ax, (b, e) in enumerate(width):
            if not (b or e):
                continue
            size = g.shape[ax] - b - e
            g = cp.moveaxis(g, ax, 0)  # a view: updates land in g's buffer
            inner = g[b : b + size]
            if mode == "edge":
                inner[0] += g[:b].sum(axis=0)
                inner[-1] += g[b + size :].sum(axis=0)
            elif mode == "wrap":  # pad cell j (of all b + size + e) copies cell (j - b) mod size
                for j in (*range(b), *range(b + size, b + size + e)):
                    inner[(j - b) % size] += g[j]
            elif mode == "reflect":  # pad cell b - j copies cell j, end pad size - 1 + j copies size - 1 - j
                if b:
                    inner[1 : b + 1] += g[:b][::-1]
                if e:
                    inner[size - 1 - e : size - 1] += g[b + size :][::-1]
            g = cp.moveaxis(g[b : b + size], 0, ax)
        return (cp.ascontiguousarray(g).reshape(geo.out_shape).astype(dy.dtype),)

    return run

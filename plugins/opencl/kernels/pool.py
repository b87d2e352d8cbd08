"""MaxPool, AveragePool, PadImage and their gradients, over any number of spatial axes, NCHW or NHWC.

Window geometry (output sizes, SAME/VALID, Caffe's ceil mode, what count_include_pad counts) is
resolved on the host by kaffa.launch.pool (on kaffa.ops.geometry.Window, as the cpu kernels do),
and uploaded as a small int table; cl/pool.cl only indexes. Gradients gather: one work-item per dX
element.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.pool import (
    PAD_MODES,
    PoolGeometry,
    check_pool_gradient,
    pad_image_geometry,
    pad_image_gradient_geometry,
    pool_setup,
)
from kaffa_opencl.kernels.common import FLOATS, Consts, empty, f32, i32, i64, kernel

table = KernelTable("opencl")


def _scalar(dtype: np.dtype) -> type:
    """The numpy type of an A (arithmetic type) kernel argument."""
    return np.float64 if np.dtype(dtype) == np.float64 else f32


def _pool_table(geo: PoolGeometry) -> np.ndarray:
    """The kernel's int32 table [nsp, inner, per-axis fields...]; see cl/pool.cl."""
    return np.asarray([len(geo.fields[0]), geo.inner, *(v for f in geo.fields for v in f)], np.int32)


@table.kernel("MaxPool", "AveragePool", dtypes=FLOATS)
def pool(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool")
    consts = Consts(k.dev)
    setup, average = pool_setup(ctx)

    def run(x):
        geo = setup(x.shape)
        y = empty(k.dev, geo.out_shape, x.dtype)
        k(y.size, x, y, consts(_pool_table(geo)), i64(y.size), i32(average))
        return (y,)

    return run


@table.kernel("MaxPoolGradient", "AveragePoolGradient", dtypes=FLOATS)
def pool_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool_gradient")
    consts = Consts(k.dev)
    setup, average = pool_setup(ctx)
    name = ctx.op_type

    def run(x, y, dy):
        geo = setup(x.shape)
        check_pool_gradient(name, y, dy, geo.out_shape)
        dx = empty(k.dev, x.shape, x.dtype)
        k(dx.size, x, y, dy, dx, consts(_pool_table(geo)), i64(dx.size), i32(average))
        return (dx,)

    return run


# -- PadImage --------------------------------------------------------------------------------------


def _pad_mode_supported(ctx: KernelContext) -> str | None:
    """The shader knows PadImage's constant, reflect and edge (not wrap: that falls back to cpu)."""
    mode = ctx.args["mode"]
    return None if mode in PAD_MODES else f"PadImage mode {mode!r} has no kernel here"


def _pad_table(inner: int, sizes: Sequence[int], outs: Sequence[int], begins: Sequence[int]) -> np.ndarray:
    return np.asarray([len(sizes), inner, *sizes, *outs, *begins], np.int32)


@table.kernel("PadImage", dtypes=FLOATS, supports=_pad_mode_supported)
def pad_image(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image")
    consts = Consts(k.dev)
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]
    value = _scalar(ctx.dtype)(ctx.args["value"])

    def run(x):
        p = pad_image_geometry(x.shape, nchw, mode, pads)
        y = empty(k.dev, p.out_shape, x.dtype)
        g = consts(_pad_table(p.inner, p.sizes, p.outs, p.begins))
        k(y.size, x, y, g, i64(y.size), i32(PAD_MODES[mode]), value)
        return (y,)

    return run


@table.kernel("PadImageGradient", dtypes=FLOATS, supports=_pad_mode_supported)
def pad_image_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image_gradient")
    consts = Consts(k.dev)
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]

    def run(dy):
        p = pad_image_gradient_geometry(dy.shape, nchw, mode, pads)
        dx = empty(k.dev, p.out_shape, dy.dtype)
        g = consts(_pad_table(p.inner, p.sizes, p.outs, p.begins))
        k(dx.size, dy, dx, g, i64(dx.size), i32(PAD_MODES[mode]))
        return (dx,)

    return run

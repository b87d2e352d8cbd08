"""MaxPool, AveragePool, PadImage and their gradients, over any number of spatial axes, NCHW or NHWC.

Window geometry (output sizes, SAME/VALID, Caffe's ceil mode, what count_include_pad counts) is
resolved on the host by kaffa.launch.pool (on kaffa.ops.geometry.Window, as the cpu kernels do),
into the small table that wgsl/pool.wgsl indexes. Gradients gather: one invocation per dX element,
no atomics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.pool import (
    PAD_MODES,
    check_pool_gradient,
    pad_image_geometry,
    pad_image_gradient_geometry,
    pool_setup,
)
from kaffa_metal.kernels.common import FLOATS, empty, kernel, words

table = KernelTable("metal")


def _table(n: int, flag: int, inner: int, value: float, *fields: Sequence[int]) -> np.ndarray:
    """The header [n, flag, nsp, inner, value bits] and the per-axis fields (see wgsl/pool.wgsl)."""
    return words(n, flag, len(fields[0]), inner, float(value), *(v for f in fields for v in f))


@table.kernel("MaxPool", "AveragePool", dtypes=FLOATS)
def pool(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool")
    setup, average = pool_setup(ctx)

    def run(x):
        geo = setup(x.shape)
        y = empty(k.dev, geo.out_shape, x.dtype)
        k(y.size, x, y, params=_table(y.size, average, geo.inner, 0.0, *geo.fields))
        return (y,)

    return run


@table.kernel("MaxPoolGradient", "AveragePoolGradient", dtypes=FLOATS)
def pool_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool_gradient")
    setup, average = pool_setup(ctx)
    name = ctx.op_type

    def run(x, y, dy):
        geo = setup(x.shape)
        check_pool_gradient(name, y, dy, geo.out_shape)
        dx = empty(k.dev, x.shape, x.dtype)
        k(dx.size, x, y, dy, dx, params=_table(dx.size, average, geo.inner, 0.0, *geo.fields))
        return (dx,)

    return run


# -- PadImage --------------------------------------------------------------------------------------


def _pad_mode_supported(ctx: KernelContext) -> str | None:
    """The shader knows PadImage's constant, reflect and edge (not wrap: that falls back to cpu)."""
    mode = ctx.args["mode"]
    return None if mode in PAD_MODES else f"PadImage mode {mode!r} has no kernel here"


@table.kernel("PadImage", dtypes=FLOATS, supports=_pad_mode_supported)
def pad_image(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image")
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]
    value = float(ctx.args["value"])

    def run(x):
        p = pad_image_geometry(x.shape, nchw, mode, pads)
        y = empty(k.dev, p.out_shape, x.dtype)
        k(y.size, x, y, params=_table(y.size, PAD_MODES[mode], p.inner, value, p.sizes, p.outs, p.begins))
        return (y,)

    return run


@table.kernel("PadImageGradient", dtypes=FLOATS, supports=_pad_mode_supported)
def pad_image_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image_gradient")
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]

    def run(dy):
        p = pad_image_gradient_geometry(dy.shape, nchw, mode, pads)
        dx = empty(k.dev, p.out_shape, dy.dtype)
        k(dx.size, dy, dx, params=_table(dx.size, PAD_MODES[mode], p.inner, 0.0, p.sizes, p.outs, p.begins))
        return (dx,)

    return run

"""MaxPool, AveragePool, PadImage and their gradients, over any number of spatial axes, NCHW or NHWC.

Window geometry (output sizes, SAME/VALID, Caffe's ceil mode, what count_include_pad counts) is
resolved on the host by kaffa.ops.geometry.Window, as the cpu kernels do, and uploaded as a small
int table; cl/pool.cl only indexes. Gradients gather: one work-item per dX element.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.geometry import Window, split_pads
from kaffa.schema import check
from kaffa_opencl.kernels.common import FLOATS, Consts, empty, f32, i32, i64, kernel

table = KernelTable("opencl")

MAXSP = 8  # spatial axes the kernels unravel (MAXSP in cl/pool.cl)


def _check_rank(op: str, shape: Sequence[int]) -> None:
    check(len(shape) >= 3, f"{op}: X {list(shape)} needs a batch, a channel and a spatial axis")
    check(len(shape) - 2 <= MAXSP, f"{op}: at most {MAXSP} spatial axes, X has {len(shape) - 2}")


def _split(shape: Sequence[int], nchw: bool) -> tuple[tuple[int, ...], int]:
    """(spatial sizes, inner): the kernels view X as [outer, *sizes, inner]."""
    return (tuple(shape[2:]), 1) if nchw else (tuple(shape[1:-1]), int(shape[-1]))


def _layout(shape: Sequence[int], spatial: Sequence[int], nchw: bool) -> tuple[int, ...]:
    n, c = (shape[0], shape[1]) if nchw else (shape[0], shape[-1])
    return (n, c, *spatial) if nchw else (n, *spatial, c)


def _scalar(dtype: np.dtype) -> type:
    """The numpy type of an A (arithmetic type) kernel argument."""
    return np.float64 if np.dtype(dtype) == np.float64 else f32


@lru_cache(maxsize=256)
def _pool_geometry(win: Window, sizes: tuple[int, ...], inner: int, include_pad: bool):
    """(output sizes, the kernel's int32 table); see cl/pool.cl."""
    outs, begins, _ = win.resolve(sizes)
    if include_pad:  # the declared pads count, never Caffe's ceil-mode overhang
        lo = [-b for b in begins]
        hi = [s + e for s, e in zip(sizes, win.declared_end_pads(sizes))]
    else:
        lo, hi = [0] * len(sizes), list(sizes)
    g = [len(sizes), inner, *sizes, *outs, *win.kernels, *win.strides, *win.dilations, *begins, *lo, *hi]
    return outs, np.asarray(g, np.int32)


def _pool_setup(ctx: KernelContext, consts: Consts):
    """Shared by the forward and gradient: (X's shape -> (Y's shape, geometry buffer), average flag)."""
    args, name = ctx.args, ctx.op_type
    nchw = args["order"] == "NCHW"
    average = name.startswith("Average")
    include_pad = average and bool(args.get("count_include_pad"))
    windows: dict[int, Window] = {}

    def setup(shape: Sequence[int]):
        _check_rank(name, shape)
        sizes, inner = _split(shape, nchw)
        nsp = len(sizes)
        if args["global_pooling"]:  # one window over the whole extent (divisor: every cell)
            win = Window(sizes, (1,) * nsp, (1,) * nsp, (0,) * nsp, (0,) * nsp)
        else:
            win = windows.get(nsp)
            if win is None:
                win = windows[nsp] = Window.from_args(args, nsp)
        outs, g = _pool_geometry(win, tuple(int(s) for s in sizes), inner, include_pad)
        return _layout(shape, outs, nchw), consts(g)

    return setup, i32(average)


@table.kernel("MaxPool", "AveragePool", dtypes=FLOATS)
def pool(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool")
    setup, average = _pool_setup(ctx, Consts(k.dev))

    def run(x):
        shape, g = setup(x.shape)
        y = empty(k.dev, shape, x.dtype)
        k(y.size, x, y, g, i64(y.size), average)
        return (y,)

    return run


@table.kernel("MaxPoolGradient", "AveragePoolGradient", dtypes=FLOATS)
def pool_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool_gradient")
    setup, average = _pool_setup(ctx, Consts(k.dev))
    name = ctx.op_type

    def run(x, y, dy):
        want, g = setup(x.shape)
        check(
            y.shape == want and dy.shape == want,
            f"{name}: Y {list(y.shape)} and dY {list(dy.shape)} must both be the pooled shape {list(want)}",
        )
        dx = empty(k.dev, x.shape, x.dtype)
        k(dx.size, x, y, dy, dx, g, i64(dx.size), average)
        return (dx,)

    return run


# -- PadImage --------------------------------------------------------------------------------------

_MODES = {"constant": 0, "reflect": 1, "edge": 2}


def _check_pads(op: str, mode: str, sizes: Sequence[int], begins: Sequence[int], ends: Sequence[int]) -> None:
    if mode == "reflect":
        check(
            all(max(b, e) < s for s, b, e in zip(sizes, begins, ends)),
            f"{op}: reflect padding by {list(begins)}+{list(ends)} needs every spatial size above "
            f"its pads, got sizes {list(sizes)}",
        )


def _pad_table(inner: int, sizes: Sequence[int], outs: Sequence[int], begins: Sequence[int]) -> np.ndarray:
    return np.asarray([len(sizes), inner, *sizes, *outs, *begins], np.int32)


@table.kernel("PadImage", dtypes=FLOATS)
def pad_image(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image")
    consts = Consts(k.dev)
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]
    value = _scalar(ctx.dtype)(ctx.args["value"])

    def run(x):
        _check_rank("PadImage", x.shape)
        sizes, inner = _split(x.shape, nchw)
        begins, ends = split_pads(pads, len(sizes))
        _check_pads("PadImage", mode, sizes, begins, ends)
        outs = [s + b + e for s, b, e in zip(sizes, begins, ends)]
        y = empty(k.dev, _layout(x.shape, outs, nchw), x.dtype)
        k(y.size, x, y, consts(_pad_table(inner, sizes, outs, begins)), i64(y.size), i32(_MODES[mode]), value)
        return (y,)

    return run


@table.kernel("PadImageGradient", dtypes=FLOATS)
def pad_image_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image_gradient")
    consts = Consts(k.dev)
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]

    def run(dy):
        _check_rank("PadImageGradient", dy.shape)
        outs, inner = _split(dy.shape, nchw)
        begins, ends = split_pads(pads, len(outs))
        sizes = [o - b - e for o, b, e in zip(outs, begins, ends)]
        check(
            all(s > 0 for s in sizes),
            f"PadImageGradient: dY {list(dy.shape)} is not larger than the pads {list(begins)}+{list(ends)}",
        )
        _check_pads("PadImageGradient", mode, sizes, begins, ends)
        dx = empty(k.dev, _layout(dy.shape, sizes, nchw), dy.dtype)
        k(dx.size, dy, dx, consts(_pad_table(inner, sizes, outs, begins)), i64(dx.size), i32(_MODES[mode]))
        return (dx,)

    return run

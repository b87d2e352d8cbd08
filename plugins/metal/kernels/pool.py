"""MaxPool, AveragePool, PadImage and their gradients, over any number of spatial axes, NCHW or NHWC.

Window geometry (output sizes, SAME/VALID, Caffe's ceil mode, what count_include_pad counts) is
resolved on the host by kaffa.ops.geometry.Window, as the cpu kernels do, into the small table
that wgsl/pool.wgsl indexes. Gradients gather: one invocation per dX element, no atomics.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.geometry import Window, split_pads
from kaffa.schema import check
from kaffa_metal.kernels.common import FLOATS, empty, kernel, words

table = KernelTable("metal")

MAXSP = 8  # spatial axes the kernels unravel (MAXSP in wgsl/pool.wgsl)


def _check_rank(op: str, shape: Sequence[int]) -> None:
    check(len(shape) >= 3, f"{op}: X {list(shape)} needs a batch, a channel and a spatial axis")
    check(len(shape) - 2 <= MAXSP, f"{op}: at most {MAXSP} spatial axes, X has {len(shape) - 2}")


def _split(shape: Sequence[int], nchw: bool) -> tuple[tuple[int, ...], int]:
    """(spatial sizes, inner): the kernels view X as [outer, *sizes, inner]."""
    return (tuple(shape[2:]), 1) if nchw else (tuple(shape[1:-1]), int(shape[-1]))


def _layout(shape: Sequence[int], spatial: Sequence[int], nchw: bool) -> tuple[int, ...]:
    n, c = (shape[0], shape[1]) if nchw else (shape[0], shape[-1])
    return (n, c, *spatial) if nchw else (n, *spatial, c)


def _table(n: int, flag: int, inner: int, value: float, *fields: Sequence[int]) -> np.ndarray:
    """The header [n, flag, nsp, inner, value bits] and the per-axis fields (see wgsl/pool.wgsl)."""
    return words(n, flag, len(fields[0]), inner, float(value), *(v for f in fields for v in f))


@lru_cache(maxsize=256)
def _pool_geometry(win: Window, sizes: tuple[int, ...], include_pad: bool):
    """(output sizes, the per-axis fields of the table)."""
    outs, begins, _ = win.resolve(sizes)
    if include_pad:  # the declared pads count, never Caffe's ceil-mode overhang
        lo = tuple(-b for b in begins)
        hi = tuple(s + e for s, e in zip(sizes, win.declared_end_pads(sizes)))
    else:
        lo, hi = (0,) * len(sizes), sizes
    return outs, (sizes, outs, win.kernels, win.strides, win.dilations, begins, lo, hi)


def _pool_setup(ctx: KernelContext):
    """Shared by the forward and gradient: X's shape -> (Y's shape, the table for n elements)."""
    args, name = ctx.args, ctx.op_type
    nchw = args["order"] == "NCHW"
    average = name.startswith("Average")
    include_pad = average and bool(args.get("count_include_pad"))
    windows: dict[int, Window] = {}

    def setup(shape: Sequence[int], grad: bool):
        _check_rank(name, shape)
        sizes, inner = _split(shape, nchw)
        nsp = len(sizes)
        if args["global_pooling"]:  # one window over the whole extent (divisor: every cell)
            win = Window(sizes, (1,) * nsp, (1,) * nsp, (0,) * nsp, (0,) * nsp)
        else:
            win = windows.get(nsp)
            if win is None:
                win = windows[nsp] = Window.from_args(args, nsp)
        outs, fields = _pool_geometry(win, tuple(int(s) for s in sizes), include_pad)
        yshape = _layout(shape, outs, nchw)
        n = int(np.prod(shape if grad else yshape, dtype=np.int64))
        return yshape, _table(n, average, inner, 0.0, *fields)

    return setup


@table.kernel("MaxPool", "AveragePool", dtypes=FLOATS)
def pool(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool")
    setup = _pool_setup(ctx)

    def run(x):
        shape, params = setup(x.shape, False)
        y = empty(k.dev, shape, x.dtype)
        k(y.size, x, y, params=params)
        return (y,)

    return run


@table.kernel("MaxPoolGradient", "AveragePoolGradient", dtypes=FLOATS)
def pool_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pool_gradient")
    setup = _pool_setup(ctx)
    name = ctx.op_type

    def run(x, y, dy):
        want, params = setup(x.shape, True)
        check(
            y.shape == want and dy.shape == want,
            f"{name}: Y {list(y.shape)} and dY {list(dy.shape)} must both be the pooled shape {list(want)}",
        )
        dx = empty(k.dev, x.shape, x.dtype)
        k(dx.size, x, y, dy, dx, params=params)
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


@table.kernel("PadImage", dtypes=FLOATS)
def pad_image(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image")
    nchw, mode, pads = ctx.args["order"] == "NCHW", ctx.args["mode"], ctx.args["pads"]
    value = float(ctx.args["value"])

    def run(x):
        _check_rank("PadImage", x.shape)
        sizes, inner = _split(x.shape, nchw)
        begins, ends = split_pads(pads, len(sizes))
        _check_pads("PadImage", mode, sizes, begins, ends)
        outs = [s + b + e for s, b, e in zip(sizes, begins, ends)]
        y = empty(k.dev, _layout(x.shape, outs, nchw), x.dtype)
        k(y.size, x, y, params=_table(y.size, _MODES[mode], inner, value, sizes, outs, begins))
        return (y,)

    return run


@table.kernel("PadImageGradient", dtypes=FLOATS)
def pad_image_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "pool", "pad_image_gradient")
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
        k(dx.size, dy, dx, params=_table(dx.size, _MODES[mode], inner, 0.0, sizes, outs, begins))
        return (dx,)

    return run

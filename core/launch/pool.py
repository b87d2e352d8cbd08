"""Host-side checks and window geometry of MaxPool, AveragePool and PadImage, shared by the device
backends.

The kernels view X as [outer, *spatial sizes, inner] (inner: the channels for NHWC, 1 for NCHW)
and read a small per-axis table: how it is packed into a buffer is the plugin's business, what
goes into it is computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from kaffa.kernels import KernelContext
from kaffa.ops.geometry import Window, split_pads
from kaffa.schema import check

MAX_SPATIAL = 8  # spatial axes the kernels unravel (MAXSP in cl/pool.cl and wgsl/pool.wgsl)

PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2}  # PadImage's mode as the kernels number it


def check_rank(op: str, shape: Sequence[int]) -> None:
    """Checks X has a batch, a channel and 1 to MAX_SPATIAL spatial axes."""
    check(len(shape) >= 3, f"{op}: X {list(shape)} needs a batch, a channel and a spatial axis")
    check(len(shape) - 2 <= MAX_SPATIAL, f"{op}: at most {MAX_SPATIAL} spatial axes, X has {len(shape) - 2}")


def split(shape: Sequence[int], nchw: bool) -> tuple[tuple[int, ...], int]:
    """(spatial sizes, inner): the kernels view X as [outer, *sizes, inner]."""
    return (tuple(shape[2:]), 1) if nchw else (tuple(shape[1:-1]), int(shape[-1]))


def with_spatial(shape: Sequence[int], spatial: Sequence[int], nchw: bool) -> tuple[int, ...]:
    """``shape`` (batch, channels and spatial axes) with the spatial sizes ``spatial``."""
    n, c = (shape[0], shape[1]) if nchw else (shape[0], shape[-1])
    return (n, c, *spatial) if nchw else (n, *spatial, c)


# (sizes, outs, kernels, strides, dilations, begins, lo, hi): the per-axis fields of a pool table.
PoolFields = tuple[tuple[int, ...], ...]


@lru_cache(maxsize=256)
def pool_fields(win: Window, sizes: tuple[int, ...], include_pad: bool) -> tuple[tuple[int, ...], PoolFields]:
    """(output sizes, the per-axis fields (sizes, outs, kernels, strides, dilations, begins, lo,
    hi)); a window cell at input index i counts for the divisor when lo <= i < hi."""
    outs, begins, _ = win.resolve(sizes)
    if include_pad:  # the declared pads count, never Caffe's ceil-mode overhang
        lo = tuple(-b for b in begins)
        hi = tuple(s + e for s, e in zip(sizes, win.declared_end_pads(sizes)))
    else:
        lo, hi = (0,) * len(sizes), sizes
    return outs, (sizes, outs, win.kernels, win.strides, win.dilations, begins, lo, hi)


class PoolGeometry(NamedTuple):
    """One X shape's pooling: Y's shape, X's inner size and the per-axis fields."""

    out_shape: tuple[int, ...]
    inner: int
    fields: PoolFields


def pool_setup(ctx: KernelContext) -> tuple[Callable[[Sequence[int]], PoolGeometry], bool]:
    """Shared by the forward and gradient of MaxPool and AveragePool: (X's shape -> its
    PoolGeometry, whether the op averages)."""
    args, name = ctx.args, ctx.op_type
    nchw = args["order"] == "NCHW"
    average = name.startswith("Average")
    include_pad = average and bool(args.get("count_include_pad"))
    windows: dict[int, Window] = {}

    def setup(shape: Sequence[int]) -> PoolGeometry:
        check_rank(name, shape)
        sizes, inner = split(shape, nchw)
        nsp = len(sizes)
        if args["global_pooling"]:  # one window over the whole extent (divisor: every cell)
            win = Window(sizes, (1,) * nsp, (1,) * nsp, (0,) * nsp, (0,) * nsp)
        else:
            win = windows.get(nsp)
            if win is None:
                win = windows[nsp] = Window.from_args(args, nsp)
        outs, fields = pool_fields(win, tuple(int(s) for s in sizes), include_pad)
        return PoolGeometry(with_spatial(shape, outs, nchw), inner, fields)

    return setup, average


def check_pool_gradient(op: str, y: Any, dy: Any, want: Sequence[int]) -> None:
    """Checks a pool gradient's Y and dY against the pooled shape."""
    check(
        y.shape == want and dy.shape == want,
        f"{op}: Y {list(y.shape)} and dY {list(dy.shape)} must both be the pooled shape {list(want)}",
    )


def check_pads(op: str, mode: str, sizes: Sequence[int], begins: Sequence[int], ends: Sequence[int]) -> None:
    """Checks reflect padding pads less than each spatial size."""
    if mode == "reflect":
        check(
            all(max(b, e) < s for s, b, e in zip(sizes, begins, ends)),
            f"{op}: reflect padding by {list(begins)}+{list(ends)} needs every spatial size above "
            f"its pads, got sizes {list(sizes)}",
        )


class PadGeometry(NamedTuple):
    """PadImage between X (``sizes``) and Y (``outs``): ``begins`` leading pads per spatial axis,
    X's ``inner`` size and the shape of the op's output (Y, or dX for the gradient)."""

    sizes: tuple[int, ...]
    outs: tuple[int, ...]
    begins: tuple[int, ...]
    inner: int
    out_shape: tuple[int, ...]


def pad_image_geometry(shape: Sequence[int], nchw: bool, mode: str, pads: Any) -> PadGeometry:
    """Checks PadImage's X of ``shape``; its geometry."""
    check_rank("PadImage", shape)
    sizes, inner = split(shape, nchw)
    begins, ends = split_pads(pads, len(sizes))
    check_pads("PadImage", mode, sizes, begins, ends)
    outs = tuple(s + b + e for s, b, e in zip(sizes, begins, ends))
    return PadGeometry(sizes, outs, tuple(begins), inner, with_spatial(shape, outs, nchw))


def pad_image_gradient_geometry(shape: Sequence[int], nchw: bool, mode: str, pads: Any) -> PadGeometry:
    """Checks PadImageGradient's dY of ``shape``; its geometry (``out_shape``: dX's)."""
    check_rank("PadImageGradient", shape)
    outs, inner = split(shape, nchw)
    begins, ends = split_pads(pads, len(outs))
    sizes = tuple(o - b - e for o, b, e in zip(outs, begins, ends))
    check(
        all(s > 0 for s in sizes),
        f"PadImageGradient: dY {list(shape)} is not larger than the pads {list(begins)}+{list(ends)}",
    )
    check_pads("PadImageGradient", mode, sizes, begins, ends)
    return PadGeometry(sizes, outs, tuple(begins), inner, with_spatial(shape, sizes, nchw))

"""Host-side checks and geometry of FC, Conv and ConvTranspose, shared by the device backends.

Everything here reads shapes and arguments only: layouts (NCHW or NHWC), the filter checks with
their messages, the window of a filter and its resolved output geometry. The GEMMs, im2col and
col2im stay in the plugins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaffa.kernels import KernelContext, RunFn
from kaffa.ops.geometry import Window
from kaffa.schema import check, norm_axis

# Largest im2col matrix built at once; bigger batches are convolved in chunks of samples.
COLS_BUDGET_BYTES = 64 << 20


def channels(x: Any, nchw: bool) -> int:
    """The channel count of ``x`` (axis 1 for NCHW, the last axis for NHWC)."""
    return x.shape[1] if nchw else x.shape[-1]


def spatial_sizes(x: Any, nchw: bool) -> tuple[int, ...]:
    """The spatial sizes of ``x`` (the axes after the channels for NCHW, between batch and
    channels for NHWC)."""
    return tuple(x.shape[2:] if nchw else x.shape[1:-1])


def layout(n: int, c: int, spatial: Sequence[int], nchw: bool) -> tuple[int, ...]:
    """The shape of ``n`` samples of ``c`` channels over ``spatial`` in the given order."""
    return (n, c, *spatial) if nchw else (n, *spatial, c)


def chunk(n: int, bytes_per_sample: int) -> int:
    """How many of ``n`` samples fit a column matrix of COLS_BUDGET_BYTES (at least one)."""
    return max(1, min(n, COLS_BUDGET_BYTES // max(1, bytes_per_sample)))


def channel_split(dy: Any, nchw: bool) -> tuple[int, int, int]:
    """(outer, channels, inner) of ``dy`` for summing it per channel (the bias gradient)."""
    c = channels(dy, nchw)
    if nchw:
        return dy.shape[0], c, math.prod(dy.shape[2:])
    return math.prod(dy.shape[:-1]), c, 1


def fc_dims(x: Any, w: Any, axis: int, axis_w: int, b: Any = None) -> tuple[int, int, int, int, int]:
    """Checks FC's X, W (and bias); returns (axis, axis_w, M, K, N): Y [M, N] = X [M, K] . Wᵀ."""
    ax = norm_axis(axis, x.ndim, "FC")
    aw = norm_axis(axis_w, w.ndim, "FC", "axis_w")
    m, k = math.prod(x.shape[:ax]), math.prod(x.shape[ax:])
    n, k_w = math.prod(w.shape[:aw]), math.prod(w.shape[aw:])
    check(
        k == k_w,
        f"FC: X {list(x.shape)} flattened at axis {ax} has {k} columns but W {list(w.shape)} "
        f"flattened at axis_w {aw} has {k_w}",
    )
    if b is not None:
        check(b.size == n, f"FC: bias has {b.size} elements, W has {n} rows")
    return ax, aw, m, k, n


def fc_gradient_dims(x: Any, w: Any, dy: Any, axis: int, axis_w: int) -> tuple[int, int, int, int, int]:
    """Checks FCGradient's X, W and dY; returns (axis, axis_w, M, K, N) as ``fc_dims``."""
    ax = norm_axis(axis, x.ndim, "FCGradient")
    aw = norm_axis(axis_w, w.ndim, "FCGradient", "axis_w")
    m, k = math.prod(x.shape[:ax]), math.prod(x.shape[ax:])
    n = math.prod(w.shape[:aw])
    check(
        math.prod(w.shape[aw:]) == k and tuple(dy.shape) == (*x.shape[:ax], n),
        f"FCGradient: X {list(x.shape)} (axis {ax}), W {list(w.shape)} (axis_w {aw}) and "
        f"dY {list(dy.shape)} do not fit: dY must be {[*x.shape[:ax], n]}",
    )
    return ax, aw, m, k, n


def fc_run(ctx: KernelContext, forward: Callable[[Any, Any, Any, int, int, int, int], Any]) -> RunFn:
    """FC's run function: checks the inputs (``fc_dims``), then ``forward(x, w, b, axis, M, K,
    N)`` makes Y."""
    axis, axis_w = ctx.args["axis"], ctx.args["axis_w"]

    def run(x: Any, w: Any, b: Any = None) -> tuple[Any]:
        ax, _, m, k, n = fc_dims(x, w, axis, axis_w, b)
        return (forward(x, w, b, ax, m, k, n),)

    return run


def fc_gradient_run(
    ctx: KernelContext, backward: Callable[[Any, Any, Any, int, int, int, bool], list]
) -> RunFn:
    """FCGradient's run function: checks the inputs (``fc_gradient_dims``), then
    ``backward(x, w, dy, M, K, N, with_dx)`` makes [dW, db(, dX)]."""
    axis, axis_w, with_dx = ctx.args["axis"], ctx.args["axis_w"], ctx.num_outputs > 2

    def run(x: Any, w: Any, dy: Any) -> tuple[Any, ...]:
        _, _, m, k, n = fc_gradient_dims(x, w, dy, axis, axis_w)
        return tuple(backward(x, w, dy, m, k, n, with_dx))

    return run


def conv_filter(op: str, x: Any, w: Any, nchw: bool, group: int) -> tuple[int, int, tuple[int, ...]]:
    """Checks Conv's X against its filter; returns (M, C/group, kernel shape)."""
    check(
        x.ndim >= 3 and w.ndim == x.ndim,
        f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
        f"{list(w.shape)} the same rank",
    )
    c = channels(x, nchw)
    m, cg, kern = w.shape[0], channels(w, nchw), spatial_sizes(w, nchw)
    check(
        c == cg * group and m % group == 0,
        f"{op}: X has {c} channels and the filter {list(w.shape)} has {m} outputs x {cg} channels "
        f"per group; with group={group} X needs {cg * group} channels and outputs must divide",
    )
    return m, cg, kern


def transpose_filter(op: str, x: Any, w: Any, nchw: bool, group: int) -> tuple[int, tuple[int, ...]]:
    """Checks ConvTranspose's X against its filter [C, M/g, *K]; returns (M, kernel shape)."""
    check(
        x.ndim >= 3 and w.ndim == x.ndim,
        f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
        f"{list(w.shape)} the same rank",
    )
    c = channels(x, nchw)
    check(
        w.shape[0] == c and c % group == 0,
        f"{op}: X has {c} channels, the filter {list(w.shape)} is for {w.shape[0]}; with group={group} "
        "the channels must also divide into the groups",
    )
    return channels(w, nchw) * group, spatial_sizes(w, nchw)


def filter_window(
    op: str, args: Mapping[str, Any], kern: tuple[int, ...], cache: dict[tuple[int, ...], Window]
) -> Window:
    """The window of a filter of spatial shape ``kern``, checked against a kernel argument."""
    win = cache.get(kern)
    if win is None:
        if args.get("kernels"):
            declared = Window.from_args(args, len(kern)).kernels
            check(
                declared == kern,
                f"{op}: kernel argument {list(declared)} does not match the filter's spatial "
                f"shape {list(kern)}",
            )
        win = cache[kern] = Window.from_args(args, len(kern), kernels=kern)
    return win


def check_dy(op: str, dy: Any, want: tuple[int, ...]) -> None:
    """Checks a gradient input against the forward output's shape."""
    check(tuple(dy.shape) == want, f"{op}: dY has shape {list(dy.shape)}, the forward output {list(want)}")


def check_residual(op: str, z: Any, want: tuple[int, ...]) -> None:
    """Checks FusedConv's residual Z against the convolution's output shape."""
    check(tuple(z.shape) == want, f"{op}: Z has shape {list(z.shape)}, the convolution's output {list(want)}")


@dataclass(frozen=True)
class ConvGeometry:
    """What a Conv or ConvTranspose (or gradient) kernel needs: ``m`` output channels (of the op,
    not of a gradient), the filter's spatial ``kern``, its window, the spatial ``sizes`` of X and
    the ``outs`` sizes and ``begins`` pads of the (forward) output."""

    m: int
    kern: tuple[int, ...]
    win: Window
    sizes: tuple[int, ...]
    outs: tuple[int, ...]
    begins: tuple[int, ...]

    @property
    def exact_ends(self) -> list[int]:
        """The end pads that give exactly ``outs`` windows: what cuDNN and oneDNN take. Negative
        where the stride skips the input's last rows (a 1x1 stride-2 filter over an even size)."""
        w = self.win
        return [
            (o - 1) * s + (k - 1) * d + 1 - i - b
            for o, s, k, d, i, b in zip(self.outs, w.strides, self.kern, w.dilations, self.sizes, self.begins)
        ]


@dataclass
class ConvArgs:
    """The parsed arguments of one Conv, ConvTranspose or gradient op, and its window cache."""

    op: str
    args: Mapping[str, Any]
    nchw: bool
    group: int
    transpose: bool
    adjs: tuple[int, ...] = ()
    no_bias: bool = False
    with_dx: bool = False
    windows: dict[tuple[int, ...], Window] = field(default_factory=dict)

    @classmethod
    def from_ctx(cls, ctx: KernelContext, op: str) -> ConvArgs:
        """``op`` is the op's name as its messages spell it (Conv, ConvGradient, ...)."""
        args = ctx.args
        transpose = op.startswith("ConvTranspose")
        no_bias = bool(args["no_bias"]) if op.endswith("Gradient") else False
        return cls(
            op=op,
            args=args,
            nchw=args["order"] == "NCHW",
            group=int(args["group"]),
            transpose=transpose,
            adjs=tuple(args["adjs"]) if transpose else (),
            no_bias=no_bias,
            with_dx=ctx.num_outputs == (2 if no_bias else 3),
        )

    def geometry(self, x: Any, w: Any, b: Any = None, dy: Any = None) -> ConvGeometry:
        """Checks X against the filter (and the bias, or dY against the forward output) and
        resolves the window over X's spatial sizes."""
        if self.transpose:
            m, kern = transpose_filter(self.op, x, w, self.nchw, self.group)
        else:
            m, _, kern = conv_filter(self.op, x, w, self.nchw, self.group)
        if b is not None:
            check(b.size == m, f"{self.op}: bias has {b.size} elements for {m} output channels")
        win = filter_window(self.op, self.args, kern, self.windows)
        sizes = spatial_sizes(x, self.nchw)
        if self.transpose:
            outs, begins, _ = win.transpose_resolve(sizes, self.adjs)
        else:
            outs, begins, _ = win.resolve(sizes)
        if dy is not None:
            check_dy(self.op, dy, layout(x.shape[0], m, outs, self.nchw))
        return ConvGeometry(m, kern, win, sizes, tuple(outs), tuple(begins))

    def forward_run(self, forward: Callable[[Any, Any, Any, ConvGeometry], Any]) -> RunFn:
        """Conv's or ConvTranspose's run function: ``forward(x, w, b, geometry)`` makes Y."""

        def run(x: Any, w: Any, b: Any = None) -> tuple[Any]:
            return (forward(x, w, b, self.geometry(x, w, b=b)),)

        return run

    def gradient_run(
        self,
        prepare: Callable[[Any, Any, Any], Any],
        dw: Callable[[Any, ConvGeometry], Any],
        db: Callable[[Any], Any],
        dx: Callable[[Any, ConvGeometry], Any],
    ) -> RunFn:
        """A gradient's run function: after the checks, ``state = prepare(x, w, dy)``; then
        ``dw(state, geometry)``, (unless no_bias) ``db(dy)`` and (if asked for)
        ``dx(state, geometry)`` make the outputs, in that order."""

        def run(x: Any, w: Any, dy: Any) -> tuple[Any, ...]:
            g = self.geometry(x, w, dy=dy)
            state = prepare(x, w, dy)
            out = [dw(state, g)]
            if not self.no_bias:
                out.append(db(dy))
            if self.with_dx:
                out.append(dx(state, g))
            return tuple(out)

        return run

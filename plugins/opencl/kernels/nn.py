"""opencl kernels for the nn family (see kaffa.ops.nn): FC, Conv, ConvTranspose and their gradients.
(Pooling and PadImage live in kaffa_opencl.kernels.pool.)

Everything is GEMM (kaffa_opencl.kernels.blas.Gemm) plus the helpers of cl/nn.cl, mirroring the
cpu kernels' channel-first algorithm (kaffa_cpu.kernels.nn): Conv is im2col + one batched GEMM
over (sample, group); its adjoint (ConvTranspose, Conv's dX) a batched GEMM to columns then
col2im, a gather, so no atomics; the filter gradient one GEMM per group over all samples'
columns at once. NHWC data and filters are permuted to channel-first and back. Column matrices
bigger than COLS_BUDGET_BYTES are built a chunk of samples at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import transpose_geometry
from kaffa.ops.geometry import Window
from kaffa.schema import check, norm_axis
from kaffa_opencl.kernels.blas import Gemm
from kaffa_opencl.kernels.common import FLOATS, Consts, device, empty, kernel

table = KernelTable("opencl")

COLS_BUDGET_BYTES = 64 << 20


class _Helpers:
    """The cl/nn.cl launchers and a constant cache, one set per op."""

    def __init__(self, ctx: KernelContext):
        dt = ctx.dtype or np.float32
        self.dtype = np.dtype(dt)
        self.gemm = Gemm(device(ctx), dt)
        self.dev = self.gemm.dev
        self.im2col = kernel(ctx, "nn", "im2col", dt)
        self.col2im = kernel(ctx, "nn", "col2im", dt)
        self.permute_k = kernel(ctx, "nn", "permute", dt)
        self.csum = kernel(ctx, "nn", "channel_sum", dt)
        self.consts = Consts(self.dev)

    def empty(self, shape: Sequence[int]) -> Any:
        return empty(self.dev, shape, self.dtype)

    def permute(self, x: Any, perm: Sequence[int]) -> Any:
        y = self.empty([x.shape[p] for p in perm])
        if y.size:
            self.permute_k(y.size, x, y, self.consts(transpose_geometry(x.shape, perm)), np.int64(y.size))
        return y

    def channel_sums(self, x: Any, outer: int, c: int, inner: int) -> Any:
        out = self.empty((c,))
        self.csum(c, x, out, np.int32(outer), np.int32(c), np.int32(inner))
        return out

    def geometry(self, win: Window, sizes: Sequence[int], outs: Sequence[int], begins: Sequence[int]) -> Any:
        g = [len(sizes), *sizes, *outs, *win.kernels, *win.strides, *win.dilations, *begins]
        return self.consts(np.asarray(g, dtype=np.int32))


def _chunk(n: int, bytes_per_sample: int) -> int:
    return max(1, min(n, COLS_BUDGET_BYTES // max(1, bytes_per_sample)))


def _to_cf(h: _Helpers, a: Any, nchw: bool) -> Any:
    return a if nchw else h.permute(a, (0, a.ndim - 1, *range(1, a.ndim - 1)))


def _from_cf(h: _Helpers, a: Any, nchw: bool) -> Any:
    return a if nchw else h.permute(a, (0, *range(2, a.ndim), 1))


# -- channel-first building blocks (as kaffa_cpu.kernels.nn) ----------------------------------------


def _conv_cf(h: _Helpers, x, w, group, win, outs, begins, bias=None) -> Any:
    """x [N, C, *S] with w [M, C/g, *K] -> [N, M, *outs] (+ bias[M])."""
    n, c, sizes = x.shape[0], x.shape[1], tuple(x.shape[2:])
    m, cg, kern = w.shape[0], w.shape[1], tuple(w.shape[2:])
    mg, kp, op, sp = m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    y = h.empty((n, m, *outs))
    if y.size == 0:
        return y
    geom = h.geometry(win, sizes, outs, begins)
    step = _chunk(n, c * kp * op * h.dtype.itemsize)
    cols = h.empty((step, c * kp, op))
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        total = cnt * c * kp * op
        h.im2col(total, x, cols, geom, *map(np.int32, (c, cnt, s0, kp, op, sp, 0)), np.int64(total))
        s, gi = np.meshgrid(np.arange(cnt, dtype=np.int64), np.arange(group, dtype=np.int64), indexing="ij")
        s, gi = s.reshape(-1), gi.reshape(-1)
        offs = np.stack(
            [gi * mg * ck, (s * c * kp + gi * ck) * op, ((s0 + s) * m + gi * mg) * op, gi * mg], 1
        )
        h.gemm(w, cols, mg, op, ck, (ck, 1), (op, 1), out=y, c_strides=(op, 1), offsets=offs,
               batch=len(offs), bias=bias, bias_rows=True)  # fmt: skip
    return y


def _adjoint_cf(h: _Helpers, dy, w, group, win, sizes, begins, bias=None) -> Any:
    """dy [N, M, *O] with w [M, C/g, *K] -> [N, C, *sizes] (+ bias[C]): Conv's adjoint in X."""
    n, m, outs = dy.shape[0], dy.shape[1], tuple(dy.shape[2:])
    cg, kern = w.shape[1], tuple(w.shape[2:])
    c = cg * group
    mg, kp, op, sp = m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    dx = h.empty((n, c, *sizes))
    if dx.size == 0:
        return dx
    geom = h.geometry(win, sizes, outs, begins)
    step = _chunk(n, c * kp * op * h.dtype.itemsize)
    cols = h.empty((step, c * kp, op))
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        s, gi = np.meshgrid(np.arange(cnt, dtype=np.int64), np.arange(group, dtype=np.int64), indexing="ij")
        s, gi = s.reshape(-1), gi.reshape(-1)
        offs = np.stack([gi * mg * ck, ((s0 + s) * m + gi * mg) * op, (s * group + gi) * ck * op, gi * 0], 1)
        # cols[s, g] [ck, op] = W[g]ᵀ · dY[s, g]
        h.gemm(
            w, dy, ck, op, mg, (1, ck), (op, 1), out=cols, c_strides=(op, 1), offsets=offs, batch=len(offs)
        )
        total = cnt * c * sp
        h.col2im(total, cols, dx, bias, geom, *map(np.int32, (c, s0, kp, op, sp)), np.int64(total))
    return dx


def _filter_grad_cf(h: _Helpers, x, dy, group, win, begins, kern) -> Any:
    """x [N, C, *S], dy [N, M, *O] -> dW [M, C/g, *K]."""
    n, c, sizes = x.shape[0], x.shape[1], tuple(x.shape[2:])
    m, outs = dy.shape[1], tuple(dy.shape[2:])
    cg, mg, kp, op, sp = c // group, m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    geom = h.geometry(win, sizes, outs, begins)
    dyt = (
        h.permute(dy, (1, 0, *range(2, dy.ndim))) if n > 1 and m > 1 else dy
    )  # [M, N, O]: a group's rows, all samples
    dyt = dyt.reshape(m, n * op) if dyt.size else dyt
    step = _chunk(n, c * kp * op * h.dtype.itemsize)
    cols = h.empty((c * kp, step * op))
    gi = np.arange(group, dtype=np.int64)
    dw = None
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        total = cnt * c * kp * op
        h.im2col(total, x, cols, geom, *map(np.int32, (c, cnt, s0, kp, op, sp, 1)), np.int64(total))
        offs = np.stack([gi * mg * n * op + s0 * op, gi * ck * cnt * op, gi * mg * ck, gi * 0], 1)
        dw = h.gemm(dyt, cols, mg, ck, cnt * op, (n * op, 1), (1, cnt * op), out_shape=(m, cg, *kern),
                    c_strides=(ck, 1), offsets=offs, batch=group, beta=1.0 if dw is not None else 0.0,
                    c0=dw)  # fmt: skip
    if dw is None:
        dw = h.empty((m, cg, *kern))
        if dw.size:
            dw.fill(0)
    return dw


# -- FC ---------------------------------------------------------------------------------------------


@table.kernel("FC", dtypes=FLOATS)
def fc(ctx: KernelContext) -> RunFn:
    axis, axis_w = ctx.args["axis"], ctx.args["axis_w"]
    g = Gemm(device(ctx), ctx.dtype or np.float32)

    def run(x, w, b=None):
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
        y = g(x, w, m, n, k, (k, 1), (1, k), out_shape=(*x.shape[:ax], n), bias=b)
        return (y,)

    return run


@table.kernel("FCGradient", dtypes=FLOATS)
def fc_gradient(ctx: KernelContext) -> RunFn:
    axis, axis_w, n_out = ctx.args["axis"], ctx.args["axis_w"], ctx.num_outputs
    h = _Helpers(ctx)

    def run(x, w, dy):
        ax = norm_axis(axis, x.ndim, "FCGradient")
        aw = norm_axis(axis_w, w.ndim, "FCGradient", "axis_w")
        m, k = math.prod(x.shape[:ax]), math.prod(x.shape[ax:])
        n = math.prod(w.shape[:aw])
        check(
            math.prod(w.shape[aw:]) == k and tuple(dy.shape) == (*x.shape[:ax], n),
            f"FCGradient: X {list(x.shape)} (axis {ax}), W {list(w.shape)} (axis_w {aw}) and "
            f"dY {list(dy.shape)} do not fit: dY must be {[*x.shape[:ax], n]}",
        )
        dw = h.gemm(dy, x, n, k, m, (1, n), (k, 1), out_shape=w.shape)  # dYᵀ · X
        out = [dw, h.channel_sums(dy, m, n, 1)]
        if n_out > 2:
            out.append(h.gemm(dy, w, m, k, n, (n, 1), (k, 1), out_shape=x.shape))  # dY · W
        return tuple(out)

    return run


# -- Conv, ConvTranspose ----------------------------------------------------------------------------


def _channels(x: Any, nchw: bool) -> int:
    return x.shape[1] if nchw else x.shape[-1]


def _sizes(x: Any, nchw: bool) -> tuple[int, ...]:
    return tuple(x.shape[2:] if nchw else x.shape[1:-1])


def _conv_filter(op: str, x: Any, w: Any, nchw: bool, group: int) -> tuple[int, int, tuple[int, ...]]:
    check(
        x.ndim >= 3 and w.ndim == x.ndim,
        f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
        f"{list(w.shape)} the same rank",
    )
    c = _channels(x, nchw)
    m, cg, kern = w.shape[0], _channels(w, nchw), _sizes(w, nchw)
    check(
        c == cg * group and m % group == 0,
        f"{op}: X has {c} channels and the filter {list(w.shape)} has {m} outputs x {cg} channels "
        f"per group; with group={group} X needs {cg * group} channels and outputs must divide",
    )
    return m, cg, kern


def _transpose_filter(op: str, x: Any, w: Any, nchw: bool, group: int) -> tuple[int, tuple[int, ...]]:
    check(
        x.ndim >= 3 and w.ndim == x.ndim,
        f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
        f"{list(w.shape)} the same rank",
    )
    c = _channels(x, nchw)
    check(
        w.shape[0] == c and c % group == 0,
        f"{op}: X has {c} channels, the filter {list(w.shape)} is for {w.shape[0]}; with group={group} "
        "the channels must also divide into the groups",
    )
    return _channels(w, nchw) * group, _sizes(w, nchw)


def _filter_window(op: str, args: Mapping[str, Any], kern: tuple[int, ...], cache: dict) -> Window:
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


def _layout(n: int, c: int, spatial: Sequence[int], nchw: bool) -> tuple[int, ...]:
    return (n, c, *spatial) if nchw else (n, *spatial, c)


def _check_dy(op: str, dy: Any, want: tuple[int, ...]) -> None:
    check(tuple(dy.shape) == want, f"{op}: dY has shape {list(dy.shape)}, the forward output {list(want)}")


def _bias_sums(h: _Helpers, dy: Any, nchw: bool) -> Any:
    c = _channels(dy, nchw)
    if nchw:
        return h.channel_sums(dy, dy.shape[0], c, math.prod(dy.shape[2:]))
    return h.channel_sums(dy, math.prod(dy.shape[:-1]), c, 1)


@table.kernel("Conv", dtypes=FLOATS)
def conv(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, b=None):
        m, _, kern = _conv_filter("Conv", x, w, nchw, group)
        if b is not None:
            check(b.size == m, f"Conv: bias has {b.size} elements for {m} output channels")
        win = _filter_window("Conv", args, kern, windows)
        outs, begins, _ = win.resolve(_sizes(x, nchw))
        y = _conv_cf(h, _to_cf(h, x, nchw), _to_cf(h, w, nchw), group, win, outs, begins, b)
        return (_from_cf(h, y, nchw),)

    return run


@table.kernel("ConvGradient", dtypes=FLOATS)
def conv_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    no_bias = bool(args["no_bias"])
    with_dx = ctx.num_outputs == (2 if no_bias else 3)
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, dy):
        m, _, kern = _conv_filter("ConvGradient", x, w, nchw, group)
        win = _filter_window("ConvGradient", args, kern, windows)
        sizes = _sizes(x, nchw)
        outs, begins, _ = win.resolve(sizes)
        _check_dy("ConvGradient", dy, _layout(x.shape[0], m, outs, nchw))
        x_cf, w_cf, dy_cf = _to_cf(h, x, nchw), _to_cf(h, w, nchw), _to_cf(h, dy, nchw)
        out = [_from_cf(h, _filter_grad_cf(h, x_cf, dy_cf, group, win, begins, kern), nchw)]
        if not no_bias:
            out.append(_bias_sums(h, dy, nchw))
        if with_dx:
            out.append(_from_cf(h, _adjoint_cf(h, dy_cf, w_cf, group, win, sizes, begins), nchw))
        return tuple(out)

    return run


@table.kernel("ConvTranspose", dtypes=FLOATS)
def conv_transpose(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    adjs = tuple(args["adjs"])
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, b=None):
        m, kern = _transpose_filter("ConvTranspose", x, w, nchw, group)
        if b is not None:
            check(b.size == m, f"ConvTranspose: bias has {b.size} elements for {m} output channels")
        win = _filter_window("ConvTranspose", args, kern, windows)
        outs, begins, _ = win.transpose_resolve(_sizes(x, nchw), adjs)
        y = _adjoint_cf(h, _to_cf(h, x, nchw), _to_cf(h, w, nchw), group, win, outs, begins, b)
        return (_from_cf(h, y, nchw),)

    return run


@table.kernel("ConvTransposeGradient", dtypes=FLOATS)
def conv_transpose_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    adjs = tuple(args["adjs"])
    no_bias = bool(args["no_bias"])
    with_dx = ctx.num_outputs == (2 if no_bias else 3)
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, dy):
        m, kern = _transpose_filter("ConvTransposeGradient", x, w, nchw, group)
        win = _filter_window("ConvTransposeGradient", args, kern, windows)
        sizes = _sizes(x, nchw)
        outs, begins, _ = win.transpose_resolve(sizes, adjs)
        _check_dy("ConvTransposeGradient", dy, _layout(x.shape[0], m, outs, nchw))
        x_cf, w_cf, dy_cf = _to_cf(h, x, nchw), _to_cf(h, w, nchw), _to_cf(h, dy, nchw)
        # Y = adjoint(X): dW correlates dY (the big side) with X, dX convolves dY with W.
        out = [_from_cf(h, _filter_grad_cf(h, dy_cf, x_cf, group, win, begins, kern), nchw)]
        if not no_bias:
            out.append(_bias_sums(h, dy, nchw))
        if with_dx:
            out.append(_from_cf(h, _conv_cf(h, dy_cf, w_cf, group, win, sizes, begins), nchw))
        return tuple(out)

    return run

"""opencl kernels for the nn family (see kaffa.ops.nn): FC, Conv, ConvTranspose and their gradients.
(Pooling and PadImage live in kaffa_opencl.kernels.pool.)

Everything is GEMM (kaffa_opencl.kernels.blas.Gemm) plus the helpers of cl/nn.cl, mirroring the
cpu kernels' channel-first algorithm (kaffa_cpu.kernels.nn): Conv is im2col + one batched GEMM
over (sample, group); its adjoint (ConvTranspose, Conv's dX) a batched GEMM to columns then
col2im, a gather, so no atomics; the filter gradient one GEMM per group over all samples'
columns at once. NHWC data and filters are permuted to channel-first and back. Column matrices
bigger than kaffa.launch.nn.COLS_BUDGET_BYTES are built a chunk of samples at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import transpose_geometry
from kaffa.launch.nn import ConvArgs, ConvGeometry, channel_split, chunk, fc_gradient_run, fc_run
from kaffa.ops.geometry import Window
from kaffa_opencl.kernels.blas import Gemm
from kaffa_opencl.kernels.common import FLOATS, Consts, device, empty, kernel

table = KernelTable("opencl")


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
    step = chunk(n, c * kp * op * h.dtype.itemsize)
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
    step = chunk(n, c * kp * op * h.dtype.itemsize)
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
    step = chunk(n, c * kp * op * h.dtype.itemsize)
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
    g = Gemm(device(ctx), ctx.dtype or np.float32)

    def forward(x, w, b, ax, m, k, n):
        return g(x, w, m, n, k, (k, 1), (1, k), out_shape=(*x.shape[:ax], n), bias=b)

    return fc_run(ctx, forward)


@table.kernel("FCGradient", dtypes=FLOATS)
def fc_gradient(ctx: KernelContext) -> RunFn:
    h = _Helpers(ctx)

    def backward(x, w, dy, m, k, n, with_dx):
        dw = h.gemm(dy, x, n, k, m, (1, n), (k, 1), out_shape=w.shape)  # dYᵀ · X
        out = [dw, h.channel_sums(dy, m, n, 1)]
        if with_dx:
            out.append(h.gemm(dy, w, m, k, n, (n, 1), (k, 1), out_shape=x.shape))  # dY · W
        return out

    return fc_gradient_run(ctx, backward)


# -- Conv, ConvTranspose ----------------------------------------------------------------------------


@table.kernel("Conv", "ConvTranspose", dtypes=FLOATS)
def conv(ctx: KernelContext) -> RunFn:
    """Conv, and ConvTranspose: the adjoint of Conv in its input."""
    c = ConvArgs.from_ctx(ctx, ctx.op_type)
    h = _Helpers(ctx)
    op = _adjoint_cf if c.transpose else _conv_cf

    def forward(x, w, b, g: ConvGeometry):
        y = op(h, _to_cf(h, x, c.nchw), _to_cf(h, w, c.nchw), c.group, g.win, g.outs, g.begins, b)
        return _from_cf(h, y, c.nchw)

    return c.forward_run(forward)


@table.kernel("ConvGradient", "ConvTransposeGradient", dtypes=FLOATS)
def conv_gradient(ctx: KernelContext) -> RunFn:
    """ConvGradient, and ConvTransposeGradient: there Y = adjoint(X), so dW correlates dY (the
    big side) with X, and dX convolves dY with W."""
    c = ConvArgs.from_ctx(ctx, ctx.op_type)
    h = _Helpers(ctx)

    def prepare(x, w, dy):
        return _to_cf(h, x, c.nchw), _to_cf(h, w, c.nchw), _to_cf(h, dy, c.nchw)

    def dw(cf, g: ConvGeometry):
        x_cf, _, dy_cf = cf
        big, small = (dy_cf, x_cf) if c.transpose else (x_cf, dy_cf)
        return _from_cf(h, _filter_grad_cf(h, big, small, c.group, g.win, g.begins, g.kern), c.nchw)

    def db(dy):
        return h.channel_sums(dy, *channel_split(dy, c.nchw))

    def dx(cf, g: ConvGeometry):
        _, w_cf, dy_cf = cf
        op = _conv_cf if c.transpose else _adjoint_cf
        return _from_cf(h, op(h, dy_cf, w_cf, c.group, g.win, g.sizes, g.begins), c.nchw)

    return c.gradient_run(prepare, dw, db, dx)

"""FC and FCGradient (GEMMs through cuBLAS); Conv, ConvTranspose and their gradients over any
number of spatial axes, NCHW or NHWC (NHWC data and filters are permuted to channel-first and
back), as on opencl: Conv is im2col + one cuBLAS GEMM per group over a chunk of samples; its
adjoint (ConvTranspose, Conv's dX) a GEMM to columns then col2im, a gather (no atomics); the
filter gradient one contraction per group over the chunk's columns. Chunks keep the column
matrix under kaffa.launch.nn.COLS_BUDGET_BYTES. The CUDNN engine (kaffa_cuda.cudnn) takes Conv
first where it can.

im2col / col2im of 2-D windows are raw CUDA C (cu/nn.cu, checked by ``nvcc -ptx``); 1-D and 3-D
windows use CuPy strided slices (one copy per kernel tap). On the cudasim test backend every
rank uses the slices, so the chunking, GEMM, group, layout, bias and gradient logic runs on any
machine.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.math import work_dtype
from kaffa.launch.nn import ConvArgs, ConvGeometry, chunk, fc_gradient_run, fc_run
from kaffa_cuda.kernels.common import FLOATS, Launcher, Table, is_sim, wide, xp

table = Table()


@table.kernel("FC", dtypes=FLOATS)
def fc(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def forward(x, w, b, ax, m, k, n):
        y = cp.matmul(x.reshape(m, k), w.reshape(n, k).T)  # cuBLAS; float16 accumulates in float32
        if b is not None:
            y = (wide(cp, y) + b.reshape(n)).astype(x.dtype)
        return y.reshape(*x.shape[:ax], n)

    return fc_run(ctx, forward)


@table.kernel("FCGradient", dtypes=FLOATS)
def fc_gradient(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def backward(x, w, dy, m, k, n, with_dx):
        d = dy.reshape(m, n)
        out = [cp.matmul(d.T, x.reshape(m, k)).reshape(w.shape), wide(cp, d).sum(axis=0).astype(dy.dtype)]
        if with_dx:
            out.append(cp.matmul(d, w.reshape(n, k)).reshape(x.shape))
        return out

    return fc_gradient_run(ctx, backward)


def _params(g: ConvGeometry) -> tuple[np.int32, ...]:
    (h, w), (kh, kw), (oh, ow) = g.sizes, g.kern, g.outs
    win = g.win
    return tuple(np.int32(v) for v in (h, w, kh, kw, *win.strides, *g.begins, *win.dilations, oh, ow))


class Cols:
    """im2col / col2im of a chunk of samples: x [n, C, *S] <-> cols [n, C*prod(K), prod(O)]. The
    raw 2-D kernels treat the chunk's n*C planes as channels (each plane is independent)."""

    def __init__(self, ctx: KernelContext):
        self.cp, self.sim = xp(ctx), is_sim(ctx)
        self.ctx = ctx
        self._raw: dict[str, Launcher] = {}  # built on first use: cudasim and 1-D/3-D never launch them

    def _k(self, name: str) -> Launcher:
        k = self._raw.get(name)
        if k is None:
            k = self._raw[name] = Launcher(self.ctx, "nn", name)
        return k

    def _use_raw(self, g: ConvGeometry) -> bool:
        return not self.sim and len(g.sizes) == 2

    def im2col(self, x: Any, g: ConvGeometry) -> Any:
        n, c = x.shape[:2]
        kp, op = math.prod(g.kern), math.prod(g.outs)
        if not self._use_raw(g):
            return _slices_im2col(self.cp, x, g).reshape(n, c * kp, op)
        x = self.cp.ascontiguousarray(x)
        cols = self.cp.empty((n, c * kp, op), x.dtype)
        self._k("im2col")(cols.size, x, cols, np.int32(n * c), *_params(g))
        return cols

    def col2im(self, cols: Any, c: int, g: ConvGeometry) -> Any:
        n = cols.shape[0]
        if not self._use_raw(g):
            return _slices_col2im(self.cp, cols, c, g)
        cols = self.cp.ascontiguousarray(cols)
        x = self.cp.empty((n, c, *g.sizes), cols.dtype)
        self._k("col2im")(x.size, cols, x, np.int32(n * c), *_params(g))
        return x


def _taps(g: ConvGeometry):
    """(extent of the zero-padded input, its crop, then per kernel tap: (tap, window slices))."""
    st, dl = g.win.strides, g.win.dilations
    ext = tuple(
        max(s + b, (o - 1) * t + (k - 1) * d + 1)
        for s, b, o, t, k, d in zip(g.sizes, g.begins, g.outs, st, g.kern, dl)
    )
    crop = tuple(slice(b, b + s) for b, s in zip(g.begins, g.sizes))
    taps = [
        (tap, tuple(slice(i * d, i * d + (o - 1) * t + 1, t) for i, d, o, t in zip(tap, dl, g.outs, st)))
        for tap in itertools.product(*(range(k) for k in g.kern))
    ]
    return ext, crop, taps


def _slices_im2col(cp: Any, x: Any, g: ConvGeometry) -> Any:
    """[n, C, *K, *O]: one strided copy of the padded input per kernel tap."""
    n, c = x.shape[:2]
    ext, crop, taps = _taps(g)
    padded = cp.zeros((n, c, *ext), x.dtype)
    padded[(slice(None), slice(None), *crop)] = x
    cols = cp.empty((n, c, *g.kern, *g.outs), x.dtype)
    for tap, window in taps:
        cols[(slice(None), slice(None), *tap)] = padded[(slice(None), slice(None), *window)]
    return cols


def _slices_col2im(cp: Any, cols: Any, c: int, g: ConvGeometry) -> Any:
    """The adjoint: each tap adds its columns into a strided slice of the padded input (a slice
    never repeats a cell, so no atomics), summed in the work type."""
    n = cols.shape[0]
    ext, crop, taps = _taps(g)
    cf = cols.reshape(n, c, *g.kern, *g.outs)
    padded = cp.zeros((n, c, *ext), work_dtype(cols.dtype))
    for tap, window in taps:
        padded[(slice(None), slice(None), *window)] += cf[(slice(None), slice(None), *tap)]
    return padded[(slice(None), slice(None), *crop)].astype(cols.dtype)


def _sizes(x: Any, w: Any, group: int, g: ConvGeometry) -> tuple[int, int, int, int, int]:
    """(cg, mg, kp, op, ck) of a channel-first conv of x [N, C, ...] by w [M, C/g, *K]."""
    cg, m = w.shape[1], w.shape[0]
    kp, op = math.prod(g.kern), math.prod(g.outs)
    return cg, m // group, kp, op, cg * kp


def conv_cf(cp: Any, cols: Cols, x: Any, w: Any, group: int, g: ConvGeometry) -> Any:
    """x [N, C, *sizes] by w [M, C/group, *K] -> [N, M, *outs]."""
    n, c = x.shape[:2]
    _, mg, kp, op, ck = _sizes(x, w, group, g)
    y = cp.empty((n, w.shape[0], op), x.dtype)
    if y.size == 0:
        return y.reshape(n, w.shape[0], *g.outs)
    wg = w.reshape(group, mg, ck)
    step = chunk(n, c * kp * op * x.dtype.itemsize)
    for s0 in range(0, n, step):
        col = cols.im2col(x[s0 : s0 + step], g)
        for j in range(group):  # cuBLAS; float16 accumulates in float32
            y[s0 : s0 + step, j * mg : (j + 1) * mg] = cp.matmul(wg[j], col[:, j * ck : (j + 1) * ck])
    return y.reshape(n, w.shape[0], *g.outs)


def adjoint_cf(cp: Any, cols: Cols, dy: Any, w: Any, group: int, g: ConvGeometry) -> Any:
    """Conv's adjoint in X: dy [N, M, *outs] with w [M, C/group, *K] -> [N, C, *sizes]."""
    n, m = dy.shape[:2]
    cg, mg, kp, op, ck = _sizes(dy, w, group, g)
    c = cg * group
    dx = cp.zeros((n, c, *g.sizes), dy.dtype)
    if dx.size == 0 or op == 0:
        return dx
    wg, d = w.reshape(group, mg, ck), dy.reshape(n, m, op)
    step = chunk(n, c * kp * op * dy.dtype.itemsize)
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        col = cp.empty((cnt, c * kp, op), dy.dtype)
        for j in range(group):
            col[:, j * ck : (j + 1) * ck] = cp.matmul(wg[j].T, d[s0 : s0 + cnt, j * mg : (j + 1) * mg])
        dx[s0 : s0 + cnt] = cols.col2im(col, c, g)
    return dx


def filter_grad_cf(cp: Any, cols: Cols, x: Any, dy: Any, group: int, g: ConvGeometry) -> Any:
    """x [N, C, *sizes], dy [N, M, *outs] -> dW [M, C/group, *K], summed in the work type."""
    n, c = x.shape[:2]
    m = dy.shape[1]
    cg, mg, kp, op = c // group, m // group, math.prod(g.kern), math.prod(g.outs)
    ck = cg * kp
    acc = cp.zeros((group, mg, ck), work_dtype(x.dtype))
    d = dy.reshape(n, m, op)
    step = chunk(n, c * kp * op * x.dtype.itemsize)
    for s0 in range(0, n if op else 0, step):
        col = cols.im2col(x[s0 : s0 + step], g)
        for j in range(group):
            dj = wide(cp, d[s0 : s0 + step, j * mg : (j + 1) * mg])
            acc[j] += cp.tensordot(dj, wide(cp, col[:, j * ck : (j + 1) * ck]), axes=([0, 2], [0, 2]))
    return acc.reshape(m, cg, *g.kern).astype(x.dtype)


def _to_cf(cp: Any, a: Any, nchw: bool) -> Any:
    return a if nchw else cp.ascontiguousarray(cp.moveaxis(a, -1, 1))


def _from_cf(cp: Any, a: Any, nchw: bool) -> Any:
    return a if nchw else cp.ascontiguousarray(cp.moveaxis(a, 1, -1))


def _adjoint_view(g: ConvGeometry) -> ConvGeometry:
    """ConvTranspose's geometry as the conv it is the adjoint of: from Y's sizes (the big side) to
    X's (the small side)."""
    return dataclasses.replace(g, sizes=g.outs, outs=g.sizes)


def _add_bias(cp: Any, y: Any, b: Any) -> Any:
    return (wide(cp, y) + b.reshape(1, -1, *(1,) * (y.ndim - 2))).astype(y.dtype)


@table.kernel("Conv", "ConvTranspose", dtypes=FLOATS)
def conv(ctx: KernelContext) -> RunFn:
    """Conv, and ConvTranspose: the adjoint of Conv in its input."""
    args = ConvArgs.from_ctx(ctx, ctx.op_type)
    cp, cols, nchw, grp = xp(ctx), Cols(ctx), args.nchw, args.group

    def forward(x, w, b, g: ConvGeometry):
        x_cf, w_cf = _to_cf(cp, x, nchw), _to_cf(cp, w, nchw)
        if args.transpose:
            y = adjoint_cf(cp, cols, x_cf, w_cf, grp, _adjoint_view(g))
        else:
            y = conv_cf(cp, cols, x_cf, w_cf, grp, g)
        if b is not None:
            y = _add_bias(cp, y, b)
        return _from_cf(cp, y, nchw)

    return args.forward_run(forward)


@table.kernel("ConvGradient", "ConvTransposeGradient", dtypes=FLOATS)
def conv_gradient(ctx: KernelContext) -> RunFn:
    """ConvGradient, and ConvTransposeGradient: there Y = adjoint(X), so dW correlates dY (the
    big side) with X, and dX convolves dY with W."""
    args = ConvArgs.from_ctx(ctx, ctx.op_type)
    cp, cols, nchw, grp = xp(ctx), Cols(ctx), args.nchw, args.group

    def prepare(x, w, dy):
        return _to_cf(cp, x, nchw), _to_cf(cp, w, nchw), _to_cf(cp, dy, nchw)

    def dw(cf, g: ConvGeometry):
        x_cf, _, dy_cf = cf
        if args.transpose:
            return _from_cf(cp, filter_grad_cf(cp, cols, dy_cf, x_cf, grp, _adjoint_view(g)), nchw)
        return _from_cf(cp, filter_grad_cf(cp, cols, x_cf, dy_cf, grp, g), nchw)

    def db(dy):
        c_ax = 1 if nchw else dy.ndim - 1
        return wide(cp, dy).sum(axis=tuple(a for a in range(dy.ndim) if a != c_ax)).astype(dy.dtype)

    def dx(cf, g: ConvGeometry):
        _, w_cf, dy_cf = cf
        if args.transpose:
            return _from_cf(cp, conv_cf(cp, cols, dy_cf, w_cf, grp, _adjoint_view(g)), nchw)
        return _from_cf(cp, adjoint_cf(cp, cols, dy_cf, w_cf, grp, g), nchw)

    return args.gradient_run(prepare, dw, db, dx)

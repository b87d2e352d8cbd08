"""SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits, AveragedLoss,
SquaredL2Distance, Accuracy and their gradients, as CuPy array code (row reductions are CuPy's
reduction kernels). float16 computes in float32 and rounds once.

The shape checks are kaffa.launch.loss's. As on opencl, values the cpu kernels validate by
reading them (label ranges, probability rows, soft labels in [0, 1]) are not read back from the
device: an out-of-range class label gives NaN, never an out-of-bounds read or a wrapped index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import loss as shared
from kaffa_cuda.kernels.common import FLOATS, Table, wide, xp

table = Table()

F32 = np.dtype(np.float32)
LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD()


def _picked(cp: Any, x2: Any, t: Any, n: int, d: int) -> tuple[Any, Any, Any]:
    """(x2[row, label], the clamped labels, whether each label lies in [0, d)) per row."""
    lab = t.reshape(-1).astype(np.int64, copy=False)
    ok = (lab >= 0) & (lab < d)
    safe = cp.where(ok, lab, 0)
    return x2[cp.arange(n), safe], safe, ok


def _nan_where(cp: Any, ok: Any, v: Any) -> Any:
    return cp.where(ok, v, v.dtype.type(np.nan))


def _log_softmax(cp: Any, x2: Any) -> Any:
    z = x2 - x2.max(axis=1, keepdims=True)
    return z - cp.log(cp.exp(z).sum(axis=1, keepdims=True))


# -- SoftmaxWithLoss -------------------------------------------------------------------------------


def _setup(ctx: KernelContext) -> tuple[int, bool, float, bool]:
    a = ctx.args
    return a["axis"], bool(a["label_prob"]), float(a["scale"]), shared.softmax_loss_weighted(ctx)


@table.kernel("SoftmaxWithLoss", dtypes=FLOATS)
def softmax_with_loss(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)
    axis, label_prob, scale, _ = _setup(ctx)

    def run(x, t, w=None):
        n, d = shared.softmax_loss_rows(op, x, axis)
        shared.check_softmax_loss_inputs(op, label_prob, t, w, n, d)
        logp = _log_softmax(cp, wide(cp, x).reshape(n, d))
        if label_prob:
            per_row = -(wide(cp, t).reshape(n, d) * logp).sum(axis=1)
        else:
            picked, _, ok = _picked(cp, logp, t, n, d)
            per_row = _nan_where(cp, ok, -picked)
        wv = cp.ones(n, logp.dtype) if w is None else wide(cp, w).reshape(n).astype(logp.dtype, copy=False)
        total = wv.sum()
        # all weights 0: the loss is 0 (no division on the host: total stays on the device)
        loss = cp.where(total != 0, (per_row * wv).sum() * scale / cp.where(total != 0, total, 1), 0)
        return cp.exp(logp).reshape(x.shape).astype(x.dtype), cp.asarray(loss).astype(x.dtype).reshape(())

    return run


@table.kernel("SoftmaxWithLossGradient", dtypes=FLOATS)
def softmax_with_loss_gradient(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)
    axis, label_prob, scale, weighted = _setup(ctx)

    def run(x, t, *rest):
        w, p, dloss = rest if weighted else (None, *rest)
        n, d = shared.softmax_loss_rows(op, x, axis)
        shared.check_softmax_loss_grad(op, x, p, dloss)
        shared.check_softmax_loss_inputs(op, label_prob, t, w, n, d)
        p2 = wide(cp, p).reshape(n, d)
        if label_prob:
            t2 = wide(cp, t).reshape(n, d)
            dx = p2 * t2.sum(axis=1, keepdims=True) - t2
        else:
            _, lab, ok = _picked(cp, p2, t, n, d)
            dx = p2 - (cp.arange(d)[None, :] == lab[:, None])
            dx = cp.where(ok[:, None], dx, dx.dtype.type(np.nan))
        if w is not None:
            wv = wide(cp, w).reshape(n).astype(dx.dtype, copy=False)
            dx = dx * wv[:, None]
            total = wv.sum()
        else:
            total = cp.asarray(float(n), dx.dtype)
        g = wide(cp, dloss).reshape(()).astype(dx.dtype)
        factor = cp.where(total != 0, g * scale / cp.where(total != 0, total, 1), 0)
        return ((dx * factor).reshape(x.shape).astype(x.dtype),)

    return run


# -- LabelCrossEntropy / CrossEntropy --------------------------------------------------------------


@table.kernel("LabelCrossEntropy", dtypes=FLOATS)
def label_cross_entropy(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(x, t):
        n, d = shared.xent_rows(x)
        shared.check_labels(op, t, n)
        picked, _, ok = _picked(cp, wide(cp, x).reshape(n, d), t, n, d)
        y = _nan_where(cp, ok, -cp.log(cp.maximum(picked, LOG_THRESHOLD)))
        return (y.astype(x.dtype),)

    return run


@table.kernel("LabelCrossEntropyGradient", dtypes=FLOATS)
def label_cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(x, t, dy):
        n, d = shared.xent_rows(x)
        shared.check_row_grad(op, dy, n)
        shared.check_labels(op, t, n)
        x2 = wide(cp, x).reshape(n, d)
        picked, lab, ok = _picked(cp, x2, t, n, d)
        g = _nan_where(cp, ok, -wide(cp, dy).reshape(n) / cp.maximum(picked, LOG_THRESHOLD))
        dx = cp.where(cp.arange(d)[None, :] == lab[:, None], g[:, None], x2.dtype.type(0))
        return (dx.reshape(x.shape).astype(x.dtype),)

    return run


@table.kernel("CrossEntropy", dtypes=FLOATS)
def cross_entropy(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(x, t):
        n, d = shared.xent_rows(x)
        shared.check_soft_labels(op, t, n, d)
        logx = cp.log(cp.maximum(wide(cp, x).reshape(n, d), LOG_THRESHOLD))
        return ((-(wide(cp, t).reshape(n, d) * logx).sum(axis=1)).astype(x.dtype),)

    return run


@table.kernel("CrossEntropyGradient", dtypes=FLOATS)
def cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(x, t, dy):
        n, d = shared.xent_rows(x)
        shared.check_row_grad(op, dy, n)
        shared.check_soft_labels(op, t, n, d)
        t2, dyw = wide(cp, t).reshape(n, d), wide(cp, dy).reshape(n, 1)
        dx = -t2 * dyw / cp.maximum(wide(cp, x).reshape(n, d), LOG_THRESHOLD)
        return (dx.reshape(x.shape).astype(x.dtype),)

    return run


# -- SigmoidCrossEntropyWithLogits -----------------------------------------------------------------


def _softplus(cp: Any, x: Any) -> Any:
    """log(1 + e^x) without overflow (numpy's logaddexp(0, x))."""
    return cp.maximum(x, 0) + cp.log1p(cp.exp(-cp.abs(x)))


def _sigmoid(cp: Any, x: Any) -> Any:
    e = cp.exp(-cp.abs(x))
    return cp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _terms(ctx: KernelContext, cp: Any):
    """(f(x, t), df/dx) of the op's mode (kaffa.launch.loss.sigmoid_xent_mode); Y = -mean(f)."""
    mode = shared.sigmoid_xent_mode(ctx)
    if mode == 1:  # log_D_trick: (2t - 1) * log(sigmoid(x))
        return (lambda x, t: (2 * t - 1) * -_softplus(cp, -x)), (lambda x, t: (2 * t - 1) * _sigmoid(cp, -x))
    if mode == 2:  # unjoined_lr_loss
        return (
            lambda x, t: t * x - (1 - t) * _softplus(cp, x),
            lambda x, t: t - (1 - t) * _sigmoid(cp, x),
        )
    return (lambda x, t: t * x - _softplus(cp, x)), (lambda x, t: t - _sigmoid(cp, x))


@table.kernel("SigmoidCrossEntropyWithLogits", dtypes=FLOATS)
def sigmoid_cross_entropy_with_logits(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)
    f, _ = _terms(ctx, cp)

    def run(x, t):
        shared.sigmoid_xent_inner(op, x, t)
        v = -f(wide(cp, x), wide(cp, t))
        return ((v if x.ndim == 0 else v.mean(axis=-1)).astype(x.dtype),)

    return run


@table.kernel("SigmoidCrossEntropyWithLogitsGradient", dtypes=FLOATS)
def sigmoid_cross_entropy_with_logits_gradient(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)
    _, df = _terms(ctx, cp)

    def run(dy, x, t):
        inner = shared.sigmoid_xent_inner(op, x, t)
        shared.check_sigmoid_xent_grad(op, dy, x, inner)
        g = wide(cp, dy).reshape(*x.shape[:-1], 1) if x.ndim else wide(cp, dy).reshape(())
        return ((-g / inner * df(wide(cp, x), wide(cp, t))).astype(x.dtype),)

    return run


# -- AveragedLoss ----------------------------------------------------------------------------------


@table.kernel("AveragedLoss", dtypes=FLOATS)
def averaged_loss(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(x):
        shared.check_averaged_loss(x)
        return (cp.asarray(wide(cp, x).mean()).astype(x.dtype),)

    return run


@table.kernel("AveragedLossGradient", dtypes=FLOATS)
def averaged_loss_gradient(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(x, dy):
        shared.check_averaged_loss_grad(dy)
        g = (wide(cp, dy).reshape(()) / max(x.size, 1)).astype(x.dtype)
        return (cp.broadcast_to(g, x.shape).copy(),)

    return run


# -- SquaredL2Distance -----------------------------------------------------------------------------


@table.kernel("SquaredL2Distance", dtypes=FLOATS)
def squared_l2_distance(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(x, y):
        n, d = shared.l2_rows(op, x, y)
        diff = (wide(cp, x) - wide(cp, y)).reshape(n, d)
        return ((0.5 * (diff * diff).sum(axis=1)).astype(x.dtype),)

    return run


@table.kernel("SquaredL2DistanceGradient", dtypes=FLOATS)
def squared_l2_distance_gradient(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(x, y, dd):
        n, d = shared.l2_rows(op, x, y)
        shared.check_l2_grad(op, dd, n)
        dx = ((wide(cp, x) - wide(cp, y)).reshape(n, d) * wide(cp, dd).reshape(n, 1)).reshape(x.shape)
        return dx.astype(x.dtype), (-dx).astype(x.dtype)

    return run


# -- Accuracy --------------------------------------------------------------------------------------


@table.kernel("Accuracy", dtypes=FLOATS)
def accuracy(ctx: KernelContext) -> RunFn:
    op, top_k, cp = ctx.op_type, int(ctx.args["top_k"]), xp(ctx)

    def run(x, t):
        n, d = shared.accuracy_rows(op, x, t)
        score, lab, ok = _picked(cp, x, t, n, d)
        # The label's rank: classes scoring higher, or equal with a lower index, come first.
        cls = cp.arange(d)[None, :]
        ahead = (x > score[:, None]) | ((x == score[:, None]) & (cls < lab[:, None]))
        hits = cp.count_nonzero(ok & (ahead.sum(axis=1) < top_k))  # an out-of-range label misses
        return (cp.asarray(hits / n).astype(F32).reshape(()),)

    return run

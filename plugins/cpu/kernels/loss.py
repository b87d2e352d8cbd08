"""SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits, AveragedLoss,
SquaredL2Distance, Accuracy, and their gradients.

float16 inputs are computed in float32 and rounded once at the end (exp/log and the row sums
would otherwise lose most of float16's precision).
"""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD()


def _work(x: np.ndarray) -> np.ndarray:
    return x.astype(F32) if x.dtype == F16 else x


def _rows(x: np.ndarray) -> tuple[int, int]:
    """Cross-entropy view: [N, D] with N = dim 0 (1 for a 1-D X)."""
    if x.ndim > 1:
        return x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64))
    return 1, x.shape[0]


def _labels(op: str, t: np.ndarray, n: int, d: int) -> np.ndarray:
    lab = t.reshape(-1)
    check(lab.size == n, f"{op}: {lab.size} labels for {n} rows")
    if lab.size:
        lo, hi = int(lab.min()), int(lab.max())
        check(lo >= 0 and hi < d, f"{op}: labels must lie in [0, {d}), got values in [{lo}, {hi}]")
    return lab.astype(np.intp, copy=False)


# -- SoftmaxWithLoss -------------------------------------------------------------------------------


def _log_softmax(x2: np.ndarray) -> np.ndarray:
    z = x2 - x2.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _prob_labels(op: str, t: np.ndarray, n: int, d: int, dtype: np.dtype) -> np.ndarray:
    t2 = _work(t).reshape(n, d)
    if t2.size:
        check(bool(np.all(t2 >= 0)), f"{op}: probability labels must be non-negative, got {float(t2.min())}")
        # Caffe2 allows 1e-5; a narrow dtype rounds each label, so allow that rounding too.
        slack = 1e-5 + d * float(np.finfo(dtype).eps)
        worst = float(np.max(np.abs(t2.sum(axis=1) - 1)))
        check(worst <= slack, f"{op}: probability label rows must sum to 1 (one is off by {worst:.3g})")
    return t2


def _softmax_loss_setup(ctx: KernelContext):
    """(axis, label_prob, scale, weighted) parsed once."""
    a = ctx.args
    weighted = ctx.num_inputs == (3 if ctx.op_type == "SoftmaxWithLoss" else 5)
    return a["axis"], bool(a["label_prob"]), float(a["scale"]), weighted


def _split(op: str, x: np.ndarray, axis: int) -> tuple[int, int]:
    ax = norm_axis(axis, x.ndim, op)
    n = int(np.prod(x.shape[:ax], dtype=np.int64))
    return n, int(np.prod(x.shape[ax:], dtype=np.int64))


@table.kernel("SoftmaxWithLoss", dtypes=FLOAT_TYPES)
def softmax_with_loss(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    axis, label_prob, scale, _ = _softmax_loss_setup(ctx)

    def run(x, t, w=None):
        n, d = _split(op, x, axis)
        logp = _log_softmax(_work(x).reshape(n, d))
        wv = np.ones(n, logp.dtype) if w is None else _work(w).reshape(-1).astype(logp.dtype, copy=False)
        check(wv.size == n, f"{op}: {wv.size} weights for {n} rows")
        if label_prob:
            per_row = -(_prob_labels(op, t, n, d, x.dtype) * logp).sum(axis=1)
        else:
            per_row = -logp[np.arange(n), _labels(op, t, n, d)]
        total = wv.sum()
        loss = per_row @ wv * scale / total if total != 0 else 0.0
        return np.exp(logp).reshape(x.shape).astype(x.dtype), np.asarray(loss, dtype=x.dtype)

    return run


@table.kernel("SoftmaxWithLossGradient", dtypes=FLOAT_TYPES)
def softmax_with_loss_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    axis, label_prob, scale, weighted = _softmax_loss_setup(ctx)

    def run(x, t, *rest):
        w, p, dloss = rest if weighted else (None, *rest)
        n, d = _split(op, x, axis)
        check(p.shape == x.shape, f"{op}: P {list(p.shape)} must have X's shape {list(x.shape)}")
        check(dloss.size == 1, f"{op}: the loss gradient must be a scalar, got shape {list(dloss.shape)}")
        p2 = _work(p).reshape(n, d)
        if label_prob:
            t2 = _prob_labels(op, t, n, d, x.dtype)
            dx = p2 * t2.sum(axis=1, keepdims=True) - t2
        else:
            dx = p2.copy()
            dx[np.arange(n), _labels(op, t, n, d)] -= 1
        if w is not None:
            wv = _work(w).reshape(-1).astype(dx.dtype, copy=False)
            check(wv.size == n, f"{op}: {wv.size} weights for {n} rows")
            dx *= wv[:, None]
            total = wv.sum()
        else:
            total = n
        factor = scale / total * _work(dloss).reshape(()) if total != 0 else 0.0
        return ((dx * factor).reshape(x.shape).astype(x.dtype),)

    return run


# -- LabelCrossEntropy / CrossEntropy --------------------------------------------------------------


@table.kernel("LabelCrossEntropy", dtypes=FLOAT_TYPES)
def label_cross_entropy(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x, t):
        n, d = _rows(x)
        picked = _work(x).reshape(n, d)[np.arange(n), _labels(op, t, n, d)]
        return ((-np.log(np.maximum(picked, LOG_THRESHOLD))).astype(x.dtype),)

    return run


@table.kernel("LabelCrossEntropyGradient", dtypes=FLOAT_TYPES)
def label_cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x, t, dy):
        n, d = _rows(x)
        check(dy.size == n, f"{op}: dY has {dy.size} elements for {n} rows")
        rows, lab = np.arange(n), _labels(op, t, n, d)
        x2 = _work(x).reshape(n, d)
        dx = np.zeros_like(x2)
        dx[rows, lab] = -_work(dy).reshape(n) / np.maximum(x2[rows, lab], LOG_THRESHOLD)
        return (dx.reshape(x.shape).astype(x.dtype),)

    return run


def _soft_labels(op: str, t: np.ndarray, n: int, d: int) -> np.ndarray:
    check(t.size == n * d, f"{op}: labels {list(t.shape)} do not match X as [{n}, {d}]")
    t2 = _work(t).reshape(n, d)
    if t2.size:
        lo, hi = float(t2.min()), float(t2.max())
        check(
            lo >= 0 and hi <= 1,
            f"{op}: soft labels must be probabilities in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
            "(integer class labels go to LabelCrossEntropy)",
        )
    return t2


@table.kernel("CrossEntropy", dtypes=FLOAT_TYPES)
def cross_entropy(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x, t):
        n, d = _rows(x)
        t2 = _soft_labels(op, t, n, d)
        logx = np.log(np.maximum(_work(x).reshape(n, d), LOG_THRESHOLD))
        return ((-(t2 * logx).sum(axis=1)).astype(x.dtype),)

    return run


@table.kernel("CrossEntropyGradient", dtypes=FLOAT_TYPES)
def cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x, t, dy):
        n, d = _rows(x)
        check(dy.size == n, f"{op}: dY has {dy.size} elements for {n} rows")
        t2 = _soft_labels(op, t, n, d)
        dx = -t2 * _work(dy).reshape(n, 1) / np.maximum(_work(x).reshape(n, d), LOG_THRESHOLD)
        return (dx.reshape(x.shape).astype(x.dtype),)

    return run


# -- SigmoidCrossEntropyWithLogits -----------------------------------------------------------------


def _sigmoid_xent_terms(ctx: KernelContext):
    """(forward term f(x, t), its derivative df/dx) for the op's mode; Y = -mean(f)."""
    if ctx.args["log_D_trick"]:

        def f(x, t):
            return (2 * t - 1) * -np.logaddexp(0, -x)  # (2t-1) * log(sigmoid(x))

        def df(x, t):
            return (2 * t - 1) * _sigmoid(-x)

    elif ctx.args["unjoined_lr_loss"]:

        def f(x, t):
            return t * x - (1 - t) * np.logaddexp(0, x)

        def df(x, t):
            return t - (1 - t) * _sigmoid(x)

    else:

        def f(x, t):
            return t * x - np.logaddexp(0, x)

        def df(x, t):
            return t - _sigmoid(x)

    return f, df


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@table.kernel("SigmoidCrossEntropyWithLogits", dtypes=FLOAT_TYPES)
def sigmoid_cross_entropy_with_logits(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    f, _ = _sigmoid_xent_terms(ctx)

    def run(x, t):
        check(x.shape == t.shape, f"{op}: logits {list(x.shape)} and targets {list(t.shape)} differ")
        if x.ndim == 0:
            return ((-f(_work(x), _work(t))).astype(x.dtype),)
        return ((-f(_work(x), _work(t)).mean(axis=-1)).astype(x.dtype),)

    return run


@table.kernel("SigmoidCrossEntropyWithLogitsGradient", dtypes=FLOAT_TYPES)
def sigmoid_cross_entropy_with_logits_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    _, df = _sigmoid_xent_terms(ctx)

    def run(dy, x, t):
        check(x.shape == t.shape, f"{op}: logits {list(x.shape)} and targets {list(t.shape)} differ")
        inner = x.shape[-1] if x.ndim else 1
        check(dy.size * inner == x.size, f"{op}: dY {list(dy.shape)} does not match logits {list(x.shape)}")
        g = _work(dy).reshape(*x.shape[:-1], 1) if x.ndim else _work(dy).reshape(())
        return ((-g / inner * df(_work(x), _work(t))).astype(x.dtype),)

    return run


# -- AveragedLoss ----------------------------------------------------------------------------------


@table.kernel("AveragedLoss", dtypes=FLOAT_TYPES)
def averaged_loss(ctx: KernelContext) -> RunFn:
    def run(x):
        check(x.size > 0, f"AveragedLoss: the mean of an empty X {list(x.shape)} is undefined")
        return (np.asarray(_work(x).mean(), x.dtype),)

    return run


@table.kernel("AveragedLossGradient", dtypes=FLOAT_TYPES)
def averaged_loss_gradient(ctx: KernelContext) -> RunFn:
    def run(x, dy):
        check(dy.size == 1, f"AveragedLossGradient: dY must be a scalar, got shape {list(dy.shape)}")
        value = _work(dy).reshape(()) / max(x.size, 1)
        return (np.full(x.shape, value, dtype=x.dtype),)

    return run


# -- SquaredL2Distance -----------------------------------------------------------------------------


def _l2_rows(op: str, x: np.ndarray, y: np.ndarray) -> int:
    check(x.shape == y.shape, f"{op}: X {list(x.shape)} and Y {list(y.shape)} must have the same shape")
    return x.shape[0] if x.ndim else 1


@table.kernel("SquaredL2Distance", dtypes=FLOAT_TYPES)
def squared_l2_distance(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x, y):
        n = _l2_rows(op, x, y)
        diff = (_work(x) - _work(y)).reshape(n, -1)
        return ((0.5 * np.einsum("ij,ij->i", diff, diff)).astype(x.dtype),)

    return run


@table.kernel("SquaredL2DistanceGradient", dtypes=FLOAT_TYPES)
def squared_l2_distance_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x, y, dd):
        n = _l2_rows(op, x, y)
        check(dd.size == n, f"{op}: dDistance has {dd.size} elements for {n} rows")
        dx = ((_work(x) - _work(y)).reshape(n, -1) * _work(dd).reshape(n, 1)).reshape(x.shape)
        return dx.astype(x.dtype), (-dx).astype(x.dtype)

    return run


# -- Accuracy --------------------------------------------------------------------------------------


@table.kernel("Accuracy", dtypes=FLOAT_TYPES)
def accuracy(ctx: KernelContext) -> RunFn:
    op, top_k = ctx.op_type, int(ctx.args["top_k"])

    def run(x, t):
        check(x.ndim == 2, f"{op}: predictions must be 2-D [N, D], got {list(x.shape)}")
        n, d = x.shape
        check(t.ndim == 1 and t.size == n, f"{op}: labels must be [{n}], got {list(t.shape)}")
        check(n > 0, f"{op}: the accuracy of an empty batch is undefined")
        lab = _labels(op, t, n, d)
        score = x[np.arange(n), lab][:, None]
        # Rank of the label: classes scoring higher, or equal with a lower index, come first.
        ahead = (x > score) | ((x == score) & (np.arange(d)[None, :] < lab[:, None]))
        hits = np.count_nonzero(ahead.sum(axis=1) < top_k)
        return (np.asarray(hits / n, dtype=F32),)

    return run


# -- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss (ONNX) --------------------------------------


def _onnx_loss_setup(ctx: KernelContext):
    """(reduction, ignore_index, weighted) parsed once."""
    a = ctx.args
    forward = not ctx.op_type.endswith("Gradient")
    weighted = ctx.num_inputs == (3 if forward else 4)
    ignore = a["ignore_index"]
    return a["reduction"], None if ignore is None else int(ignore), weighted


def _onnx_positions(op: str, x: np.ndarray, t: np.ndarray, w, ignore):
    """X as [N, C, D], the labels as [N, D] (intp, ignored ones set to 0), and the per-position
    weights [N, D] (0 where ignored), in X's work dtype."""
    check(x.ndim >= 2, f"{op}: X must be [N, C, d1..dk] (rank >= 2), got {list(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    want = (n, *x.shape[2:])
    check(
        t.shape == want,
        f"{op}: labels {list(t.shape)} must have X's shape {list(x.shape)} without the class axis 1",
    )
    x3 = _work(x).reshape(n, c, -1)
    lab = t.reshape(n, -1).astype(np.int64, copy=False)
    keep = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    live = lab[keep]
    if live.size:
        lo, hi = int(live.min()), int(live.max())
        check(lo >= 0 and hi < c, f"{op}: labels must lie in [0, {c}), got values in [{lo}, {hi}]")
    lab = np.where(keep, lab, 0).astype(np.intp)
    if w is not None:
        check(w.shape == (c,), f"{op}: weights {list(w.shape)} must be [C] = [{c}]")
        wp = _work(w).astype(x3.dtype, copy=False)[lab]
    else:
        wp = np.ones(lab.shape, x3.dtype)
    return x3, lab, np.where(keep, wp, x3.dtype.type(0))


def _gather_classes(x3: np.ndarray, lab: np.ndarray) -> np.ndarray:
    return np.take_along_axis(x3, lab[:, None, :], axis=1)[:, 0, :]


def _reduce_loss(per: np.ndarray, wp: np.ndarray, reduction: str, shape: tuple[int, ...], dtype):
    if reduction == "none":
        return per.reshape(shape).astype(dtype)
    total = per.sum()
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):  # all weights 0: NaN, as in ONNX
            total = total / wp.sum()
    return np.asarray(total, dtype=dtype)


def _loss_scale(op: str, dloss: np.ndarray, wp: np.ndarray, reduction: str) -> np.ndarray:
    """g_p * w_p as [N, 1, D]: the factor on each position's class column."""
    if reduction == "none":
        check(dloss.size == wp.size, f"{op}: dLoss has {dloss.size} elements for {wp.size} positions")
        g = _work(dloss).reshape(wp.shape).astype(wp.dtype, copy=False)
    else:
        check(dloss.size == 1, f"{op}: the loss gradient must be a scalar, got shape {list(dloss.shape)}")
        g = _work(dloss).reshape(()).astype(wp.dtype)
        if reduction == "mean":
            with np.errstate(divide="ignore", invalid="ignore"):
                g = g / wp.sum()
    return (g * wp)[:, None, :]


def _log_softmax_axis1(x3: np.ndarray) -> np.ndarray:
    z = x3 - x3.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@table.kernel("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss", dtypes=FLOAT_TYPES)
def onnx_loss(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    reduction, ignore, _ = _onnx_loss_setup(ctx)
    softmax = op == "SoftmaxCrossEntropyLoss"
    n_out = ctx.num_outputs

    def run(x, t, w=None):
        x3, lab, wp = _onnx_positions(op, x, t, w, ignore)
        logp = _log_softmax_axis1(x3) if softmax else x3
        per = -_gather_classes(logp, lab) * wp
        loss = _reduce_loss(per, wp, reduction, t.shape, x.dtype)
        if n_out == 2:
            return loss, logp.reshape(x.shape).astype(x.dtype)
        return (loss,)

    return run


@table.kernel("NegativeLogLikelihoodLossGradient", "SoftmaxCrossEntropyLossGradient", dtypes=FLOAT_TYPES)
def onnx_loss_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    reduction, ignore, weighted = _onnx_loss_setup(ctx)
    softmax = op == "SoftmaxCrossEntropyLossGradient"

    def run(x, t, *rest):
        w, dloss = rest if weighted else (None, *rest)
        x3, lab, wp = _onnx_positions(op, x, t, w, ignore)
        scale = _loss_scale(op, dloss, wp, reduction)
        dx = np.exp(_log_softmax_axis1(x3)) if softmax else np.zeros_like(x3)
        np.put_along_axis(dx, lab[:, None, :], _gather_classes(dx, lab)[:, None, :] - 1, axis=1)
        return ((dx * scale).reshape(x.shape).astype(x.dtype),)

    return run

"""References for SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits,
AveragedLoss, SquaredL2Distance, Accuracy, and their gradients.

Labels arrive as int64. Row loops where they make the definition plain.
"""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference

EPS = 1e-20  # Caffe2's kLOG_THRESHOLD


def _as_rows(x):
    """[N, D] with N = dim 0 (a 1-D x is one row)."""
    return x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)


def _coerce(args, x):
    axis = args["axis"] % x.ndim
    n = int(np.prod(x.shape[:axis]))
    return x.reshape(n, -1)


def _softmax_rows(x2):
    e = np.exp(x2 - x2.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _weights(n, w):
    return np.ones(n) if w is None else w.reshape(-1)


@reference("SoftmaxWithLoss")
def softmax_with_loss(args, x, labels, w=None):
    x2 = _coerce(args, x)
    n, d = x2.shape
    p = _softmax_rows(x2)
    weights = _weights(n, w)
    loss_sum = 0.0
    for i in range(n):
        if args["label_prob"]:
            row_loss = -np.sum(labels.reshape(n, d)[i] * np.log(p[i]))
        else:
            row_loss = -np.log(p[i, labels.reshape(-1)[i]])
        loss_sum += weights[i] * row_loss
    total = weights.sum()
    loss = args["scale"] * loss_sum / total if total != 0 else 0.0
    return p.reshape(x.shape), np.array(loss)


@reference("SoftmaxWithLossGradient")
def softmax_with_loss_gradient(args, x, labels, *rest):
    w, p, dloss = rest if len(rest) == 3 else (None, *rest)
    x2 = _coerce(args, x)
    n, d = x2.shape
    p2 = p.reshape(n, d)
    weights = _weights(n, w)
    dx = np.zeros((n, d))
    for i in range(n):
        if args["label_prob"]:
            t = labels.reshape(n, d)[i]
            # d/dx of -sum_j t_j log softmax(x)_j; equals P - t when the row sums to 1.
            dx[i] = p2[i] * t.sum() - t
        else:
            dx[i] = p2[i]
            dx[i, labels.reshape(-1)[i]] -= 1.0
        dx[i] *= weights[i]
    total = weights.sum()
    factor = args["scale"] * float(dloss.reshape(())) / total if total != 0 else 0.0
    return ((dx * factor).reshape(x.shape),)


@reference("LabelCrossEntropy")
def label_cross_entropy(args, x, labels):
    x2 = _as_rows(x)
    lab = labels.reshape(-1)
    return (np.array([-np.log(max(x2[i, lab[i]], EPS)) for i in range(x2.shape[0])]),)


@reference("LabelCrossEntropyGradient")
def label_cross_entropy_gradient(args, x, labels, dy):
    x2 = _as_rows(x)
    lab = labels.reshape(-1)
    dx = np.zeros_like(x2)
    for i in range(x2.shape[0]):
        dx[i, lab[i]] = -dy[i] / max(x2[i, lab[i]], EPS)
    return (dx.reshape(x.shape),)


@reference("CrossEntropy")
def cross_entropy(args, x, labels):
    x2 = _as_rows(x)
    t = labels.reshape(x2.shape)
    return (-np.sum(t * np.log(np.maximum(x2, EPS)), axis=1),)


@reference("CrossEntropyGradient")
def cross_entropy_gradient(args, x, labels, dy):
    x2 = _as_rows(x)
    t = labels.reshape(x2.shape)
    return ((-t * dy.reshape(-1, 1) / np.maximum(x2, EPS)).reshape(x.shape),)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _sigmoid_xent_term(args, x, t):
    """The per-element quantity whose negated mean is the loss."""
    log_p = -np.logaddexp(0.0, -x)  # log(sigmoid(x)), without cancellation
    log_not_p = -np.logaddexp(0.0, x)  # log(1 - sigmoid(x))
    if args["log_D_trick"]:
        return (2 * t - 1) * log_p
    if args["unjoined_lr_loss"]:
        return t * x + (1 - t) * log_not_p
    return t * log_p + (1 - t) * log_not_p


def _sigmoid_xent_slope(args, x, t):
    if args["log_D_trick"]:
        return (2 * t - 1) * (1 - _sigmoid(x))
    if args["unjoined_lr_loss"]:
        return t - (1 - t) * _sigmoid(x)
    return t - _sigmoid(x)


@reference("SigmoidCrossEntropyWithLogits")
def sigmoid_cross_entropy_with_logits(args, x, t):
    term = _sigmoid_xent_term(args, x, t)
    return (-term if x.ndim == 0 else -term.mean(axis=-1),)


@reference("SigmoidCrossEntropyWithLogitsGradient")
def sigmoid_cross_entropy_with_logits_gradient(args, dy, x, t):
    inner = x.shape[-1] if x.ndim else 1
    g = dy.reshape(*x.shape[:-1], 1) if x.ndim else dy.reshape(())
    return (-g / inner * _sigmoid_xent_slope(args, x, t),)


@reference("AveragedLoss")
def averaged_loss(args, x):
    return (np.array(x.sum() / x.size),)


@reference("AveragedLossGradient")
def averaged_loss_gradient(args, x, dy):
    return (np.full(x.shape, float(dy.reshape(())) / x.size),)


@reference("SquaredL2Distance")
def squared_l2_distance(args, x, y):
    n = x.shape[0] if x.ndim else 1
    diff = (x - y).reshape(n, -1)
    return (np.array([0.5 * np.sum(diff[i] ** 2) for i in range(n)]),)


@reference("SquaredL2DistanceGradient")
def squared_l2_distance_gradient(args, x, y, dd):
    n = x.shape[0] if x.ndim else 1
    dx = ((x - y).reshape(n, -1) * dd.reshape(n, 1)).reshape(x.shape)
    return dx, -dx


@reference("Accuracy")
def accuracy(args, x, labels):
    n, d = x.shape
    hits = 0
    for i in range(n):
        label = labels[i]
        # Stable sort by descending score: ties keep the lower class index first (Caffe2's rule).
        order = sorted(range(d), key=lambda j: -x[i, j])
        if order.index(label) < args["top_k"]:
            hits += 1
    return (np.array(hits / n),)


# -- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss (ONNX) --------------------------------------


def _onnx_positions(args, x, labels, w):
    """[(n, class, rest index, weight)] for every position (n, d1..dk), written out as loops."""
    n, c = x.shape[0], x.shape[1]
    rest = x.shape[2:]
    out = []
    for i in range(n):
        for d in np.ndindex(*rest):
            t = int(labels[(i, *d)])
            if args["ignore_index"] is not None and t == args["ignore_index"]:
                out.append((i, None, d, 0.0))
            else:
                assert 0 <= t < c
                out.append((i, t, d, 1.0 if w is None else float(w[t])))
    return out


def _log_softmax_axis1(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _nll(args, logp, labels, w):
    loss = np.zeros(labels.shape)
    total_w = 0.0
    for i, t, d, wt in _onnx_positions(args, logp, labels, w):
        if t is not None:
            loss[(i, *d)] = -wt * logp[(i, t, *d)]
        total_w += wt
    if args["reduction"] == "none":
        return loss
    if args["reduction"] == "sum":
        return np.array(loss.sum())
    return np.array(loss.sum() / total_w if total_w != 0 else np.nan)


def _onnx_loss_grad(args, x, labels, rest, softmax):
    w, dloss = rest if len(rest) == 2 else (None, rest[0])
    positions = _onnx_positions(args, x, labels, w)
    total_w = sum(p[3] for p in positions)
    p = np.exp(_log_softmax_axis1(x)) if softmax else None
    dx = np.zeros(x.shape)
    for i, t, d, wt in positions:
        if t is None:
            continue
        if args["reduction"] == "none":
            g = dloss[(i, *d)]
        elif args["reduction"] == "sum":
            g = float(dloss.reshape(()))
        else:
            g = float(dloss.reshape(())) / total_w
        col = (i, slice(None), *d)
        if softmax:  # d(-log softmax(x)_t)/dx = softmax(x) - onehot(t)
            dx[col] += wt * g * p[col]
        dx[(i, t, *d)] -= wt * g
    return (dx,)


@reference("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(args, x, labels, w=None):
    return (_nll(args, x, labels, w),)


@reference("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(args, x, labels, w=None, num_outputs=1):
    logp = _log_softmax_axis1(x)
    return (_nll(args, logp, labels, w), logp)[:num_outputs]


@reference("NegativeLogLikelihoodLossGradient")
def negative_log_likelihood_loss_gradient(args, x, labels, *rest):
    return _onnx_loss_grad(args, x, labels, rest, softmax=False)


@reference("SoftmaxCrossEntropyLossGradient")
def softmax_cross_entropy_loss_gradient(args, x, labels, *rest):
    return _onnx_loss_grad(args, x, labels, rest, softmax=True)

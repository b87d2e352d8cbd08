"""Cases for SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits,
AveragedLoss, SquaredL2Distance, Accuracy.

Integer labels are int32 (Caffe2's type) through ``fixed_dtype_inputs``. Probabilities that go
into a log stay in [0.05, 1], far from the 1e-20 clamp, so finite differences see a smooth loss.
Probability labels are positive rows normalized to sum to 1.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.cases import ELEMENTWISE, REDUCTION, Case, cases, ints, uniform

INT_LABELS = {1: np.int32}


def _labels(rng, shape, classes):
    return rng.integers(0, classes, size=shape).astype(np.float64)


def _prob_rows(rng, n, d):
    p = rng.uniform(0.1, 1.0, size=(n, d))
    return p / p.sum(axis=1, keepdims=True)


@cases("SoftmaxWithLoss")
def softmax_with_loss(rng):
    def case(name, x, labels, weights=None, label_prob=False, **args):
        inputs = [x, labels] + ([weights] if weights is not None else [])
        if label_prob:
            args["label_prob"] = 1
        return Case(
            "SoftmaxWithLoss",
            name,
            inputs,
            args,
            num_outputs=2,
            op_class=REDUCTION,
            reduction=x.size,
            fixed_dtype_inputs={} if label_prob else INT_LABELS,
        )

    return [
        case("2d", uniform(rng, (4, 5), -3, 3), _labels(rng, (4,), 5)),
        case("batch1_odd", uniform(rng, (1, 7), -3, 3), _labels(rng, (1,), 7)),
        case("single_class", uniform(rng, (3, 1), -3, 3), np.zeros(3)),
        case("labels_n_by_1", uniform(rng, (5, 3), -3, 3), _labels(rng, (5, 1), 3)),
        case("4d_axis1", uniform(rng, (2, 3, 2, 2), -3, 3), _labels(rng, (2,), 12)),
        case("3d_axis2", uniform(rng, (2, 3, 4), -3, 3), _labels(rng, (2, 3), 4), axis=2),
        case("axis_neg1", uniform(rng, (3, 2, 5), -3, 3), _labels(rng, (3, 2), 5), axis=-1),
        case("scale", uniform(rng, (6, 4), -3, 3), _labels(rng, (6,), 4), scale=2.5),
        case("weighted", uniform(rng, (5, 4), -3, 3), _labels(rng, (5,), 4), uniform(rng, (5,), 0.5, 2)),
        case(
            "weighted_some_zero",
            uniform(rng, (4, 3), -3, 3),
            _labels(rng, (4,), 3),
            np.array([0.0, 1.5, 0.0, 0.75]),
            scale=0.5,
        ),
        case("weights_all_zero", uniform(rng, (3, 4), -3, 3), _labels(rng, (3,), 4), np.zeros(3)),
        case("large_logits", uniform(rng, (3, 6), 50, 80), _labels(rng, (3,), 6)),
        case("label_prob", uniform(rng, (4, 6), -3, 3), _prob_rows(rng, 4, 6), label_prob=True),
        case(
            "label_prob_weighted_axis2",
            uniform(rng, (2, 2, 5), -3, 3),
            _prob_rows(rng, 4, 5).reshape(2, 2, 5),
            uniform(rng, (4,), 0.5, 2),
            label_prob=True,
            axis=2,
        ),
    ]


def _probs(rng, shape):
    return uniform(rng, shape, 0.05, 1.0)


@cases("LabelCrossEntropy")
def label_cross_entropy(rng):
    def case(name, x_shape, labels):
        return Case(
            "LabelCrossEntropy",
            name,
            [_probs(rng, x_shape), labels],
            op_class=ELEMENTWISE,
            fixed_dtype_inputs=INT_LABELS,
        )

    return [
        case("2d", (4, 5), _labels(rng, (4,), 5)),
        case("batch1", (1, 3), _labels(rng, (1,), 3)),
        case("1d_one_row", (6,), _labels(rng, (1,), 6)),
        case("3d_flattened", (3, 2, 2), _labels(rng, (3,), 4)),
        case("labels_n_by_1", (5, 7), _labels(rng, (5, 1), 7)),
        case("single_class", (4, 1), np.zeros(4)),
    ]


@cases("CrossEntropy")
def cross_entropy(rng):
    def case(name, x_shape, t_shape=None, labels=None):
        t = labels if labels is not None else uniform(rng, t_shape or x_shape, 0.0, 1.0)
        d = math.prod(x_shape[1:]) if len(x_shape) > 1 else x_shape[0]
        return Case("CrossEntropy", name, [_probs(rng, x_shape), t], op_class=REDUCTION, reduction=d)

    return [
        case("2d", (4, 5)),
        case("batch1", (1, 9)),
        case("1d_one_row", (6,)),
        case("3d_labels_2d", (3, 2, 2), (3, 4)),
        case("one_hot", (5, 4), labels=np.eye(4)[rng.integers(0, 4, size=5)]),
        case("distribution", (3, 6), labels=_prob_rows(rng, 3, 6)),
    ]


@cases("SigmoidCrossEntropyWithLogits")
def sigmoid_cross_entropy_with_logits(rng):
    def case(name, shape, targets=None, **args):
        t = targets if targets is not None else uniform(rng, shape, 0.0, 1.0)
        return Case(
            "SigmoidCrossEntropyWithLogits",
            name,
            [uniform(rng, shape, -6, 6), t],
            args,
            op_class=REDUCTION,
            reduction=shape[-1] if shape else 1,
        )

    def binary(shape):
        return rng.integers(0, 2, size=shape).astype(np.float64)

    return [
        case("2d", (4, 5)),
        case("1d", (7,)),
        case("3d", (2, 3, 4)),
        case("scalar", ()),
        case("last_dim_1", (3, 1)),
        case("binary_targets", (5, 6), binary((5, 6))),
        case("log_D_trick", (4, 3), binary((4, 3)), log_D_trick=1),
        case("unjoined_lr_loss", (3, 5), binary((3, 5)), unjoined_lr_loss=1),
    ]


@cases("AveragedLoss")
def averaged_loss(rng):
    def case(name, shape):
        return Case(
            "AveragedLoss",
            name,
            [uniform(rng, shape, -2, 2)],
            op_class=REDUCTION,
            reduction=math.prod(shape),
        )

    return [
        case("1", (1,)),
        case("7", (7,)),
        case("2x3", (2, 3)),
        case("2x3x4x5", (2, 3, 4, 5)),
        case("0d", ()),
    ]


@cases("SquaredL2Distance")
def squared_l2_distance(rng):
    def case(name, shape):
        return Case(
            "SquaredL2Distance",
            name,
            [uniform(rng, shape, -2, 2), uniform(rng, shape, -2, 2)],
            op_class=REDUCTION,
            reduction=math.prod(shape[1:]),
        )

    return [
        case("2d", (4, 5)),
        case("batch1", (1, 3)),
        case("1d_rows_of_1", (7,)),
        case("3d", (2, 3, 4)),
        case("0d_one_row", ()),
        case("odd", (3, 11)),
    ]


@cases("Accuracy")
def accuracy(rng):
    def case(name, x, labels, **args):
        return Case("Accuracy", name, [x, labels], args, op_class=ELEMENTWISE, fixed_dtype_inputs=INT_LABELS)

    return [
        case("top1", uniform(rng, (8, 5)), _labels(rng, (8,), 5)),
        case("top2", uniform(rng, (10, 4)), _labels(rng, (10,), 4), top_k=2),
        # Integer scores tie often: the lower class index ranks first.
        case("ties_top1", ints(rng, (12, 4), 0, 3), _labels(rng, (12,), 4)),
        case("ties_top2", ints(rng, (12, 5), 0, 2), _labels(rng, (12,), 5), top_k=2),
        case("top_k_ge_d", uniform(rng, (3, 3)), _labels(rng, (3,), 3), top_k=5),
        case("batch1", uniform(rng, (1, 6)), np.array([2.0])),
        case("single_class", uniform(rng, (4, 1)), np.zeros(4)),
    ]


# -- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss (ONNX) --------------------------------------

INT64_LABELS = {1: np.int64}  # ONNX's label type (int32 is accepted too)


def _ignored(rng, labels, value, fraction=0.3):
    """labels with about ``fraction`` of the positions set to ``value``; the first position keeps a
    label other than ``value``, so the mean's total weight is never 0."""
    out = labels.copy()
    out[rng.uniform(size=labels.shape) < fraction] = value
    if out.flat[0] == value:
        out.flat[0] = 2.0 if value != 2 else 0.0
    return out


def _onnx_loss_cases(op, rng):
    softmax = op == "SoftmaxCrossEntropyLoss"

    def case(name, x_shape, labels=None, weights=False, num_outputs=1, int32=False, **args):
        c = x_shape[1]
        x = uniform(rng, x_shape, -3, 3) if softmax else uniform(rng, x_shape, -4, 0)
        t = labels if labels is not None else _labels(rng, (x_shape[0], *x_shape[2:]), c)
        inputs = [x, t] + ([uniform(rng, (c,), 0.5, 2)] if weights else [])
        return Case(
            op,
            name,
            inputs,
            args,
            num_outputs=num_outputs,
            op_class=REDUCTION,
            reduction=x.size,
            fixed_dtype_inputs={1: np.int32} if int32 else INT64_LABELS,
            grad_inputs=[0],  # labels and class weights carry no gradient
        )

    out = [
        case("NC_mean", (4, 5)),
        case("NC_none", (4, 5), reduction="none"),
        case("NC_sum", (6, 3), reduction="sum"),
        case("NC_weighted_mean", (5, 4), weights=True),
        case("NC_weighted_none", (5, 4), weights=True, reduction="none"),
        case("NCd1_mean", (3, 4, 5)),
        case("NCd1d2_weighted_sum", (2, 3, 4, 2), weights=True, reduction="sum"),
        case("NCd1d2d3_none", (2, 3, 2, 3, 2), reduction="none"),
        case("batch1_single_class", (1, 1), labels=np.zeros(1)),
        case("int32_labels", (4, 6), int32=True),
        case(
            "ignore_index_mean",
            (6, 4),
            labels=_ignored(rng, _labels(rng, (6,), 4), 1),
            ignore_index=1,
        ),
        case(
            "ignore_negative_weighted_mean",
            (3, 5, 4),
            labels=_ignored(rng, _labels(rng, (3, 4), 5), -1),
            weights=True,
            ignore_index=-1,
        ),
        case(
            "ignore_out_of_range_none",
            (5, 3, 2),
            labels=_ignored(rng, _labels(rng, (5, 2), 3), 10),
            ignore_index=10,
            reduction="none",
        ),
        case(
            "ignore_unused_sum",
            (4, 3),
            weights=True,
            ignore_index=7,
            reduction="sum",
        ),
    ]
    if softmax:
        out += [
            case("log_prob", (4, 5), num_outputs=2),
            case("log_prob_NCd1_none", (2, 4, 3), reduction="none", num_outputs=2),
            case(
                "log_prob_weighted_ignore",
                (3, 4, 2),
                labels=_ignored(rng, _labels(rng, (3, 2), 4), 0),
                weights=True,
                ignore_index=0,
                num_outputs=2,
            ),
        ]
    return out


@cases("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(rng):
    return _onnx_loss_cases("NegativeLogLikelihoodLoss", rng)


@cases("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(rng):
    return _onnx_loss_cases("SoftmaxCrossEntropyLoss", rng)

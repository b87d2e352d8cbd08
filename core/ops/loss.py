"""Losses and metrics: SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy,
SigmoidCrossEntropyWithLogits, AveragedLoss, SquaredL2Distance, Accuracy (schemas, shape
inference, gradient makers).
"""

from __future__ import annotations

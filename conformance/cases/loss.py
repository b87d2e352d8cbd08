"""Cases for SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits,
AveragedLoss, SquaredL2Distance, Accuracy.
"""

from __future__ import annotations

from kaffa_conformance.cases import Case, cases  # noqa: F401

"""SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits, AveragedLoss,
SquaredL2Distance, Accuracy.
"""

from __future__ import annotations

from kaffa.kernels import KernelTable

table = KernelTable("cpu")

"""Training state and optimizers: Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad (schemas,
shape inference, gradient makers).
"""

from __future__ import annotations

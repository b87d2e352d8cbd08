"""References for Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad."""

from __future__ import annotations

import numpy as np  # noqa: F401

from kaffa_conformance.reference import reference  # noqa: F401

"""References for Relu, Sigmoid, Tanh, Softmax."""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference


@reference("Relu")
def relu(args, x):
    return (np.where(x > 0, x, 0.0),)


@reference("Sigmoid")
def sigmoid(args, x):
    return (1.0 / (1.0 + np.exp(-x)),)


@reference("Tanh")
def tanh(args, x):
    return (np.tanh(x),)


@reference("Softmax")
def softmax(args, x):
    axis = args["axis"] % x.ndim
    rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return ((e / e.sum(axis=1, keepdims=True)).reshape(x.shape),)


@reference("ReluGradient")
def relu_gradient(args, y, dy):
    return (np.where(y > 0, dy, 0.0),)

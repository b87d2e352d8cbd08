"""References for Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their
gradient ops."""

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


def _rows(x, axis):
    axis = axis % x.ndim
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@reference("Softmax")
def softmax(args, x):
    rows = _rows(x, args["axis"])
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return ((e / e.sum(axis=1, keepdims=True)).reshape(x.shape),)


@reference("LeakyRelu")
def leaky_relu(args, x):
    return (np.where(x > 0, x, args["alpha"] * x),)


@reference("Elu")
def elu(args, x):
    return (np.where(x > 0, x, args["alpha"] * (np.exp(np.minimum(x, 0)) - 1)),)


@reference("Selu")
def selu(args, x):
    return (args["scale"] * np.where(x > 0, x, args["alpha"] * (np.exp(np.minimum(x, 0)) - 1)),)


@reference("Softplus")
def softplus(args, x):
    return (np.log1p(np.exp(x)),)


def _channel_slopes(x, slope, order):
    """slope broadcast to X's shape: one value, or one per channel (axis 1 or the last axis)."""
    if slope.size == 1:
        return np.full(x.shape, slope.reshape(()))
    shape = [1] * x.ndim
    shape[1 if order == "NCHW" else -1] = slope.size
    return np.broadcast_to(slope.reshape(shape), x.shape)


@reference("PRelu")
def prelu(args, x, slope):
    return (np.where(x > 0, x, _channel_slopes(x, slope, args["order"]) * x),)


# -- gradient ops ----------------------------------------------------------------------------------
@reference("ReluGradient")
def relu_gradient(args, y, dy):
    return (np.where(y > 0, dy, 0.0),)


@reference("SigmoidGradient")
def sigmoid_gradient(args, y, dy):
    return (dy * y * (1 - y),)


@reference("TanhGradient")
def tanh_gradient(args, y, dy):
    return (dy * (1 - y**2),)


@reference("SoftmaxGradient")
def softmax_gradient(args, y, dy):
    # Jacobian of softmax per row: diag(y) - y y^T, applied to dy.
    y2, dy2 = _rows(y, args["axis"]), _rows(dy, args["axis"])
    dx = np.stack([(np.diag(r) - np.outer(r, r)) @ d for r, d in zip(y2, dy2)])
    return (dx.reshape(y.shape),)


@reference("LeakyReluGradient")
def leaky_relu_gradient(args, y, dy):
    return (np.where(y > 0, dy, args["alpha"] * dy),)


@reference("EluGradient")
def elu_gradient(args, y, dy):
    # y = alpha (e^x - 1) below 0, so e^x = y / alpha + 1 and dy/dx = alpha e^x = y + alpha.
    return (np.where(y > 0, dy, dy * (y + args["alpha"])),)


@reference("SeluGradient")
def selu_gradient(args, y, dy):
    a, s = args["alpha"], args["scale"]
    return (np.where(y > 0, s * dy, dy * (y + a * s)),)


@reference("SoftplusGradient")
def softplus_gradient(args, y, dy):
    # y = log(1 + e^x): dy/dx = sigmoid(x) = 1 - e^-y.
    return (dy * (1 - np.exp(-y)),)


@reference("PReluGradient")
def prelu_gradient(args, y, dy, x, slope):
    s = _channel_slopes(x, slope, args["order"])
    dx = np.where(x > 0, dy, s * dy)
    contrib = np.where(x > 0, 0.0, x * dy)
    if slope.size == 1:
        dslope = np.sum(contrib)
    else:
        channel = 1 if args["order"] == "NCHW" else x.ndim - 1
        dslope = np.moveaxis(contrib, channel, 0).reshape(slope.size, -1).sum(axis=1)
    return (dx, np.reshape(dslope, slope.shape))

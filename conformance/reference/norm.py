"""References for SpatialBN, LRN, LayerNorm, Dropout and their gradient ops.

Written per channel / per row with explicit loops, and the gradients of SpatialBN and LayerNorm
as Jacobian-transpose products (J_ij = d y_i / d x_j written out), so they share no formula with
the kernels. Dropout in training is random: its reference draws one seeded mask of the right shape
(the cases check training outputs by statistics, not against it).
"""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference


def _channel_axis(x: np.ndarray, order: str) -> int:
    return 1 if order == "NCHW" else x.ndim - 1


def _per_channel(x: np.ndarray, order: str) -> np.ndarray:
    """[C, M]: row c holds every value of channel c."""
    return np.moveaxis(x, _channel_axis(x, order), 0).reshape(x.shape[_channel_axis(x, order)], -1)


def _from_per_channel(rows: np.ndarray, like: np.ndarray, order: str) -> np.ndarray:
    ax = _channel_axis(like, order)
    moved = np.moveaxis(like, ax, 0).shape
    return np.moveaxis(rows.reshape(moved), 0, ax)


@reference("SpatialBN")
def spatial_bn(args, x, scale, bias, mean, var):
    eps, mom, order = args["epsilon"], args["momentum"], args["order"]
    rows = _per_channel(x, order)
    y = np.empty_like(rows)
    if args["is_test"]:
        for c in range(rows.shape[0]):
            y[c] = (rows[c] - mean[c]) / np.sqrt(var[c] + eps) * scale[c] + bias[c]
        return (_from_per_channel(y, x, order),)
    c_count = rows.shape[0]
    run_mean, run_var = np.empty(c_count), np.empty(c_count)
    saved_mean, saved_inv = np.empty(c_count), np.empty(c_count)
    for c in range(c_count):
        v = rows[c]
        mu, biased = v.mean(), v.var()
        y[c] = (v - mu) / np.sqrt(biased + eps) * scale[c] + bias[c]
        run_mean[c] = mom * mean[c] + (1 - mom) * mu
        run_var[c] = mom * var[c] + (1 - mom) * v.var(ddof=1)
        saved_mean[c], saved_inv[c] = mu, 1 / np.sqrt(biased + eps)
    return _from_per_channel(y, x, order), run_mean, run_var, saved_mean, saved_inv


@reference("SpatialBNGradient")
def spatial_bn_gradient(args, x, scale, dy, mean, stat):
    order = args["order"]
    rows, drows = _per_channel(x, order), _per_channel(dy, order)
    c_count, m = rows.shape
    dx = np.empty_like(rows)
    dscale, dbias = np.empty(c_count), np.empty(c_count)
    for c in range(c_count):
        inv = 1 / np.sqrt(stat[c] + args["epsilon"]) if args["is_test"] else stat[c]
        xhat = (rows[c] - mean[c]) * inv
        if args["is_test"]:
            jac = scale[c] * inv * np.eye(m)  # the statistics are constants
        else:
            # y_i = scale * (x_i - mu) * inv with mu, inv from the batch:
            # dy_i/dx_j = scale * inv * (delta_ij - 1/M - xhat_i * xhat_j / M)
            jac = scale[c] * inv * (np.eye(m) - 1.0 / m - np.outer(xhat, xhat) / m)
        dx[c] = jac.T @ drows[c]
        dscale[c] = np.sum(drows[c] * xhat)
        dbias[c] = np.sum(drows[c])
    return _from_per_channel(dx, x, order), dscale, dbias


def _lrn_scale(args, xc: np.ndarray) -> np.ndarray:
    """xc: channels first. scale[c] = bias + alpha/size * sum of x^2 over the clipped window."""
    size, pre = args["size"], (args["size"] - 1) // 2
    n_c = xc.shape[0]
    scale = np.empty_like(xc)
    for c in range(n_c):
        lo, hi = max(0, c - pre), min(n_c, c + pre + 1)
        scale[c] = args["bias"] + args["alpha"] / size * np.sum(xc[lo:hi] ** 2, axis=0)
    return scale


@reference("LRN")
def lrn(args, x, num_outputs=2):
    ax = _channel_axis(x, args["order"])
    xc = np.moveaxis(x, ax, 0)
    scale = _lrn_scale(args, xc)
    y = xc * scale ** (-args["beta"])
    return (np.moveaxis(y, 0, ax), np.moveaxis(scale, 0, ax))[:num_outputs]


@reference("LRNGradient")
def lrn_gradient(args, x, y, dy, *given):
    # Recomputes everything from X (the optional scale input is the forward's own, so equal).
    ax = _channel_axis(x, args["order"])
    xc, dyc = np.moveaxis(x, ax, 0), np.moveaxis(dy, ax, 0)
    s = _lrn_scale(args, xc)
    alpha, beta, size, pre = args["alpha"], args["beta"], args["size"], (args["size"] - 1) // 2
    n_c = xc.shape[0]
    dx = np.zeros_like(xc)
    # y_i = x_i * s_i^-beta; ds_i/dx_j = 2 alpha/size x_j for j in i's window.
    for i in range(n_c):
        dx[i] += dyc[i] * s[i] ** (-beta)
        for j in range(max(0, i - pre), min(n_c, i + pre + 1)):
            dx[j] += dyc[i] * xc[i] * (-beta) * s[i] ** (-beta - 1) * (2 * alpha / size) * xc[j]
    return (np.moveaxis(dx, 0, ax),)


def _ln_rows(args, x: np.ndarray) -> tuple[np.ndarray, int]:
    ax = args["axis"] % x.ndim
    return x.reshape(int(np.prod(x.shape[:ax])), -1), ax


@reference("LayerNorm")
def layer_norm(args, x, *affine):
    rows, ax = _ln_rows(args, x)
    y = np.empty_like(rows)
    mean, std = np.empty(rows.shape[0]), np.empty(rows.shape[0])
    for r in range(rows.shape[0]):
        mean[r] = rows[r].mean()
        std[r] = np.sqrt(rows[r].var() + args["epsilon"])
        y[r] = (rows[r] - mean[r]) / std[r]
        if affine:
            y[r] = y[r] * affine[0].ravel() + affine[1].ravel()
    stat = (*x.shape[:ax], 1)
    return y.reshape(x.shape), mean.reshape(stat), std.reshape(stat)


@reference("LayerNormGradient")
def layer_norm_gradient(args, dy, y, mean, std, x, *gamma):
    rows, _ = _ln_rows(args, x)
    drows = dy.reshape(rows.shape)
    d = rows.shape[1]
    dx = np.empty_like(rows)
    dgamma, dbeta = np.zeros(d), np.zeros(d)
    for r in range(rows.shape[0]):
        mu, sd = mean.ravel()[r], std.ravel()[r]
        xhat = (rows[r] - mu) / sd
        # n_i = (x_i - mu) / sd with sd = sqrt(var + eps): dn_i/dx_j = (delta_ij - 1/D - n_i n_j / D) / sd
        jac = (np.eye(d) - 1.0 / d - np.outer(xhat, xhat) / d) / sd
        g = drows[r] * gamma[0].ravel() if gamma else drows[r]
        dx[r] = jac.T @ g
        dgamma += drows[r] * xhat
        dbeta += drows[r]
    out = (dx.reshape(x.shape),)
    if gamma:
        out += (dgamma.reshape(gamma[0].shape), dbeta.reshape(gamma[0].shape))
    return out


@reference("Dropout")
def dropout(args, x, num_outputs=2):
    if args["is_test"]:
        return (x.copy(), np.ones(x.shape, dtype=bool))[:num_outputs]
    keep = np.random.default_rng(0).uniform(size=x.shape) >= args["ratio"]
    return (np.where(keep, x / (1 - args["ratio"]), 0.0), keep)[:num_outputs]


@reference("DropoutGrad")
def dropout_grad(args, dy, *mask):
    if args["is_test"]:
        return (dy.copy(),)
    return (np.where(mask[0], dy / (1 - args["ratio"]), 0.0),)

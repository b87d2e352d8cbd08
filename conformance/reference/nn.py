"""References for FC, Conv, MaxPool, AveragePool.

The window geometry (output sizes, SAME/VALID padding, Caffe's ceil mode) is written out here on
purpose instead of imported from ``kaffa.ops.geometry``: the reference is an independent oracle.
Convolution and pooling work in NCHW; NHWC tensors are transposed in and out. Every window is
visited as one strided slice of the padded input per kernel offset.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from kaffa_conformance.reference import reference

VALID, SAME, CAFFE_CEIL = 1, 2, 3


@reference("FC")
def fc(args, x, w, b=None):
    axis, axis_w = args["axis"] % x.ndim, args["axis_w"] % w.ndim
    x2 = x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
    w2 = w.reshape(math.prod(w.shape[:axis_w]), math.prod(w.shape[axis_w:]))
    y = x2 @ w2.T
    if b is not None:
        y = y + b.reshape(-1)
    return (y.reshape(*x.shape[:axis], w2.shape[0]),)


# -- window geometry -------------------------------------------------------------------------------
def _per_axis(values, n):
    """A one-element list means the same value on every spatial axis."""
    return list(values) * n if len(values) == 1 else list(values)


def _axis_geometry(size, k, s, d, pb, pe, legacy_pad):
    """One spatial axis: (output size, begin pad, declared end pad, overhang past the end pad)."""
    ext = d * (k - 1) + 1  # span of the dilated kernel
    if legacy_pad == VALID:
        pb = pe = 0
        out = (size - ext) // s + 1
    elif legacy_pad == SAME:
        out = math.ceil(size / s)
        total = max((out - 1) * s + ext - size, 0)
        pb, pe = total // 2, total - total // 2
    elif legacy_pad == CAFFE_CEIL:
        out = math.ceil((size + pb + pe - ext) / s) + 1
        if pb > 0 and (out - 1) * s >= size + pb:
            out -= 1  # the last window must start inside the image or its begin pad
    else:
        out = (size + pb + pe - ext) // s + 1
    assert out > 0, f"spatial size {size} too small for kernel extent {ext}"
    overhang = max((out - 1) * s + ext - (size + pb + pe), 0)
    return out, pb, pe, overhang


def _geometry(args, sizes, kernels):
    """Per spatial axis lists: outs, strides, dilations, begin pads, declared end pads, overhangs."""
    n = len(sizes)
    strides, dilations = _per_axis(args["strides"], n), _per_axis(args["dilations"], n)
    pads = args["pads"]
    begins, ends = (_per_axis(pads, n), _per_axis(pads, n)) if len(pads) == 1 else (pads[:n], pads[n:])
    axes = [
        _axis_geometry(sizes[i], kernels[i], strides[i], dilations[i], begins[i], ends[i], args["legacy_pad"])
        for i in range(n)
    ]
    outs, pb, pe, over = (list(t) for t in zip(*axes))
    return outs, strides, dilations, pb, pe, over


def _pad_spatial(x, begins, ends, value):
    """Pad the trailing len(begins) axes of x."""
    lead = [(0, 0)] * (x.ndim - len(begins))
    return np.pad(x, lead + list(zip(begins, ends)), constant_values=value)


def _windows(xp, kernels, outs, strides, dilations):
    """Yield (kernel offset, view): view[..., o1, o2, ...] = xp[..., o1*s1 + k1*d1, o2*s2 + k2*d2, ...]."""
    for offset in itertools.product(*(range(k) for k in kernels)):
        index = tuple(
            slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(offset, dilations, outs, strides)
        )
        yield offset, xp[(..., *index)]


def _to_nchw(x, order):
    return x if order == "NCHW" else np.moveaxis(x, -1, 1)


def _from_nchw(y, order):
    return y if order == "NCHW" else np.moveaxis(y, 1, -1)


# -- Conv ------------------------------------------------------------------------------------------
@reference("Conv")
def conv(args, x, w, b=None):
    order, group = args["order"], args["group"]
    x, w = _to_nchw(x, order), _to_nchw(w, order)  # X [N, C, *S], W [M, C/group, *K]
    kernels = list(w.shape[2:])  # the filter's own size (equals the kernel argument when given)
    outs, strides, dilations, pb, pe, over = _geometry(args, x.shape[2:], kernels)
    xp = _pad_spatial(x, pb, [e + o for e, o in zip(pe, over)], 0.0)
    m, cg = w.shape[0], w.shape[1]
    mg = m // group
    y = np.zeros((x.shape[0], m, *outs))
    for offset, view in _windows(xp, kernels, outs, strides, dilations):
        for g in range(group):
            xs = view[:, g * cg : (g + 1) * cg]  # [N, C/group, *outs]
            ws = w[(slice(g * mg, (g + 1) * mg), slice(None), *offset)]  # [M/group, C/group]
            y[:, g * mg : (g + 1) * mg] += np.einsum("nc...,mc->nm...", xs, ws)
    if b is not None:
        y += b.reshape(1, m, *[1] * len(outs))
    return (_from_nchw(y, order),)


# -- pooling ---------------------------------------------------------------------------------------
@reference("MaxPool")
def max_pool(args, x):
    order = args["order"]
    x = _to_nchw(x, order)
    if args["global_pooling"]:
        spatial = tuple(range(2, x.ndim))
        return (_from_nchw(x.max(axis=spatial, keepdims=True), order),)
    kernels = _per_axis(args["kernels"], x.ndim - 2)
    outs, strides, dilations, pb, pe, over = _geometry(args, x.shape[2:], kernels)
    xp = _pad_spatial(x, pb, [e + o for e, o in zip(pe, over)], -np.inf)  # padding never wins
    y = np.full((*x.shape[:2], *outs), -np.inf)
    for _, view in _windows(xp, kernels, outs, strides, dilations):
        y = np.maximum(y, view)
    return (_from_nchw(y, order),)


@reference("AveragePool")
def average_pool(args, x):
    order = args["order"]
    x = _to_nchw(x, order)
    if args["global_pooling"]:
        spatial = tuple(range(2, x.ndim))
        return (_from_nchw(x.mean(axis=spatial, keepdims=True), order),)
    sizes = x.shape[2:]
    kernels = _per_axis(args["kernels"], len(sizes))
    outs, strides, dilations, pb, pe, over = _geometry(args, sizes, kernels)
    xp = _pad_spatial(x, pb, [e + o for e, o in zip(pe, over)], 0.0)
    # Which padded cells count in the divisor: the image, or (count_include_pad) the image and the
    # declared pads; never the ceil-mode overhang.
    if args["count_include_pad"]:
        counted = _pad_spatial(
            np.ones([s + b + e for s, b, e in zip(sizes, pb, pe)]), [0] * len(sizes), over, 0
        )
    else:
        counted = _pad_spatial(np.ones(sizes), pb, [e + o for e, o in zip(pe, over)], 0.0)
    total = np.zeros((*x.shape[:2], *outs))
    count = np.zeros(outs)
    windows = _windows(xp, kernels, outs, strides, dilations)
    cells = _windows(counted, kernels, outs, strides, dilations)
    for (_, xv), (_, cv) in zip(windows, cells):
        total += xv
        count += cv
    return (_from_nchw(total / count, order),)

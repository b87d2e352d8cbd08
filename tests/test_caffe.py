"""kaffa.caffe: Caffe nets (prototxt text + caffemodel bytes written through Caffe's schema) are
translated and run, and compared with a float64 numpy implementation of Caffe's layer semantics
written here from Caffe's C++ (BVLC master), independent of kaffa's ops."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

import kaffa
from kaffa.caffe import (
    CaffeFormatWarning,
    CaffeImportError,
    UnsupportedCaffeLayerError,
    translate,
    translate_model,
)
from kaffa.errors import ModelFormatError
from kaffa.proto import caffe_pb2

TOL = 1e-5  # max |kaffa - reference| / max(1, max |reference|)

# -- building Caffe files --------------------------------------------------------------------------


def _blob(arr: np.ndarray, legacy: bool = False) -> caffe_pb2.BlobProto:
    b = caffe_pb2.BlobProto()
    a = np.asarray(arr, np.float32)
    if legacy:  # the deprecated 4-D num/channels/height/width fields
        dims = [1] * (4 - a.ndim) + list(a.shape)
        b.num, b.channels, b.height, b.width = dims
    else:
        b.shape.SetInParent()  # present even for a 0-d blob
        b.shape.dim.extend(a.shape)
    b.data.extend(a.ravel().tolist())
    return b


def _caffemodel(prototxt: str, weights: Mapping[str, list[np.ndarray]], legacy: bool = False) -> bytes:
    """A .caffemodel as Caffe writes it: the net with every layer's trained blobs."""
    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt, net)
    for lp in [*net.layer, *net.layers]:
        for arr in weights.get(lp.name, []):
            lp.blobs.append(_blob(arr, legacy))
    return net.SerializeToString()


def _f32(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# -- the float64 reference: Caffe's forward pass ----------------------------------------------------


def _shape_of(p: Any) -> list[int]:
    return [int(d) for d in p.dim]


def _conv_sizes(p: Any) -> tuple[list[int], list[int], list[int], list[int]]:
    def two(vals: Any, h: str, w: str, default: int | None) -> list[int]:
        if p.HasField(h) or p.HasField(w):
            return [getattr(p, h), getattr(p, w)]
        vals = list(vals) or [default]
        return [vals[0], vals[0]] if len(vals) == 1 else vals

    k = two(p.kernel_size, "kernel_h", "kernel_w", None)
    s = two(p.stride, "stride_h", "stride_w", 1)
    pad = two(p.pad, "pad_h", "pad_w", 0)
    d = list(p.dilation) or [1]
    d = [d[0], d[0]] if len(d) == 1 else d
    return k, s, pad, d


def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, p: Any) -> np.ndarray:
    """Caffe's Convolution, one output cell at a time (im2col's definition)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _conv_sizes(p)
    n, c, h, wd = x.shape
    m, g = int(p.num_output), int(p.group)
    w = w.reshape(m, c // g, kh, kw)
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph : ph + h, pw : pw + wd] = x
    y = np.zeros((n, m, oh, ow))
    cg, mg = c // g, m // g
    for gi in range(g):
        wg = w[gi * mg : (gi + 1) * mg]
        for i in range(oh):
            for j in range(ow):
                patch = xp[
                    :,
                    gi * cg : (gi + 1) * cg,
                    i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                    j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                ]
                y[:, gi * mg : (gi + 1) * mg, i, j] = np.einsum("nckl,mckl->nm", patch, wg)
    if b is not None:
        y += b.reshape(1, m, 1, 1)
    return y


def ref_deconv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, p: Any) -> np.ndarray:
    """Caffe's Deconvolution: every input cell scatters x * w into the (uncropped) output,
    which then loses ``pad`` cells at each end (col2im of the convolution's backward pass)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _conv_sizes(p)
    n, c, h, wd = x.shape
    m, g = int(p.num_output), int(p.group)
    w = w.reshape(c, m // g, kh, kw)
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (wd - 1) * sw + dw * (kw - 1) + 1
    y = np.zeros((n, m, full_h, full_w))
    cg, mg = c // g, m // g
    for ci in range(c):
        gi = ci // cg
        for i in range(h):
            for j in range(wd):
                for a in range(kh):
                    for bb in range(kw):
                        y[:, gi * mg : (gi + 1) * mg, i * sh + a * dh, j * sw + bb * dw] += (
                            x[:, ci, i, j][:, None] * w[ci, :, a, bb][None, :]
                        )
    y = y[:, :, ph : full_h - ph, pw : full_w - pw]
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    return y


def ref_pool(x: np.ndarray, p: Any) -> np.ndarray:
    """Caffe's PoolingLayer (Reshape's output size, Forward_cpu's windows and divisor)."""
    n, c, h, w = x.shape
    if p.global_pooling:
        kh, kw, ph, pw, sh, sw = h, w, 0, 0, 1, 1
    else:
        kh, kw = (p.kernel_size, p.kernel_size) if p.HasField("kernel_size") else (p.kernel_h, p.kernel_w)
        ph, pw = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
        sh, sw = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    rnd = math.ceil if p.round_mode == caffe_pb2.PoolingParameter.CEIL else math.floor
    out_h = int(rnd((h + 2 * ph - kh) / sh)) + 1
    out_w = int(rnd((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (out_h - 1) * sh >= h + ph:
            out_h -= 1
        if (out_w - 1) * sw >= w + pw:
            out_w -= 1
    y = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            hs, ws = i * sh - ph, j * sw - pw
            if p.pool == caffe_pb2.PoolingParameter.MAX:
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return y


def ref_lrn(x: np.ndarray, p: Any) -> np.ndarray:
    size, alpha, beta, k = int(p.local_size), float(p.alpha), float(p.beta), float(p.k)
    pre = (size - 1) // 2
    if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        c = x.shape[1]
        scale = np.full_like(x, k)
        for ci in range(c):
            lo, hi = max(ci - pre, 0), min(ci - pre + size, c)
            scale[:, ci] += alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        return x * scale**-beta
    pool = caffe_pb2.PoolingParameter(
        pool=caffe_pb2.PoolingParameter.AVE, kernel_size=size, pad=pre, stride=1
    )
    return x * (1.0 + alpha * ref_pool(x**2, pool)) ** -beta


def _bcast(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    return v.reshape(v.shape + (1,) * (ndim - axis - v.ndim))


def ref_forward(
    prototxt: str, weights: Mapping[str, list[np.ndarray]], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run a Caffe net in float64 the way Caffe's layers compute it; returns every blob."""
    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt, net)
    layers = list(net.layer)
    if net.layers:  # V1
        from kaffa.caffe.reader import upgrade_v1

        layers = list(upgrade_v1(net).layer)
    blobs = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    for lp in layers:
        if any(r.phase == caffe_pb2.TRAIN for r in lp.include):
            continue
        t = lp.type
        w = [np.asarray(a, np.float64) for a in weights.get(lp.name, [])]
        xs = [blobs[b] for b in lp.bottom]
        x = xs[0] if xs else None
        if t == "Input":
            continue
        if t == "Convolution":
            p = lp.convolution_param
            y = ref_conv(x, w[0], w[1] if p.bias_term else None, p)
        elif t == "Deconvolution":
            p = lp.convolution_param
            y = ref_deconv(x, w[0], w[1] if p.bias_term else None, p)
        elif t == "InnerProduct":
            p = lp.inner_product_param
            ax = p.axis % x.ndim
            x2 = x.reshape(int(np.prod(x.shape[:ax])), -1)
            wm = w[0].reshape(x2.shape[1], -1) if p.transpose else w[0].reshape(-1, x2.shape[1]).T
            y = x2 @ wm
            if p.bias_term:
                y = y + w[1].reshape(1, -1)
            y = y.reshape(*x.shape[:ax], -1)
        elif t == "ReLU":
            y = np.maximum(x, 0) + lp.relu_param.negative_slope * np.minimum(x, 0)
        elif t == "PReLU":
            slope = w[0].reshape(-1)
            slope = slope[0] if slope.size == 1 else _bcast(slope, 1, x.ndim)
            y = np.where(x > 0, x, slope * x)
        elif t == "Sigmoid":
            y = 1 / (1 + np.exp(-x))
        elif t == "TanH":
            y = np.tanh(x)
        elif t == "AbsVal":
            y = np.abs(x)
        elif t == "BNLL":
            y = np.log1p(np.exp(x))
        elif t == "ELU":
            y = np.where(x > 0, x, lp.elu_param.alpha * (np.exp(x) - 1))
        elif t == "Power":
            p = lp.power_param
            y = (p.shift + p.scale * x) ** p.power
        elif t == "Pooling":
            y = ref_pool(x, lp.pooling_param)
        elif t == "LRN":
            y = ref_lrn(x, lp.lrn_param)
        elif t == "Dropout":
            y = x
        elif t == "Softmax":
            ax = lp.softmax_param.axis % x.ndim
            e = np.exp(x - x.max(axis=ax, keepdims=True))
            y = e / e.sum(axis=ax, keepdims=True)
        elif t == "Concat":
            p = lp.concat_param
            y = np.concatenate(xs, axis=p.concat_dim if p.HasField("concat_dim") else p.axis % x.ndim)
        elif t == "Eltwise":
            p = lp.eltwise_param
            if p.operation == caffe_pb2.EltwiseParameter.SUM:
                coeff = list(p.coeff) or [1.0] * len(xs)
                y = sum(c * v for c, v in zip(coeff, xs))
            elif p.operation == caffe_pb2.EltwiseParameter.PROD:
                y = np.prod(np.stack(xs), axis=0)
            else:
                y = np.max(np.stack(xs), axis=0)
        elif t == "BatchNorm":
            p = lp.batch_norm_param
            f = 0.0 if w[2].reshape(-1)[0] == 0 else 1.0 / w[2].reshape(-1)[0]
            if not p.HasField("use_global_stats") or p.use_global_stats:
                mean, var = _bcast(w[0] * f, 1, x.ndim), _bcast(w[1] * f, 1, x.ndim)
            else:
                axes = (0, *range(2, x.ndim))
                mean = x.mean(axis=axes, keepdims=True)
                var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
            y = (x - mean) / np.sqrt(var + p.eps)
        elif t == "Scale":
            p = lp.scale_param
            ax = p.axis % x.ndim
            s = xs[1] if len(xs) > 1 else w[0]
            y = x * (s if s.ndim == 0 else _bcast(s, ax, x.ndim))
            if p.bias_term:
                bias = w[0] if len(xs) > 1 else w[1]
                y = y + _bcast(bias.reshape(s.shape), ax, x.ndim)
        elif t == "Bias":
            ax = lp.bias_param.axis % x.ndim
            bias = xs[1] if len(xs) > 1 else w[0]
            y = x + _bcast(bias, ax, x.ndim)
        elif t == "Flatten":
            p = lp.flatten_param
            a, e = p.axis % x.ndim, p.end_axis % x.ndim
            y = x.reshape(*x.shape[:a], -1, *x.shape[e + 1 :])
        elif t == "Reshape":
            p = lp.reshape_param
            start = p.axis if p.axis >= 0 else p.axis + x.ndim + 1
            end = x.ndim if p.num_axes == -1 else start + p.num_axes
            mid = [x.shape[start + i] if d == 0 else d for i, d in enumerate(p.shape.dim)]
            y = x.reshape(*x.shape[:start], *mid, *x.shape[end:])
        elif t == "Crop":
            p = lp.crop_param
            ax = p.axis % x.ndim
            offs = list(p.offset) or [0]
            index = [slice(None)] * ax + [
                slice(
                    offs[0 if len(offs) == 1 else i - ax],
                    offs[0 if len(offs) == 1 else i - ax] + xs[1].shape[i],
                )
                for i in range(ax, x.ndim)
            ]
            y = x[tuple(index)]
        elif t == "Split":
            for top in lp.top:
                blobs[top] = x
            continue
        elif t == "Slice":
            p = lp.slice_param
            ax = p.slice_dim if p.HasField("slice_dim") else p.axis % x.ndim
            parts = np.split(x, list(p.slice_point) or len(lp.top), axis=ax)
            blobs.update(zip(lp.top, parts))
            continue
        else:
            raise NotImplementedError(t)
        blobs[lp.top[0]] = y
    return blobs


# -- running kaffa ---------------------------------------------------------------------------------


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    return float(np.abs(got.astype(np.float64) - ref).max() / max(1.0, np.abs(ref).max()))


def _run(
    init: Any, predict: Any, inputs: Mapping[str, np.ndarray], optimize: bool = True
) -> tuple[dict[str, np.ndarray], Any]:
    """With ``optimize=False`` every intermediate blob keeps its NCHW value (the passes fuse some
    away and, on a cpu that runs NHWC, keep others only in their NHWC form)."""
    pred = kaffa.Predictor(init, predict, optimize=optimize)
    outs = pred.run({k: v.astype(np.float32) for k, v in inputs.items()})
    return dict(zip(pred.output_names, outs)), pred


def check_net(
    prototxt: str,
    weights: Mapping[str, list[np.ndarray]],
    inputs: Mapping[str, np.ndarray],
    outputs: list[str] | None = None,
    legacy_blobs: bool = False,
) -> dict[str, float]:
    """Translate, run on cpu and compare every output (and every intermediate blob kaffa keeps
    under its Caffe name) with the reference; returns the relative errors."""
    init, predict = translate(prototxt, _caffemodel(prototxt, weights, legacy_blobs))
    got, _ = _run(init, predict, inputs)
    ref = ref_forward(prototxt, weights, inputs)
    if outputs is not None:
        assert sorted(got) == sorted(outputs), f"outputs {sorted(got)}, expected {sorted(outputs)}"
    errors = {name: _rel_err(value, ref[name]) for name, value in got.items()}
    assert errors, "the net has no outputs"
    assert max(errors.values()) <= TOL, errors
    return errors


# -- the acceptance nets ---------------------------------------------------------------------------

LENET = """
name: "LeNet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 28 dim: 28 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 5 stride: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 5 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 32 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }
"""


def lenet_weights(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    return {
        "conv1": [_f32(rng, 6, 1, 5, 5, scale=0.3), _f32(rng, 6, scale=0.1)],
        "conv2": [_f32(rng, 8, 6, 5, 5, scale=0.1), _f32(rng, 8, scale=0.1)],
        "ip1": [_f32(rng, 32, 128, scale=0.1), _f32(rng, 32, scale=0.1)],
        "ip2": [_f32(rng, 10, 32, scale=0.3), _f32(rng, 10, scale=0.1)],
    }


def test_lenet_matches_the_reference():
    rng = np.random.default_rng(0)
    weights = lenet_weights(rng)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    errors = check_net(LENET, weights, {"data": x}, outputs=["prob"])
    init, predict = translate(LENET, _caffemodel(LENET, weights))
    assert [op.type for op in predict.op] == [
        "Conv",
        "MaxPool",
        "Conv",
        "MaxPool",
        "FC",
        "Relu",
        "FC",
        "Softmax",
    ]
    relu = predict.op[5]
    assert list(relu.input) == list(relu.output) == ["ip1"]  # in place, as in Caffe
    assert sorted(op.output[0] for op in init.op) == sorted(
        f"{n}_{s}" for n in ("conv1", "conv2", "ip1", "ip2") for s in "wb"
    )
    # Every intermediate blob keeps its Caffe name and value.
    _, pred = _run(init, predict, {"data": x}, optimize=False)
    ref = ref_forward(LENET, weights, {"data": x})
    for blob in ("conv1", "pool1", "conv2", "pool2", "ip1", "ip2"):
        assert _rel_err(pred.workspace.fetch_blob(blob), ref[blob]) <= TOL, blob
    assert errors["prob"] <= TOL


VGG = """
name: "vgg-ish"
input: "data"
input_shape { dim: 2 dim: 3 dim: 20 dim: 20 }
layer { name: "conv1_1" type: "Convolution" bottom: "data" top: "conv1_1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn1_1" type: "BatchNorm" bottom: "conv1_1" top: "conv1_1" batch_norm_param { eps: 0.001 } }
layer { name: "scale1_1" type: "Scale" bottom: "conv1_1" top: "conv1_1" scale_param { bias_term: true } }
layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
layer { name: "conv1_2" type: "Convolution" bottom: "conv1_1" top: "conv1_2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn1_2" type: "BatchNorm" bottom: "conv1_2" top: "bn1_2" }
layer { name: "scale1_2" type: "Scale" bottom: "bn1_2" top: "scale1_2" scale_param { bias_term: true } }
layer { name: "relu1_2" type: "ReLU" bottom: "scale1_2" top: "scale1_2" }
layer { name: "pool1" type: "Pooling" bottom: "scale1_2" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 k: 2 } }
layer { name: "conv2_1" type: "Convolution" bottom: "norm1" top: "conv2_1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu2_1" type: "ReLU" bottom: "conv2_1" top: "conv2_1" }
layer { name: "res2" type: "Eltwise" bottom: "norm1" bottom: "conv2_1" top: "res2"
  eltwise_param { operation: SUM coeff: 1 coeff: 0.5 } }
layer { name: "pool2" type: "Pooling" bottom: "res2" top: "pool2"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6" inner_product_param { num_output: 16 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc7" top: "prob" }
"""


def _bn_blobs(rng: np.random.Generator, c: int, factor: float = 7.5) -> list[np.ndarray]:
    """Caffe's BatchNorm blobs: running sums of mean and variance, and their scale factor."""
    mean = rng.standard_normal(c) * 0.5
    var = rng.uniform(0.5, 2.0, c)
    return [(mean * factor).astype(np.float32), (var * factor).astype(np.float32), np.float32([factor])]


def vgg_weights(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    return {
        "conv1_1": [_f32(rng, 8, 3, 3, 3, scale=0.3), _f32(rng, 8, scale=0.1)],
        "bn1_1": _bn_blobs(rng, 8),
        "scale1_1": [rng.uniform(0.5, 1.5, 8).astype(np.float32), _f32(rng, 8, scale=0.1)],
        "conv1_2": [_f32(rng, 8, 8, 3, 3, scale=0.2), _f32(rng, 8, scale=0.1)],
        "bn1_2": _bn_blobs(rng, 8, factor=1.0),
        "scale1_2": [rng.uniform(0.5, 1.5, 8).astype(np.float32), _f32(rng, 8, scale=0.1)],
        "conv2_1": [_f32(rng, 8, 8, 3, 3, scale=0.2), _f32(rng, 8, scale=0.1)],
        "fc6": [_f32(rng, 16, 8 * 6 * 6, scale=0.1), _f32(rng, 16, scale=0.1)],
        "fc7": [_f32(rng, 5, 16, scale=0.3), _f32(rng, 5, scale=0.1)],
    }


def test_vgg_style_net_matches_the_reference():
    rng = np.random.default_rng(1)
    weights = vgg_weights(rng)
    x = rng.standard_normal((2, 3, 20, 20)).astype(np.float32)
    errors = check_net(VGG, weights, {"data": x}, outputs=["prob"])
    assert errors["prob"] <= TOL
    t = translate_model(VGG, _caffemodel(VGG, weights))
    types = [op.type for op in t.predict_net.op]
    # BatchNorm + Scale fold into one SpatialBN each (in place and not); no Dropout op.
    assert types.count("SpatialBN") == 2 and "Mul" not in types and "Dropout" not in types
    assert types.count("Scale") == 1 and types.count("Sum") == 1  # Eltwise SUM, coefficients 1 and 0.5
    assert t.input_shapes == {"data": (2, 3, 20, 20)}
    # Caffe's ceil-mode pooling sizes, which kaffa's default (floor) rounding would not give.
    ref = ref_forward(VGG, weights, {"data": x})
    assert ref["pool1"].shape[2:] == (10, 10)  # floor mode: (20 - 3) // 2 + 1 = 9
    assert ref["pool2"].shape[2:] == (6, 6)  # floor mode: (10 + 2 - 3) // 2 + 1 = 5
    _, pred = _run(t.init_net, t.predict_net, {"data": x}, optimize=False)
    for blob in ("pool1", "pool2", "norm1", "res2"):
        assert _rel_err(pred.workspace.fetch_blob(blob), ref[blob]) <= TOL, blob
    ws = kaffa.Workspace()
    ws.feed_blob("x", x)
    floor = kaffa.Net("floor")
    floor.MaxPool(["x"], ["y"], kernel=3, stride=2)  # kaffa's default rounding
    ws.run_net_once(floor)
    assert ws.fetch_blob("y").shape[2:] == (9, 9)


def test_unknown_layer_type_is_a_typed_error_naming_the_layer():
    proto = LENET.replace(
        'layer { name: "prob"',
        'layer { name: "mystery" type: "FancyNorm" bottom: "ip2" top: "ip2" }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n'
        'layer { name: "prob"',
    )
    with pytest.raises(UnsupportedCaffeLayerError) as info:
        translate(proto, _caffemodel(LENET, lenet_weights(np.random.default_rng(0))))
    err = info.value
    assert isinstance(err, ModelFormatError)
    assert (err.layer_name, err.layer_type) == ("mystery", "FancyNorm")
    assert err.layers == [("mystery", "FancyNorm"), ("loss", "SoftmaxWithLoss")]
    assert "layer 'mystery' (type FancyNorm)" in str(err)
    assert "deploy prototxt" in str(err)


def test_cli_convert_round_trip(tmp_path, capsys):
    from kaffa.cli import main

    rng = np.random.default_rng(2)
    weights = vgg_weights(rng)
    (tmp_path / "deploy.prototxt").write_text(VGG)
    (tmp_path / "w.caffemodel").write_bytes(_caffemodel(VGG, weights))
    out = tmp_path / "model"
    rc = main(
        [
            "convert",
            str(tmp_path / "deploy.prototxt"),
            "--weights",
            str(tmp_path / "w.caffemodel"),
            "--to",
            "netdef",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "value_info.json").read_text())["data"][1] == [2, 3, 20, 20]
    pred = kaffa.Predictor(str(out / "init_net.pb"), str(out / "predict_net.pb"))
    x = rng.standard_normal((2, 3, 20, 20)).astype(np.float32)
    (prob,) = pred.run({"data": x})
    assert _rel_err(prob, ref_forward(VGG, weights, {"data": x})["prob"]) <= TOL
    # The folder also runs through `kaffa run`.
    np.save(tmp_path / "x.npy", x)
    assert (
        main(["run", str(out), "--input", f"data={tmp_path / 'x.npy'}", "-o", str(tmp_path / "p.npy")]) == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), prob)


def test_cli_convert_reports_a_bad_caffemodel(tmp_path, capsys):
    from kaffa.cli import main

    (tmp_path / "deploy.prototxt").write_text(LENET)
    (tmp_path / "w.caffemodel").write_bytes(b"\x0a\xff\xff")
    rc = main(
        [
            "convert",
            str(tmp_path / "deploy.prototxt"),
            "--weights",
            str(tmp_path / "w.caffemodel"),
            "--to",
            "netdef",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "caffemodel" in capsys.readouterr().err


# -- layer by layer --------------------------------------------------------------------------------


def _net(shape: tuple[int, ...], body: str, name: str = "data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (
        f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'
        + body
    )


X4 = (2, 4, 9, 11)


def _conv_case(rng, c_in, m, k, group=1, extra="", deconv=False):
    kh, kw = (k, k) if isinstance(k, int) else k
    shape = (c_in, m // group, kh, kw) if deconv else (m, c_in // group, kh, kw)
    kind = "Deconvolution" if deconv else "Convolution"
    ksize = f"kernel_size: {k}" if isinstance(k, int) else f"kernel_h: {kh} kernel_w: {kw}"
    body = (
        f'layer {{ name: "c" type: "{kind}" bottom: "data" top: "y" '
        f"convolution_param {{ num_output: {m} {ksize} group: {group} {extra} }} }}"
    )
    return body, {"c": [_f32(rng, *shape), _f32(rng, m, scale=0.1)]}


CONV_CASES = {
    "plain": (4, 6, 3, 1, ""),
    "groups": (4, 6, 3, 2, "pad: 1"),
    "depthwise": (4, 4, 3, 4, "pad: 1 stride: 2"),
    "dilation": (4, 6, 3, 1, "dilation: 2 pad: 2"),
    "rect": (4, 6, (3, 2), 1, "stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0"),
    "per_axis": (4, 6, 3, 1, "pad: 1 pad: 0 stride: 1 stride: 2 dilation: 2 dilation: 1"),
    "no_bias": (4, 6, 1, 1, "bias_term: false"),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution(case):
    rng = np.random.default_rng(3)
    c_in, m, k, group, extra = CONV_CASES[case]
    body, w = _conv_case(rng, c_in, m, k, group, extra)
    if "bias_term: false" in extra:
        w["c"] = w["c"][:1]
    check_net(_net(X4, body), w, {"data": _f32(rng, *X4, scale=1.0)}, outputs=["y"])


DECONV_CASES = {
    "stride2": (4, 6, 3, 1, "stride: 2 pad: 1"),
    "groups": (4, 6, 4, 2, "stride: 2"),
    "dilation": (4, 3, 3, 1, "dilation: 2 stride: 2 pad: 1"),
    "rect": (4, 2, (2, 3), 1, "stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 1"),
}


@pytest.mark.parametrize("case", sorted(DECONV_CASES))
def test_deconvolution(case):
    rng = np.random.default_rng(4)
    c_in, m, k, group, extra = DECONV_CASES[case]
    body, w = _conv_case(rng, c_in, m, k, group, extra, deconv=True)
    check_net(_net(X4, body), w, {"data": _f32(rng, *X4, scale=1.0)}, outputs=["y"])


POOL_CASES = {
    "max_ceil": "pool: MAX kernel_size: 3 stride: 2",
    "max_ceil_pad": "pool: MAX kernel_size: 3 stride: 2 pad: 1",
    "ave_ceil_pad": "pool: AVE kernel_size: 3 stride: 2 pad: 1",
    "ave_ceil": "pool: AVE kernel_size: 2 stride: 2",
    "ave_rect": "pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 1",
    "max_floor": "pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR",
    "ave_floor_pad": "pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR",
    "global_max": "pool: MAX global_pooling: true",
    "global_ave": "pool: AVE global_pooling: true",
    # Caffe drops the last window of an UNPADDED axis too when the other axis is padded.
    "one_sided_pad": "pool: MAX kernel_h: 3 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0",
    "one_sided_pad_ave": "pool: AVE kernel_h: 2 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0",
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling(case):
    rng = np.random.default_rng(5)
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "y"\n'
    body += f"  pooling_param {{ {POOL_CASES[case]} }} }}"
    shape = (2, 3, 10, 11)
    check_net(_net(shape, body), {}, {"data": _f32(rng, *shape, scale=1.0)}, outputs=["y"])


def test_pooling_one_sided_pad_size_follows_caffe():
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "y" ' + (
        "pooling_param { pool: MAX kernel_h: 3 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0 } }"
    )
    t = translate_model(_net((1, 1, 10, 11), body))
    # Caffe: W out = ceil(10 / 3) + 1 = 5, then 4 since (5 - 1) * 3 >= 11 + 0 and pad_h > 0;
    # kaffa checks that only on padded axes and would keep 5 (an empty last window).
    assert [op.type for op in t.predict_net.op] == ["Slice", "MaxPool"]
    (y,) = kaffa.Predictor(t.init_net, t.predict_net).run([np.zeros((1, 1, 10, 11), np.float32)])
    assert y.shape == (1, 1, 4, 4)


LRN_CASES = {
    "across": "local_size: 5 alpha: 0.5 beta: 0.75 k: 2",
    "across3": "local_size: 3 alpha: 1.5 beta: 0.5",
    "within": "local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL",
    "within5": "local_size: 5 alpha: 2 beta: 0.6 norm_region: WITHIN_CHANNEL k: 3",
}


@pytest.mark.parametrize("case", sorted(LRN_CASES))
def test_lrn(case):
    rng = np.random.default_rng(6)
    body = f'layer {{ name: "n" type: "LRN" bottom: "data" top: "y" lrn_param {{ {LRN_CASES[case]} }} }}'
    check_net(_net(X4, body), {}, {"data": _f32(rng, *X4, scale=1.0)}, outputs=["y"])


ACT_CASES = {
    "relu": ('type: "ReLU"', []),
    "leaky": ('type: "ReLU" relu_param { negative_slope: 0.1 }', []),
    "sigmoid": ('type: "Sigmoid"', []),
    "tanh": ('type: "TanH"', []),
    "absval": ('type: "AbsVal"', []),
    "bnll": ('type: "BNLL"', []),
    "elu": ('type: "ELU" elu_param { alpha: 0.7 }', []),
    "power": ('type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }', []),
    "power_identity": ('type: "Power"', []),
    "prelu": ('type: "PReLU"', [np.float32([0.1, -0.2, 0.3, 0.25])]),
    "prelu_shared": ('type: "PReLU" prelu_param { channel_shared: true }', [np.float32([0.2])]),
}


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("case", sorted(ACT_CASES))
def test_activations(case, inplace):
    rng = np.random.default_rng(7)
    spec, blobs = ACT_CASES[case]
    top = "data2" if inplace else "y"
    # A Power layer first, so that the in-place variant works on an intermediate blob.
    body = (
        'layer { name: "pre" type: "Power" bottom: "data" top: "data2" power_param { scale: 1.5 } }\n'
        f'layer {{ name: "act" {spec} bottom: "data2" top: "{top}" }}'
    )
    check_net(_net(X4, body), {"act": blobs}, {"data": _f32(rng, *X4, scale=1.0)}, outputs=[top])


def test_inner_product_variants():
    rng = np.random.default_rng(8)
    body = (
        'layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" '
        "inner_product_param { num_output: 5 axis: 2 } }\n"
        'layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" '
        "inner_product_param { num_output: 3 transpose: true bias_term: false } }\n"
    )
    w = {"a": [_f32(rng, 5, 99), _f32(rng, 5)], "b": [_f32(rng, 4 * 99, 3, scale=0.1)]}
    check_net(_net(X4, body), w, {"data": _f32(rng, *X4, scale=1.0)}, outputs=["a", "b"])
    # Old caffemodels store the weights as 4-D legacy blobs (1 x 1 x N x K).
    check_net(_net(X4, body), w, {"data": _f32(rng, *X4, scale=1.0)}, outputs=["a", "b"], legacy_blobs=True)


SOFTMAX_CASES = {"axis1_4d": "", "last": "softmax_param { axis: -1 }", "axis2": "softmax_param { axis: 2 }"}


@pytest.mark.parametrize("case", sorted(SOFTMAX_CASES))
def test_softmax_along_one_axis(case):
    rng = np.random.default_rng(9)
    body = f'layer {{ name: "s" type: "Softmax" bottom: "data" top: "y" {SOFTMAX_CASES[case]} }}'
    check_net(_net(X4, body), {}, {"data": _f32(rng, *X4, scale=2.0)}, outputs=["y"])


def test_concat_eltwise_and_friends():
    rng = np.random.default_rng(10)
    body = """
layer { name: "sp" type: "Split" bottom: "data" top: "a" top: "b" top: "c" }
layer { name: "ra" type: "ReLU" bottom: "a" top: "a" }
layer { name: "tb" type: "TanH" bottom: "b" top: "b" }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" bottom: "c" top: "cat" }
layer { name: "cat3" type: "Concat" bottom: "a" bottom: "c" top: "cat3" concat_param { axis: -1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "sum" }
layer { name: "wsum" type: "Eltwise" bottom: "a" bottom: "b" top: "wsum"
  eltwise_param { coeff: 2 coeff: -0.5 } }
layer { name: "prod" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "prod"
  eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "b" bottom: "c" top: "max" eltwise_param { operation: MAX } }
"""
    errors = check_net(
        _net(X4, body),
        {},
        {"data": _f32(rng, *X4, scale=1.0)},
        outputs=["cat", "cat3", "sum", "wsum", "prod", "max"],
    )
    assert max(errors.values()) <= TOL


def test_in_place_on_a_split_branch_leaves_the_others_alone():
    """Split aliases one kaffa blob under several Caffe names: an in-place layer on one of them
    must not change the others."""
    rng = np.random.default_rng(11)
    body = """
layer { name: "pre" type: "Power" bottom: "data" top: "x" power_param { scale: 1.0 shift: 0.1 } }
layer { name: "sp" type: "Split" bottom: "x" top: "a" top: "b" }
layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "out" }
"""
    check_net(_net(X4, body), {}, {"data": _f32(rng, *X4, scale=1.0)}, outputs=["out"])


def test_batchnorm_and_scale_variants():
    rng = np.random.default_rng(12)
    body = """
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }
layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" }
layer { name: "bn_batch" type: "BatchNorm" bottom: "data" top: "bnb"
  batch_norm_param { use_global_stats: false } }
layer { name: "sc_batch" type: "Scale" bottom: "bnb" top: "bnb" scale_param { bias_term: true } }
layer { name: "bnr" type: "ReLU" bottom: "bn" top: "bnr" }
layer { name: "sc2" type: "Scale" bottom: "data" bottom: "w" top: "sc2"
  scale_param { axis: 0 bias_term: true } }
layer { name: "sc3" type: "Scale" bottom: "data" top: "sc3" scale_param { axis: 2 num_axes: 2 } }
layer { name: "sc4" type: "Scale" bottom: "data" top: "sc4" scale_param { num_axes: 0 bias_term: true } }
layer { name: "bias" type: "Bias" bottom: "data" top: "biased" }
layer { name: "bn0" type: "BatchNorm" bottom: "data" top: "bn0" batch_norm_param { eps: 0 } }
"""
    proto = _net(
        X4, 'layer { name: "w" type: "Input" top: "w" input_param { shape { dim: 2 dim: 4 } } }\n' + body
    )
    w = {
        "bn": _bn_blobs(rng, 4, factor=3.0),
        "bn_batch": _bn_blobs(rng, 4),
        "sc_batch": [_f32(rng, 4), _f32(rng, 4)],
        "sc": [_f32(rng, 4)],
        "sc2": [_f32(rng, 2, 4)],
        "sc3": [_f32(rng, 9, 11)],
        "sc4": [np.float32(1.7).reshape(()), np.float32(0.3).reshape(())],
        "bias": [_f32(rng, 4)],
        "bn0": [np.float32([0.1, 0.2, 0.3, 0.4]), np.float32([1, 2, 3, 4]), np.float32([1])],
    }
    inputs = {"data": _f32(rng, *X4, scale=1.0), "w": _f32(rng, 2, 4)}
    check_net(proto, w, inputs, outputs=["sc", "bnb", "bnr", "sc2", "sc3", "sc4", "biased", "bn0"])
    # "bn" is also read by "bnr": it is not folded into its Scale, so SpatialBN and Mul both run.
    types = [op.type for op in translate_model(proto, _caffemodel(proto, w)).predict_net.op]
    assert types.count("SpatialBN") == 1 and "ReduceMean" in types


def test_zero_scale_factor_batchnorm():
    """Caffe treats a zero scale factor (never updated) as mean = var = 0."""
    body = 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "y" }'
    w = {"bn": [np.float32([1, 2, 3, 4]), np.float32([5, 6, 7, 8]), np.float32([0])]}
    check_net(_net(X4, body), w, {"data": _f32(np.random.default_rng(0), *X4)}, outputs=["y"])


def test_shape_layers():
    rng = np.random.default_rng(13)
    body = """
layer { name: "f1" type: "Flatten" bottom: "data" top: "f1" }
layer { name: "f2" type: "Flatten" bottom: "data" top: "f2" flatten_param { axis: 2 } }
layer { name: "f3" type: "Flatten" bottom: "data" top: "f3" flatten_param { axis: 1 end_axis: 2 } }
layer { name: "r1" type: "Reshape" bottom: "data" top: "r1"
  reshape_param { shape { dim: 0 dim: -1 dim: 11 } } }
layer { name: "r2" type: "Reshape" bottom: "data" top: "r2"
  reshape_param { shape { dim: 3 dim: 3 } axis: 2 num_axes: 1 } }
layer { name: "r3" type: "Reshape" bottom: "data" top: "r3"
  reshape_param { shape { dim: 1 } axis: 1 num_axes: 0 } }
layer { name: "r4" type: "Reshape" bottom: "data" top: "r4" reshape_param { shape { dim: -1 } axis: -3 } }
layer { name: "crop" type: "Crop" bottom: "data" bottom: "ref" top: "crop"
  crop_param { offset: 1 offset: 2 } }
layer { name: "crop1" type: "Crop" bottom: "data" bottom: "ref" top: "crop1"
  crop_param { axis: 1 offset: 0 offset: 1 offset: 3 } }
layer { name: "sl" type: "Slice" bottom: "data" top: "s1" top: "s2" top: "s3"
  slice_param { axis: 3 slice_point: 2 slice_point: 7 } }
layer { name: "sl2" type: "Slice" bottom: "data" top: "t1" top: "t2" }
"""
    proto = _net(X4, _net((2, 3, 5, 6), body, name="ref"))
    outs = ["f1", "f2", "f3", "r1", "r2", "r3", "r4", "crop", "crop1", "s1", "s2", "s3", "t1", "t2"]
    check_net(proto, {}, {"data": _f32(rng, *X4), "ref": _f32(rng, 2, 3, 5, 6)}, outputs=outs)


def test_v1_layers_and_legacy_inputs():
    rng = np.random.default_rng(14)
    proto = """
name: "old"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool" top: "ip" inner_product_param { num_output: 3 } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""
    w = {"conv": [_f32(rng, 4, 3, 3, 3), _f32(rng, 4)], "ip": [_f32(rng, 3, 36), _f32(rng, 3)]}
    check_net(proto, w, {"data": _f32(rng, 2, 3, 8, 8, scale=1.0)}, outputs=["prob"], legacy_blobs=True)


def test_train_only_layers_are_left_out_and_in_place_outputs_keep_their_names():
    rng = np.random.default_rng(15)
    body = """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" include { phase: TRAIN } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
  include { phase: TRAIN } }
layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "ip" exclude { phase: TRAIN } }
"""
    w = {"ip": [_f32(rng, 3, 4 * 9 * 11), _f32(rng, 3)]}
    check_net(_net(X4, body), w, {"data": _f32(rng, *X4)}, outputs=["ip"])


def test_errors_name_the_layer():
    body = 'layer { name: "conv" type: "Convolution" bottom: "data" top: "y"\n'
    body += "  convolution_param { num_output: 2 kernel_size: 3 } }"
    with pytest.raises(CaffeImportError, match=r"layer 'conv' \(type Convolution\).*trained blob"):
        translate(_net(X4, body))  # no caffemodel
    with pytest.raises(CaffeImportError, match=r"'conv'.*rejects") as info:
        w = {"conv": [np.zeros((2, 3, 3, 3), np.float32), np.zeros(2, np.float32)]}  # 3 channels, not 4
        translate(_net(X4, body), _caffemodel(_net(X4, body), w))
    assert info.value.layer_name == "conv"
    body = 'layer { name: "relu" type: "ReLU" bottom: "nothing" top: "y" }'
    with pytest.raises(CaffeImportError, match="'nothing'"):
        translate(_net(X4, body))
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "y"\n'
    body += "  pooling_param { pool: STOCHASTIC kernel_size: 2 } }"
    with pytest.raises(CaffeImportError, match="STOCHASTIC"):
        translate(_net(X4, body))
    with pytest.raises(ModelFormatError, match="not a Caffe NetParameter"):
        translate("layer { name: 'x' bogus_field: 3 }}")
    with pytest.raises(ModelFormatError, match="does not exist"):
        translate("no/such/deploy.prototxt")
    with pytest.raises(ModelFormatError, match=r"not a binary Caffe NetParameter|holds no layers"):
        translate(LENET, b"\x0a\xff\xff")


def test_fork_fields_are_skipped_with_a_warning():
    """A fork's extra fields do not stop the translation; the warning names the first one."""
    body = 'layer { name: "relu" type: "ReLU" bottom: "data" top: "y" relu_param { fork_only_field: 3 } }'
    with pytest.warns(CaffeFormatWarning, match="fork_only_field"):
        _, predict = translate(_net(X4, body))
    assert [op.type for op in predict.op] == ["Relu"]


def test_accepts_paths_and_messages(tmp_path):
    rng = np.random.default_rng(16)
    weights = lenet_weights(rng)
    (tmp_path / "deploy.prototxt").write_text(LENET)
    (tmp_path / "w.caffemodel").write_bytes(_caffemodel(LENET, weights))
    a = translate(tmp_path / "deploy.prototxt", str(tmp_path / "w.caffemodel"))
    model = caffe_pb2.NetParameter.FromString(_caffemodel(LENET, weights))
    b = translate(text_format.Parse(LENET, caffe_pb2.NetParameter()), model)
    assert a[0] == b[0] and a[1].op == b[1].op
    # input_shapes overrides the prototxt's shape (here: another batch size).
    t = translate_model(LENET, model, input_shapes={"data": (5, 1, 28, 28)})
    assert t.input_shapes == {"data": (5, 1, 28, 28)}
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    got, _ = _run(t.init_net, t.predict_net, {"data": x})
    assert _rel_err(got["prob"], ref_forward(LENET, weights, {"data": x})["prob"]) <= TOL


def test_nets_without_input_shapes():
    """Without input shapes the layers that need none still translate (and run at any batch
    size); Softmax, which must know the rank, asks for them."""
    rng = np.random.default_rng(17)
    proto = 'input: "data"\n' + LENET.split("\n", 3)[3]
    weights = lenet_weights(rng)
    with pytest.raises(CaffeImportError, match=r"'prob'.*shape"):
        translate(proto, _caffemodel(proto, weights))
    proto = proto[: proto.index('layer { name: "prob"')]
    init, predict = translate(proto, _caffemodel(proto, weights))
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    got, _ = _run(init, predict, {"data": x})
    assert _rel_err(got["ip2"], ref_forward(proto, weights, {"data": x})["ip2"]) <= TOL


def test_reference_checks_itself():
    """The reference's conv agrees with a direct formula on one cell, so the comparisons above
    compare against Caffe's definition, not against a shared mistake."""
    rng = np.random.default_rng(18)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    p = caffe_pb2.ConvolutionParameter(num_output=3, kernel_size=[3], pad=[1], stride=[2])
    y = ref_conv(x, w, None, p)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert y.shape == (1, 3, 3, 3)
    assert np.isclose(y[0, 1, 2, 1], (xp[0, :, 4:7, 2:5] * w[1]).sum())
    # Deconvolution is the adjoint of convolution: <conv(x), y> == <x, deconv(y)>.
    dp = caffe_pb2.ConvolutionParameter(num_output=2, kernel_size=[3], pad=[1], stride=[2])
    yy = rng.standard_normal(y.shape)
    assert np.isclose((y * yy).sum(), (x * ref_deconv(yy, w, None, dp)).sum())


def test_schema_coexists_with_pycaffe():
    """pycaffe's caffe_pb2 registers "caffe.proto" (package caffe) in protobuf's default pool;
    kaffa's copy uses another file name and package, so both import into one process."""
    import subprocess
    import sys

    code = (
        "from google.protobuf import descriptor_pb2, descriptor_pool\n"
        "f = descriptor_pb2.FileDescriptorProto(name='caffe.proto', package='caffe')\n"
        "f.message_type.add(name='NetParameter').field.add(name='name', number=1, type=9, label=1)\n"
        "descriptor_pool.Default().Add(f)\n"
        "import kaffa.caffe\n"
        "from kaffa.proto import caffe_pb2\n"
        "print(caffe_pb2.NetParameter.DESCRIPTOR.full_name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "kaffa.caffe.NetParameter"


def test_single_assignment_translation_and_onnx(tmp_path):
    """in_place=False writes every value to its own blob (what ONNX needs); `kaffa convert --to
    onnx` uses it, and onnxruntime then agrees with the reference."""
    rng = np.random.default_rng(19)
    weights = lenet_weights(rng)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    init, predict = translate(LENET, _caffemodel(LENET, weights), in_place=False)
    written = [o for op in predict.op for o in op.output]
    assert len(written) == len(set(written)) and not any(set(op.input) & set(op.output) for op in predict.op)
    got, _ = _run(init, predict, {"data": x})
    ref = ref_forward(LENET, weights, {"data": x})["prob"]
    assert _rel_err(got["prob"], ref) <= TOL
    ort = pytest.importorskip("onnxruntime")
    from kaffa.cli import main

    (tmp_path / "deploy.prototxt").write_text(LENET)
    (tmp_path / "w.caffemodel").write_bytes(_caffemodel(LENET, weights))
    args = [str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "w.caffemodel")]
    assert main(["convert", *args, "--to", "onnx", str(tmp_path / "m.onnx")]) == 0
    (prob,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"data": x})
    assert _rel_err(prob, ref) <= TOL

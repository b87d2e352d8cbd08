"""References for DFT, STFT, the window generators, MelWeightMatrix and the gradient ops.

The transforms are written as explicit real matrices (cos/sin sums, no FFT), so they check the
FFT-based kernels independently; the gradients are the transposed matrices.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference


def _length(args, x):
    axis = args["axis"] % x.ndim
    n = x.shape[axis]
    length = args["dft_length"] or (2 * (n - 1) if args["inverse"] and args["onesided"] else n)
    return axis, length


def dft_matrix(n_in: int, c_in: int, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """M [n_out, c_out, n_in, c_in] with y[k, r] = sum_{n, c} M[k, r, n, c] x[n, c]."""
    if not inverse:
        n_out, c_out, used = (length // 2 + 1 if onesided else length), 2, min(n_in, length)
    elif onesided:
        n_out, c_out, used = length, 1, min(n_in, length // 2 + 1)
    else:
        n_out, c_out, used = length, 2, min(n_in, length)
    m = np.zeros((n_out, c_out, n_in, 2))
    for k in range(n_out):
        for n in range(used):
            theta = 2 * math.pi * ((k * n) % length) / length
            c, s = math.cos(theta), math.sin(theta)
            if not inverse:  # (a + ib)(cos - i sin)
                m[k, 0, n] = (c, s)
                m[k, 1, n] = (-s, c)
            elif not onesided:  # (a + ib)(cos + i sin) / L
                m[k, 0, n] = (c / length, -s / length)
                m[k, 1, n] = (s / length, c / length)
            else:
                # Hermitian half spectrum: bins 1 .. ceil(L/2)-1 stand for their mirror images too;
                # the imaginary parts of DC and (even L) Nyquist do not count.
                edge = n == 0 or 2 * n == length
                w = (1.0 if edge else 2.0) / length
                m[k, 0, n] = (w * c, 0.0 if edge else -w * s)
    return m[..., :c_in]


def _dft(args, x):
    axis, length = _length(args, x)
    m = dft_matrix(x.shape[axis], x.shape[-1], length, bool(args["inverse"]), bool(args["onesided"]))
    y = np.einsum("krnc,...nc->...kr", m, np.moveaxis(x, axis, -2))
    return np.moveaxis(y, -2, axis), m


@reference("DFT")
def dft(args, x):
    return (_dft(args, x)[0],)


@reference("DFTGradient")
def dft_gradient(args, dy, x):
    axis, length = _length(args, x)
    m = dft_matrix(x.shape[axis], x.shape[-1], length, bool(args["inverse"]), bool(args["onesided"]))
    g = np.einsum("krnc,...kr->...nc", m, np.moveaxis(dy, axis, -2))
    return (np.moveaxis(g, -2, axis),)


def _frames(args, signal, window):
    length = args["frame_length"] or (window.shape[0] if window is not None else signal.shape[1])
    step = args["frame_step"]
    count = 1 + (signal.shape[1] - length) // step
    frames = np.stack([signal[:, f * step : f * step + length] for f in range(count)], axis=1)
    w = np.ones(length) if window is None else window
    return frames, w, length, step


@reference("STFT")
def stft(args, signal, window=None):
    frames, w, length, _ = _frames(args, signal, window)
    m = dft_matrix(length, signal.shape[-1], length, False, bool(args["onesided"]))
    return (np.einsum("krnc,bfnc->bfkr", m, frames * w[:, None]),)


@reference("STFTGradient")
def stft_gradient(args, dy, signal, window=None):
    frames, w, length, step = _frames(args, signal, window)
    m = dft_matrix(length, signal.shape[-1], length, False, bool(args["onesided"]))
    d_frames = np.einsum("krnc,bfkr->bfnc", m, dy)
    d_signal = np.zeros(signal.shape)
    for f in range(frames.shape[1]):
        d_signal[:, f * step : f * step + length] += d_frames[:, f] * w[:, None]
    if window is None:
        return (d_signal,)
    return d_signal, np.einsum("bfnc,bfnc->n", d_frames, frames)


def _window(formula):
    def ref(args):
        size, periodic = args["size"], args["periodic"]
        denom = size if periodic else size - 1
        return (np.array([formula(2 * math.pi * n / denom if denom else 0.0) for n in range(size)]),)

    return ref


reference("HannWindow")(_window(lambda p: math.sin(p / 2) ** 2))
reference("HammingWindow")(_window(lambda p: 25 / 46 - 21 / 46 * math.cos(p)))
reference("BlackmanWindow")(_window(lambda p: 0.42 - 0.5 * math.cos(p) + 0.08 * math.cos(2 * p)))


@reference("MelWeightMatrix")
def mel_weight_matrix(args):
    bins, length, rate = args["num_mel_bins"], args["dft_length"], args["sample_rate"]
    mel = [2595 * math.log1p(args[k] / 700) / math.log(10) for k in ("lower_edge_hertz", "upper_edge_hertz")]
    step = (mel[1] - mel[0]) / (bins + 2)
    edges = [
        int((length + 1) * (700 * math.expm1((i * step + mel[0]) / 2595 * math.log(10))) // rate)
        for i in range(bins + 2)
    ]
    out = np.zeros((length // 2 + 1, bins))
    for i in range(bins):
        lo, mid, hi = edges[i : i + 3]
        for j in range(lo, mid + 1):
            out[j, i] = 1.0 if mid == lo else (j - lo) / (mid - lo)
        for j in range(mid, hi):
            out[j, i] = (hi - j) / (hi - mid)
    return (out,)

"""DFT, STFT, the window generators, MelWeightMatrix and the gradient ops.

Transforms run through numpy.fft in the work dtype (float32 for float16 and float32, as numpy's
single-precision FFT, which is what ONNX's reference computes too; float64 for float64) and are
cast back. The gradients apply the adjoint of the transform along the signal axis, in float64: its
real matrix is the transform of the identity (one fft of a small batch), contracted with dY.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.math import work_dtype
from kaffa.ops.signal import dft_geometry, stft_geometry
from kaffa.schema import check

table = KernelTable("cpu")


def dft_along(x: np.ndarray, axis: int, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """DFT of x ([..., n, ..., 1|2], float32 or float64) along ``axis``: [..., m, ..., 2|1], x's dtype."""
    z = x[..., 0] if x.shape[-1] == 1 else x[..., 0] + 1j * x[..., 1]
    if not inverse:
        y = np.fft.fft(z, n=length, axis=axis)
        if onesided:
            y = np.take(y, np.arange(length // 2 + 1), axis=axis)
    elif onesided:
        return np.fft.irfft(z, n=length, axis=axis)[..., None]
    else:
        y = np.fft.ifft(z, n=length, axis=axis)
    return np.stack([y.real, y.imag], axis=-1)


def dft_adjoint(
    dy: np.ndarray, n_in: int, c_in: int, axis: int, length: int, inverse: bool, onesided: bool
) -> np.ndarray:
    """The adjoint of ``dft_along`` (for an input with n_in samples of c_in components) applied to dy."""
    basis = np.eye(n_in * c_in).reshape(n_in * c_in, n_in, c_in)
    jac = dft_along(basis, 1, length, inverse, onesided)  # [n_in*c_in, n_out, c_out]
    g = np.tensordot(np.moveaxis(dy, axis, -2), jac, axes=([-2, -1], [1, 2]))
    return np.moveaxis(g.reshape(*g.shape[:-1], n_in, c_in), -2, axis)


@table.kernel("DFT", dtypes=FLOAT_TYPES)
def dft(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        axis, length = dft_geometry(args, x.shape)
        y = dft_along(x.astype(work_dtype(x.dtype)), axis, length, args["inverse"], args["onesided"])
        return (y.astype(x.dtype),)

    return run


@table.kernel("DFTGradient", dtypes=FLOAT_TYPES)
def dft_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
        axis, length = dft_geometry(args, x.shape, "DFTGradient")
        g = dft_adjoint(
            dy.astype(np.float64), x.shape[axis], x.shape[-1], axis, length, args["inverse"], args["onesided"]
        )
        return (g.astype(dy.dtype),)

    return run


def _frame_index(args, signal_shape, window_shape) -> tuple[np.ndarray, int]:
    length, frames = stft_geometry(args, signal_shape, window_shape)
    idx = np.arange(frames)[:, None] * args["frame_step"] + np.arange(length)[None, :]
    return idx, length


@table.kernel("STFT", dtypes=FLOAT_TYPES)
def stft(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(signal: np.ndarray, window: np.ndarray | None = None) -> tuple[np.ndarray]:
        idx, length = _frame_index(args, signal.shape, None if window is None else window.shape)
        wt = work_dtype(signal.dtype)
        frames = signal.astype(wt)[:, idx]  # [batch, frames, length, c]
        if window is not None:
            frames = frames * window.astype(wt)[:, None]
        y = dft_along(frames, 2, length, False, args["onesided"])
        return (y.astype(signal.dtype),)

    return run


@table.kernel("STFTGradient", dtypes=FLOAT_TYPES)
def stft_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(dy: np.ndarray, signal: np.ndarray, window: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        idx, length = _frame_index(args, signal.shape, None if window is None else window.shape)
        d_frames = dft_adjoint(
            dy.astype(np.float64), length, signal.shape[-1], 2, length, False, args["onesided"]
        )
        w = np.ones(length) if window is None else window.astype(np.float64)
        d_signal = np.zeros(signal.shape)
        np.add.at(d_signal, (slice(None), idx), d_frames * w[:, None])
        if window is None:
            return (d_signal.astype(dy.dtype),)
        d_window = np.einsum("bfnc,bfnc->n", d_frames, signal.astype(np.float64)[:, idx])
        return d_signal.astype(dy.dtype), d_window.astype(dy.dtype)

    return run


def window_values(op: str, size: int, periodic: bool) -> np.ndarray:
    """The window of ``op`` in float64 (ONNX's formulas; Hamming's alpha is 25/46)."""
    n = np.arange(size, dtype=np.float64)
    denom = size if periodic else size - 1
    phase = 2 * math.pi * n / denom if denom else np.zeros(size)
    if op == "HannWindow":
        return np.sin(phase / 2) ** 2
    if op == "HammingWindow":
        return 25 / 46 - (21 / 46) * np.cos(phase)
    return 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2 * phase)


@table.kernel("HannWindow", "HammingWindow", "BlackmanWindow", dtypes=FLOAT_TYPES)
def window(ctx: KernelContext) -> RunFn:
    values = window_values(ctx.op_type, ctx.args["size"], bool(ctx.args["periodic"]))
    dtype = ctx.args["dtype"]

    def run() -> tuple[np.ndarray]:
        return (values.astype(dtype),)

    return run


def mel_weight_matrix(bins: int, dft_length: int, rate: int, lower: float, upper: float) -> np.ndarray:
    """ONNX MelWeightMatrix in float64: [dft_length//2+1, bins] triangular filters."""
    # ONNX's arithmetic, step for step (the edges are rounded down, so the order of operations counts).
    mel_lo = 2595 * math.log1p(lower / 700) / math.log(10)
    mel_hi = 2595 * math.log1p(upper / 700) / math.log(10)
    points = np.arange(bins + 2) * ((mel_hi - mel_lo) / (bins + 2)) + mel_lo
    hertz = 700 * np.expm1(points / 2595 * math.log(10))
    edge = ((dft_length + 1) * hertz // rate).astype(np.int64)
    check(
        edge[-1] <= dft_length // 2,
        f"MelWeightMatrix: upper_edge_hertz {upper} maps to spectrogram bin {edge[-1]}, past the last "
        f"bin {dft_length // 2} of dft_length {dft_length} at sample_rate {rate}",
    )
    out = np.zeros((dft_length // 2 + 1, bins))
    for i in range(bins):
        lo, mid, hi = edge[i], edge[i + 1], edge[i + 2]
        if mid == lo:
            out[mid, i] = 1.0
        else:
            out[lo : mid + 1, i] = (np.arange(lo, mid + 1) - lo) / (mid - lo)
        if hi > mid:
            out[mid:hi, i] = (hi - np.arange(mid, hi)) / (hi - mid)
    return out


@table.kernel("MelWeightMatrix", dtypes=FLOAT_TYPES)
def mel(ctx: KernelContext) -> RunFn:
    a = ctx.args
    values = mel_weight_matrix(
        a["num_mel_bins"], a["dft_length"], a["sample_rate"], a["lower_edge_hertz"], a["upper_edge_hertz"]
    )
    dtype = a["dtype"]

    def run() -> tuple[np.ndarray]:
        return (values.astype(dtype),)

    return run

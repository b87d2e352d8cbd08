"""Signal processing: DFT, STFT, HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix
(schemas, shape inference, gradient makers).

Definitions follow ONNX (opset 17-20). Complex tensors are real tensors with a trailing dim of 2
(real, imaginary); a trailing dim of 1 is a real signal. What ONNX passes as scalar tensors (DFT's
axis and dft_length, STFT's frame_step and frame_length, a window's size, MelWeightMatrix's
parameters) are arguments here, so every output shape is known when the net is created.

DFT and STFT are linear in the signal (STFT also in the window): DFTGradient and STFTGradient apply
the adjoint of the same transform. The window generators and MelWeightMatrix take no inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import REQUIRED, Arg, ArgType, TensorInfo, check, define, same_dtype

F32 = np.dtype(np.float32)

_DFT_ARGS = [
    Arg("axis", ArgType.INT, -2, "the signal axis (any axis but the last, which holds real/imaginary)"),
    Arg("inverse", ArgType.BOOL, False, "inverse transform (scaled by 1/dft_length)"),
    Arg(
        "onesided",
        ArgType.BOOL,
        False,
        "forward: keep the dft_length//2+1 non-negative frequencies; inverse: the input is such a "
        "half spectrum of a real signal, and the output is real",
    ),
    Arg(
        "dft_length",
        ArgType.INT,
        0,
        "transform length: the signal is zero-padded or cut to it (0: the input's length along axis, "
        "2*(n-1) for an inverse one-sided transform)",
    ),
]


def dft_geometry(args: Mapping[str, Any], shape: tuple[int | None, ...], op: str = "DFT") -> tuple[int, int]:
    """(normalized axis, dft_length) of a DFT on an input of ``shape`` (the length may be None when
    the axis dim is unknown)."""
    rank = len(shape)
    check(rank >= 2, f"{op}: X must have rank >= 2 (signal dims then 1 or 2 components), got {list(shape)}")
    check(
        shape[-1] in (None, 1, 2),
        f"{op}: the last dim of X must be 1 (real) or 2 (complex), got {list(shape)}",
    )
    axis = args["axis"]
    check(-rank <= axis < rank, f"{op}: axis {axis} is out of range for X {list(shape)}")
    axis %= rank
    check(axis != rank - 1, f"{op}: axis {args['axis']} is the component dim of X {list(shape)}")
    n = shape[axis]
    length = args["dft_length"]
    check(length >= 0, f"{op}: dft_length must be >= 0, got {length}")
    if not length and n is not None:
        length = 2 * (n - 1) if args["inverse"] and args["onesided"] else n
    return axis, length or None


def dft_out_shape(args: Mapping[str, Any], shape: tuple[int | None, ...], op: str = "DFT") -> tuple:
    axis, length = dft_geometry(args, shape, op)
    check(length is None or length >= 1, f"{op}: the transform length of X {list(shape)} is 0")
    n_out = length
    if length is not None and args["onesided"] and not args["inverse"]:
        n_out = length // 2 + 1
    out = list(shape)
    out[axis] = n_out
    out[-1] = 1 if args["inverse"] and args["onesided"] else 2
    return tuple(out)


def _infer_dft(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is None:
        return [TensorInfo(None, x.dtype)]
    return [TensorInfo(dft_out_shape(args, x.shape), x.dtype)]


define(
    "DFT",
    family="signal",
    doc="The discrete Fourier transform of X along `axis` (ONNX DFT): X is [..., n, ..., 1] (real) "
    "or [..., n, ..., 2] (complex); Y is complex [..., m, ..., 2], or real [..., m, ..., 1] for an "
    "inverse one-sided transform. Forward: Y_k = sum_n x_n e^(-2 pi i k n / L); inverse: "
    "y_m = (1/L) sum_k x_k e^(2 pi i k m / L), with L = dft_length.",
    inputs=1,
    input_docs=[("X", "signal, last dim 1 (real) or 2 (complex)")],
    output_docs=[("Y", "spectrum (or signal, for inverse), X's dtype")],
    args=_DFT_ARGS,
    infer=_infer_dft,
)


def _infer_dft_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dy, x = ins
    dtype = same_dtype("DFTGradient", ins)
    if x.shape is not None and dy.shape is not None and None not in x.shape:
        want = dft_out_shape(args, x.shape, "DFTGradient")
        check(
            tuple(dy.shape) == want,
            f"DFTGradient: dY {list(dy.shape)} is not the shape of DFT(X {list(x.shape)}) {list(want)}",
        )
    return [TensorInfo(x.shape, dtype)]


define(
    "DFTGradient",
    family="signal",
    doc="dX = the adjoint of DFT (with the same arguments) applied to dY.",
    inputs=2,
    input_docs=[("dY", "gradient of Y"), ("X", "forward input (its shape)")],
    output_docs=[("dX", "gradient of X")],
    args=_DFT_ARGS,
    infer=_infer_dft_gradient,
    gradient_op=True,
    differentiable=False,
)


@gradient("DFT")
def _dft_grad(g: GradientContext) -> GradientOps:
    return g.single("DFTGradient", [g.GO(0), g.I(0)], [g.GI(0)], **g.forward_args())


# -- STFT ---------------------------------------------------------------------------------------------
_STFT_ARGS = [
    Arg("frame_step", ArgType.INT, REQUIRED, "hop between frame starts"),
    Arg("frame_length", ArgType.INT, 0, "frame (and transform) length; 0: the window's length"),
    Arg("onesided", ArgType.BOOL, True, "keep the frame_length//2+1 non-negative frequencies"),
]


def stft_geometry(
    args: Mapping[str, Any], signal: tuple[int | None, ...], window: tuple[int | None, ...] | None
) -> tuple[int | None, int | None]:
    """(frame_length, number of frames) of an STFT; None where a dim is unknown."""
    check(
        len(signal) == 3 and signal[2] in (None, 1, 2),
        f"STFT: signal must be [batch, length, 1 or 2], got {list(signal)}",
    )
    check(args["frame_step"] >= 1, f"STFT: frame_step must be >= 1, got {args['frame_step']}")
    length = args["frame_length"]
    check(length >= 0, f"STFT: frame_length must be >= 0, got {length}")
    if window is not None:
        check(len(window) == 1, f"STFT: window must be 1-D, got {list(window)}")
        if length and window[0] is not None:
            check(window[0] == length, f"STFT: window {list(window)} does not have frame_length {length}")
        length = length or window[0]
    elif not length:
        length = signal[1]
    if length is None or signal[1] is None:
        return length, None
    check(
        1 <= length <= signal[1],
        f"STFT: frame_length {length} does not fit in signal {list(signal)}",
    )
    return length, 1 + (signal[1] - length) // args["frame_step"]


def stft_out_shape(args: Mapping[str, Any], signal: tuple, window: tuple | None) -> tuple:
    length, frames = stft_geometry(args, signal, window)
    bins = length if length is None or not args["onesided"] else length // 2 + 1
    return (signal[0], frames, bins, 2)


def _infer_stft(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("STFT", ins)
    sig = ins[0].shape
    win = ins[1].shape if len(ins) > 1 else None
    if sig is None or (len(ins) > 1 and win is None):
        return [TensorInfo(None, dtype)]
    return [TensorInfo(stft_out_shape(args, sig, win), dtype)]


define(
    "STFT",
    family="signal",
    doc="The short-time Fourier transform (ONNX STFT): frames of frame_length samples every frame_step "
    "samples of the signal [batch, length, 1|2], each multiplied by the window (default: ones), "
    "DFT'd. Y is [batch, frames, bins, 2], frames = 1 + (length - frame_length) // frame_step, "
    "bins = frame_length//2+1 (onesided) or frame_length.",
    inputs=(1, 2),
    input_docs=[("signal", "[batch, length, 1 or 2]"), ("window", "optional [frame_length] weights")],
    output_docs=[("Y", "[batch, frames, bins, 2], the signal's dtype")],
    args=_STFT_ARGS,
    infer=_infer_stft,
)


def _infer_stft_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("STFTGradient", ins)
    return [TensorInfo(i.shape, dtype) for i in ins[1 : 1 + n]]


define(
    "STFTGradient",
    family="signal",
    doc="Gradients of STFT: the adjoint DFT of dY per frame, overlap-added into dSignal (times the "
    "window) and summed against the frames into dWindow.",
    inputs=(2, 3),
    outputs=(1, 2),
    input_docs=[("dY", "gradient of Y"), ("signal", "forward input"), ("window", "forward window")],
    output_docs=[("dSignal", "gradient of the signal"), ("dWindow", "gradient of the window")],
    args=_STFT_ARGS,
    infer=_infer_stft_gradient,
    gradient_op=True,
    differentiable=False,
)


@gradient("STFT")
def _stft_grad(g: GradientContext) -> GradientOps:
    ins = [g.GO(0), *(g.I(i) for i in range(g.num_inputs))]
    outs = [g.GI(i) for i in range(g.num_inputs)]
    return g.single("STFTGradient", ins, outs, **g.forward_args())


# -- generators -----------------------------------------------------------------------------------------
def _infer_window(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    check(args["size"] >= 0, f"window: size must be >= 0, got {args['size']}")
    return [TensorInfo((args["size"],), args["dtype"])]


for _name, _formula in (
    ("HannWindow", "sin^2(pi n / N)"),
    ("HammingWindow", "25/46 - 21/46 cos(2 pi n / N)"),
    ("BlackmanWindow", "0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)"),
):
    define(
        _name,
        family="signal",
        doc=f"The window w_n = {_formula}, n = 0 .. size-1, with N = size (periodic=1) or size-1 "
        "(periodic=0, symmetric).",
        inputs=0,
        output_docs=[("Y", "[size], `dtype`")],
        args=[
            Arg("size", ArgType.INT, REQUIRED, "window length"),
            Arg("periodic", ArgType.BOOL, True, "periodic (N = size) or symmetric (N = size-1)"),
            Arg("dtype", ArgType.DTYPE, F32, "output dtype"),
        ],
        infer=_infer_window,
        type_input=None,
        differentiable=False,
    )


def _infer_mel(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    check(
        args["num_mel_bins"] >= 1, f"MelWeightMatrix: num_mel_bins must be >= 1, got {args['num_mel_bins']}"
    )
    check(args["dft_length"] >= 1, f"MelWeightMatrix: dft_length must be >= 1, got {args['dft_length']}")
    check(args["sample_rate"] >= 1, f"MelWeightMatrix: sample_rate must be >= 1, got {args['sample_rate']}")
    check(
        0 <= args["lower_edge_hertz"] <= args["upper_edge_hertz"],
        f"MelWeightMatrix: need 0 <= lower_edge_hertz <= upper_edge_hertz, got "
        f"{args['lower_edge_hertz']} and {args['upper_edge_hertz']}",
    )
    return [TensorInfo((args["dft_length"] // 2 + 1, args["num_mel_bins"]), args["dtype"])]


define(
    "MelWeightMatrix",
    family="signal",
    doc="The [dft_length//2+1, num_mel_bins] matrix that maps a one-sided magnitude spectrum to mel "
    "bands (ONNX MelWeightMatrix): triangular filters between num_mel_bins+2 points spaced evenly on "
    "the mel scale (2595 log10(1 + f/700)) from lower_edge_hertz to upper_edge_hertz, each point "
    "rounded down to a spectrogram bin (dft_length+1) * f // sample_rate.",
    inputs=0,
    output_docs=[("Y", "[dft_length//2+1, num_mel_bins], `dtype`")],
    args=[
        Arg("num_mel_bins", ArgType.INT, REQUIRED),
        Arg("dft_length", ArgType.INT, REQUIRED),
        Arg("sample_rate", ArgType.INT, REQUIRED),
        Arg("lower_edge_hertz", ArgType.FLOAT, REQUIRED),
        Arg("upper_edge_hertz", ArgType.FLOAT, REQUIRED),
        Arg("dtype", ArgType.DTYPE, F32, "output dtype"),
    ],
    infer=_infer_mel,
    type_input=None,
    differentiable=False,
)

"""ONNX translators onto the signal family (see kaffa.ops.signal): DFT, STFT, HannWindow,
HammingWindow, BlackmanWindow, MelWeightMatrix.

The scalar tensors ONNX passes (DFT's dft_length and axis, STFT's frame_step and frame_length, a
window's size, MelWeightMatrix's parameters) become arguments, so they must be constants; where
they are graph inputs, ``kaffa.onnx.backend`` specializes the model on their fed values.
"""

from __future__ import annotations

import numpy as np

from kaffa.onnx.importer import Context, Node, translator, unsupported


def _scalar(ctx: Context, node: Node, i: int, what: str) -> np.ndarray | None:
    """Input ``i`` as a one-element constant, or None when it is omitted."""
    name = node.input(i)
    if not name:
        return None
    value = np.asarray(ctx.need_const(name, what))
    if value.size != 1:
        raise unsupported(f"{what} must hold one value, got shape {list(value.shape)}")
    return value.reshape(())


def _out_dtype(node: Node) -> np.dtype:
    from onnx import helper

    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attr("output_datatype", 1))))
    if dtype.kind != "f" or dtype.itemsize < 2:
        raise unsupported(f"output_datatype {dtype} (kaffa makes float16/32/64 windows and matrices)")
    return dtype


@translator("DFT")
def _dft(ctx: Context, node: Node) -> None:
    length = _scalar(ctx, node, 1, "dft_length")
    if ctx.opset >= 20:
        axis_v = _scalar(ctx, node, 2, "axis")
        axis = -2 if axis_v is None else int(axis_v)
    else:
        axis = int(node.attr("axis", 1))
    ctx.op(
        "DFT",
        node.inputs[:1],
        node.outputs[:1],
        axis=axis,
        inverse=int(node.attr("inverse", 0)),
        onesided=int(node.attr("onesided", 0)),
        dft_length=0 if length is None else int(length),
    )


@translator("STFT")
def _stft(ctx: Context, node: Node) -> None:
    step = _scalar(ctx, node, 1, "frame_step")
    length = _scalar(ctx, node, 3, "frame_length")
    ins = [node.inputs[0]] + ([node.input(2)] if node.input(2) else [])
    ctx.op(
        "STFT",
        ins,
        node.outputs[:1],
        frame_step=int(step),
        frame_length=0 if length is None else int(length),
        onesided=int(node.attr("onesided", 1)),
    )


@translator("HannWindow", "HammingWindow", "BlackmanWindow")
def _window(ctx: Context, node: Node) -> None:
    size = int(_scalar(ctx, node, 0, "size"))
    ctx.op(
        node.op_type,
        [],
        node.outputs[:1],
        size=size,
        periodic=int(node.attr("periodic", 1)),
        dtype=_out_dtype(node),
    )


@translator("MelWeightMatrix")
def _mel(ctx: Context, node: Node) -> None:
    names = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")
    v = {name: _scalar(ctx, node, i, name) for i, name in enumerate(names)}
    ctx.op(
        "MelWeightMatrix",
        [],
        node.outputs[:1],
        num_mel_bins=int(v["num_mel_bins"]),
        dft_length=int(v["dft_length"]),
        sample_rate=int(v["sample_rate"]),
        lower_edge_hertz=float(v["lower_edge_hertz"]),
        upper_edge_hertz=float(v["upper_edge_hertz"]),
        dtype=_out_dtype(node),
    )

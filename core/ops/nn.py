"""Layers: FC, Conv, MaxPool, AveragePool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaffa.ops.geometry import WINDOW_ARGS, Window, canonicalize_window
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, prod, same_dtype

# -- FC --------------------------------------------------------------------------------------------


def _infer_fc(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, w = ins[0], ins[1]
    dtype = same_dtype("FC", ins)
    if x.shape is None or w.shape is None:
        return [TensorInfo(None, dtype)]
    axis = norm_axis(args["axis"], len(x.shape), "FC")
    axis_w = norm_axis(args["axis_w"], len(w.shape), "FC", "axis_w")
    k_x, n_w, k_w = prod(x.shape[axis:]), prod(w.shape[:axis_w]), prod(w.shape[axis_w:])
    check(
        k_x is None or k_w is None or k_x == k_w,
        f"FC: X flattened at axis {axis} has {k_x} columns but W flattened at axis_w {axis_w} has {k_w}",
    )
    if len(ins) > 2 and ins[2].shape is not None:
        check(
            n_w is None or prod(ins[2].shape) in (None, n_w),
            f"FC: bias has {prod(ins[2].shape)} elements, W has {n_w} rows",
        )
    return [TensorInfo((*x.shape[:axis], n_w), dtype)]


define(
    "FC",
    family="nn",
    doc="Fully connected: Y = X · Wᵀ + b, with X flattened to 2-D at `axis` and W at `axis_w`.",
    inputs=(2, 3),
    input_docs=[
        ("X", "input, flattened to [M, K] at axis"),
        ("W", "weights [N, K]"),
        ("b", "bias [N] (optional)"),
    ],
    output_docs=[("Y", "output [M..., N]")],
    args=[
        Arg("axis", ArgType.INT, 1, "flatten X into [prod(dims[:axis]), prod(dims[axis:])]"),
        Arg("axis_w", ArgType.INT, 1, "flatten W likewise"),
    ],
    infer=_infer_fc,
)

# -- Conv ------------------------------------------------------------------------------------------


def _spatial(x: TensorInfo, order: str) -> tuple[int | None, ...]:
    assert x.shape is not None
    return tuple(x.shape[2:]) if order == "NCHW" else tuple(x.shape[1:-1])


def _channels(x: TensorInfo, order: str) -> int | None:
    assert x.shape is not None
    return x.shape[1] if order == "NCHW" else x.shape[-1]


def _out_spatial(win: Window, sizes: tuple[int | None, ...]) -> tuple[int | None, ...]:
    if any(s is None for s in sizes):
        return tuple(None for _ in sizes)
    return win.resolve([int(s) for s in sizes])[0]


def _layout(
    order: str, n: int | None, c: int | None, spatial: tuple[int | None, ...]
) -> tuple[int | None, ...]:
    return (n, c, *spatial) if order == "NCHW" else (n, *spatial, c)


def _infer_conv(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, w = ins[0], ins[1]
    dtype = same_dtype("Conv", ins)
    order, group = args["order"], args["group"]
    check(group >= 1, f"Conv: group must be >= 1, got {group}")
    if x.shape is None or w.shape is None:
        return [TensorInfo(None, dtype)]
    check(
        len(x.shape) >= 3,
        f"Conv: X must have a batch, a channel and at least one spatial axis, got rank {len(x.shape)}",
    )
    check(
        len(w.shape) == len(x.shape),
        f"Conv: filter rank {len(w.shape)} differs from input rank {len(x.shape)}",
    )
    nsp = len(x.shape) - 2
    m = w.shape[0]
    kern = tuple(w.shape[2:]) if order == "NCHW" else tuple(w.shape[1:-1])
    w_c = w.shape[1] if order == "NCHW" else w.shape[-1]
    c = _channels(x, order)
    check(c is None or c % group == 0, f"Conv: {c} input channels do not divide into {group} groups")
    check(m is None or m % group == 0, f"Conv: {m} output channels do not divide into {group} groups")
    check(
        c is None or w_c is None or w_c * group == c,
        f"Conv: filter expects {w_c} channels per group x {group} groups but X has {c} channels",
    )
    if args.get("kernels"):
        win = Window.from_args(args, nsp)
        check(
            any(k is None for k in kern) or tuple(win.kernels) == kern,
            f"Conv: kernel argument {list(win.kernels)} does not match filter spatial shape {list(kern)}",
        )
    else:
        check(all(k is not None for k in kern), "Conv: kernel size unknown")
        win = Window.from_args(args, nsp, kernels=[int(k) for k in kern])  # type: ignore[misc]
    if len(ins) > 2 and ins[2].shape is not None:
        check(
            m is None or prod(ins[2].shape) in (None, m),
            f"Conv: bias has shape {list(ins[2].shape)} for {m} output channels",
        )
    return [TensorInfo(_layout(order, x.shape[0], m, _out_spatial(win, _spatial(x, order))), dtype)]


define(
    "Conv",
    family="nn",
    doc="N-d convolution (cross-correlation) with stride, padding, dilation and groups. "
    "NCHW: X [N, C, *S], filter [M, C/group, *K]; NHWC: X [N, *S, C], filter [M, *K, C/group]. "
    "Without a kernel argument the filter's spatial shape is used.",
    inputs=(2, 3),
    input_docs=[("X", "input"), ("filter", "weights"), ("bias", "[M] (optional)")],
    output_docs=[("Y", "output")],
    args=[*WINDOW_ARGS, Arg("group", ArgType.INT, 1, "number of channel groups")],
    canonicalize=canonicalize_window,
    infer=_infer_conv,
)

# -- pooling ---------------------------------------------------------------------------------------


def _pool_window(args: Mapping[str, Any], x: TensorInfo) -> tuple[Window, tuple[int | None, ...]]:
    order = args["order"]
    assert x.shape is not None
    sizes = _spatial(x, order)
    if args["global_pooling"]:
        check(all(s is not None for s in sizes), "global pooling needs known spatial sizes")
        win = Window.from_args(
            {**args, "pads": [0], "strides": [1], "dilations": [1], "legacy_pad": 0},
            len(sizes),
            kernels=[int(s) for s in sizes],
        )  # type: ignore[misc]
    else:
        win = Window.from_args(args, len(sizes))
    return win, sizes


def _infer_pool(name: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        if x.shape is None:
            return [x]
        check(
            len(x.shape) >= 3,
            f"{name}: X must have a batch, a channel and a spatial axis, got rank {len(x.shape)}",
        )
        if not args["global_pooling"]:
            check(
                bool(args.get("kernels")),
                f"{name}: no kernel size given (kernel, kernel_h/kernel_w or kernels)",
            )
        win, sizes = _pool_window(args, x)
        return [
            TensorInfo(
                _layout(args["order"], x.shape[0], _channels(x, args["order"]), _out_spatial(win, sizes)),
                x.dtype,
            )
        ]

    return infer


POOL_ARGS = [*WINDOW_ARGS, Arg("global_pooling", ArgType.BOOL, False, "pool over the whole spatial extent")]

define(
    "MaxPool",
    family="nn",
    doc="Max over sliding windows. Padding never wins (it counts as -inf).",
    inputs=1,
    input_docs=[("X", "input (NCHW or NHWC)")],
    output_docs=[("Y", "output")],
    args=POOL_ARGS,
    canonicalize=canonicalize_window,
    infer=_infer_pool("MaxPool"),
)

define(
    "AveragePool",
    family="nn",
    doc="Mean over sliding windows. By default padded cells are not counted; with count_include_pad "
    "the declared padding is counted (but not Caffe ceil-mode overhang).",
    inputs=1,
    input_docs=[("X", "input (NCHW or NHWC)")],
    output_docs=[("Y", "output")],
    args=[*POOL_ARGS, Arg("count_include_pad", ArgType.BOOL, False, "count padded cells in the divisor")],
    canonicalize=canonicalize_window,
    infer=_infer_pool("AveragePool"),
)

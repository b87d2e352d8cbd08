"""Shape and layout: Concat, Split, Reshape, Transpose, Flatten, Copy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, prod, same_as_input, same_dtype

INT32 = np.dtype(np.int32)
INT64 = np.dtype(np.int64)


def _canon_axis(args: dict[str, Any]) -> dict[str, Any]:
    """Caffe2: without an explicit axis, `order` picks the channel axis (NCHW: 1, NHWC: 3)."""
    check(args["order"] in ("NCHW", "NHWC"), f"order must be NCHW or NHWC, got {args['order']!r}")
    if args["axis"] is None:
        args = {**args, "axis": 3 if args["order"] == "NHWC" else 1}
    return args


_AXIS_ARGS = [
    Arg("axis", ArgType.INT, None, "the axis (default: the channel axis of `order`)"),
    Arg("order", ArgType.STRING, "NCHW", "layout that picks the default axis"),
    Arg("add_axis", ArgType.BOOL, False, "stack along a new axis instead of joining an existing one"),
]


def _infer_concat(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("Concat", ins)
    split_info = TensorInfo((len(ins),), INT32)
    shapes = [i.shape for i in ins]
    listed = ", ".join(str(list(s)) for s in shapes if s is not None)
    if any(s is None for s in shapes):
        return [TensorInfo(None, dtype), split_info]
    rank = len(shapes[0])
    for s in shapes[1:]:
        check(len(s) == rank, f"Concat: inputs have different ranks: {listed}")
    if args["add_axis"]:
        axis = norm_axis(args["axis"], rank + 1, "Concat")
        for s in shapes[1:]:
            check(
                all(a is None or b is None or a == b for a, b in zip(s, shapes[0])),
                f"Concat: with add_axis all inputs need one shape, got {listed}",
            )
        out = (*shapes[0][:axis], len(ins), *shapes[0][axis:])
        return [TensorInfo(out, dtype), split_info]
    axis = norm_axis(args["axis"], rank, "Concat")
    for s in shapes[1:]:
        for d in range(rank):
            check(
                d == axis or s[d] is None or shapes[0][d] is None or s[d] == shapes[0][d],
                f"Concat: inputs differ off the concat axis {axis}: {listed}",
            )
    sizes = [s[axis] for s in shapes]
    total = None if None in sizes else sum(sizes)
    return [TensorInfo((*shapes[0][:axis], total, *shapes[0][axis + 1 :]), dtype), split_info]


define(
    "Concat",
    family="tensor",
    doc="Join inputs along `axis` (or stack them on a new axis with add_axis=1). The optional second "
    "output, split_info, holds each input's size along the axis (int32), for Split.",
    inputs=(1, float("inf")),
    outputs=(1, 2),
    input_docs=[("X0..Xn", "inputs")],
    output_docs=[("concat_result", "joined tensor"), ("split_info", "int32 sizes along axis (optional)")],
    args=_AXIS_ARGS,
    canonicalize=_canon_axis,
    infer=_infer_concat,
    dtypes=dtypes.ALL_TYPES,
)


def _infer_split(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if len(ins) > 1:
        check(not args["split"], "Split: give sizes either as the `split` argument or as input 1, not both")
    if x.shape is None:
        return [TensorInfo(None, x.dtype)] * n
    rank = len(x.shape)
    axis = norm_axis(args["axis"], rank, "Split")
    dim = x.shape[axis]
    rest_before, rest_after = x.shape[:axis], x.shape[axis + 1 :]
    if args["add_axis"]:
        check(dim is None or dim == n, f"Split: with add_axis, axis {axis} has {dim} entries for {n} outputs")
        return [TensorInfo((*rest_before, *rest_after), x.dtype)] * n
    if len(ins) > 1:
        sizes: list[int | None] = [None] * n
    elif args["split"]:
        sizes = list(args["split"])
        check(len(sizes) == n, f"Split: `split` has {len(sizes)} sizes for {n} outputs")
        check(all(s >= 0 for s in sizes), f"Split: sizes must be non-negative, got {sizes}")
        check(
            dim is None or sum(sizes) == dim,
            f"Split: sizes {sizes} sum to {sum(sizes)}, axis {axis} has {dim}",
        )
    else:
        check(
            dim is None or dim % n == 0,
            f"Split: axis {axis} of size {dim} does not split into {n} equal parts",
        )
        sizes = [None if dim is None else dim // n] * n
    return [TensorInfo((*rest_before, s, *rest_after), x.dtype) for s in sizes]


define(
    "Split",
    family="tensor",
    doc="Split along `axis` into len(outputs) parts: equal parts, or sizes from the `split` argument "
    "or from input 1. With add_axis=1 the axis is removed (the inverse of Concat's add_axis).",
    inputs=(1, 2),
    outputs=(1, float("inf")),
    input_docs=[("input", "tensor to split"), ("split", "sizes along axis (optional, int)")],
    output_docs=[("output_0..n", "parts")],
    args=[*_AXIS_ARGS, Arg("split", ArgType.INTS, [], "sizes of the parts along axis")],
    canonicalize=_canon_axis,
    infer=_infer_split,
    dtypes=dtypes.ALL_TYPES,
)


def reshape_target(op: str, in_shape: tuple[int | None, ...], spec: list[int]) -> tuple[int | None, ...]:
    """Caffe2/ONNX reshape rule: 0 copies the input dim at that position, one -1 is inferred."""
    check(sum(1 for s in spec if s == -1) <= 1, f"{op}: shape {spec} has more than one -1")
    check(all(s >= -1 for s in spec), f"{op}: shape {spec} has a negative size other than -1")
    out: list[int | None] = []
    for i, s in enumerate(spec):
        if s == 0:
            check(
                i < len(in_shape),
                f"{op}: shape {spec} copies dim {i} (0) but the input has rank {len(in_shape)}",
            )
            out.append(in_shape[i])
        else:
            out.append(s)
    total = prod(in_shape)
    if -1 in out:
        known = prod([d for d in out if d != -1])
        if total is None or known is None:
            return tuple(None if d == -1 else d for d in out)
        check(
            known != 0 and total % known == 0,
            f"{op}: cannot reshape {list(in_shape)} ({total} elements) into {spec}",
        )
        out[out.index(-1)] = total // known
    else:
        size = prod(out)
        check(
            total is None or size is None or size == total,
            f"{op}: cannot reshape {list(in_shape)} ({total} elements) into {spec} ({size} elements)",
        )
    return tuple(out)


def _infer_reshape(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    old = TensorInfo(None if x.shape is None else (len(x.shape),), INT64)
    if len(ins) > 1:
        check(
            not args["shape"],
            "Reshape: give the new shape either as the `shape` argument or as input 1, not both",
        )
        rank = ins[1].shape[0] if ins[1].shape and len(ins[1].shape) == 1 else None
        return [TensorInfo(None if rank is None else (None,) * rank, x.dtype), old]
    check(args["shape"] is not None, "Reshape: no new shape (give the `shape` argument or input 1)")
    if x.shape is None:
        return [TensorInfo((None,) * len(args["shape"]), x.dtype), old]
    return [TensorInfo(reshape_target("Reshape", x.shape, list(args["shape"])), x.dtype), old]


define(
    "Reshape",
    family="tensor",
    doc="Reshape to `shape` (or to the int64 shape in input 1). 0 keeps the input's dim, -1 is "
    "inferred. The optional second output holds the old shape (int64), for the gradient.",
    inputs=(1, 2),
    outputs=(1, 2),
    input_docs=[("data", "tensor"), ("new_shape", "target shape (optional, int)")],
    output_docs=[("reshaped", "tensor"), ("old_shape", "int64 shape of data (optional)")],
    args=[Arg("shape", ArgType.INTS, None, "target shape")],
    inplace={(0, 0)},
    infer=_infer_reshape,
    dtypes=dtypes.ALL_TYPES,
)


def _canon_transpose(args: dict[str, Any]) -> dict[str, Any]:
    axes = args["axes"]
    if axes:
        check(sorted(axes) == list(range(len(axes))), f"Transpose: axes {axes} is not a permutation")
    return args


def _infer_transpose(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is None:
        return [x]
    axes = args["axes"] or list(reversed(range(len(x.shape))))
    check(
        len(axes) == len(x.shape),
        f"Transpose: axes {axes} has {len(axes)} entries for a rank-{len(x.shape)} input",
    )
    return [TensorInfo(tuple(x.shape[a] for a in axes), x.dtype)]


define(
    "Transpose",
    family="tensor",
    doc="Permute axes (default: reverse them).",
    inputs=1,
    input_docs=[("data", "tensor")],
    output_docs=[("transposed", "tensor")],
    args=[Arg("axes", ArgType.INTS, [], "the permutation")],
    canonicalize=_canon_transpose,
    infer=_infer_transpose,
    dtypes=dtypes.ALL_TYPES,
)


def _infer_flatten(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is None:
        return [TensorInfo((None, None), x.dtype)]
    rank = len(x.shape)
    axis = args["axis"]
    check(0 <= axis <= rank, f"Flatten: axis {axis} is out of range for a rank-{rank} input")
    return [TensorInfo((prod(x.shape[:axis]), prod(x.shape[axis:])), x.dtype)]


define(
    "Flatten",
    family="tensor",
    doc="Flatten to 2-D: [prod(dims[:axis]), prod(dims[axis:])].",
    inputs=1,
    input_docs=[("input", "tensor")],
    output_docs=[("output", "2-D tensor")],
    args=[Arg("axis", ArgType.INT, 1)],
    inplace={(0, 0)},
    infer=_infer_flatten,
    dtypes=dtypes.ALL_TYPES,
)

define(
    "Copy",
    family="tensor",
    doc="Copy the input (on the op's device).",
    inputs=1,
    input_docs=[("input", "tensor")],
    output_docs=[("output", "same tensor")],
    inplace="one_to_one",
    infer=same_as_input(0),
    dtypes=dtypes.ALL_TYPES,
)

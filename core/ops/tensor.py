"""Shape and layout: Concat, Split, Reshape, Transpose, Flatten, Copy, Squeeze, ExpandDims, Slice,
Gather, SparseToDense, Tile, Shape, ResizeLike, ZerosLike, and the gradients of the differentiable
ones (SliceGradient, TileGradient are the only ops that exist just for gradients).

The gradients never read a forward input's *values*, only (for Flatten, Slice and one-output
Concat/Reshape) its shape; a forward op that overwrote that input in place refuses to differentiate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import (
    REQUIRED,
    Arg,
    ArgType,
    TensorInfo,
    check,
    define,
    norm_axis,
    prod,
    same_as_input,
    same_dtype,
)

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
    grad_outputs=(0,),
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
    grad_outputs=(0,),
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
    dtypes=(*dtypes.ALL_NUMERIC_TYPES, dtypes.BOOL),  # int8 ... uint64 too
)


# -- Squeeze / ExpandDims ----------------------------------------------------------------------------
def _canon_dims(op: str):
    def canon(args: dict[str, Any]) -> dict[str, Any]:
        dims = sorted(set(args["dims"]))  # Caffe2 sorts and de-duplicates
        check(bool(dims), f"{op}: `dims` must list at least one dim")
        check(dims[0] >= 0, f"{op}: dims must be non-negative, got {args['dims']}")
        return {**args, "dims": dims}

    return canon


def squeeze_shape(op: str, shape: tuple[int | None, ...], dims: list[int]) -> tuple[int | None, ...]:
    """Drop `dims` (sorted, each of size 1) from shape."""
    check(
        dims[-1] < len(shape),
        f"{op}: dims {dims} are out of range for input shape {list(shape)} (rank {len(shape)})",
    )
    for d in dims:
        check(
            shape[d] in (1, None),
            f"{op}: dim {d} of input shape {list(shape)} has size {shape[d]}, not 1",
        )
    return tuple(s for i, s in enumerate(shape) if i not in dims)


def expand_shape(op: str, shape: tuple[int | None, ...], dims: list[int]) -> tuple[int | None, ...]:
    """Insert a size-1 dim at each of `dims` (sorted; positions in the output)."""
    rank = len(shape) + len(dims)
    check(
        dims[-1] < rank,
        f"{op}: dims {dims} are out of range for a rank-{rank} output (input shape {list(shape)})",
    )
    out = list(shape)
    for d in dims:
        out.insert(d, 1)
    return tuple(out)


def _infer_dims(op: str, fn):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        if x.shape is None:
            return [TensorInfo(None, x.dtype)]
        return [TensorInfo(fn(op, x.shape, args["dims"]), x.dtype)]

    return infer


define(
    "Squeeze",
    family="tensor",
    doc="Remove the size-1 dims listed in `dims`.",
    inputs=1,
    input_docs=[("data", "tensor")],
    output_docs=[("squeezed", "tensor without those dims")],
    args=[Arg("dims", ArgType.INTS, REQUIRED, "dims to remove (each of size 1)")],
    inplace={(0, 0)},
    canonicalize=_canon_dims("Squeeze"),
    infer=_infer_dims("Squeeze", squeeze_shape),
    dtypes=dtypes.ALL_TYPES,
)

define(
    "ExpandDims",
    family="tensor",
    doc="Insert size-1 dims at the positions `dims` of the output.",
    inputs=1,
    input_docs=[("data", "tensor")],
    output_docs=[("expanded", "tensor with the new dims")],
    args=[Arg("dims", ArgType.INTS, REQUIRED, "positions of the new dims in the output")],
    inplace={(0, 0)},
    canonicalize=_canon_dims("ExpandDims"),
    infer=_infer_dims("ExpandDims", expand_shape),
    dtypes=dtypes.ALL_TYPES,
)


# -- Slice -----------------------------------------------------------------------------------------
def slice_bounds(
    op: str, shape: tuple[int | None, ...], starts: list[int], ends: list[int]
) -> list[tuple[int, int] | None]:
    """Caffe2's rule: dims past len(starts) are kept whole; a negative index i means dim + 1 + i
    (so end -1 is the end); indices past the end are clamped. None for a dim of unknown size."""
    check(
        len(starts) == len(ends),
        f"{op}: starts {starts} and ends {ends} have different lengths",
    )
    check(
        len(starts) <= len(shape),
        f"{op}: starts {starts} has {len(starts)} entries for input shape {list(shape)}",
    )
    out: list[tuple[int, int] | None] = []
    for i, d in enumerate(shape):
        if d is None:
            out.append(None)
        elif i >= len(starts) or d == 0:
            out.append((0, d))
        else:
            s = starts[i] + d + 1 if starts[i] < 0 else starts[i]
            e = ends[i] + d + 1 if ends[i] < 0 else ends[i]
            s, e = min(s, d), min(e, d)
            check(
                0 <= s <= e,
                f"{op}: dim {i} of input shape {list(shape)}: start {starts[i]}, end {ends[i]} "
                f"give the empty or reversed range [{s}, {e})",
            )
            out.append((s, e))
    return out


def _slice_inputs(op: str, ins: list[TensorInfo], args: Mapping[str, Any], data: int) -> int | None:
    """Check how starts/ends are given; return how many dims they cover (None if unknown)."""
    extra = len(ins) - 1 - data  # inputs besides data (and dY)
    check(extra in (0, 2), f"{op}: give both starts and ends as inputs, or neither")
    if extra == 0:
        return len(args["starts"])
    check(
        not args["starts"] and not args["ends"],
        f"{op}: give starts/ends either as arguments or as inputs, not both",
    )
    s = ins[data + 1].shape
    return s[0] if s is not None and len(s) == 1 else None


def _infer_slice(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    k = _slice_inputs("Slice", ins, args, 0)
    if x.shape is None:
        return [TensorInfo(None, x.dtype)]
    if len(ins) == 3:  # values unknown until run time; dims past the sliced ones are kept
        return [
            TensorInfo(tuple(d if k is not None and i >= k else None for i, d in enumerate(x.shape)), x.dtype)
        ]
    bounds = slice_bounds("Slice", x.shape, list(args["starts"]), list(args["ends"]))
    return [TensorInfo(tuple(None if b is None else b[1] - b[0] for b in bounds), x.dtype)]


_SLICE_ARGS = [
    Arg("starts", ArgType.INTS, [], "start index per dim (negative: from the end)"),
    Arg("ends", ArgType.INTS, [], "end index per dim, exclusive (negative: from the end, -1 = to the end)"),
]

define(
    "Slice",
    family="tensor",
    doc="Take data[starts[0]:ends[0], starts[1]:ends[1], ...] (dims past len(starts) whole). A "
    "negative index i means dim + 1 + i, so end -1 is the end. starts and ends come from the "
    "arguments or from inputs 1 and 2 (1-D int tensors).",
    inputs=(1, 3),
    input_docs=[("data", "tensor"), ("starts", "1-D int (optional)"), ("ends", "1-D int (optional)")],
    output_docs=[("output", "the slice")],
    args=_SLICE_ARGS,
    infer=_infer_slice,
    dtypes=dtypes.ALL_TYPES,
)


def _infer_slice_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _slice_inputs("SliceGradient", ins, args, 1)
    return [TensorInfo(ins[0].shape, ins[-1].dtype)]


define(
    "SliceGradient",
    family="tensor",
    doc="Zeros shaped like data, with dY placed at the slice.",
    inputs=(2, 4),
    input_docs=[("data", "forward data (for its shape)"), ("starts, ends", "(optional)"), ("dY", "gradient")],
    output_docs=[("dX", "gradient of data")],
    args=_SLICE_ARGS,
    infer=_infer_slice_grad,
    dtypes=dtypes.ALL_TYPES,
    type_input=None,
    gradient_op=True,
    differentiable=False,
)


# -- Gather / SparseToDense ------------------------------------------------------------------------
def _check_indices(op: str, what: str, idx: TensorInfo) -> None:
    check(
        idx.dtype is None or idx.dtype in (INT32, INT64),
        f"{op}: {what} must be int32 or int64, got {dtypes.name(idx.dtype)}",
    )


def _infer_gather(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    data, idx = ins
    _check_indices("Gather", "INDICES", idx)
    if data.shape is not None:
        check(len(data.shape) >= 1, "Gather: DATA is a scalar; it needs at least one dim")
    if data.shape is None or idx.shape is None:
        return [TensorInfo(None, data.dtype)]
    return [TensorInfo((*idx.shape, *data.shape[1:]), data.dtype)]


define(
    "Gather",
    family="tensor",
    doc="DATA[INDICES] along axis 0: output shape INDICES.shape + DATA.shape[1:].",
    inputs=2,
    input_docs=[("DATA", "tensor of rank >= 1"), ("INDICES", "int32/int64 indices into axis 0")],
    output_docs=[("OUTPUT", "gathered rows")],
    infer=_infer_gather,
    dtypes=dtypes.ALL_TYPES,
)


def _infer_sparse_to_dense(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    idx, values = ins[0], ins[1]
    _check_indices("SparseToDense", "indices", idx)
    if idx.shape is None or values.shape is None:
        return [TensorInfo(None, values.dtype)]
    k = len(idx.shape)
    check(
        len(values.shape) >= k
        and all(a is None or b is None or a == b for a, b in zip(idx.shape, values.shape[:k])),
        f"SparseToDense: values shape {list(values.shape)} does not start with the indices "
        f"shape {list(idx.shape)}",
    )
    first = None
    if len(ins) > 2 and ins[2].shape is not None:
        check(len(ins[2].shape) >= 1, "SparseToDense: data_to_infer_dim is a scalar; it needs a first dim")
        first = ins[2].shape[0]
    return [TensorInfo((first, *values.shape[k:]), values.dtype)]


define(
    "SparseToDense",
    family="tensor",
    doc="output[indices[i]] += values[i]: a dense tensor with the (summed) values at the indices, "
    "zeros elsewhere. Its first dim is data_to_infer_dim's, or max(indices) + 1. indices may have "
    "any rank; values' leading dims match it (Caffe2 takes 1-D indices only).",
    inputs=(2, 3),
    input_docs=[
        ("indices", "int32/int64"),
        ("values", "one slice per index"),
        ("data_to_infer_dim", "its first dim sets the output's (optional)"),
    ],
    output_docs=[("output", "dense tensor")],
    infer=_infer_sparse_to_dense,
    dtypes=dtypes.NUMERIC_TYPES,
    type_input=1,
)


# -- Tile ------------------------------------------------------------------------------------------
def _infer_tile(op: str, grad: bool):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        check(args["tiles"] >= 1, f"{op}: tiles must be >= 1, got {args['tiles']}")
        if x.shape is None:
            return [TensorInfo(None, x.dtype)]
        check(len(x.shape) >= 1, f"{op}: the input is a scalar; it needs an axis to tile")
        if len(ins) > 2:  # the axis comes at run time
            return [TensorInfo((None,) * len(x.shape), x.dtype)]
        axis = norm_axis(args["axis"], len(x.shape), op)
        d = x.shape[axis]
        if len(ins) > 1 or d is None:
            d = None
        elif grad:
            check(
                d % args["tiles"] == 0,
                f"{op}: axis {axis} of dY shape {list(x.shape)} is not {args['tiles']} tiles",
            )
            d //= args["tiles"]
        else:
            d *= args["tiles"]
        return [TensorInfo((*x.shape[:axis], d, *x.shape[axis + 1 :]), x.dtype)]

    return infer


_TILE_ARGS = [
    Arg("tiles", ArgType.INT, 1, "number of copies (input 1 overrides it)"),
    Arg("axis", ArgType.INT, 0, "axis to tile along (input 2 overrides it)"),
]

define(
    "Tile",
    family="tensor",
    doc="Repeat the input `tiles` times along `axis` (the whole block, as np.tile).",
    inputs=(1, 3),
    input_docs=[
        ("data", "tensor"),
        ("tiles", "1-element int (optional)"),
        ("axis", "1-element int (optional)"),
    ],
    output_docs=[("tiled", "tensor")],
    args=_TILE_ARGS,
    infer=_infer_tile("Tile", grad=False),
    dtypes=dtypes.ALL_TYPES,
)

define(
    "TileGradient",
    family="tensor",
    doc="Sum the `tiles` copies along `axis`.",
    inputs=(1, 3),
    input_docs=[("dY", "gradient of the tiled output"), ("tiles", "(optional)"), ("axis", "(optional)")],
    output_docs=[("dX", "gradient of data")],
    args=_TILE_ARGS,
    infer=_infer_tile("TileGradient", grad=True),
    dtypes=dtypes.NUMERIC_TYPES,
    gradient_op=True,
    differentiable=False,
)


# -- Shape, ResizeLike, ZerosLike --------------------------------------------------------------------
def _infer_shape(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if args["axes"]:
        if x.shape is not None:
            for a in args["axes"]:
                norm_axis(a, len(x.shape), "Shape", "axes entry")
        return [TensorInfo((len(args["axes"]),), INT64)]
    return [TensorInfo(None if x.shape is None else (len(x.shape),), INT64)]


define(
    "Shape",
    family="tensor",
    doc="The input's shape as a 1-D int64 tensor (only the dims in `axes`, if given).",
    inputs=1,
    input_docs=[("data", "tensor")],
    output_docs=[("shape", "int64 dims")],
    args=[Arg("axes", ArgType.INTS, [], "dims to report (default: all)")],
    infer=_infer_shape,
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)


def _infer_resize_like(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, like = ins
    if x.shape is not None and like.shape is not None:
        a, b = prod(x.shape), prod(like.shape)
        check(
            a is None or b is None or a == b,
            f"ResizeLike: input shape {list(x.shape)} ({a} elements) cannot take the shape "
            f"{list(like.shape)} ({b} elements)",
        )
    return [TensorInfo(like.shape, x.dtype)]


define(
    "ResizeLike",
    family="tensor",
    doc="Input 0's data with input 1's shape (same number of elements).",
    inputs=2,
    input_docs=[("data", "tensor"), ("shape_like", "tensor whose shape is taken")],
    output_docs=[("output", "reshaped data")],
    infer=_infer_resize_like,
    dtypes=dtypes.ALL_TYPES,
)

define(
    "ZerosLike",
    family="tensor",
    doc="Zeros with the input's shape and dtype (the gradient of outputs nothing used).",
    inputs=1,
    input_docs=[("input", "tensor")],
    output_docs=[("zeros", "tensor")],
    infer=same_as_input(0),
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)


# -- gradient makers -------------------------------------------------------------------------------
def _no_grads(g: GradientContext) -> GradientOps:
    return GradientOps([], [None] * g.num_inputs)


@gradient("Concat")
def _concat_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return _no_grads(g)
    axis, add_axis = g.args["axis"], int(g.args["add_axis"])
    grads = [g.GI(i) for i in range(g.num_inputs)]
    if g.num_outputs > 1:  # Caffe2's gradient: Split(dY, split_info)
        return g.single("Split", [g.GO(0), g.O(1)], grads, axis=axis, add_axis=add_axis)
    if add_axis:  # one entry of the new axis per input: equal parts
        return g.single("Split", [g.GO(0)], grads, axis=axis, add_axis=1)
    # No split_info output: rebuild it from the inputs' shapes.
    ops, sizes = [], []
    for i in range(g.num_inputs):
        sizes.append(g.temp(f"size{i}"))
        ops.append(g.make("Shape", [g.I(i)], [sizes[-1]], axes=[axis]))
    split_info = g.temp("split_info")
    ops.append(g.make("Concat", sizes, [split_info], axis=0))
    ops.append(g.make("Split", [g.GO(0), split_info], grads, axis=axis))
    return GradientOps(ops, list(grads))


@gradient("Split")
def _split_grad(g: GradientContext) -> GradientOps:
    ops, parts = [], []
    for j in range(g.num_outputs):
        go = g.GO(j)
        if go is None:  # an unused part: its gradient is zero
            go = g.temp(f"zeros{j}")
            ops.append(g.make("ZerosLike", [g.O(j)], [go]))
        parts.append(go)
    axis, add_axis = g.args["axis"], int(g.args["add_axis"])
    ops.append(g.make("Concat", parts, [g.GI(0)], axis=axis, add_axis=add_axis))
    return GradientOps(ops, [g.GI(0)] + [None] * (g.num_inputs - 1))


@gradient("Reshape")
def _reshape_grad(g: GradientContext) -> GradientOps:
    if g.num_outputs > 1:  # Caffe2's gradient: Reshape(dY, old_shape)
        ops = [g.make("Reshape", [g.GO(0), g.O(1)], [g.GI(0), g.temp("new_shape")])]
    else:
        g.refuse_inplace(0, why="its shape (give Reshape its second output, old_shape)")
        ops = [g.make("ResizeLike", [g.GO(0), g.I(0)], [g.GI(0)])]
    return GradientOps(ops, [g.GI(0)] + [None] * (g.num_inputs - 1))


@gradient("Transpose")
def _transpose_grad(g: GradientContext) -> GradientOps:
    axes = g.args["axes"]
    inverse = [int(a) for a in np.argsort(axes)] if axes else []  # reversing is its own inverse
    return g.single("Transpose", [g.GO(0)], [g.GI(0)], axes=inverse)


@gradient("Flatten")
def _flatten_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(0, why="its shape")
    return g.single("ResizeLike", [g.GO(0), g.I(0)], [g.GI(0)])


@gradient("ResizeLike")
def _resize_like_grad(g: GradientContext) -> GradientOps:
    return g.single("ResizeLike", [g.GO(0), g.I(0)], [g.GI(0)], [g.GI(0), None])


@gradient("Copy")
def _copy_grad(g: GradientContext) -> GradientOps:
    return g.single("Copy", [g.GO(0)], [g.GI(0)])


@gradient("Squeeze")
def _squeeze_grad(g: GradientContext) -> GradientOps:
    return g.single("ExpandDims", [g.GO(0)], [g.GI(0)], dims=g.args["dims"])


@gradient("ExpandDims")
def _expand_dims_grad(g: GradientContext) -> GradientOps:
    return g.single("Squeeze", [g.GO(0)], [g.GI(0)], dims=g.args["dims"])


@gradient("Slice")
def _slice_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "SliceGradient",
        [*g.op.input, g.GO(0)],
        [g.GI(0)],
        [g.GI(0)] + [None] * (g.num_inputs - 1),
        **g.forward_args(),
    )


@gradient("Gather")
def _gather_grad(g: GradientContext) -> GradientOps:
    # Caffe2 returns a sparse GradientSlice (INDICES, dY); the dense equivalent is SparseToDense.
    return g.single("SparseToDense", [g.I(1), g.GO(0), g.I(0)], [g.GI(0)], [g.GI(0), None])


@gradient("SparseToDense")
def _sparse_to_dense_grad(g: GradientContext) -> GradientOps:
    return g.single("Gather", [g.GO(0), g.I(0)], [g.GI(1)], [None, g.GI(1)] + [None] * (g.num_inputs - 2))


@gradient("Tile")
def _tile_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "TileGradient",
        [g.GO(0), *g.op.input[1:]],
        [g.GI(0)],
        [g.GI(0)] + [None] * (g.num_inputs - 1),
        **g.forward_args(),
    )

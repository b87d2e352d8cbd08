"""Arithmetic: Add, Sub, Mul, Div (numpy or Caffe2 legacy broadcasting), Sum, MatMul."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaffa import dtypes
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, prod, same_dtype


def broadcast_shapes(op: str, a: Sequence[int | None], b: Sequence[int | None]) -> tuple[int | None, ...]:
    """numpy broadcasting over possibly unknown dims."""
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    out: list[int | None] = []
    for x, y in zip(pa, pb):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            check(False, f"{op}: shapes {list(a)} and {list(b)} do not broadcast")
    return tuple(out)


def legacy_b_shape(
    op: str, a: Sequence[int | None], b: Sequence[int | None], axis: int
) -> tuple[int | None, ...]:
    """Caffe2's ``broadcast=1``: B matches a contiguous run of A's dims starting at ``axis`` (-1: the
    trailing dims). Returns B's shape padded with 1s to A's rank, ready for numpy broadcasting."""
    if axis == -1:
        axis = len(a) - len(b)
    check(
        axis >= 0 and axis + len(b) <= len(a),
        f"{op}: with broadcast=1, B {list(b)} must fit inside A {list(a)} at axis {axis}",
    )
    for i, d in enumerate(b):
        ad = a[axis + i]
        check(
            d is None or ad is None or d == ad or d == 1,
            f"{op}: with broadcast=1, B {list(b)} does not match A {list(a)} at axis {axis}",
        )
    return (1,) * axis + tuple(b) + (1,) * (len(a) - axis - len(b))


def _infer_binary(name: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        a, b = ins
        dtype = same_dtype(name, ins)
        if a.shape is None or b.shape is None:
            return [TensorInfo(None, dtype)]
        if args["broadcast"]:
            legacy_b_shape(name, a.shape, b.shape, args["axis"])
            return [TensorInfo(a.shape, dtype)]
        return [TensorInfo(broadcast_shapes(name, a.shape, b.shape), dtype)]

    return infer


def _canon_binary(args: dict[str, Any]) -> dict[str, Any]:
    if args.get("axis_str"):
        order = args["order"]
        check(
            len(args["axis_str"]) == 1 and args["axis_str"] in order,
            f"axis_str {args['axis_str']!r} is not an axis of order {order!r}",
        )
        args = {**args, "axis": order.index(args["axis_str"])}
    return args


_BINARY_ARGS = [
    Arg("broadcast", ArgType.BOOL, False, "Caffe2 legacy broadcasting: B is matched inside A at `axis`"),
    Arg("axis", ArgType.INT, -1, "with broadcast=1, where B starts in A (-1: B matches A's trailing dims)"),
    Arg("axis_str", ArgType.STRING, doc="legacy: axis by name in `order`"),
    Arg("order", ArgType.STRING, "NCHW", "legacy: layout for axis_str"),
]

for _name, _sym, _note in (
    ("Add", "A + B", ""),
    ("Sub", "A - B", ""),
    ("Mul", "A * B", ""),
    ("Div", "A / B", " Integer division truncates toward zero, as in C."),
):
    define(
        _name,
        family="math",
        doc=f"Elementwise {_sym} with numpy broadcasting (or Caffe2's legacy broadcast=1).{_note}",
        inputs=2,
        input_docs=[("A", "left operand"), ("B", "right operand")],
        output_docs=[("C", "result, broadcast shape, same dtype")],
        args=_BINARY_ARGS,
        inplace={(0, 0), (1, 0)},
        canonicalize=_canon_binary,
        infer=_infer_binary(_name),
        dtypes=dtypes.NUMERIC_TYPES,
    )


def _infer_sum(args, ins, n):
    dtype = same_dtype("Sum", ins)
    shapes = [i.shape for i in ins if i.shape is not None]
    for s in shapes[1:]:
        check(
            len(s) == len(shapes[0]) and all(x is None or y is None or x == y for x, y in zip(s, shapes[0])),
            f"Sum: all inputs must have one shape, got {', '.join(str(list(s)) for s in shapes)}",
        )
    return [TensorInfo(shapes[0] if shapes else None, dtype)]


define(
    "Sum",
    family="math",
    doc="Elementwise sum of any number of same-shaped inputs.",
    inputs=(1, float("inf")),
    input_docs=[("X0..Xn", "inputs of one shape")],
    output_docs=[("Y", "sum")],
    inplace="any",
    infer=_infer_sum,
    dtypes=dtypes.NUMERIC_TYPES,
)


def _infer_matmul(args, ins, n):
    a, b = ins
    dtype = same_dtype("MatMul", ins)
    if a.shape is None or b.shape is None:
        return [TensorInfo(None, dtype)]
    ax_a = norm_axis(args["axis_a"], len(a.shape), "MatMul", "axis_a")
    ax_b = norm_axis(args["axis_b"], len(b.shape), "MatMul", "axis_b")
    m, ka = prod(a.shape[:ax_a]), prod(a.shape[ax_a:])
    kb, nb = prod(b.shape[:ax_b]), prod(b.shape[ax_b:])
    if args["trans_a"]:
        m, ka = ka, m
    if args["trans_b"]:
        kb, nb = nb, kb
    check(
        ka is None or kb is None or ka == kb,
        f"MatMul: A {list(a.shape)} gives K={ka} but B {list(b.shape)} gives K={kb}",
    )
    return [TensorInfo((m, nb), dtype)]


define(
    "MatMul",
    family="math",
    doc="2-D matrix product Y = op(A) · op(B); A and B are flattened to 2-D at axis_a / axis_b first.",
    inputs=2,
    input_docs=[("A", "[M, K] (or [K, M] with trans_a)"), ("B", "[K, N] (or [N, K] with trans_b)")],
    output_docs=[("Y", "[M, N]")],
    args=[
        Arg("axis_a", ArgType.INT, 1),
        Arg("axis_b", ArgType.INT, 1),
        Arg("trans_a", ArgType.BOOL, False),
        Arg("trans_b", ArgType.BOOL, False),
    ],
    infer=_infer_matmul,
)

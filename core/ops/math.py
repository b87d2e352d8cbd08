"""Arithmetic: Add, Sub, Mul, Div (numpy or Caffe2 legacy broadcasting), Sum, Max, Min, Mean, WeightedSum,
MatMul, BatchMatMul, and their gradients (SumReduceLike un-broadcasts a gradient to an input's shape).

In-place and gradients: a maker that needs an input's *value* refuses when the op overwrote that input
in place (Mul(A, B) -> A). Where only an input's *shape* is needed (Add, Sub, Div's A), an input
overwritten in place is taken to have had the output's shape, as it has in every sane in-place use
(x += b): Add and Sub then pass dY straight through and do not read it at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.proto import OperatorDef
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, prod, same_as_input, same_dtype


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


def canon_binary(args: dict[str, Any]) -> dict[str, Any]:
    if args.get("axis_str"):
        order = args["order"]
        check(
            len(args["axis_str"]) == 1 and args["axis_str"] in order,
            f"axis_str {args['axis_str']!r} is not an axis of order {order!r}",
        )
        args = {**args, "axis": order.index(args["axis_str"])}
    return args


BINARY_ARGS = [
    Arg("broadcast", ArgType.BOOL, False, "Caffe2 legacy broadcasting: B is matched inside A at `axis`"),
    Arg("axis", ArgType.INT, -1, "with broadcast=1, where B starts in A (-1: B matches A's trailing dims)"),
    Arg("axis_str", ArgType.STRING, doc="legacy: axis by name in `order`"),
    Arg("order", ArgType.STRING, "NCHW", "legacy: layout for axis_str"),
]

for _name, _sym, _note in (
    ("Add", "A + B", ""),
    ("Sub", "A - B", ""),
    ("Mul", "A * B", ""),
    ("Div", "A / B", " Integer division truncates toward zero, as in C; integer overflow wraps."),
):
    define(
        _name,
        family="math",
        doc=f"Elementwise {_sym} with numpy broadcasting (or Caffe2's legacy broadcast=1).{_note}",
        inputs=2,
        input_docs=[("A", "left operand"), ("B", "right operand")],
        output_docs=[("C", "result, broadcast shape, same dtype")],
        args=BINARY_ARGS,
        inplace={(0, 0), (1, 0)},
        canonicalize=canon_binary,
        infer=_infer_binary(_name),
        dtypes=dtypes.ALL_NUMERIC_TYPES,
    )


def _infer_same_shapes(name: str, step: int = 1):
    """Variadic ops over inputs of one shape (every ``step``-th input from 0)."""

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        dtype = same_dtype(name, ins[::step])
        shapes = [i.shape for i in ins[::step] if i.shape is not None]
        for s in shapes[1:]:
            check(
                len(s) == len(shapes[0])
                and all(x is None or y is None or x == y for x, y in zip(s, shapes[0])),
                f"{name}: all inputs must have one shape, got {', '.join(str(list(s)) for s in shapes)}",
            )
        return [TensorInfo(shapes[0] if shapes else None, dtype)]

    return infer


define(
    "Sum",
    family="math",
    doc="Elementwise sum of any number of same-shaped inputs.",
    inputs=(1, float("inf")),
    input_docs=[("X0..Xn", "inputs of one shape")],
    output_docs=[("Y", "sum")],
    inplace="any",
    infer=_infer_same_shapes("Sum"),
    dtypes=dtypes.NUMERIC_TYPES,
)

for _name, _what in (("Max", "maximum"), ("Min", "minimum")):
    define(
        _name,
        family="math",
        doc=f"Elementwise {_what} of any number of same-shaped inputs (no broadcasting).",
        inputs=(1, float("inf")),
        input_docs=[("X0..Xn", "inputs of one shape")],
        output_docs=[("Y", _what)],
        inplace={(0, 0)},
        infer=_infer_same_shapes(_name),
        dtypes=dtypes.ALL_NUMERIC_TYPES,
    )

define(
    "Mean",
    family="math",
    doc="Elementwise mean of any number of same-shaped inputs.",
    inputs=(1, float("inf")),
    input_docs=[("X0..Xn", "inputs of one shape")],
    output_docs=[("Y", "mean")],
    inplace={(0, 0)},
    infer=_infer_same_shapes("Mean"),
)


def _check_weights(op: str, weights: Sequence[TensorInfo]) -> None:
    for k, w in enumerate(weights):
        check(
            w.shape is None or prod(w.shape) is None or prod(w.shape) == 1,
            f"{op}: weight {k} must have one element, got shape {list(w.shape or ())}",
        )
        check(
            w.dtype is None or w.dtype.kind == "f",
            f"{op}: weight {k} must be a float tensor, got {dtypes.name(w.dtype)}",
        )


def _infer_weighted_sum(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    check(len(ins) % 2 == 0, f"WeightedSum: inputs come in (X, weight) pairs, got {len(ins)} inputs")
    _check_weights("WeightedSum", ins[1::2])
    return _infer_same_shapes("WeightedSum", step=2)(args, ins, n)


define(
    "WeightedSum",
    family="math",
    doc="Y = sum_i w_i * X_i over (X_0, w_0, X_1, w_1, ...); each w_i is a one-element float tensor (of any "
    "float dtype: Caffe2 keeps float32 weights for float16 X). May run in place on X_0 (plain SGD: "
    "param = 1 * param + lr * grad).",
    inputs=(2, float("inf")),
    input_docs=[("X_i", "inputs of one shape"), ("w_i", "one-element weights")],
    output_docs=[("Y", "weighted sum, shape of X_0")],
    args=[Arg("grad_on_w", ArgType.BOOL, False, "gradient: also compute the weights' gradients")],
    inplace={(0, 0)},
    infer=_infer_weighted_sum,
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


def _infer_batch_matmul(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    a, b = ins
    dtype = same_dtype("BatchMatMul", ins)
    if a.shape is None or b.shape is None:
        return [TensorInfo(None, dtype)]
    sa, sb = list(a.shape), list(b.shape)
    check(
        len(sa) >= 2 and len(sb) >= 2,
        f"BatchMatMul: A {sa} and B {sb} must both be at least 2-D (ExpandDims a vector first)",
    )
    m, ka = (sa[-1], sa[-2]) if args["trans_a"] else (sa[-2], sa[-1])
    kb, nb = (sb[-1], sb[-2]) if args["trans_b"] else (sb[-2], sb[-1])
    check(
        ka is None or kb is None or ka == kb,
        f"BatchMatMul: A {sa} gives K={ka} but B {sb} gives K={kb}",
    )
    if args["broadcast"]:
        batch = broadcast_shapes("BatchMatMul", sa[:-2], sb[:-2])
    else:
        check(
            len(sa) == len(sb) and all(x is None or y is None or x == y for x, y in zip(sa[:-2], sb[:-2])),
            f"BatchMatMul: A {sa} and B {sb} need equal batch dims without broadcast=1",
        )
        batch = tuple(x if x is not None else y for x, y in zip(sa[:-2], sb[:-2]))
    return [TensorInfo((*batch, m, nb), dtype)]


define(
    "BatchMatMul",
    family="math",
    doc="Batched matrix product over the last two dims: Y[..., M, N] = op(A)[..., M, K] · op(B)[..., K, N]. "
    "Without broadcast the batch dims must be equal; with broadcast=1 they broadcast the numpy way. "
    "Both inputs must be at least 2-D.",
    inputs=2,
    input_docs=[("A", "[..., M, K] (or [..., K, M] with trans_a)"), ("B", "[..., K, N] (or [..., N, K])")],
    output_docs=[("Y", "[..., M, N]")],
    args=[
        Arg("trans_a", ArgType.BOOL, False),
        Arg("trans_b", ArgType.BOOL, False),
        Arg("broadcast", ArgType.BOOL, False, "numpy broadcasting of the batch dims"),
    ],
    infer=_infer_batch_matmul,
)


# -- gradient ops ----------------------------------------------------------------------------------
def _infer_sum_reduce_like(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    a, b = ins
    if a.shape is not None and b.shape is not None:
        legacy_b_shape("SumReduceLike", a.shape, b.shape, args["axis"])
    return [TensorInfo(b.shape, a.dtype)]


define(
    "SumReduceLike",
    family="math",
    doc="Sum A over the dims where B is broadcast, giving B's shape: the gradient of a broadcast operand. "
    "B lines up with A's dims from `axis` (-1: A's trailing dims, i.e. numpy broadcasting); B's dims "
    "equal A's or are 1.",
    inputs=2,
    input_docs=[("A", "tensor to reduce"), ("B", "tensor whose shape the result takes (values unused)")],
    output_docs=[("C", "A summed to B's shape")],
    args=BINARY_ARGS[1:],
    canonicalize=canon_binary,
    infer=_infer_sum_reduce_like,
    gradient_op=True,
    differentiable=False,
)


def _infer_div_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dc, a, b, c = ins
    dtype = same_dtype("DivGradient", [dc, b, c])
    return [TensorInfo(a.shape, dtype), TensorInfo(b.shape, dtype)]


define(
    "DivGradient",
    family="math",
    doc="Gradients of C = A / B: dA = dC / B and dB = -dC * C / B, each summed to its input's shape. "
    "A is read only for its shape.",
    inputs=4,
    outputs=2,
    input_docs=[("dC", "gradient of C"), ("A", "forward A"), ("B", "forward B"), ("C", "forward output")],
    output_docs=[("dA", "gradient of A"), ("dB", "gradient of B")],
    args=BINARY_ARGS,
    canonicalize=canon_binary,
    infer=_infer_div_gradient,
    gradient_op=True,
    differentiable=False,
)


def _infer_extreme_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    return [ins[1]] * n


for _name, _what in (("Max", "maximum"), ("Min", "minimum")):
    define(
        f"{_name}Gradient",
        family="math",
        doc=f"dX_i = dY where X_i equals the {_what} Y (every tied input gets it), else 0.",
        inputs=(3, float("inf")),
        outputs=(1, float("inf")),
        input_docs=[("Y", "forward output"), ("dY", "gradient of Y"), ("X0..Xn", "forward inputs")],
        output_docs=[("dX0..dXn", "gradients of the inputs")],
        infer=_infer_extreme_gradient,
        gradient_op=True,
        differentiable=False,
    )

define(
    "MeanGradient",
    family="math",
    doc="dX_i = dY / n for the n inputs of Mean (n = number of outputs).",
    inputs=1,
    outputs=(1, float("inf")),
    input_docs=[("dY", "gradient of Y")],
    output_docs=[("dX0..dXn", "gradients of the inputs")],
    infer=same_as_input(0),
    gradient_op=True,
    differentiable=False,
)


def _infer_weighted_sum_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    check(
        len(ins) % 2 == 1,
        f"WeightedSumGradient: inputs are dY then (X, weight) pairs, got {len(ins)} inputs",
    )
    pairs = (len(ins) - 1) // 2
    want = 2 * pairs if args["grad_on_w"] else pairs
    check(n == want, f"WeightedSumGradient: {pairs} (X, weight) pairs give {want} outputs, got {n}")
    _check_weights("WeightedSumGradient", ins[2::2])
    dy = ins[0]
    dtype = same_dtype("WeightedSumGradient", [dy, *ins[1::2]])
    return [dy.with_dtype(dtype)] * pairs + list(ins[2::2][: n - pairs])


define(
    "WeightedSumGradient",
    family="math",
    doc="Gradients of WeightedSum: dX_i = w_i * dY, and with grad_on_w=1 also dw_i = sum(dY * X_i).",
    inputs=(3, float("inf")),
    outputs=(1, float("inf")),
    input_docs=[("dY", "gradient of Y"), ("X_i, w_i", "the forward inputs")],
    output_docs=[("dX_0..dX_n", "input gradients"), ("dw_0..dw_n", "weight gradients (grad_on_w=1)")],
    args=[Arg("grad_on_w", ArgType.BOOL, False, "also compute the weights' gradients")],
    infer=_infer_weighted_sum_gradient,
    gradient_op=True,
    differentiable=False,
)


# -- gradient makers -------------------------------------------------------------------------------
def _unbroadcast(g: GradientContext, grad: str, i: int, out: str) -> OperatorDef:
    """SumReduceLike of an output-shaped gradient to input i's shape; legacy B lines up at `axis`."""
    legacy = g.args["broadcast"] and i == 1
    return g.make("SumReduceLike", [grad, g.I(i)], [out], axis=g.args["axis"] if legacy else None)


def _output_shaped(g: GradientContext, i: int) -> bool:
    """Input i has the output's shape, so its gradient needs no SumReduceLike: legacy A, or an input
    the op overwrote in place (not reading it keeps later in-place ops, x += b; Relu(x) -> x, legal)."""
    return (i == 0 and g.args["broadcast"]) or g.I(i) in g.op.output


@gradient("Add", "Sub")
def _add_sub_grad(g: GradientContext) -> GradientOps:
    dy, ops, grads = g.GO(0), [], []
    for i in (0, 1):
        negate = g.op.type == "Sub" and i == 1
        if _output_shaped(g, i):
            grad = dy
        else:
            grad = g.temp("b") if negate else g.GI(i)
            ops.append(_unbroadcast(g, dy, i, grad))
        if negate:  # after the reduction: Negative then runs on B's (smaller) shape
            ops.append(g.make("Negative", [grad], [g.GI(1)]))
            grad = g.GI(1)
        grads.append(grad)
    return GradientOps(ops, grads)


@gradient("Mul")
def _mul_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(0, 1)
    dy, a, b = g.GO(0), g.I(0), g.I(1)
    if g.args["broadcast"]:
        ops = [g.make("Mul", [dy, b], [g.GI(0)], broadcast=1, axis=g.args["axis"])]
    else:
        t = g.temp("a")
        ops = [g.make("Mul", [dy, b], [t]), _unbroadcast(g, t, 0, g.GI(0))]
    t = g.temp("b")
    ops += [g.make("Mul", [dy, a], [t]), _unbroadcast(g, t, 1, g.GI(1))]
    return GradientOps(ops, [g.GI(0), g.GI(1)])


@gradient("Div")
def _div_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(1)  # A is read only for its shape
    legacy = {"broadcast": 1, "axis": g.args["axis"]} if g.args["broadcast"] else {}
    return g.single("DivGradient", [g.GO(0), g.I(0), g.I(1), g.O(0)], [g.GI(0), g.GI(1)], **legacy)


@gradient("Sum")
def _sum_grad(g: GradientContext) -> GradientOps:
    return GradientOps([], [g.GO(0)] * g.num_inputs)


@gradient("Max", "Min")
def _extreme_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(*range(g.num_inputs))
    grads = [g.GI(i) for i in range(g.num_inputs)]
    return g.single(f"{g.op.type}Gradient", [g.O(0), g.GO(0), *g.op.input], grads)


@gradient("Mean")
def _mean_grad(g: GradientContext) -> GradientOps:
    return g.single("MeanGradient", [g.GO(0)], [g.GI(i) for i in range(g.num_inputs)])


@gradient("WeightedSum")
def _weighted_sum_grad(g: GradientContext) -> GradientOps:
    n = g.num_inputs
    on_w = bool(g.args["grad_on_w"])
    if on_w:
        g.refuse_inplace(*range(0, n, 2))
    dx = [g.GI(i) for i in range(0, n, 2)]
    dw = [g.GI(i) for i in range(1, n, 2)] if on_w else []
    g_inputs: list[str | None] = [None] * n
    g_inputs[0::2] = dx
    if on_w:
        g_inputs[1::2] = dw
    op = g.make("WeightedSumGradient", [g.GO(0), *g.op.input], dx + dw, grad_on_w=int(on_w))
    return GradientOps([op], g_inputs)


@gradient("MatMul")
def _matmul_grad(g: GradientContext) -> GradientOps:
    # Y = op(A2) · op(B2) on A, B flattened to 2-D at axis_a / axis_b; the 2-D gradients are then
    # given A's and B's shapes by ResizeLike (which reads A and B for their shapes only).
    dy, a, b = g.GO(0), g.I(0), g.I(1)
    ta, tb = bool(g.args["trans_a"]), bool(g.args["trans_b"])
    ax_a, ax_b = g.args["axis_a"], g.args["axis_b"]
    if ta:  # dA2 = op(B2) · dYᵀ
        da = g.make("MatMul", [b, dy], [g.temp("a2d")], axis_a=ax_b, trans_a=int(tb), trans_b=1)
    else:  # dA2 = dY · op(B2)ᵀ
        da = g.make("MatMul", [dy, b], [g.temp("a2d")], axis_b=ax_b, trans_b=int(not tb))
    if tb:  # dB2 = dYᵀ · op(A2)
        db = g.make("MatMul", [dy, a], [g.temp("b2d")], axis_b=ax_a, trans_a=1, trans_b=int(ta))
    else:  # dB2 = op(A2)ᵀ · dY
        db = g.make("MatMul", [a, dy], [g.temp("b2d")], axis_a=ax_a, trans_a=int(not ta))
    ops = [da, db]
    for i, two_d in ((0, da.output[0]), (1, db.output[0])):
        ops.append(g.make("ResizeLike", [two_d, g.I(i)], [g.GI(i)]))
    return GradientOps(ops, [g.GI(0), g.GI(1)])


@gradient("BatchMatMul")
def _batch_matmul_grad(g: GradientContext) -> GradientOps:
    dy, a, b = g.GO(0), g.I(0), g.I(1)
    ta, tb, bc = bool(g.args["trans_a"]), bool(g.args["trans_b"]), bool(g.args["broadcast"])
    if ta:  # dA = op(B) · dYᵀ
        da = ([b, dy], {"trans_a": int(tb), "trans_b": 1})
    else:  # dA = dY · op(B)ᵀ
        da = ([dy, b], {"trans_b": int(not tb)})
    if tb:  # dB = dYᵀ · op(A)
        db = ([dy, a], {"trans_a": 1, "trans_b": int(ta)})
    else:  # dB = op(A)ᵀ · dY
        db = ([a, dy], {"trans_a": int(not ta)})
    ops = []
    for i, (ins, kw) in enumerate((da, db)):
        if bc:  # the product has the broadcast batch dims: sum them back to the input's
            t = g.temp("ab"[i])
            ops += [
                g.make("BatchMatMul", ins, [t], broadcast=1, **kw),
                g.make("SumReduceLike", [t, g.I(i)], [g.GI(i)]),
            ]
        else:
            ops.append(g.make("BatchMatMul", ins, [g.GI(i)], **kw))
    return GradientOps(ops, [g.GI(0), g.GI(1)])

"""Linear algebra: Einsum, Det (schemas, shape inference, gradient makers).

Einsum takes numpy's (and ONNX's) equation syntax: comma-separated subscripts per input, an
optional ``->`` output (implicit mode: the letters used once, in alphabetical order, after the
broadcast ``...`` dims), ``...`` for broadcast dims, spaces ignored. ``parse_einsum`` expands the
ellipses into letters the equation does not use, so kernels and gradients see plain subscripts.

Gradients: EinsumGradient (each input's gradient is an einsum of dY with the other inputs, summed
over broadcast dims, written into the diagonal for repeated letters); DetGradient
(dX = dY * adj(X)^T, which holds for singular X too).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

from kaffa import dtypes
from kaffa.errors import ArgumentError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import REQUIRED, Arg, ArgType, TensorInfo, check, define, same_dtype


def parse_einsum(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    """(input subscripts, output subscripts) of ``equation`` for inputs of ``ranks``, with every
    ``...`` expanded into letters of its own. ArgumentError for a malformed equation, ShapeError
    when a subscript does not fit its input's rank."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ArgumentError(f"Einsum: equation '{equation}' has {len(terms)} inputs, the op {len(ranks)}")
    used = set(eq) - {".", ",", "-", ">"}
    bad = sorted(c for c in used if c not in string.ascii_letters)
    if bad or any(t.count("...") > 1 or t.replace("...", "").count(".") for t in [*terms, rhs]):
        raise ArgumentError(f"Einsum: equation '{equation}' is malformed (letters, ',', '...', '->' only)")
    spare = [c for c in string.ascii_letters if c not in used]
    ell_rank = 0
    for t, r in zip(terms, ranks):
        named = len(t.replace("...", ""))
        if "..." in t:
            check(named <= r, f"Einsum: subscripts '{t}' need rank >= {named}, got rank {r}")
            ell_rank = max(ell_rank, r - named)
        else:
            check(named == r, f"Einsum: subscripts '{t}' need rank {named}, got rank {r}")
    if ell_rank > len(spare):
        raise ArgumentError(f"Einsum: '...' spans {ell_rank} dims, more than the letters left")
    ell = "".join(spare[:ell_rank])
    ins = []
    for t, r in zip(terms, ranks):
        k = r - len(t.replace("...", ""))
        ins.append(t.replace("...", ell[ell_rank - k :] if k else ""))
    if arrow:
        check(
            "..." in rhs or not ell_rank,
            f"Einsum: the output of '{equation}' leaves out the {ell_rank} '...' dims of its inputs",
        )
        out = rhs.replace("...", ell)
        for c in out:
            if c not in "".join(ins):
                raise ArgumentError(f"Einsum: output letter '{c}' of '{equation}' is in no input")
        if len(set(out)) != len(out):
            raise ArgumentError(f"Einsum: output '{rhs}' of '{equation}' repeats a letter")
    else:
        joined = "".join(t.replace("...", "") for t in terms)
        out = ell + "".join(sorted(c for c in set(joined) if joined.count(c) == 1))
    return ins, out


def einsum_sizes(subs: Sequence[str], shapes: Sequence[Sequence[int | None]]) -> dict[str, int | None]:
    """Letter -> size (1 broadcasts against any size; None where unknown)."""
    sizes: dict[str, int | None] = {}
    for t, shape in zip(subs, shapes):
        for c, d in zip(t, shape):
            if c not in sizes:
                sizes[c] = d
                continue
            have = sizes[c]
            known = [v for v in (have, d) if v not in (None, 1)]
            check(
                len(set(known)) <= 1,
                f"Einsum: letter '{c}' is {have} in one input and {d} in another (shapes {list(shapes)})",
            )
            sizes[c] = known[0] if known else (None if None in (have, d) else 1)
    return sizes


def _infer_einsum(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("Einsum", ins)
    if any(i.shape is None for i in ins):
        return [TensorInfo(None, dtype)]
    subs, out = parse_einsum(args["equation"], [len(i.shape) for i in ins])
    sizes = einsum_sizes(subs, [i.shape for i in ins])
    return [TensorInfo(tuple(sizes[c] for c in out), dtype)]


define(
    "Einsum",
    family="linalg",
    doc="Einstein summation over the inputs (numpy.einsum / ONNX Einsum): `equation` names each "
    "input's dims with letters ('...' for broadcast dims); letters missing from the output "
    "(after '->', or implicitly those used once) are summed over.",
    inputs=(1, math.inf),
    input_docs=[("Inputs", "one tensor per comma-separated term of the equation")],
    output_docs=[("Output", "the inputs' dtype")],
    args=[Arg("equation", ArgType.STRING, REQUIRED, "e.g. 'bij,bjk->bik'")],
    infer=_infer_einsum,
    dtypes=dtypes.NUMERIC_TYPES,
)


def _infer_einsum_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("EinsumGradient", ins)
    check(n == len(ins) - 1, f"EinsumGradient: {len(ins) - 1} forward inputs need as many outputs, got {n}")
    return [TensorInfo(i.shape, dtype) for i in ins[1:]]


define(
    "EinsumGradient",
    family="linalg",
    doc="dX_i = einsum of dY with every other input, onto X_i's subscripts (summed over dims X_i "
    "broadcast, placed on the diagonal for a repeated letter).",
    inputs=(2, math.inf),
    outputs=(1, math.inf),
    input_docs=[("dY", "gradient of the output"), ("Inputs", "the forward inputs")],
    output_docs=[("dInputs", "one gradient per forward input")],
    args=[Arg("equation", ArgType.STRING, REQUIRED)],
    infer=_infer_einsum_gradient,
    gradient_op=True,
    differentiable=False,
)


@gradient("Einsum")
def _einsum_grad(g: GradientContext) -> GradientOps:
    n = g.num_inputs
    return g.single(
        "EinsumGradient",
        [g.GO(0), *(g.I(i) for i in range(n))],
        [g.GI(i) for i in range(n)],
        equation=g.args["equation"],
    )


def _infer_det(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is None:
        return [TensorInfo(None, x.dtype)]
    s = x.shape
    check(
        len(s) >= 2 and (s[-1] is None or s[-2] is None or s[-1] == s[-2]),
        f"Det: X must be [..., M, M], got {list(s)}",
    )
    return [TensorInfo(tuple(s[:-2]), x.dtype)]


define(
    "Det",
    family="linalg",
    doc="The determinant of each square matrix X[..., :, :].",
    inputs=1,
    input_docs=[("X", "[..., M, M]")],
    output_docs=[("Y", "[...], X's dtype")],
    infer=_infer_det,
)


def _infer_det_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dy, x = ins[0], ins[1]
    dtype = same_dtype("DetGradient", ins)
    if x.shape is not None and dy.shape is not None:
        check(
            tuple(dy.shape) == tuple(x.shape[:-2]),
            f"DetGradient: dY {list(dy.shape)} is not Det(X {list(x.shape)})'s shape",
        )
    return [TensorInfo(x.shape, dtype)]


define(
    "DetGradient",
    family="linalg",
    doc="dX = dY * adj(X)^T (the cofactor matrix; det(X) inv(X)^T where X is invertible).",
    inputs=2,
    input_docs=[("dY", "gradient of Y"), ("X", "forward input")],
    output_docs=[("dX", "gradient of X")],
    infer=_infer_det_gradient,
    gradient_op=True,
    differentiable=False,
)


@gradient("Det")
def _det_grad(g: GradientContext) -> GradientOps:
    return g.single("DetGradient", [g.GO(0), g.I(0)], [g.GI(0)])


__all__ = ["einsum_sizes", "parse_einsum"]

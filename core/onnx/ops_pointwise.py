"""ONNX translators onto the pointwise family (see kaffa.ops.pointwise): Where, Mod, Sin ... Atanh,
Ceil, Floor, Round, Erf, Gelu, Reciprocal, BitShift, BitwiseAnd/Or/Xor/Not. Each is one kaffa op
(Reciprocal was a Pow with exponent -1 before)."""

from __future__ import annotations

from kaffa.onnx.importer import Context, Node, translator, unsupported

# ONNX op type -> kaffa op type, for ops without attributes (inputs and outputs pass through).
_DIRECT = {
    t: t
    for t in (
        "Sin",
        "Cos",
        "Tan",
        "Asin",
        "Acos",
        "Atan",
        "Sinh",
        "Cosh",
        "Asinh",
        "Acosh",
        "Atanh",
        "Ceil",
        "Floor",
        "Round",
        "Erf",
        "Reciprocal",
        "Where",
        "BitwiseAnd",
        "BitwiseOr",
        "BitwiseXor",
        "BitwiseNot",
    )
}


def _direct(ctx: Context, node: Node) -> None:
    ctx.op(_DIRECT[node.op_type], node.inputs, node.outputs[:1])


for _t in _DIRECT:
    translator(_t)(_direct)


@translator("Mod")
def _mod(ctx: Context, node: Node) -> None:
    fmod = int(node.attr("fmod", 0))
    ctx.op("Mod", node.inputs[:2], node.outputs[:1], fmod=fmod)


@translator("Gelu")
def _gelu(ctx: Context, node: Node) -> None:
    approximate = node.attr("approximate", "none")
    if isinstance(approximate, bytes):
        approximate = approximate.decode()
    if approximate not in ("none", "tanh"):
        raise unsupported(f"Gelu approximate={approximate!r} (kaffa has 'none' and 'tanh')")
    ctx.op("Gelu", node.inputs[:1], node.outputs[:1], fast_gelu=int(approximate == "tanh"))


@translator("BitShift")
def _bit_shift(ctx: Context, node: Node) -> None:
    direction = node.attr("direction")
    if isinstance(direction, bytes):
        direction = direction.decode()
    if direction not in ("LEFT", "RIGHT"):
        raise unsupported(f"BitShift direction {direction!r} (LEFT or RIGHT)")
    ctx.op("BitShift", node.inputs[:2], node.outputs[:1], direction=direction)

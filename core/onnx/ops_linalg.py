"""ONNX translators onto the linalg family (see kaffa.ops.linalg): Einsum, Det."""

from __future__ import annotations

from kaffa.onnx.importer import Context, Node, translator


@translator("Einsum")
def _einsum(ctx: Context, node: Node) -> None:
    ctx.op("Einsum", node.inputs, node.outputs[:1], equation=node.attr("equation"))


@translator("Det")
def _det(ctx: Context, node: Node) -> None:
    ctx.op("Det", node.inputs[:1], node.outputs[:1])

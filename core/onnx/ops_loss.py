"""Translators for ONNX's loss ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, onto the
kaffa ops of the same names (same inputs, reduction and ignore_index)."""

from __future__ import annotations

from kaffa.onnx.importer import Context, Node, translator, unsupported

_REDUCTIONS = ("none", "sum", "mean")


@translator("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")
def _onnx_loss(ctx: Context, node: Node) -> None:
    reduction = node.attr("reduction", "mean") or "mean"
    if reduction not in _REDUCTIONS:
        raise unsupported(f"reduction {reduction!r}")
    ins = node.inputs[:2] + ([node.input(2)] if node.input(2) else [])
    outs = list(node.outputs[:2])
    if len(outs) == 2 and not outs[1]:
        outs = outs[:1]
    if not outs[0]:
        # Only log_prob is wanted: still compute the loss, into a blob nothing reads.
        outs[0] = ctx.temp(node.name + "_loss")
    ignore = node.attr("ignore_index")
    ctx.op(
        node.op_type,
        ins,
        outs,
        reduction=reduction,
        ignore_index=None if ignore is None else int(ignore),
    )

"""ONNX translators onto the attention family (see kaffa.ops.attention): Attention,
RotaryEmbedding, LinearAttention, CausalConvWithState, TensorScatter, and SwiGLU (composed from
Sigmoid and Mul).

ONNX marks omitted optional inputs with empty names; kaffa's ops take only the present ones and
arguments that say which they are (``has_attn_mask``...). Omitted optional outputs in the middle
get temporary names.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes as _dt
from kaffa.onnx.importer import Context, Node, translator, unsupported


def _outputs(ctx: Context, node: Node, hint: str) -> list[str]:
    """The node's outputs up to the last one given, omitted ones replaced by temporaries."""
    outs = list(node.outputs)
    while outs and not outs[-1]:
        outs.pop()
    return [o or ctx.temp(f"{hint}_unused{k}") for k, o in enumerate(outs)]


def _onnx_dtype(code: int) -> np.dtype | None:
    from onnx import helper

    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(int(code)))
    except Exception:
        return None
    return dt if dt in _dt.FLOAT_TYPES else None


@translator("Attention")
def _attention(ctx: Context, node: Node) -> None:
    q, k, v = node.inputs[:3]
    mask, past_k, past_v, nonpad = (node.input(i) for i in (3, 4, 5, 6))
    if bool(past_k) != bool(past_v):
        raise unsupported("past_key and past_value must be given together")
    ins = [q, k, v] + [mask] * bool(mask) + [past_k, past_v] * bool(past_k) + [nonpad] * bool(nonpad)
    if mask:
        mdt, qdt = ctx.dtype(mask), ctx.dtype(q)
        if mdt is not None and qdt is not None and mdt not in (np.dtype(np.bool_), qdt):
            cast = ctx.temp(mask + "_cast")
            ctx.op("Cast", [mask], [cast], to=_dt.from_numpy(qdt))
            ins[3] = cast
    precision = node.attr("softmax_precision")
    scale = node.attr("scale")
    ctx.op(
        "Attention",
        ins,
        _outputs(ctx, node, node.outputs[0]),
        scale=None if scale is None else float(scale),
        is_causal=bool(node.attr("is_causal", 0)),
        q_num_heads=int(node.attr("q_num_heads", 0)),
        kv_num_heads=int(node.attr("kv_num_heads", 0)),
        softcap=float(node.attr("softcap", 0.0)),
        qk_matmul_output_mode=int(node.attr("qk_matmul_output_mode", 0)),
        # A precision kaffa lacks (bfloat16) is computed in float32 or wider.
        softmax_precision=None if precision is None else _onnx_dtype(precision),
        left_window_size=int(node.attr("left_window_size", -1)),
        right_window_size=int(node.attr("right_window_size", -1)),
        has_attn_mask=bool(mask),
        has_past_kv=bool(past_k),
        has_nonpad_kv_seqlen=bool(nonpad),
    )


@translator("RotaryEmbedding")
def _rotary(ctx: Context, node: Node) -> None:
    ins = [i for i in node.inputs[:4] if i]
    if len(ins) != len(node.inputs[:4]):
        raise unsupported("an omitted cos_cache or sin_cache")
    ctx.op(
        "RotaryEmbedding",
        ins,
        node.outputs[:1],
        interleaved=bool(node.attr("interleaved", 0)),
        rotary_embedding_dim=int(node.attr("rotary_embedding_dim", 0)),
        num_heads=int(node.attr("num_heads", 0)),
    )


@translator("LinearAttention")
def _linear_attention(ctx: Context, node: Node) -> None:
    rule = node.attr("update_rule", "gated_delta")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    decay, beta = node.input(4), node.input(5)
    if bool(decay) != gated or bool(beta) != delta:
        raise unsupported(
            f"update_rule {rule!r} with decay {'given' if decay else 'omitted'} and beta "
            f"{'given' if beta else 'omitted'}"
        )
    ins = [i for i in node.inputs[:6] if i]
    scale = node.attr("scale")
    ctx.op(
        "LinearAttention",
        ins,
        _outputs(ctx, node, node.outputs[0]),
        q_num_heads=int(node.attr("q_num_heads", 0)),
        kv_num_heads=int(node.attr("kv_num_heads", 0)),
        scale=0.0 if scale is None else float(scale),
        update_rule=rule,
        chunk_size=int(node.attr("chunk_size", 64)),
    )


@translator("CausalConvWithState")
def _causal_conv(ctx: Context, node: Node) -> None:
    ins = [i for i in node.inputs[:4] if i]
    ctx.op(
        "CausalConvWithState",
        ins,
        _outputs(ctx, node, node.outputs[0]),
        activation=node.attr("activation", "none"),
        has_bias=bool(node.input(2)),
    )


@translator("TensorScatter")
def _tensor_scatter(ctx: Context, node: Node) -> None:
    ins = [i for i in node.inputs[:3] if i]
    if not node.input(1):
        raise unsupported("an omitted update")
    ctx.op(
        "TensorScatter",
        ins,
        node.outputs[:1],
        mode=node.attr("mode", "linear"),
        axis=int(node.attr("axis", -2)),
    )


@translator("SwiGLU")
def _swiglu(ctx: Context, node: Node) -> None:
    # Y = A * sigmoid(alpha * A) * B (ONNX checks A and B have one shape; kaffa's Mul would broadcast).
    a, b = node.inputs[:2]
    out = node.outputs[0]
    alpha = float(node.attr("alpha", 1.0))
    sa, gate, sig = a, ctx.temp(a + "_swish"), ctx.temp(a + "_sigmoid")
    if alpha != 1.0:
        sa = ctx.temp(a + "_alpha")
        ctx.op("Scale", [a], [sa], scale=alpha)
    ctx.op("Sigmoid", [sa], [sig])
    ctx.op("Mul", [a, sig], [gate])
    ctx.op("Mul", [gate, b], [out])

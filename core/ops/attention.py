"""Attention and the transformer building blocks ONNX defines: Attention (scaled dot-product
attention with multi-/grouped-query heads, masks, a KV cache, softcap, sliding windows),
RotaryEmbedding, LinearAttention (recurrent linear attention), CausalConvWithState and
TensorScatter (KV-cache writes) (schemas, shape inference, gradient makers).

Optional inputs that ONNX leaves empty in the middle of an input list are told apart by
arguments (kaffa inputs are positional and never empty): Attention's ``has_attn_mask``,
``has_past_kv`` and ``has_nonpad_kv_seqlen`` say which of attn_mask, past_key/past_value and
nonpad_kv_seqlen follow Q, K, V, in that order; CausalConvWithState's ``has_bias`` whether its
third input is the bias; LinearAttention's update_rule fixes which of decay and beta it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes as _dt
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import Arg, ArgType, Shape, TensorInfo, check, define, norm_axis, same_dtype

BOOL = np.dtype(np.bool_)
INT64 = np.dtype(np.int64)
INDEX_TYPES = (np.dtype(np.int32), INT64)


def _s(info: TensorInfo | Shape | None) -> str:
    shape = info.shape if isinstance(info, TensorInfo) else info
    return "[?]" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _eq(a: int | None, b: int | None) -> bool:
    """True unless both are known and differ."""
    return a is None or b is None or a == b


def _first(*dims: int | None) -> int | None:
    return next((d for d in dims if d is not None), None)


def _div(a: int | None, b: int) -> int | None:
    return None if a is None else a // b


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


# -- Attention -------------------------------------------------------------------------------------

ATTENTION_ARGS = [
    Arg("scale", ArgType.FLOAT, None, "scale of Q K^T (default 1/sqrt(head size))"),
    Arg("is_causal", ArgType.BOOL, False, "query i attends key j only if j <= i + offset (bottom-right)"),
    Arg("q_num_heads", ArgType.INT, 0, "3-D inputs: number of query heads"),
    Arg("kv_num_heads", ArgType.INT, 0, "3-D inputs: number of key/value heads"),
    Arg("softcap", ArgType.FLOAT, 0.0, "> 0: scores become softcap * tanh(scores / softcap) before the bias"),
    Arg(
        "qk_matmul_output_mode",
        ArgType.INT,
        0,
        "output 3: 0 scaled Q K^T, 1 after softcap, 2 plus the bias, 3 the softmax probabilities",
    ),
    Arg("softmax_precision", ArgType.DTYPE, None, "dtype the softmax is computed in (at least float32)"),
    Arg("left_window_size", ArgType.INT, -1, ">= 0: a query at position p sees keys j >= p - left"),
    Arg("right_window_size", ArgType.INT, -1, ">= 0: a query at position p sees keys j <= p + right"),
    Arg("has_attn_mask", ArgType.BOOL, False, "an attn_mask input follows V"),
    Arg("has_past_kv", ArgType.BOOL, False, "past_key and past_value inputs follow (the mask)"),
    Arg("has_nonpad_kv_seqlen", ArgType.BOOL, False, "a nonpad_kv_seqlen input comes last"),
]


def attention_roles(args: Mapping[str, Any]) -> dict[str, int]:
    """Input index of each optional Attention input that is present."""
    roles: dict[str, int] = {}
    k = 3
    if args["has_attn_mask"]:
        roles["attn_mask"] = k
        k += 1
    if args["has_past_kv"]:
        roles["past_key"], roles["past_value"] = k, k + 1
        k += 2
    if args["has_nonpad_kv_seqlen"]:
        roles["nonpad_kv_seqlen"] = k
        k += 1
    roles["count"] = k
    return roles


def _attention_dims(op: str, args: Mapping[str, Any], ins: list[TensorInfo]) -> dict[str, Any]:
    """Check Attention's inputs; return its sizes (None where unknown): B, Hq, Hkv, Sq, Skv (new
    keys), P (past keys), D, Dv and rank."""
    roles = attention_roles(args)
    check(
        len(ins) >= roles["count"],
        f"{op}: has_attn_mask/has_past_kv/has_nonpad_kv_seqlen need {roles['count']} inputs, got {len(ins)}",
    )
    q, k, v = ins[:3]
    ranks = {i.rank for i in (q, k, v) if i.rank is not None}
    check(len(ranks) <= 1, f"{op}: Q {_s(q)}, K {_s(k)} and V {_s(v)} must have one rank (3 or 4)")
    rank = ranks.pop() if ranks else None
    check(rank in (None, 3, 4), f"{op}: Q, K and V must be 3-D or 4-D, got Q {_s(q)}")
    hq, hkv = args["q_num_heads"], args["kv_num_heads"]
    mode = args["qk_matmul_output_mode"]
    check(mode in (0, 1, 2, 3), f"{op}: qk_matmul_output_mode must be 0..3, got {mode}")
    for side in ("left_window_size", "right_window_size"):
        check(args[side] >= -1, f"{op}: {side} must be -1 or >= 0, got {args[side]}")
    check(args["softcap"] >= 0, f"{op}: softcap must be >= 0, got {args['softcap']}")
    sp = args["softmax_precision"]
    check(sp is None or sp in _dt.FLOAT_TYPES, f"{op}: softmax_precision must be a float type, got {sp}")
    dims: dict[str, Any] = {"rank": rank, "Hq": hq or None, "Hkv": hkv or None}
    if rank == 3:
        check(hq > 0 and hkv > 0, f"{op}: 3-D Q, K, V need q_num_heads and kv_num_heads > 0")
        qs, ks, vs = (i.shape for i in (q, k, v))
        for name, s, h in (("Q", qs, hq), ("K", ks, hkv), ("V", vs, hkv)):
            check(
                s is None or s[2] is None or s[2] % h == 0,
                f"{op}: {name} {_s(s)}: hidden size not divisible by {h} heads",
            )
        dims.update(
            B=_first(qs and qs[0], ks and ks[0], vs and vs[0]),
            Sq=qs and qs[1],
            Skv=_first(ks and ks[1], vs and vs[1]),
            D=_first(qs and _div(qs[2], hq), ks and _div(ks[2], hkv)),
            Dv=vs and _div(vs[2], hkv),
        )
        shapes = {"Q": qs and (qs[0], hq, qs[1], _div(qs[2], hq))}
        shapes["K"] = ks and (ks[0], hkv, ks[1], _div(ks[2], hkv))
        shapes["V"] = vs and (vs[0], hkv, vs[1], _div(vs[2], hkv))
    else:
        check(
            (not hq and not hkv) or rank is None,
            f"{op}: q_num_heads/kv_num_heads are for 3-D inputs only (Q is {_s(q)})",
        )
        shapes = {"Q": q.shape, "K": k.shape, "V": v.shape}
        qs, ks, vs = shapes["Q"], shapes["K"], shapes["V"]
        dims.update(
            B=_first(qs and qs[0], ks and ks[0], vs and vs[0]),
            Hq=qs and qs[1],
            Hkv=_first(ks and ks[1], vs and vs[1]),
            Sq=qs and qs[2],
            Skv=_first(ks and ks[2], vs and vs[2]),
            D=_first(qs and qs[3], ks and ks[3]),
            Dv=vs and vs[3],
        )
    qs, ks, vs = shapes["Q"], shapes["K"], shapes["V"]
    if qs and ks and vs:
        check(
            _eq(qs[0], ks[0]) and _eq(ks[0], vs[0]),
            f"{op}: Q {_s(q)}, K {_s(k)}, V {_s(v)} must share the batch size",
        )
        check(_eq(qs[3], ks[3]), f"{op}: Q {_s(q)} and K {_s(k)} must have one head size")
        check(
            _eq(ks[1], vs[1]) and _eq(ks[2], vs[2]), f"{op}: K {_s(k)} and V {_s(v)} differ in heads/length"
        )
    if dims["Hq"] is not None and dims["Hkv"] is not None:
        check(
            dims["Hkv"] > 0 and dims["Hq"] % dims["Hkv"] == 0,
            f"{op}: q heads ({dims['Hq']}) must be a multiple of kv heads ({dims['Hkv']})",
        )
    dtype = same_dtype(op, [q, k, v])
    dims["P"] = 0
    if "past_key" in roles:
        pk, pv = ins[roles["past_key"]], ins[roles["past_value"]]
        same_dtype(op, [q, pk, pv])
        for name, p, d in (("past_key", pk, dims["D"]), ("past_value", pv, dims["Dv"])):
            if p.shape is not None:
                check(len(p.shape) == 4, f"{op}: {name} {_s(p)} must be 4-D [B, kv heads, past, head size]")
                ok = _eq(p.shape[0], dims["B"]) and _eq(p.shape[1], dims["Hkv"]) and _eq(p.shape[3], d)
                check(ok, f"{op}: {name} {_s(p)} does not match Q {_s(q)}, K {_s(k)}, V {_s(v)}")
        dims["P"] = _first(pk.shape and pk.shape[2], pv.shape and pv.shape[2])
        check("nonpad_kv_seqlen" not in roles, f"{op}: nonpad_kv_seqlen cannot be combined with past_key")
    dims["T"] = _add(dims["P"], dims["Skv"])
    if "attn_mask" in roles:
        m = ins[roles["attn_mask"]]
        check(
            m.dtype is None or dtype is None or m.dtype in (BOOL, dtype),
            f"{op}: attn_mask must be bool or Q's dtype, got {_dt.name(m.dtype)}",
        )
        if m.shape is not None:
            check(1 <= len(m.shape) <= 4, f"{op}: attn_mask {_s(m)} must have rank 1 to 4")
            t = dims["T"]
            check(
                m.shape[-1] is None or t is None or m.shape[-1] <= t,
                f"{op}: attn_mask {_s(m)} is longer than the {t} keys",
            )
            lead = (dims["B"], dims["Hq"], dims["Sq"])[4 - len(m.shape) :] if len(m.shape) > 1 else ()
            check(
                all(a in (1, None) or _eq(a, b) for a, b in zip(m.shape[:-1], lead)),
                f"{op}: attn_mask {_s(m)} does not broadcast to [B, Hq, Sq] = {_s(lead)} (and the keys)",
            )
    if "nonpad_kv_seqlen" in roles:
        n = ins[roles["nonpad_kv_seqlen"]]
        check(n.dtype is None or n.dtype in INDEX_TYPES, f"{op}: nonpad_kv_seqlen must be int64")
        check(
            n.shape is None or (len(n.shape) == 1 and _eq(n.shape[0], dims["B"])),
            f"{op}: nonpad_kv_seqlen {_s(n)} must be [batch] = [{dims['B']}]",
        )
    dims["dtype"] = dtype
    return dims


def _infer_attention(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    d = _attention_dims("Attention", args, ins)
    hq = d["Hq"]
    if d["rank"] == 3:
        y = (d["B"], d["Sq"], None if hq is None or d["Dv"] is None else hq * d["Dv"])
    elif d["rank"] == 4:
        y = (d["B"], hq, d["Sq"], d["Dv"])
    else:
        y = None
    t = d["dtype"]
    return [
        TensorInfo(y, t),
        TensorInfo((d["B"], d["Hkv"], d["T"], d["D"]), t),
        TensorInfo((d["B"], d["Hkv"], d["T"], d["Dv"]), t),
        TensorInfo((d["B"], hq, d["Sq"], d["T"]), t),
    ][:n]


define(
    "Attention",
    family="attention",
    doc="Scaled dot-product attention (ONNX Attention-23..25). With S = scale * Q K^T per head "
    "(K, V heads shared by q_num_heads / kv_num_heads query heads), optionally S = softcap * "
    "tanh(S / softcap), then P = softmax(S + bias) and Y = P V. The bias sums the attn_mask (bool: "
    "False -> -inf; float: added; its key axis padded with -inf up to the key count), the causal "
    "mask (key j <= i + offset), the sliding window and the padding mask of nonpad_kv_seqlen "
    "(key j < nonpad_kv_seqlen[b]); offset is the past length, or nonpad_kv_seqlen[b] - q length. "
    "A query row whose bias is all -inf gets zero probabilities. Inputs are 4-D [B, heads, seq, "
    "size], or 3-D [B, seq, heads * size] with q_num_heads/kv_num_heads. present_key/value = "
    "past concatenated with K/V on the sequence axis.",
    inputs=(3, 7),
    outputs=(1, 4),
    input_docs=[
        ("Q", "[B, Hq, Sq, D] or [B, Sq, Hq*D]"),
        ("K", "[B, Hkv, Skv, D] or [B, Skv, Hkv*D]"),
        ("V", "[B, Hkv, Skv, Dv] or [B, Skv, Hkv*Dv]"),
        ("attn_mask", "(has_attn_mask) bool or T, broadcastable to [B, Hq, Sq, keys]"),
        ("past_key", "(has_past_kv) [B, Hkv, P, D]"),
        ("past_value", "(has_past_kv) [B, Hkv, P, Dv]"),
        ("nonpad_kv_seqlen", "(has_nonpad_kv_seqlen) int64 [B]"),
    ],
    output_docs=[
        ("Y", "[B, Hq, Sq, Dv] or [B, Sq, Hq*Dv]"),
        ("present_key", "[B, Hkv, P+Skv, D]"),
        ("present_value", "[B, Hkv, P+Skv, Dv]"),
        ("qk_matmul_output", "[B, Hq, Sq, P+Skv], see qk_matmul_output_mode"),
    ],
    args=ATTENTION_ARGS,
    infer=_infer_attention,
    grad_outputs=(0, 1, 2),
)


def _infer_attention_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    roles = attention_roles(args)
    fwd = ins[: roles["count"]]
    _attention_dims("AttentionGradient", args, fwd)
    dtype = same_dtype("AttentionGradient", ins[:3])
    outs = [TensorInfo(i.shape, dtype) for i in fwd[:3]]
    if "attn_mask" in roles:
        outs.append(TensorInfo(fwd[roles["attn_mask"]].shape, dtype))
    if "past_key" in roles:
        outs += [
            TensorInfo(fwd[roles["past_key"]].shape, dtype),
            TensorInfo(fwd[roles["past_value"]].shape, dtype),
        ]
    return outs[:n]


define(
    "AttentionGradient",
    family="attention",
    doc="Gradient of Attention's Y (and of present_key/present_value with present_grads): the "
    "forward inputs, dY, then (present_grads) d present_key and d present_value. Outputs dQ, dK, "
    "dV, then d attn_mask (when has_attn_mask: the bias gradient summed to the mask's shape; for a "
    "bool mask nothing reads it), then d past_key, d past_value "
    "(has_past_kv). With P the probabilities: dV = P^T dY, dS = P * (dY V^T - rowsum(P * dY V^T)) "
    "(times 1 - tanh^2 under softcap), dQ = scale * dS K, dK = scale * dS^T Q, d attn_mask = dS "
    "summed to the mask's shape (before the softcap factor).",
    inputs=(4, 10),
    outputs=(3, 6),
    input_docs=[("forward inputs", "as Attention"), ("dY", "gradient of Y"), ("dpresent", "optional")],
    output_docs=[("dQ", "Q's shape"), ("dK", "K's shape"), ("dV", "V's shape"), ("more", "see doc")],
    args=[*ATTENTION_ARGS, Arg("present_grads", ArgType.BOOL, False, "d present_key/value follow dY")],
    infer=_infer_attention_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("Attention")
def _attention_grad(g: GradientContext) -> GradientOps:
    roles = attention_roles(g.args)
    gos = [g.GO(i) if i < g.num_outputs else None for i in range(3)]
    if all(x is None for x in gos):
        return GradientOps([], [None] * g.num_inputs)
    ops = []
    dy = gos[0]
    if dy is None:
        dy = g.temp("dY")
        ops.append(g.make("ZerosLike", [g.O(0)], [dy]))
    ins = [g.I(i) for i in range(roles["count"])] + [dy]
    present = gos[1] is not None or gos[2] is not None
    if present:
        for j in (1, 2):
            if gos[j] is None:
                gos[j] = g.temp(f"dpresent{j}")
                ops.append(g.make("ZerosLike", [g.O(j)], [gos[j]]))
        ins += [gos[1], gos[2]]
    outs = [g.GI(0), g.GI(1), g.GI(2)]
    g_inputs: list[str | None] = [g.GI(0), g.GI(1), g.GI(2)] + [None] * (g.num_inputs - 3)
    if "attn_mask" in roles:
        # The maker cannot see the mask's dtype: a bool mask gets this output too (nothing reads it).
        dm = g.GI(roles["attn_mask"])
        outs.append(dm)
        g_inputs[roles["attn_mask"]] = dm
    if "past_key" in roles:
        for name in ("past_key", "past_value"):
            outs.append(g.GI(roles[name]))
            g_inputs[roles[name]] = g.GI(roles[name])
    ops.append(g.make("AttentionGradient", ins, outs, present_grads=present, **g.forward_args()))
    return GradientOps(ops, g_inputs)


# -- RotaryEmbedding -------------------------------------------------------------------------------

ROTARY_ARGS = [
    Arg("interleaved", ArgType.BOOL, False, "rotate pairs (x[2i], x[2i+1]) instead of the two halves"),
    Arg("rotary_embedding_dim", ArgType.INT, 0, "rotate only the first dims of each head (0: all)"),
    Arg("num_heads", ArgType.INT, 0, "3-D input [B, S, heads * size]: number of heads"),
]


def _infer_rotary(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "RotaryEmbedding"
    x, cos, sin = ins[:3]
    dtype = same_dtype(op, [x, cos, sin])
    rd = args["rotary_embedding_dim"]
    check(rd >= 0 and rd % 2 == 0, f"{op}: rotary_embedding_dim must be even and >= 0, got {rd}")
    head = None
    if x.shape is not None:
        check(len(x.shape) in (3, 4), f"{op}: X {_s(x)} must be [B, heads, S, size] or [B, S, heads*size]")
        if len(x.shape) == 3:
            h = args["num_heads"]
            check(h > 0, f"{op}: a 3-D X {_s(x)} needs num_heads > 0")
            check(
                x.shape[2] is None or x.shape[2] % h == 0,
                f"{op}: X {_s(x)}: hidden size not divisible by {h} heads",
            )
            head = _div(x.shape[2], h)
        else:
            head = x.shape[3]
    rot = rd or head
    if rot is not None:
        check(rot % 2 == 0, f"{op}: the rotated size {rot} must be even")
        check(head is None or rot <= head, f"{op}: rotary_embedding_dim {rot} exceeds the head size {head}")
    want = 2 if len(ins) == 4 else 3
    for name, c in (("cos_cache", cos), ("sin_cache", sin)):
        if c.shape is None:
            continue
        check(len(c.shape) == want, f"{op}: {name} {_s(c)} must have rank {want}")
        check(
            c.shape[-1] is None or rot is None or c.shape[-1] == rot // 2,
            f"{op}: {name} {_s(c)}: last dim must be rotated size / 2 = {None if rot is None else rot // 2}",
        )
    if len(ins) == 4:
        p = ins[3]
        check(p.dtype is None or p.dtype in INDEX_TYPES, f"{op}: position_ids must be int64")
        check(p.shape is None or len(p.shape) == 2, f"{op}: position_ids {_s(p)} must be [B, S]")
    return [TensorInfo(x.shape, dtype)]


define(
    "RotaryEmbedding",
    family="attention",
    doc="Rotary positional embedding (ONNX RotaryEmbedding-23): per head, the first "
    "rotary_embedding_dim values (all by default) are split into halves x1, x2 (interleaved: even "
    "and odd positions) and become x1 cos - x2 sin, x1 sin + x2 cos, with cos/sin taken from the "
    "caches at position_ids[b, s] (or given per [B, S] without position_ids).",
    inputs=(3, 4),
    input_docs=[
        ("X", "[B, heads, S, size] or [B, S, heads*size]"),
        ("cos_cache", "[max_pos, rot/2] (or [B, S, rot/2] without position_ids)"),
        ("sin_cache", "as cos_cache"),
        ("position_ids", "int64 [B, S] (optional)"),
    ],
    output_docs=[("Y", "X's shape")],
    args=ROTARY_ARGS,
    infer=_infer_rotary,
)


@gradient("RotaryEmbedding")
def _rotary_grad(g: GradientContext) -> GradientOps:
    # The rotation is orthogonal: its transpose is the rotation by -angle (sin negated).
    neg = g.temp("neg_sin")
    ins = [g.GO(0), g.I(1), neg] + ([g.I(3)] if g.num_inputs == 4 else [])
    ops = [
        g.make("Negative", [g.I(2)], [neg]),
        g.make("RotaryEmbedding", ins, [g.GI(0)], **g.forward_args()),
    ]
    return GradientOps(ops, [g.GI(0)] + [None] * (g.num_inputs - 1))


# -- LinearAttention -------------------------------------------------------------------------------

UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def linear_attention_roles(args: Mapping[str, Any], n_inputs: int) -> dict[str, int]:
    """Input index of past_state, decay and beta where present."""
    rule = args["update_rule"]
    check(rule in UPDATE_RULES, f"LinearAttention: update_rule must be one of {UPDATE_RULES}, got {rule!r}")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    past = n_inputs - 3 - gated - delta
    check(
        past in (0, 1),
        f"LinearAttention: update_rule {rule!r} takes {3 + gated + delta} or {4 + gated + delta} inputs "
        f"(query, key, value, [past_state]{', decay' if gated else ''}{', beta' if delta else ''}), "
        f"got {n_inputs}",
    )
    roles, k = {}, 3
    for name, on in (("past_state", past), ("decay", gated), ("beta", delta)):
        if on:
            roles[name] = k
            k += 1
    return roles


def _infer_linear_attention(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "LinearAttention"
    roles = linear_attention_roles(args, len(ins))
    dtype = same_dtype(op, ins)
    hq, hkv = args["q_num_heads"], args["kv_num_heads"]
    check(
        hq > 0 and hkv > 0 and hq % hkv == 0,
        f"{op}: q_num_heads {hq} must be a multiple of kv_num_heads {hkv}",
    )
    q, k, v = ins[:3]
    for name, x in (("query", q), ("key", k), ("value", v)):
        check(x.shape is None or len(x.shape) == 3, f"{op}: {name} {_s(x)} must be [B, T, heads*size]")
    dk = _first(q.shape and _div(q.shape[2], hq), k.shape and _div(k.shape[2], hkv))
    dv = v.shape and _div(v.shape[2], hkv)
    for name, x, h in (("query", q, hq), ("key", k, hkv), ("value", v, hkv)):
        check(
            x.shape is None or x.shape[2] is None or x.shape[2] % h == 0,
            f"{op}: {name} {_s(x)}: last dim not divisible by {h} heads",
        )
    if q.shape and k.shape:
        check(
            _eq(q.shape[2] // hq if q.shape[2] else None, k.shape[2] // hkv if k.shape[2] else None),
            f"{op}: query {_s(q)} and key {_s(k)} must have one head size",
        )
    b = _first(q.shape and q.shape[0], k.shape and k.shape[0], v.shape and v.shape[0])
    t = _first(q.shape and q.shape[1], k.shape and k.shape[1], v.shape and v.shape[1])
    for x in (q, k, v):
        check(
            x.shape is None or (_eq(x.shape[0], b) and _eq(x.shape[1], t)),
            f"{op}: query {_s(q)}, key {_s(k)}, value {_s(v)} must share B and T",
        )
    state = (b, hkv, dk, dv)
    if "past_state" in roles:
        p = ins[roles["past_state"]].shape
        check(
            p is None or (len(p) == 4 and all(_eq(a, c) for a, c in zip(p, state))),
            f"{op}: past_state {_s(p)} must be [B, kv heads, dk, dv] = {_s(state)}",
        )
    if "decay" in roles:
        s = ins[roles["decay"]].shape
        ok = s is None or (
            len(s) == 3
            and _eq(s[0], b)
            and _eq(s[1], t)
            and (s[2] is None or s[2] == hkv or _eq(s[2], _mul(hkv, dk)))
        )
        check(ok, f"{op}: decay {_s(s)} must be [B, T, kv heads] or [B, T, kv heads * dk]")
    if "beta" in roles:
        s = ins[roles["beta"]].shape
        ok = s is None or (
            len(s) == 3 and _eq(s[0], b) and _eq(s[1], t) and (s[2] is None or s[2] in (1, hkv))
        )
        check(ok, f"{op}: beta {_s(s)} must be [B, T, kv heads] or [B, T, 1]")
    out = (b, t, None if dv is None else hq * dv)
    return [TensorInfo(out, dtype), TensorInfo(state, dtype)][:n]


def _mul(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a * b


define(
    "LinearAttention",
    family="attention",
    doc="Recurrent linear attention (ONNX LinearAttention-27), token by token with state S [B, Hkv, "
    "dk, dv] (past_state or zeros): linear S += k v^T; gated S = exp(g) S + k v^T; delta S += beta k "
    "(v - S^T k)^T; gated_delta S = exp(g) S + beta k (v - exp(g) S^T k)^T; output o = scale q^T S "
    "(query heads share kv heads in groups). Inputs are [B, T, heads * size].",
    inputs=(3, 6),
    outputs=(1, 2),
    input_docs=[
        ("query", "[B, T, Hq*dk]"),
        ("key", "[B, T, Hkv*dk]"),
        ("value", "[B, T, Hkv*dv]"),
        ("past_state", "[B, Hkv, dk, dv] (optional)"),
        ("decay", "gated rules: [B, T, Hkv] or [B, T, Hkv*dk] (log space)"),
        ("beta", "delta rules: [B, T, Hkv] or [B, T, 1]"),
    ],
    output_docs=[("output", "[B, T, Hq*dv]"), ("present_state", "[B, Hkv, dk, dv]")],
    args=[
        Arg("q_num_heads", ArgType.INT, 0, "number of query heads (required)"),
        Arg("kv_num_heads", ArgType.INT, 0, "number of key/value heads (required)"),
        Arg("scale", ArgType.FLOAT, 0.0, "output scale (0: 1/sqrt(dk))"),
        Arg("update_rule", ArgType.STRING, "gated_delta", "linear, gated, delta or gated_delta"),
        Arg("chunk_size", ArgType.INT, 64, "ONNX's chunking hint (no effect on the result)"),
    ],
    infer=_infer_linear_attention,
    # A recurrence through every token: its gradient (backprop through time) is not cheap here.
    differentiable=False,
)


# -- CausalConvWithState ---------------------------------------------------------------------------

CONV_ACTIVATIONS = ("none", "silu", "swish")


def causal_conv_roles(args: Mapping[str, Any], n_inputs: int) -> dict[str, int]:
    roles, k = {}, 2
    if args["has_bias"] and n_inputs > k:
        roles["bias"] = k
        k += 1
    if n_inputs > k:
        roles["past_state"] = k
        k += 1
    check(k == n_inputs, f"CausalConvWithState: {n_inputs} inputs do not fit has_bias={args['has_bias']}")
    return roles


def _infer_causal_conv(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "CausalConvWithState"
    roles = causal_conv_roles(args, len(ins))
    dtype = same_dtype(op, ins)
    check(args["activation"] in CONV_ACTIVATIONS, f"{op}: activation must be one of {CONV_ACTIVATIONS}")
    x, w = ins[:2]
    check(x.shape is None or len(x.shape) == 3, f"{op}: input {_s(x)} must be [B, C, L]")
    check(
        w.shape is None or (len(w.shape) == 3 and w.shape[1] in (1, None)),
        f"{op}: weight {_s(w)} must be [C, 1, k]",
    )
    c = _first(x.shape and x.shape[1], w.shape and w.shape[0])
    check(
        x.shape is None or w.shape is None or _eq(x.shape[1], w.shape[0]),
        f"{op}: input {_s(x)} and weight {_s(w)} must have one channel count",
    )
    k = w.shape and w.shape[2]
    check(k is None or k >= 1, f"{op}: weight {_s(w)} needs a kernel size >= 1")
    b = x.shape and x.shape[0]
    state = (b, c, None if k is None else k - 1)
    if "bias" in roles:
        s = ins[roles["bias"]].shape
        check(s is None or (len(s) == 1 and _eq(s[0], c)), f"{op}: bias {_s(s)} must be [C] = [{c}]")
    if "past_state" in roles:
        s = ins[roles["past_state"]].shape
        check(
            s is None or (len(s) == 3 and all(_eq(a, d) for a, d in zip(s, state))),
            f"{op}: past_state {_s(s)} must be [B, C, k-1] = {_s(state)}",
        )
    return [TensorInfo(x.shape, dtype), TensorInfo(state, dtype)][:n]


define(
    "CausalConvWithState",
    family="attention",
    doc="Stateful causal depthwise 1-D convolution (ONNX CausalConvWithState-27): the input [B, C, L] "
    "is prefixed with past_state [B, C, k-1] (zeros without it), convolved per channel with weight "
    "[C, 1, k] (no padding, stride 1) plus bias, then optionally y * sigmoid(y) (activation silu or "
    "swish); present_state is the last k-1 positions of the prefixed input.",
    inputs=(2, 4),
    outputs=(1, 2),
    input_docs=[
        ("input", "[B, C, L]"),
        ("weight", "[C, 1, k]"),
        ("bias", "[C] (when has_bias)"),
        ("past_state", "[B, C, k-1] (optional, last)"),
    ],
    output_docs=[("output", "[B, C, L]"), ("present_state", "[B, C, k-1]")],
    args=[
        Arg("activation", ArgType.STRING, "none", "none, silu or swish (the same)"),
        Arg("has_bias", ArgType.BOOL, True, "with three inputs: is the third the bias (else past_state)"),
    ],
    infer=_infer_causal_conv,
)


def _infer_causal_conv_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "CausalConvWithStateGradient"
    fwd = ins[: len(ins) - 1 - int(args["state_grad"])]
    roles = causal_conv_roles(args, len(fwd))
    dtype = same_dtype(op, ins)
    outs = [TensorInfo(fwd[0].shape, dtype), TensorInfo(fwd[1].shape, dtype)]
    for name in ("bias", "past_state"):
        if name in roles:
            outs.append(TensorInfo(fwd[roles[name]].shape, dtype))
    return outs[:n]


define(
    "CausalConvWithStateGradient",
    family="attention",
    doc="Gradient of CausalConvWithState: the forward inputs, d output, then (state_grad) d "
    "present_state; outputs d input, d weight, then d bias and d past_state where the forward op "
    "has them.",
    inputs=(3, 6),
    outputs=(2, 4),
    input_docs=[
        ("forward inputs", "as CausalConvWithState"),
        ("dY", "d output"),
        ("dstate", "d present_state"),
    ],
    output_docs=[("dX", "input's shape"), ("dW", "weight's shape"), ("more", "d bias, d past_state")],
    args=[
        Arg("activation", ArgType.STRING, "none", "as the forward op"),
        Arg("has_bias", ArgType.BOOL, True, "as the forward op"),
        Arg("state_grad", ArgType.BOOL, False, "a d present_state input follows d output"),
    ],
    infer=_infer_causal_conv_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("CausalConvWithState")
def _causal_conv_grad(g: GradientContext) -> GradientOps:
    dy = g.GO(0)
    dstate = g.GO(1) if g.num_outputs > 1 else None
    if dy is None and dstate is None:
        return GradientOps([], [None] * g.num_inputs)
    ops = []
    if dy is None:
        dy = g.temp("dY")
        ops.append(g.make("ZerosLike", [g.O(0)], [dy]))
    ins = [g.I(i) for i in range(g.num_inputs)] + [dy] + ([dstate] if dstate is not None else [])
    outs = [g.GI(i) for i in range(g.num_inputs)]
    ops.append(
        g.make("CausalConvWithStateGradient", ins, outs, state_grad=dstate is not None, **g.forward_args())
    )
    return GradientOps(ops, list(outs))


# -- TensorScatter ---------------------------------------------------------------------------------

SCATTER_MODES = ("linear", "circular")


def _infer_tensor_scatter(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "TensorScatter"
    past, update = ins[:2]
    dtype = same_dtype(op, [past, update])
    check(args["mode"] in SCATTER_MODES, f"{op}: mode must be linear or circular, got {args['mode']!r}")
    if past.shape is not None:
        r = len(past.shape)
        check(r >= 2, f"{op}: past_cache {_s(past)} needs a batch and a sequence axis")
        axis = norm_axis(args["axis"], r, op)
        check(axis != 0, f"{op}: axis must not be the batch axis 0")
        if update.shape is not None:
            ok = len(update.shape) == r and all(
                _eq(a, b) if i != axis else (a is None or b is None or b <= a)
                for i, (a, b) in enumerate(zip(past.shape, update.shape))
            )
            check(ok, f"{op}: update {_s(update)} must match past_cache {_s(past)} but on axis {axis} (<=)")
    if len(ins) == 3:
        w = ins[2]
        check(w.dtype is None or w.dtype in INDEX_TYPES, f"{op}: write_indices must be int64")
        b = past.shape and past.shape[0]
        check(
            w.shape is None or (len(w.shape) == 1 and _eq(w.shape[0], b)),
            f"{op}: write_indices {_s(w)} must be [batch] = [{b}]",
        )
    return [TensorInfo(past.shape, dtype)]


define(
    "TensorScatter",
    family="attention",
    doc="KV-cache write (ONNX TensorScatter-24): a copy of past_cache whose positions write_indices[b] "
    "+ s (s < update's length; mod the cache length in circular mode) on the sequence axis hold "
    "update's positions s, for every batch b (write_indices default to 0).",
    inputs=(2, 3),
    input_docs=[
        ("past_cache", "[B, ..., max_seq, ...]"),
        ("update", "[B, ..., seq, ...]"),
        ("write_indices", "int64 [B]"),
    ],
    output_docs=[("present_cache", "past_cache's shape")],
    args=[
        Arg("mode", ArgType.STRING, "linear", "linear (must fit) or circular (wraps around)"),
        Arg("axis", ArgType.INT, -2, "the sequence axis (not 0)"),
    ],
    infer=_infer_tensor_scatter,
    dtypes=_dt.ALL_TYPES,
)


@gradient("TensorScatter")
def _tensor_scatter_grad(g: GradientContext) -> GradientOps:
    # Linear in (past, update): dpast = dY with the written cells zeroed (TensorScatter of zeros),
    # dupdate = dY at the written cells, read back with TensorGather (its adjoint).
    zeros, ops = g.temp("zeros"), []
    idx = [g.I(2)] if g.num_inputs == 3 else []
    args = g.forward_args()
    ops.append(g.make("ZerosLike", [g.I(1)], [zeros]))
    ops.append(g.make("TensorScatter", [g.GO(0), zeros, *idx], [g.GI(0)], **args))
    ops.append(g.make("TensorGather", [g.GO(0), g.I(1), *idx], [g.GI(1)], **args))
    return GradientOps(ops, [g.GI(0), g.GI(1)] + [None] * (g.num_inputs - 2))


def _infer_tensor_gather(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _infer_tensor_scatter(args, ins, n)
    return [TensorInfo(ins[1].shape, ins[0].dtype)]


define(
    "TensorGather",
    family="attention",
    doc="TensorScatter's adjoint: reads, from cache, the cells TensorScatter would write; the output "
    "has like's shape (position s on the sequence axis comes from write_indices[b] + s, mod the cache "
    "length in circular mode).",
    inputs=(2, 3),
    input_docs=[
        ("cache", "[B, ..., max_seq, ...]"),
        ("like", "[B, ..., seq, ...]"),
        ("write_indices", "int64 [B]"),
    ],
    output_docs=[("values", "like's shape")],
    args=[
        Arg("mode", ArgType.STRING, "linear", "linear or circular"),
        Arg("axis", ArgType.INT, -2, "the sequence axis (not 0)"),
    ],
    infer=_infer_tensor_gather,
    dtypes=_dt.ALL_TYPES,
    differentiable=False,
)

__all__ = ["attention_roles", "causal_conv_roles", "linear_attention_roles"]

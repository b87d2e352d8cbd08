"""Conformance cases for the attention family (see kaffa.ops.attention)."""

from __future__ import annotations

import numpy as np

from kaffa_conformance.cases import EXACT, GEMM, REDUCTION, Case, cases, uniform

I64 = np.int64


@cases("Attention")
def attention(rng):
    def case(name, q, k, v, extra=(), num_outputs=1, fixed=None, **args):
        """q, k, v: shapes; extra: further inputs (master values)."""
        ins = [uniform(rng, q), uniform(rng, k), uniform(rng, v), *extra]
        d = q[-1] if len(q) == 4 else q[-1] // args["q_num_heads"]
        t = k[-2] if len(k) == 4 else k[1]
        return Case(
            "Attention",
            name,
            ins,
            args,
            num_outputs=num_outputs,
            op_class=GEMM,
            reduction=d + t + 12,
            fixed_dtype_inputs=fixed or {},
        )

    bool_mask = rng.uniform(size=(2, 2, 3, 4)) < 0.7
    bool_mask[0, 1, 2] = False  # one fully masked row: zero output
    return [
        case("4d", (2, 2, 3, 4), (2, 2, 4, 4), (2, 2, 4, 5)),
        case("4d_gqa_causal", (1, 4, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3), is_causal=True),
        case(
            "3d_scaled",
            (2, 3, 8),
            (2, 4, 4),
            (2, 4, 6),
            q_num_heads=4,
            kv_num_heads=2,
            scale=0.3,
        ),
        case(
            "float_mask_softcap_qk1",
            (1, 2, 3, 4),
            (1, 2, 4, 4),
            (1, 2, 4, 4),
            extra=[uniform(rng, (3, 4), -2, 0)],
            num_outputs=4,
            softcap=1.5,
            qk_matmul_output_mode=1,
            has_attn_mask=True,
        ),
        case(
            "bool_mask_4d_qk2",
            (2, 2, 3, 4),
            (2, 2, 4, 4),
            (2, 2, 4, 4),
            extra=[bool_mask],
            num_outputs=4,
            fixed={3: np.bool_},
            qk_matmul_output_mode=2,
            has_attn_mask=True,
        ),
        case(
            "past_short_mask_causal",
            (2, 2, 2, 4),
            (2, 1, 2, 4),
            (2, 1, 2, 3),
            extra=[uniform(rng, (2, 1, 2, 3), -1, 0), uniform(rng, (2, 1, 3, 4)), uniform(rng, (2, 1, 3, 3))],
            num_outputs=3,
            is_causal=True,
            has_attn_mask=True,
            has_past_kv=True,
        ),
        case(
            "3d_past_window_qk3",
            (1, 3, 4),
            (1, 3, 4),
            (1, 3, 4),
            extra=[uniform(rng, (1, 2, 2, 2)), uniform(rng, (1, 2, 2, 2))],
            num_outputs=4,
            q_num_heads=2,
            kv_num_heads=2,
            left_window_size=1,
            right_window_size=1,
            qk_matmul_output_mode=3,
            has_past_kv=True,
        ),
        case(
            "nonpad_causal_window",
            (3, 2, 3, 4),
            (3, 1, 6, 4),
            (3, 1, 6, 4),
            # nonpad 2 < 3 queries: the first row sees no key (zero output)
            extra=[uniform(rng, (3, 1, 3, 5), -1, 0), np.array([6, 4, 2], I64)],
            fixed={4: I64},
            is_causal=True,
            left_window_size=2,
            has_attn_mask=True,
            has_nonpad_kv_seqlen=True,
        ),
        case(
            "softmax_precision_double",
            (1, 1, 2, 3),
            (1, 1, 3, 3),
            (1, 1, 3, 2),
            extra=[uniform(rng, (3,), -1, 0)],
            softmax_precision=np.dtype(np.float64),
            has_attn_mask=True,
        ),
    ]


@cases("RotaryEmbedding")
def rotary_embedding(rng):
    def case(name, x, cache, pos=None, **args):
        angles = rng.uniform(0, 2 * np.pi, size=cache)
        ins = [uniform(rng, x), np.cos(angles), np.sin(angles)]
        fixed = {}
        if pos is not None:
            ins.append(rng.integers(0, cache[0], size=pos).astype(I64))
            fixed[3] = I64
        return Case(
            "RotaryEmbedding", name, ins, args, op_class=REDUCTION, reduction=2, fixed_dtype_inputs=fixed
        )

    return [
        case("4d_positions", (2, 3, 4, 6), (10, 3), pos=(2, 4)),
        case("3d_interleaved", (2, 3, 8), (7, 2), pos=(2, 3), num_heads=2, interleaved=True),
        case("no_positions_partial", (1, 2, 3, 8), (1, 3, 2), rotary_embedding_dim=4),
        case(
            "interleaved_partial", (1, 2, 3, 6), (5, 1), pos=(1, 3), rotary_embedding_dim=2, interleaved=True
        ),
    ]


@cases("LinearAttention")
def linear_attention(rng):
    def case(name, b, t, hq, hkv, dk, dv, rule, past=False, per_head_decay=False, scalar_beta=False, **args):
        ins = [uniform(rng, (b, t, hq * dk)), uniform(rng, (b, t, hkv * dk)), uniform(rng, (b, t, hkv * dv))]
        if past:
            ins.append(uniform(rng, (b, hkv, dk, dv)))
        if rule in ("gated", "gated_delta"):
            ins.append(uniform(rng, (b, t, hkv if per_head_decay else hkv * dk), -0.5, 0))
        if rule in ("delta", "gated_delta"):
            ins.append(uniform(rng, (b, t, 1 if scalar_beta else hkv), 0, 1))
        return Case(
            "LinearAttention",
            name,
            ins,
            {"q_num_heads": hq, "kv_num_heads": hkv, "update_rule": rule, **args},
            num_outputs=2,
            op_class=GEMM,
            reduction=t * dk * 2,
        )

    return [
        case("linear", 2, 3, 2, 2, 3, 4, "linear"),
        case("gated_per_head", 1, 4, 2, 2, 2, 3, "gated", per_head_decay=True),
        case("delta_past", 2, 3, 2, 1, 3, 2, "delta", past=True, scale=0.5),
        case("gated_delta_gqa", 1, 3, 4, 2, 2, 2, "gated_delta", scalar_beta=True),
        case("gated_delta_past", 2, 2, 2, 2, 3, 3, "gated_delta", past=True),
    ]


@cases("CausalConvWithState")
def causal_conv_with_state(rng):
    def case(name, b, c, length, k, bias=False, past=False, **args):
        ins = [uniform(rng, (b, c, length)), uniform(rng, (c, 1, k))]
        if bias:
            ins.append(uniform(rng, (c,)))
        if past:
            ins.append(uniform(rng, (b, c, k - 1)))
        return Case(
            "CausalConvWithState",
            name,
            ins,
            {"has_bias": bias, **args},
            num_outputs=2,
            op_class=GEMM,
            reduction=k + 1,
        )

    return [
        case("basic", 2, 3, 5, 3),
        case("bias_past_silu", 2, 2, 4, 4, bias=True, past=True, activation="silu"),
        case("past_no_bias", 1, 3, 2, 3, past=True),
        case("bias_swish", 1, 2, 3, 2, bias=True, activation="swish"),
        case("kernel_one", 2, 2, 3, 1),
        case("short_input", 1, 2, 2, 4, bias=True),
    ]


@cases("TensorScatter")
def tensor_scatter(rng):
    def case(name, cache, update, idx=None, **args):
        ins = [uniform(rng, cache), uniform(rng, update)]
        fixed = {}
        if idx is not None:
            ins.append(np.asarray(idx, I64))
            fixed[2] = I64
        return Case("TensorScatter", name, ins, args, op_class=EXACT, fixed_dtype_inputs=fixed)

    return [
        case("prefill", (2, 2, 5, 3), (2, 2, 3, 3)),
        case("decode", (2, 1, 4, 3), (2, 1, 1, 3), idx=[1, 3], mode="linear"),
        case("circular", (2, 4, 3), (2, 3, 3), idx=[2, 0], mode="circular", axis=1),
        case("axis_last", (3, 2, 5), (3, 2, 2), idx=[0, 3, 1], mode="circular", axis=-1),
    ]


@cases("TensorGather")
def tensor_gather(rng):
    def case(name, cache, like, idx=None, **args):
        ins = [uniform(rng, cache), uniform(rng, like)]
        fixed = {}
        if idx is not None:
            ins.append(np.asarray(idx, I64))
            fixed[2] = I64
        return Case("TensorGather", name, ins, args, op_class=EXACT, fixed_dtype_inputs=fixed)

    return [
        case("prefill", (2, 2, 5, 3), (2, 2, 3, 3)),
        case("decode", (2, 1, 4, 3), (2, 1, 1, 3), idx=[1, 3]),
        case("circular", (2, 4, 3), (2, 3, 3), idx=[2, 0], mode="circular", axis=1),
    ]

"""cpu kernels for the attention family (see kaffa.ops.attention).

Attention works on [B, Hkv, G, S, D] views (G = query heads per kv head), so grouped-query heads
share their K and V without copies; scores, softmax and the products run in float32 for float16
(float64 when softmax_precision asks for it) and are rounded once per output. The gradient
recomputes the probabilities rather than storing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.attention import attention_roles, causal_conv_roles, linear_attention_roles
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")


def _work(dtype: np.dtype, precision: np.dtype | None = None) -> np.dtype:
    wd = np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)
    if precision is not None and np.dtype(precision) == np.float64:
        wd = np.dtype(np.float64)
    return wd


# -- Attention -------------------------------------------------------------------------------------


class _Attn:
    """One Attention evaluation: inputs as 4-D work-dtype arrays plus everything the backward pass
    needs."""

    def __init__(self, args: Mapping[str, Any], inputs: tuple[np.ndarray, ...]) -> None:
        op = "Attention"
        roles = attention_roles(args)
        q, k, v = inputs[:3]
        self.dtype = q.dtype
        wd = _work(q.dtype, args["softmax_precision"])
        self.rank = q.ndim
        check(q.ndim == k.ndim == v.ndim and q.ndim in (3, 4), f"{op}: Q {q.shape}, K {k.shape}, V {v.shape}")
        if q.ndim == 3:
            hq, hkv = args["q_num_heads"], args["kv_num_heads"]
            q, k, v = (_heads(x, h) for x, h in ((q, hq), (k, hkv), (v, hkv)))
        b, hq, sq, d = q.shape
        hkv = k.shape[1]
        check(
            k.shape[0] == v.shape[0] == b
            and v.shape[1] == hkv
            and k.shape[2] == v.shape[2]
            and k.shape[3] == d,
            f"{op}: Q {q.shape}, K {k.shape}, V {v.shape} (as 4-D) do not fit",
        )
        check(hkv > 0 and hq % hkv == 0, f"{op}: {hq} query heads are not a multiple of {hkv} kv heads")
        self.past = 0
        if "past_key" in roles:
            pk, pv = inputs[roles["past_key"]], inputs[roles["past_value"]]
            check(
                pk.ndim == 4
                and pv.ndim == 4
                and pk.shape[:2] == (b, hkv)
                and pv.shape[:2] == (b, hkv)
                and pk.shape[2] == pv.shape[2]
                and pk.shape[3] == d
                and pv.shape[3] == v.shape[3],
                f"{op}: past_key {pk.shape} / past_value {pv.shape} do not fit K {k.shape}, V {v.shape}",
            )
            self.past = pk.shape[2]
            k = np.concatenate([pk, k], axis=2)
            v = np.concatenate([pv, v], axis=2)
        self.present_k, self.present_v = k, v  # in T, for the outputs
        t = k.shape[2]
        g = hq // hkv
        self.shape = (b, hq, hkv, g, sq, t, d, v.shape[3])
        scale = args["scale"]
        self.scale = float(1 / np.sqrt(d) if scale is None else scale)
        self.q = q.astype(wd).reshape(b, hkv, g, sq, d)
        self.k = k.astype(wd)[:, :, None]  # [B, Hkv, 1, T, D]
        self.v = v.astype(wd)[:, :, None]
        self.raw = self.scale * (self.q @ np.swapaxes(self.k, -1, -2))  # [B, Hkv, G, Sq, T]
        self.cap = float(args["softcap"])
        self.capped = self.cap * np.tanh(self.raw / self.cap) if self.cap > 0 else self.raw
        self.bias = self._bias(args, inputs, roles, wd)  # broadcastable to [B, Hkv, G, Sq, T]
        x = self.capped + self.bias
        dead = np.isneginf(np.max(self.bias, axis=-1, keepdims=True))  # fully masked rows
        with np.errstate(invalid="ignore", over="ignore"):
            m = np.max(x, axis=-1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            e = np.exp(x - m)
            total = np.sum(e, axis=-1, keepdims=True)
            p = e / np.where(total == 0, 1, total)
        self.p = np.where(dead, 0, p)
        self.mask_shape = None if "attn_mask" not in roles else inputs[roles["attn_mask"]].shape

    def _bias(self, args, inputs, roles, wd) -> np.ndarray:
        b, hq, hkv, g, sq, t, _, _ = self.shape
        bias = np.zeros((1, 1, 1, sq, t), wd)
        if "attn_mask" in roles:
            m = inputs[roles["attn_mask"]]
            check(
                1 <= m.ndim <= 4 and m.shape[-1] <= t,
                f"Attention: attn_mask {m.shape} must have rank 1..4 and at most {t} keys",
            )
            if m.dtype == np.bool_:
                mb = np.where(m, 0.0, -np.inf).astype(wd)
            else:
                mb = m.astype(wd)
            if m.shape[-1] < t:  # a short mask: the keys past it are masked
                pad = np.full((*mb.shape[:-1], t - m.shape[-1]), -np.inf, wd)
                mb = np.concatenate([mb, pad], axis=-1)
            mb = mb.reshape((1,) * (4 - mb.ndim) + mb.shape)  # [b?, h?, q?, T]
            try:
                mb = np.broadcast_to(mb, (b, hq, sq, t))
            except ValueError:
                check(False, f"Attention: attn_mask {m.shape} does not broadcast to {(b, hq, sq, t)}")
            bias = bias + mb.reshape(b, hkv, g, sq, t)
        nonpad = inputs[roles["nonpad_kv_seqlen"]] if "nonpad_kv_seqlen" in roles else None
        if nonpad is not None:
            check(nonpad.shape == (b,), f"Attention: nonpad_kv_seqlen {nonpad.shape} must be [{b}]")
            offset = nonpad.astype(np.int64).reshape(b, 1, 1, 1, 1) - sq
        else:
            offset = np.full((1, 1, 1, 1, 1), self.past, np.int64)
        i = np.arange(sq).reshape(sq, 1)
        j = np.arange(t).reshape(1, t)
        ahead = j - (i + offset)  # > 0: a key after the query's position
        allowed = np.ones(ahead.shape, bool)
        if args["is_causal"]:
            allowed &= ahead <= 0
        if args["left_window_size"] >= 0:
            allowed &= -ahead <= args["left_window_size"]
        if args["right_window_size"] >= 0:
            allowed &= ahead <= args["right_window_size"]
        if nonpad is not None:
            allowed &= j < nonpad.reshape(b, 1, 1, 1, 1)
        return bias + np.where(allowed, 0.0, -np.inf).astype(wd)

    def y(self) -> np.ndarray:
        b, hq, _, _, sq, _, _, dv = self.shape
        y = (self.p @ self.v).reshape(b, hq, sq, dv)
        return _unheads(y, self.rank).astype(self.dtype)

    def qk(self, mode: int) -> np.ndarray:
        b, hq, _, _, sq, t, _, _ = self.shape
        out = {0: self.raw, 1: self.capped, 2: self.capped + self.bias, 3: self.p}[mode]
        return np.broadcast_to(out, self.p.shape).reshape(b, hq, sq, t).astype(self.dtype)


def _heads(x: np.ndarray, h: int) -> np.ndarray:
    """[B, S, H*D] -> [B, H, S, D]."""
    check(h > 0 and x.shape[2] % h == 0, f"Attention: last dim of {x.shape} not divisible by {h} heads")
    return x.reshape(x.shape[0], x.shape[1], h, -1).transpose(0, 2, 1, 3)


def _unheads(x: np.ndarray, rank: int) -> np.ndarray:
    if rank == 4:
        return x
    return x.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)


@table.kernel("Attention", dtypes=FLOAT_TYPES)
def attention(ctx: KernelContext) -> RunFn:
    args, n = dict(ctx.args), ctx.num_outputs

    def run(*inputs):
        a = _Attn(args, inputs)
        outs = [a.y(), a.present_k, a.present_v, a.qk(args["qk_matmul_output_mode"]) if n > 3 else None]
        return tuple(np.ascontiguousarray(o) for o in outs[:n])

    return run


@table.kernel("AttentionGradient", dtypes=FLOAT_TYPES)
def attention_gradient(ctx: KernelContext) -> RunFn:
    args = dict(ctx.args)
    roles = attention_roles(args)
    nf = roles["count"]

    def run(*inputs):
        fwd = inputs[:nf]
        a = _Attn(args, fwd)
        b, hq, hkv, g, sq, t, d, dv = a.shape
        dy = inputs[nf]
        if a.rank == 3:
            dy = _heads(dy, hq)
        dy = dy.astype(a.q.dtype).reshape(b, hkv, g, sq, dv)
        dv_ = (np.swapaxes(a.p, -1, -2) @ dy).sum(axis=2)  # [B, Hkv, T, Dv]
        dp = dy @ np.swapaxes(a.v, -1, -2)
        dt = a.p * (dp - np.sum(dp * a.p, axis=-1, keepdims=True))  # d (scores + bias)
        ds = dt * (1 - np.tanh(a.raw / a.cap) ** 2) if a.cap > 0 else dt
        dq = a.scale * (ds @ a.k)  # [B, Hkv, G, Sq, D]
        dk = a.scale * (np.swapaxes(ds, -1, -2) @ a.q).sum(axis=2)  # [B, Hkv, T, D]
        if args["present_grads"]:
            dk = dk + inputs[nf + 1]
            dv_ = dv_ + inputs[nf + 2]
        p = a.past
        outs = [
            _unheads(dq.reshape(b, hq, sq, d), a.rank),
            _unheads(dk[:, :, p:], a.rank),
            _unheads(dv_[:, :, p:], a.rank),
        ]
        if "attn_mask" in roles:
            outs.append(_mask_grad(dt.reshape(b, hq, sq, t), a.mask_shape))
        if "past_key" in roles:
            outs += [dk[:, :, :p], dv_[:, :, :p]]
        return tuple(np.ascontiguousarray(o).astype(a.dtype, copy=False) for o in outs)

    return run


def _mask_grad(dt: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum [B, H, Sq, T] down to the mask's (right-aligned, broadcast) shape; keys past it drop."""
    dt = dt[..., : shape[-1]]
    lead = dt.ndim - len(shape)
    dt = dt.sum(axis=tuple(range(lead))) if lead else dt
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and dt.shape[i] != 1)
    return dt.sum(axis=axes, keepdims=True) if axes else dt


# -- RotaryEmbedding -------------------------------------------------------------------------------


@table.kernel("RotaryEmbedding", dtypes=FLOAT_TYPES)
def rotary_embedding(ctx: KernelContext) -> RunFn:
    interleaved, rd, heads = ctx.args["interleaved"], ctx.args["rotary_embedding_dim"], ctx.args["num_heads"]

    def run(x, cos, sin, pos=None):
        op = "RotaryEmbedding"
        check(x.ndim in (3, 4), f"{op}: X {x.shape} must be 3-D or 4-D")
        # As [B, S, H, size]: the caches broadcast over heads.
        xs = x.transpose(0, 2, 1, 3) if x.ndim == 4 else x.reshape(x.shape[0], x.shape[1], heads, -1)
        rot = rd or xs.shape[-1]
        check(rot % 2 == 0 and rot <= xs.shape[-1], f"{op}: rotated size {rot} for heads of {xs.shape[-1]}")
        if pos is not None:
            check(pos.shape == xs.shape[:2], f"{op}: position_ids {pos.shape} must be {xs.shape[:2]}")
            check(
                pos.size == 0 or (pos.min() >= 0 and pos.max() < cos.shape[0]),
                f"{op}: position_ids out of range for caches of {cos.shape[0]} positions",
            )
            c, s = cos[pos], sin[pos]
        else:
            c, s = cos, sin
        check(
            c.shape == s.shape == (*xs.shape[:2], rot // 2),
            f"{op}: caches {cos.shape}/{sin.shape} do not fit X {x.shape} (rotated size {rot})",
        )
        wd = _work(x.dtype)
        c, s = c.astype(wd)[:, :, None], s.astype(wd)[:, :, None]
        xw = xs.astype(wd)
        out = xw.copy()
        if interleaved:
            x1, x2 = xw[..., 0:rot:2], xw[..., 1:rot:2]
            out[..., 0:rot:2] = x1 * c - x2 * s
            out[..., 1:rot:2] = x1 * s + x2 * c
        else:
            half = rot // 2
            x1, x2 = xw[..., :half], xw[..., half:rot]
            out[..., :half] = x1 * c - x2 * s
            out[..., half:rot] = x1 * s + x2 * c
        out = out.astype(x.dtype)
        y = out.transpose(0, 2, 1, 3) if x.ndim == 4 else out.reshape(x.shape)
        return (np.ascontiguousarray(y),)

    return run


# -- LinearAttention -------------------------------------------------------------------------------


@table.kernel("LinearAttention", dtypes=FLOAT_TYPES)
def linear_attention(ctx: KernelContext) -> RunFn:
    args, n = dict(ctx.args), ctx.num_outputs

    def run(*inputs):
        op = "LinearAttention"
        roles = linear_attention_roles(args, len(inputs))
        q, k, v = inputs[:3]
        hq, hkv = args["q_num_heads"], args["kv_num_heads"]
        check(q.ndim == k.ndim == v.ndim == 3, f"{op}: query {q.shape}, key {k.shape}, value {v.shape}")
        b, t = q.shape[:2]
        wd = _work(q.dtype)
        qh = q.astype(wd).reshape(b, t, hq, -1)
        kh = k.astype(wd).reshape(b, t, hkv, -1)
        vh = v.astype(wd).reshape(b, t, hkv, -1)
        dk, dv, g = kh.shape[-1], vh.shape[-1], hq // hkv
        check(qh.shape[-1] == dk, f"{op}: query {q.shape} and key {k.shape} give different head sizes")
        if "past_state" in roles:
            st = inputs[roles["past_state"]]
            check(st.shape == (b, hkv, dk, dv), f"{op}: past_state {st.shape} must be {(b, hkv, dk, dv)}")
            state = st.astype(wd)
        else:
            state = np.zeros((b, hkv, dk, dv), wd)
        decay = beta = None
        if "decay" in roles:
            dec = inputs[roles["decay"]].astype(wd)
            check(dec.shape[:2] == (b, t) and dec.shape[2] in (hkv, hkv * dk), f"{op}: decay {dec.shape}")
            decay = np.exp(dec.reshape(b, t, hkv, -1))[..., None]  # [B, T, Hkv, 1|dk, 1]
        if "beta" in roles:
            bet = inputs[roles["beta"]].astype(wd)
            check(bet.shape[:2] == (b, t) and bet.shape[2] in (1, hkv), f"{op}: beta {bet.shape}")
            beta = bet  # [B, T, Hkv|1]
        scale = args["scale"] or 1 / np.sqrt(dk)
        out = np.empty((b, t, hkv, g, dv), wd)
        for i in range(t):
            kt, vt = kh[:, i], vh[:, i]  # [B, Hkv, dk], [B, Hkv, dv]
            if decay is not None:
                state = state * decay[:, i]
            if beta is not None:
                vt = beta[:, i, :, None] * (vt - np.einsum("bhkv,bhk->bhv", state, kt))
            state = state + kt[..., :, None] * vt[..., None, :]
            qt = qh[:, i].reshape(b, hkv, g, dk)
            out[:, i] = scale * np.einsum("bhgk,bhkv->bhgv", qt, state)
        outs = [out.reshape(b, t, hq * dv).astype(q.dtype), state.astype(q.dtype)]
        return tuple(outs[:n])

    return run


# -- CausalConvWithState ---------------------------------------------------------------------------


def _conv_parts(args, inputs):
    roles = causal_conv_roles(args, len(inputs))
    x, w = inputs[:2]
    op = "CausalConvWithState"
    check(
        x.ndim == 3 and w.ndim == 3 and w.shape[0] == x.shape[1] and w.shape[1] == 1,
        f"{op}: input {x.shape} and weight {w.shape} must be [B, C, L] and [C, 1, k]",
    )
    b, c, _ = x.shape
    k = w.shape[2]
    check(k >= 1, f"{op}: weight {w.shape} needs a kernel size >= 1")
    if "past_state" in roles:
        past = inputs[roles["past_state"]]
        check(past.shape == (b, c, k - 1), f"{op}: past_state {past.shape} must be {(b, c, k - 1)}")
    else:
        past = np.zeros((b, c, k - 1), x.dtype)
    bias = inputs[roles["bias"]] if "bias" in roles else None
    check(
        bias is None or bias.shape == (c,), f"{op}: bias {None if bias is None else bias.shape} must be [{c}]"
    )
    return roles, np.concatenate([past, x], axis=2), w, bias


def _windows(padded: np.ndarray, k: int, length: int) -> np.ndarray:
    """[B, C, L, k]: the k inputs each output position sees."""
    return np.stack([padded[:, :, j : j + length] for j in range(k)], axis=-1)


@table.kernel("CausalConvWithState", dtypes=FLOAT_TYPES)
def causal_conv_with_state(ctx: KernelContext) -> RunFn:
    args, n = dict(ctx.args), ctx.num_outputs

    def run(*inputs):
        _, padded, w, bias = _conv_parts(args, inputs)
        x = inputs[0]
        k, length = w.shape[2], x.shape[2]
        wd = _work(x.dtype)
        y = np.einsum("bclk,ck->bcl", _windows(padded.astype(wd), k, length), w[:, 0].astype(wd))
        if bias is not None:
            y = y + bias.astype(wd)[:, None]
        if args["activation"] != "none":
            y = y / (1 + np.exp(-y))
        state = padded[:, :, padded.shape[2] - (k - 1) :]
        return tuple([y.astype(x.dtype), np.ascontiguousarray(state)][:n])

    return run


@table.kernel("CausalConvWithStateGradient", dtypes=FLOAT_TYPES)
def causal_conv_with_state_gradient(ctx: KernelContext) -> RunFn:
    args = dict(ctx.args)
    n_grad = 1 + int(args["state_grad"])

    def run(*inputs):
        fwd = inputs[: len(inputs) - n_grad]
        roles, padded, w, bias = _conv_parts(args, fwd)
        x = fwd[0]
        k, length = w.shape[2], x.shape[2]
        wd = _work(x.dtype)
        win = _windows(padded.astype(wd), k, length)
        dz = inputs[len(fwd)].astype(wd)
        if args["activation"] != "none":
            z = np.einsum("bclk,ck->bcl", win, w[:, 0].astype(wd))
            if bias is not None:
                z = z + bias.astype(wd)[:, None]
            sg = 1 / (1 + np.exp(-z))
            dz = dz * sg * (1 + z * (1 - sg))
        dw = np.einsum("bclk,bcl->ck", win, dz)[:, None]
        dpad = np.zeros(padded.shape, wd)
        for j in range(k):
            dpad[:, :, j : j + length] += dz * w[:, 0, j].astype(wd)[:, None]
        if args["state_grad"]:
            dpad[:, :, padded.shape[2] - (k - 1) :] += inputs[-1].astype(wd)
        outs = [dpad[:, :, k - 1 :], dw]
        if "bias" in roles:
            outs.append(dz.sum(axis=(0, 2)))
        if "past_state" in roles:
            outs.append(dpad[:, :, : k - 1])
        return tuple(np.ascontiguousarray(o).astype(x.dtype) for o in outs)

    return run


# -- TensorScatter / TensorGather ------------------------------------------------------------------


def _scatter_index(op: str, args, cache: np.ndarray, update: np.ndarray, idx) -> tuple[int, np.ndarray]:
    """(axis, [B, seq] cache positions written from update's positions)."""
    axis = norm_axis(args["axis"], cache.ndim, op)
    check(axis != 0, f"{op}: axis must not be the batch axis")
    check(
        update.ndim == cache.ndim
        and all(a == b for i, (a, b) in enumerate(zip(cache.shape, update.shape)) if i != axis)
        and update.shape[axis] <= cache.shape[axis],
        f"{op}: update {update.shape} does not fit cache {cache.shape} on axis {axis}",
    )
    b, n, size = cache.shape[0], update.shape[axis], cache.shape[axis]
    start = np.zeros(b, np.int64) if idx is None else idx.astype(np.int64).reshape(-1)
    check(start.shape == (b,), f"{op}: write_indices {None if idx is None else idx.shape} must be [{b}]")
    pos = start[:, None] + np.arange(n)
    if args["mode"] == "circular":
        pos = pos % size if size else pos
    else:
        check(
            pos.size == 0 or (pos.min() >= 0 and pos.max() < size),
            f"{op}: linear mode writes positions {int(pos.min())}..{int(pos.max())}, "
            f"outside the cache of {size}",
        )
    return axis, pos


def _along(pos: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    """pos [B, seq] as an index array of ``shape`` for take/put_along_axis on ``axis``."""
    view = [1] * len(shape)
    view[0], view[axis] = pos.shape[0], pos.shape[1]
    return np.broadcast_to(pos.reshape(view), shape)


@table.kernel("TensorScatter", dtypes=ALL_TYPES)
def tensor_scatter(ctx: KernelContext) -> RunFn:
    args = dict(ctx.args)

    def run(cache, update, idx=None):
        axis, pos = _scatter_index("TensorScatter", args, cache, update, idx)
        out = cache.copy()
        np.put_along_axis(out, _along(pos, axis, update.shape), update, axis)
        return (out,)

    return run


@table.kernel("TensorGather", dtypes=ALL_TYPES)
def tensor_gather(ctx: KernelContext) -> RunFn:
    args = dict(ctx.args)

    def run(cache, like, idx=None):
        axis, pos = _scatter_index("TensorGather", args, cache, like, idx)
        return (np.take_along_axis(cache, _along(pos, axis, like.shape), axis),)

    return run

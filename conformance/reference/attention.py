"""float64 references for the attention family (see kaffa.ops.attention).

Attention is written one (batch, query head, query row) at a time, with the allowed keys decided
key by key from the rules in the op's doc (mask, causal frontier, window, padding); its gradient
is the textbook softmax backward on that row. LinearAttention runs its recurrence per batch and
head with explicit outer products; CausalConvWithState sums the k taps per output position. None
of this shares code with the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa.ops.attention import attention_roles, causal_conv_roles, linear_attention_roles
from kaffa_conformance.reference import reference

# -- Attention -------------------------------------------------------------------------------------


def _to4(x: np.ndarray, heads: int) -> np.ndarray:
    """[B, S, H*D] -> [B, H, S, D]."""
    hd = x.shape[2]
    return np.stack([x[:, :, h * (hd // heads) : (h + 1) * (hd // heads)] for h in range(heads)], axis=1)


def _from4(x: np.ndarray) -> np.ndarray:
    """[B, H, S, D] -> [B, S, H*D]."""
    return np.concatenate([x[:, h] for h in range(x.shape[1])], axis=-1)


class _Problem:
    """Attention's inputs in 4-D float64 and, per (b, h, i), the row's scores and bias."""

    def __init__(self, args, inputs):
        roles = attention_roles(args)
        q, k, v = (np.asarray(x, np.float64) for x in inputs[:3])
        self.rank3 = q.ndim == 3
        if self.rank3:
            q, k, v = (
                _to4(q, args["q_num_heads"]),
                _to4(k, args["kv_num_heads"]),
                _to4(v, args["kv_num_heads"]),
            )
        self.past = 0
        if "past_key" in roles:
            pk, pv = inputs[roles["past_key"]], inputs[roles["past_value"]]
            self.past = pk.shape[2]
            k, v = np.concatenate([pk, k], axis=2), np.concatenate([pv, v], axis=2)
        self.q, self.k, self.v = q, k, v
        self.group = q.shape[1] // k.shape[1]
        d = q.shape[3]
        self.scale = 1 / math.sqrt(d) if args["scale"] is None else args["scale"]
        self.cap = args["softcap"]
        self.args = args
        self.mask = inputs[roles["attn_mask"]] if "attn_mask" in roles else None
        self.nonpad = inputs[roles["nonpad_kv_seqlen"]] if "nonpad_kv_seqlen" in roles else None

    def mask_value(self, b: int, h: int, i: int, j: int) -> float:
        m = self.mask
        if m is None:
            return 0.0
        if j >= m.shape[-1]:
            return -math.inf
        full = (b, h, i, j)[4 - m.ndim :]
        idx = tuple(0 if n == 1 else ix for n, ix in zip(m.shape, full))
        value = m[idx]
        if m.dtype == np.bool_:
            return 0.0 if value else -math.inf
        return float(value)

    def allowed(self, b: int, i: int, j: int) -> bool:
        a = self.args
        offset = int(self.nonpad[b]) - self.q.shape[2] if self.nonpad is not None else self.past
        pos = i + offset
        if a["is_causal"] and j > pos:
            return False
        if a["left_window_size"] >= 0 and j < pos - a["left_window_size"]:
            return False
        if a["right_window_size"] >= 0 and j > pos + a["right_window_size"]:
            return False
        return not (self.nonpad is not None and j >= int(self.nonpad[b]))

    def row(self, b: int, h: int, i: int):
        """(raw scores, capped scores, bias, probabilities) of one query row."""
        kh = h // self.group
        t = self.k.shape[2]
        raw = np.array([self.scale * np.dot(self.q[b, h, i], self.k[b, kh, j]) for j in range(t)])
        capped = self.cap * np.tanh(raw / self.cap) if self.cap > 0 else raw
        bias = np.array(
            [self.mask_value(b, h, i, j) + (0.0 if self.allowed(b, i, j) else -math.inf) for j in range(t)]
        )
        if np.all(np.isneginf(bias)):
            return raw, capped, bias, np.zeros(t)
        x = capped + bias
        e = np.exp(x - np.max(x))
        return raw, capped, bias, e / np.sum(e)


@reference("Attention")
def attention(args, *inputs, num_outputs=1):
    pr = _Problem(args, inputs)
    bsz, hq, sq, _ = pr.q.shape
    t, dv = pr.v.shape[2], pr.v.shape[3]
    y = np.zeros((bsz, hq, sq, dv))
    qk = np.zeros((bsz, hq, sq, t))
    mode = args["qk_matmul_output_mode"]
    for b in range(bsz):
        for h in range(hq):
            for i in range(sq):
                raw, capped, bias, p = pr.row(b, h, i)
                y[b, h, i] = p @ pr.v[b, h // pr.group]
                qk[b, h, i] = (raw, capped, capped + bias, p)[mode]
    outs = (_from4(y) if pr.rank3 else y, pr.k, pr.v, qk)
    return outs[:num_outputs]


@reference("AttentionGradient")
def attention_gradient(args, *inputs):
    roles = attention_roles(args)
    nf = roles["count"]
    pr = _Problem(args, inputs[:nf])
    dy = inputs[nf]
    if pr.rank3:
        dy = _to4(dy, args["q_num_heads"])
    bsz, hq, sq, _ = pr.q.shape
    dq, dk, dv = np.zeros(pr.q.shape), np.zeros(pr.k.shape), np.zeros(pr.v.shape)
    dbias = np.zeros((bsz, hq, sq, pr.k.shape[2]))
    for b in range(bsz):
        for h in range(hq):
            kh = h // pr.group
            for i in range(sq):
                raw, _, _, p = pr.row(b, h, i)
                dv[b, kh] += np.outer(p, dy[b, h, i])
                dp = pr.v[b, kh] @ dy[b, h, i]
                dx = p * (dp - np.dot(p, dp))  # through the softmax
                dbias[b, h, i] = dx
                ds = dx * (1 - np.tanh(raw / pr.cap) ** 2) if pr.cap > 0 else dx
                dq[b, h, i] = pr.scale * ds @ pr.k[b, kh]
                dk[b, kh] += pr.scale * np.outer(ds, pr.q[b, h, i])
    if args["present_grads"]:
        dk = dk + inputs[nf + 1]
        dv = dv + inputs[nf + 2]
    p = pr.past
    outs = [dq, dk[:, :, p:], dv[:, :, p:]]
    if pr.rank3:
        outs = [_from4(o) for o in outs]
    if pr.mask is not None:
        m = pr.mask
        g = dbias[..., : m.shape[-1]]
        while g.ndim > m.ndim:
            g = g.sum(axis=0)
        for ax, n in enumerate(m.shape):
            if n == 1:
                g = g.sum(axis=ax, keepdims=True)
        outs.append(g)
    if "past_key" in roles:
        outs += [dk[:, :, :p], dv[:, :, :p]]
    return tuple(outs)


# -- RotaryEmbedding -------------------------------------------------------------------------------


@reference("RotaryEmbedding")
def rotary_embedding(args, x, cos, sin, pos=None):
    four = x.ndim == 4
    if not four:
        b, s, hd = x.shape
        x = x.reshape(b, s, args["num_heads"], hd // args["num_heads"]).transpose(0, 2, 1, 3)
    y = x.copy()
    size = x.shape[3]
    rot = args["rotary_embedding_dim"] or size
    half = rot // 2
    for b in range(x.shape[0]):
        for s in range(x.shape[2]):
            c = cos[pos[b, s]] if pos is not None else cos[b, s]
            sn = sin[pos[b, s]] if pos is not None else sin[b, s]
            for h in range(x.shape[1]):
                for m in range(half):
                    # The pair rotated by angle m: (m, m + half), or (2m, 2m + 1) interleaved.
                    i1, i2 = (2 * m, 2 * m + 1) if args["interleaved"] else (m, m + half)
                    a, bb = x[b, h, s, i1], x[b, h, s, i2]
                    y[b, h, s, i1] = a * c[m] - bb * sn[m]
                    y[b, h, s, i2] = a * sn[m] + bb * c[m]
    if not four:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    return (y,)


# -- LinearAttention -------------------------------------------------------------------------------


@reference("LinearAttention")
def linear_attention(args, *inputs, num_outputs=2):
    roles = linear_attention_roles(args, len(inputs))
    q, k, v = inputs[:3]
    hq, hkv = args["q_num_heads"], args["kv_num_heads"]
    b, t = q.shape[:2]
    dk, dv = k.shape[2] // hkv, v.shape[2] // hkv
    group = hq // hkv
    scale = args["scale"] or 1 / math.sqrt(dk)
    out = np.zeros((b, t, hq * dv))
    states = np.zeros((b, hkv, dk, dv))
    for n in range(b):
        for h in range(hkv):
            s = inputs[roles["past_state"]][n, h].copy() if "past_state" in roles else np.zeros((dk, dv))
            for i in range(t):
                kt = k[n, i, h * dk : (h + 1) * dk]
                vt = v[n, i, h * dv : (h + 1) * dv]
                if "decay" in roles:
                    dec = inputs[roles["decay"]][n, i]
                    g = dec[h : h + 1] if dec.shape[0] == hkv else dec[h * dk : (h + 1) * dk]
                    s = np.exp(g)[:, None] * s  # per key row (one value per head broadcasts)
                if "beta" in roles:
                    bt = inputs[roles["beta"]][n, i]
                    beta = bt[0] if bt.shape[0] == 1 else bt[h]
                    vt = beta * (vt - s.T @ kt)
                s = s + np.outer(kt, vt)
                for r in range(group):
                    hh = h * group + r
                    qt = q[n, i, hh * dk : (hh + 1) * dk]
                    out[n, i, hh * dv : (hh + 1) * dv] = scale * (qt @ s)
            states[n, h] = s
    return (out, states)[:num_outputs]


# -- CausalConvWithState ---------------------------------------------------------------------------


def _causal_conv(args, inputs):
    roles = causal_conv_roles(args, len(inputs))
    x, w = inputs[:2]
    b, c, length = x.shape
    k = w.shape[2]
    past = inputs[roles["past_state"]] if "past_state" in roles else np.zeros((b, c, k - 1), x.dtype)
    full = np.concatenate([past, x], axis=2)
    y = np.zeros(x.shape, dtype=np.result_type(x, w))
    for n in range(b):
        for ch in range(c):
            for pos in range(length):
                # Output pos sees full[pos .. pos + k - 1] (the last one is input pos).
                y[n, ch, pos] = sum(full[n, ch, pos + j] * w[ch, 0, j] for j in range(k))
                if "bias" in roles:
                    y[n, ch, pos] += inputs[roles["bias"]][ch]
    if args["activation"] in ("silu", "swish"):
        y = y / (1 + np.exp(-y))
    return y, full[:, :, full.shape[2] - (k - 1) :]


@reference("CausalConvWithState")
def causal_conv_with_state(args, *inputs, num_outputs=2):
    return _causal_conv(args, list(inputs))[:num_outputs]


H = 1e-30  # complex step


@reference("CausalConvWithStateGradient")
def causal_conv_with_state_gradient(args, *inputs):
    # Vector-Jacobian product by the complex step (the forward reference is analytic).
    n_grad = 1 + int(args["state_grad"])
    fwd = [np.asarray(a) for a in inputs[: len(inputs) - n_grad]]
    dy = inputs[len(fwd)]
    dstate = inputs[-1] if args["state_grad"] else None
    grads = []
    for i, base in enumerate(fwd):
        g = np.zeros(base.shape)
        for j in np.ndindex(base.shape):
            pert = [a.astype(np.complex128) for a in fwd]
            pert[i][j] += 1j * H
            y, st = _causal_conv(args, pert)
            total = np.sum(np.imag(y) / H * dy)
            if dstate is not None:
                total += np.sum(np.imag(st) / H * dstate)
            g[j] = total
        grads.append(g)
    return tuple(grads)


# -- TensorScatter / TensorGather ------------------------------------------------------------------


def _positions(args, cache, update, idx):
    axis = args["axis"] % cache.ndim
    size, n = cache.shape[axis], update.shape[axis]
    starts = np.zeros(cache.shape[0], np.int64) if idx is None else idx
    out = []
    for b in range(cache.shape[0]):
        ps = [int(starts[b]) + s for s in range(n)]
        out.append([p % size for p in ps] if args["mode"] == "circular" else ps)
    return axis, out


@reference("TensorScatter")
def tensor_scatter(args, cache, update, idx=None):
    axis, pos = _positions(args, cache, update, idx)
    out = cache.copy()
    for full in np.ndindex(update.shape):
        dst = list(full)
        dst[axis] = pos[full[0]][full[axis]]
        out[tuple(dst)] = update[full]
    return (out,)


@reference("TensorGather")
def tensor_gather(args, cache, like, idx=None):
    axis, pos = _positions(args, cache, like, idx)
    out = np.zeros(like.shape, cache.dtype)
    for full in np.ndindex(like.shape):
        src = list(full)
        src[axis] = pos[full[0]][full[axis]]
        out[full] = cache[tuple(src)]
    return (out,)

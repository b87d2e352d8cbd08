"""References for LSTMUnit, GRUUnit, RecurrentNetwork and their gradient ops.

The cell ops are written row by row with scalar math (``math.exp``/``math.tanh``), the gradients as
the chain rule through each gate spelled out. RecurrentNetwork runs its step net op by op through
the other ops' references (``kaffa_conformance.reference.control.run_net``), so its gradient, a
backward step net run over time, is checked through the step ops' gradient references, and the
finite-difference check of the gradient row covers the whole recurrence.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference
from kaffa_conformance.reference.control import run_net


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _rowwise(state: np.ndarray, k: int, *arrays: np.ndarray) -> list[np.ndarray]:
    d = state.shape[-1]
    return [a.reshape(-1, d) for a in (state, *arrays)]


def _valid(rows: int, extra: tuple) -> list[bool]:
    if not extra:
        return [True] * rows
    lengths, step = extra
    t = int(np.asarray(step).reshape(-1)[0])
    return [t < int(n) for n in lengths]


def _lstm_row(a: np.ndarray, c_prev: np.ndarray, d: int, fb: float):
    i = np.array([_sig(v) for v in a[:d]])
    f = np.array([_sig(v + fb) for v in a[d : 2 * d]])
    o = np.array([_sig(v) for v in a[2 * d : 3 * d]])
    g = np.array([math.tanh(v) for v in a[3 * d :]])
    c = f * c_prev + i * g
    return i, f, o, g, c


@reference("LSTMUnit")
def lstm_unit(args, h_prev, c_prev, gates, *extra):
    d = c_prev.shape[-1]
    hp, cp = h_prev.reshape(-1, d), c_prev.reshape(-1, d)
    a = gates.reshape(-1, 4 * d)
    h, c = np.empty_like(cp), np.empty_like(cp)
    for r, ok in enumerate(_valid(cp.shape[0], extra)):
        if not ok:
            h[r] = 0.0 if args["drop_states"] else hp[r]
            c[r] = 0.0 if args["drop_states"] else cp[r]
            continue
        _, _, o, _, c[r] = _lstm_row(a[r], cp[r], d, args["forget_bias"])
        h[r] = o * np.array([math.tanh(v) for v in c[r]])
    return h.reshape(c_prev.shape), c.reshape(c_prev.shape)


@reference("LSTMUnitGradient")
def lstm_unit_gradient(args, h_prev, c_prev, gates, *rest):
    extra, (_, _, dh, dc) = rest[:-4], rest[-4:]
    d = c_prev.shape[-1]
    hp, cp, dhr, dcr = (x.reshape(-1, d) for x in (h_prev, c_prev, dh, dc))
    a = gates.reshape(-1, 4 * d)
    dh_prev, dc_prev, dgates = np.zeros_like(hp), np.zeros_like(cp), np.zeros_like(a)
    drop = args["drop_states"]
    for r, ok in enumerate(_valid(cp.shape[0], extra)):
        if not ok:  # the state passed through (or was dropped): gates get nothing
            dh_prev[r] = 0.0 if drop else dhr[r]
            dc_prev[r] = 0.0 if drop else dcr[r]
            continue
        i, f, o, g, c = _lstm_row(a[r], cp[r], d, args["forget_bias"])
        for e in range(d):
            tanh_c = math.tanh(c[e])
            # h = o * tanh(c): both paths into c
            dc_total = dcr[r, e] + dhr[r, e] * o[e] * (1.0 - tanh_c**2)
            dgates[r, e] = dc_total * g[e] * i[e] * (1.0 - i[e])  # c += i * g
            dgates[r, d + e] = dc_total * cp[r, e] * f[e] * (1.0 - f[e])  # c += f * c_prev
            dgates[r, 2 * d + e] = dhr[r, e] * tanh_c * o[e] * (1.0 - o[e])
            dgates[r, 3 * d + e] = dc_total * i[e] * (1.0 - g[e] ** 2)
            dc_prev[r, e] = dc_total * f[e]
    return dh_prev.reshape(h_prev.shape), dc_prev.reshape(c_prev.shape), dgates.reshape(gates.shape)


@reference("GRUUnit")
def gru_unit(args, h_prev, gates, *extra):
    d = h_prev.shape[-1]
    hp, a = h_prev.reshape(-1, d), gates.reshape(-1, 3 * d)
    h = np.empty_like(hp)
    for r, ok in enumerate(_valid(hp.shape[0], extra)):
        for e in range(d):
            if not ok:
                h[r, e] = 0.0 if args["drop_states"] else hp[r, e]
                continue
            z, n = _sig(a[r, d + e]), math.tanh(a[r, 2 * d + e])
            h[r, e] = z * hp[r, e] + (1.0 - z) * n
    return (h.reshape(h_prev.shape),)


@reference("GRUUnitGradient")
def gru_unit_gradient(args, h_prev, gates, *rest):
    extra, (_, dh) = rest[:-2], rest[-2:]
    d = h_prev.shape[-1]
    hp, a, dhr = h_prev.reshape(-1, d), gates.reshape(-1, 3 * d), dh.reshape(-1, d)
    dh_prev, dgates = np.zeros_like(hp), np.zeros_like(a)
    for r, ok in enumerate(_valid(hp.shape[0], extra)):
        for e in range(d):
            if not ok:
                dh_prev[r, e] = 0.0 if args["drop_states"] else dhr[r, e]
                continue
            z, n = _sig(a[r, d + e]), math.tanh(a[r, 2 * d + e])
            dh_prev[r, e] = dhr[r, e] * z
            dgates[r, d + e] = dhr[r, e] * (hp[r, e] - n) * z * (1.0 - z)
            dgates[r, 2 * d + e] = dhr[r, e] * (1.0 - z) * (1.0 - n * n)
    return dh_prev.reshape(h_prev.shape), dgates.reshape(gates.shape)


# -- RecurrentNetwork ------------------------------------------------------------------------------
def _layout(args):
    s, k = len(args["sequence_inputs"]), len(args["state_inputs"])
    return s, k, len(args["param_inputs"]), len(args["step_outputs"])


def _order(args, seqs) -> list[int]:
    t = seqs[0].shape[0]
    return list(reversed(range(t))) if args["reverse"] else list(range(t))


def _env(args, seqs, states, params, t) -> dict:
    env = dict(zip(args["sequence_inputs"], (x[t] for x in seqs)))
    env.update(zip(args["state_inputs"], states))
    env.update(zip(args["param_inputs"], params))
    if args["timestep"]:
        env[args["timestep"]] = np.array([t], np.int64)
    return env


@reference("RecurrentNetwork")
def recurrent_network(args, *xs, num_outputs=None):
    s, k, _p, o = _layout(args)
    seqs, states, params = xs[:s], list(xs[s : s + k]), xs[s + k :]
    order = _order(args, seqs)
    t_count = len(order)
    state_seqs = [np.zeros((t_count, *np.shape(x))) for x in states]
    step_seqs: list[list] = [[None] * t_count for _ in range(o)]
    for t in order:
        env = run_net(args["step_net"], _env(args, seqs, states, params, t))
        states = [np.asarray(env[n], dtype=np.float64) for n in args["state_outputs"]]
        for j in range(k):
            state_seqs[j][t] = states[j]
        for j, name in enumerate(args["step_outputs"]):
            step_seqs[j][t] = env[name]
    return (*state_seqs, *states, *(np.stack(x) for x in step_seqs))


@reference("RecurrentNetworkGradient")
def recurrent_network_gradient(args, *xs, num_outputs=None):
    s, k, p, o = _layout(args)
    n_in = s + k + p
    fwd, state_seqs, gos = xs[:n_in], xs[n_in : n_in + k], xs[n_in + k :]
    seqs, inits, params = fwd[:s], fwd[s : s + k], fwd[s + k :]
    given = dict(zip(args["outputs_with_grads"], gos))
    order = _order(args, seqs)
    # d loss / d (state j after step t), from the outputs: the sequence, plus the final state.
    g_seq = [np.array(given.get(j, np.zeros(np.shape(state_seqs[j]))), dtype=np.float64) for j in range(k)]
    for j in range(k):
        if k + j in given and order:
            g_seq[j][order[-1]] += given[k + j]
    carry = [
        np.array(given[k + j], dtype=np.float64)
        if (k + j in given and not order)
        else np.zeros(np.shape(inits[j]))
        for j in range(k)
    ]
    out = {i: np.zeros(np.shape(fwd[i])) for i in args["input_grads"]}
    for pos in reversed(range(len(order))):
        t = order[pos]
        prev = list(inits) if pos == 0 else [x[order[pos - 1]] for x in state_seqs]
        env = _env(args, seqs, prev, params, t)
        for j in range(k):
            env[f"__rnn_gstate{j}"] = g_seq[j][t] + carry[j]
        for j in range(o):
            if 2 * k + j in given:
                env[f"__rnn_gout{j}"] = given[2 * k + j][t]
        env = run_net(args["backward_step_net"], env)
        carry = [np.zeros(np.shape(inits[j])) for j in range(k)]
        for i in args["input_grads"]:
            g = np.asarray(env[f"__rnn_gin{i}"], dtype=np.float64)
            if i < s:
                out[i][t] = g
            elif i < s + k:
                carry[i - s] = g
            else:
                out[i] = out[i] + g
    for i in args["input_grads"]:
        if s <= i < s + k:
            out[i] = carry[i - s]
    return tuple(out[i] for i in args["input_grads"])

"""LSTMUnit, GRUUnit, RecurrentNetwork and their gradient ops.

The cell ops compute in float32 (float64 stays float64) and round once per output. The step nets
of RecurrentNetwork run through ``kaffa.subnet.SubnetRunner`` (one child workspace, planned once,
reused every step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.errors import ShapeError
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.recurrent import _grad_names, rnn_layout, step_bindings
from kaffa.schema import check
from kaffa.subnet import SubnetRunner
from kaffa_cpu.kernels.nn import work_dtype

table = KernelTable("cpu")


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # One tanh, no overflow for large |x| (exp(-x) would overflow for x << 0).
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _valid(op: str, rows: int, extra: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """[rows, 1] bool: rows still inside their sequence (None without seq_lengths)."""
    if not extra:
        return None
    lengths, step = extra
    check(
        lengths.ndim == 1 and lengths.shape[0] == rows,
        f"{op}: seq_lengths {list(lengths.shape)} must be [{rows}]",
    )
    check(np.asarray(step).size == 1, f"{op}: timestep {list(np.shape(step))} must have one element")
    t = int(np.asarray(step).reshape(-1)[0])
    return (t < lengths.astype(np.int64)).reshape(rows, 1)


def _rows(
    op: str, state: np.ndarray, gates: np.ndarray, k: int, *others: tuple[str, np.ndarray]
) -> tuple[int, int]:
    d = state.shape[-1] if state.ndim else 0
    check(state.ndim >= 1, f"{op}: the hidden state {list(state.shape)} needs at least one dim")
    check(
        gates.shape == (*state.shape[:-1], k * d),
        f"{op}: gates {list(gates.shape)} must be {[*state.shape[:-1], k * d]} "
        f"for a state {list(state.shape)}",
    )
    for name, a in others:
        check(a.shape == state.shape, f"{op}: {name} {list(a.shape)} must match {list(state.shape)}")
    return state.size // d if d else int(np.prod(state.shape[:-1])), d


def _lstm_parts(gates: np.ndarray, c_prev: np.ndarray, forget_bias: float):
    d = c_prev.shape[-1]
    a = gates.reshape(-1, 4 * d)
    i, f, o = _sigmoid(a[:, :d]), _sigmoid(a[:, d : 2 * d] + forget_bias), _sigmoid(a[:, 2 * d : 3 * d])
    g = np.tanh(a[:, 3 * d :])
    c = f * c_prev.reshape(-1, d) + i * g
    return i, f, o, g, c


@table.kernel("LSTMUnit", dtypes=FLOAT_TYPES)
def lstm_unit(ctx: KernelContext) -> RunFn:
    fb, drop = ctx.args["forget_bias"], ctx.args["drop_states"]

    def run(h_prev, c_prev, gates, *extra):
        rows, d = _rows("LSTMUnit", c_prev, gates, 4, ("hidden_prev", h_prev))
        _, _, o, _, c = _lstm_parts(_wide(gates), _wide(c_prev), fb)
        h = o * np.tanh(c)
        valid = _valid("LSTMUnit", rows, extra)
        if valid is not None:
            keep_h = 0.0 if drop else _wide(h_prev).reshape(rows, d)
            keep_c = 0.0 if drop else _wide(c_prev).reshape(rows, d)
            h, c = np.where(valid, h, keep_h), np.where(valid, c, keep_c)
        dt = c_prev.dtype
        return h.reshape(c_prev.shape).astype(dt), c.reshape(c_prev.shape).astype(dt)

    return run


@table.kernel("LSTMUnitGradient", dtypes=FLOAT_TYPES)
def lstm_unit_gradient(ctx: KernelContext) -> RunFn:
    fb, drop = ctx.args["forget_bias"], ctx.args["drop_states"]

    def run(h_prev, c_prev, gates, *rest):
        extra, (_, _, dh, dc) = rest[:-4], rest[-4:]
        rows, d = _rows(
            "LSTMUnitGradient", c_prev, gates, 4, ("hidden_prev", h_prev), ("d_hidden", dh), ("d_cell", dc)
        )
        i, f, o, g, c = _lstm_parts(_wide(gates), _wide(c_prev), fb)
        dh2, dc2 = _wide(dh).reshape(rows, d), _wide(dc).reshape(rows, d)
        tc = np.tanh(c)
        dct = dc2 + dh2 * o * (1 - tc * tc)
        dgates = np.concatenate(
            [
                dct * g * i * (1 - i),
                dct * _wide(c_prev).reshape(rows, d) * f * (1 - f),
                dh2 * tc * o * (1 - o),
                dct * i * (1 - g * g),
            ],
            axis=1,
        )
        dc_prev = dct * f
        dh_prev = np.zeros_like(dh2)
        valid = _valid("LSTMUnitGradient", rows, extra)
        if valid is not None:
            dgates = np.where(valid, dgates, 0.0)
            dc_prev = np.where(valid, dc_prev, 0.0 if drop else dc2)
            dh_prev = np.where(valid, dh_prev, 0.0 if drop else dh2)
        dt = c_prev.dtype
        return (
            dh_prev.reshape(h_prev.shape).astype(dt),
            dc_prev.reshape(c_prev.shape).astype(dt),
            dgates.reshape(gates.shape).astype(dt),
        )

    return run


def _gru_parts(gates: np.ndarray, d: int):
    a = gates.reshape(-1, 3 * d)
    return _sigmoid(a[:, d : 2 * d]), np.tanh(a[:, 2 * d :])


@table.kernel("GRUUnit", dtypes=FLOAT_TYPES)
def gru_unit(ctx: KernelContext) -> RunFn:
    drop = ctx.args["drop_states"]

    def run(h_prev, gates, *extra):
        rows, d = _rows("GRUUnit", h_prev, gates, 3)
        z, n = _gru_parts(_wide(gates), d)
        hp = _wide(h_prev).reshape(rows, d)
        h = z * hp + (1 - z) * n
        valid = _valid("GRUUnit", rows, extra)
        if valid is not None:
            h = np.where(valid, h, 0.0 if drop else hp)
        return (h.reshape(h_prev.shape).astype(h_prev.dtype),)

    return run


@table.kernel("GRUUnitGradient", dtypes=FLOAT_TYPES)
def gru_unit_gradient(ctx: KernelContext) -> RunFn:
    drop = ctx.args["drop_states"]

    def run(h_prev, gates, *rest):
        extra, (_, dh) = rest[:-2], rest[-2:]
        rows, d = _rows("GRUUnitGradient", h_prev, gates, 3, ("d_hidden", dh))
        z, n = _gru_parts(_wide(gates), d)
        hp, dh2 = _wide(h_prev).reshape(rows, d), _wide(dh).reshape(rows, d)
        dgates = np.concatenate(
            [np.zeros_like(z), dh2 * (hp - n) * z * (1 - z), dh2 * (1 - z) * (1 - n * n)], axis=1
        )
        dh_prev = dh2 * z
        valid = _valid("GRUUnitGradient", rows, extra)
        if valid is not None:
            dgates = np.where(valid, dgates, 0.0)
            dh_prev = np.where(valid, dh_prev, 0.0 if drop else dh2)
        dt = h_prev.dtype
        return dh_prev.reshape(h_prev.shape).astype(dt), dgates.reshape(gates.shape).astype(dt)

    return run


# -- RecurrentNetwork ------------------------------------------------------------------------------
def _steps(op: str, seqs: tuple[np.ndarray, ...], reverse: bool) -> list[int]:
    """The timesteps in the order the forward pass runs them (T from the sequences' axis 0)."""
    for i, x in enumerate(seqs):
        check(np.ndim(x) >= 1, f"{op}: sequence input {i} {list(np.shape(x))} needs a time axis (axis 0)")
    lengths = {int(np.shape(x)[0]) for x in seqs}
    check(len(lengths) == 1, f"{op}: the sequence inputs disagree on T: {[list(np.shape(x)) for x in seqs]}")
    t = lengths.pop()
    return list(range(t - 1, -1, -1)) if reverse else list(range(t))


def _timestep(t: int) -> np.ndarray:
    return np.array([t], np.int32)


@table.kernel("RecurrentNetwork", dtypes=FLOAT_TYPES)
def recurrent_network(ctx: KernelContext) -> RunFn:
    args = ctx.args
    s, k, _p, o = rnn_layout(args)
    names = step_bindings(args)
    seq_names, state_in, param_names = names[:s], names[s : s + k], names[s + k :]
    state_out, step_outs = list(args["state_outputs"]), list(args["step_outputs"])
    tname, reverse = args["timestep"], bool(args["reverse"])
    runner = SubnetRunner(
        args["step_net"], device=ctx.device, name=f"{ctx.op.name or 'RecurrentNetwork'}.step_net"
    )
    op = "RecurrentNetwork"

    def run(*values: Any) -> tuple[Any, ...]:
        seqs, inits, params = values[:s], values[s : s + k], values[s + k :]
        order = _steps(op, seqs, reverse)
        bound: dict[str, Any] = dict(zip(param_names, params))
        states = list(inits)
        out_states: list[list[Any]] = [[None] * len(order) for _ in range(k)]
        out_steps: list[list[Any]] = [[None] * len(order) for _ in range(o)]
        for t in order:
            bound.update(zip(seq_names, (x[t] for x in seqs)))
            bound.update(zip(state_in, states))
            if tname:
                bound[tname] = _timestep(t)
            got = runner.run(bound, [*state_out, *step_outs])
            for j, name in enumerate(state_out):
                new = got[name]
                if np.shape(new) != np.shape(states[j]):
                    raise ShapeError(
                        f"{op}: at t={t} the step net turned state {j} ('{state_in[j]}' -> '{name}') from "
                        f"{list(np.shape(states[j]))} into {list(np.shape(new))}; a state must keep its shape"
                    )
                states[j] = new
                out_states[j][t] = new
            for j, name in enumerate(step_outs):
                out_steps[j][t] = got[name]
        if not order and o:
            raise ShapeError(f"{op}: T=0 leaves the shapes of the step_outputs sequences unknown")
        seq_out = [
            np.stack(x) if order else np.zeros((0, *np.shape(init)), np.asarray(init).dtype)
            for x, init in zip(out_states, inits)
        ]
        return (*seq_out, *states, *(np.stack(x) for x in out_steps))

    return run


@table.kernel("RecurrentNetworkGradient", dtypes=FLOAT_TYPES)
def recurrent_network_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    s, k, p, _o = rnn_layout(args)
    names = step_bindings(args)
    seq_names, state_in, param_names = names[:s], names[s : s + k], names[s + k :]
    inner = _grad_names(args)
    with_grads, wanted = list(args["outputs_with_grads"]), list(args["input_grads"])
    tname, reverse = args["timestep"], bool(args["reverse"])
    runner = SubnetRunner(
        args["backward_step_net"],
        device=ctx.device,
        name=f"{ctx.op.name or 'RecurrentNetwork'}.backward_step_net",
    )
    fetch = [inner["gin"][i] for i in wanted]
    gout_bound = [(j - 2 * k, inner["gout"][j - 2 * k]) for j in with_grads if j >= 2 * k]
    op = "RecurrentNetworkGradient"

    def run(*values: Any) -> tuple[Any, ...]:
        n_in = s + k + p
        fwd, state_seqs, gos = values[:n_in], values[n_in : n_in + k], values[n_in + k :]
        seqs, inits, params = fwd[:s], fwd[s : s + k], fwd[s + k :]
        order = _steps(op, seqs, reverse)
        given = dict(zip(with_grads, gos))
        # Upstream gradient of every state's value after each step (sequence + final state).
        g_states = []
        for j in range(k):
            g = (
                np.array(given[j], dtype=np.asarray(state_seqs[j]).dtype)
                if j in given
                else np.zeros_like(state_seqs[j])
            )
            if k + j in given and order:
                g[order[-1]] += given[k + j]
            g_states.append(g)
        carry = [
            given[k + j] if (k + j in given and not order) else np.zeros_like(inits[j]) for j in range(k)
        ]
        grads = {i: np.zeros_like(fwd[i]) for i in wanted if i < s or i >= s + k}
        bound: dict[str, Any] = dict(zip(param_names, params))
        for pos in range(len(order) - 1, -1, -1):
            t = order[pos]
            bound.update(zip(seq_names, (x[t] for x in seqs)))
            prev = inits if pos == 0 else [x[order[pos - 1]] for x in state_seqs]
            bound.update(zip(state_in, prev))
            if tname:
                bound[tname] = _timestep(t)
            for j in range(k):
                bound[inner["gstate"][j]] = g_states[j][t] + carry[j]
            for j, name in gout_bound:
                bound[name] = given[2 * k + j][t]
            got = runner.run(bound, fetch)
            carry = [np.zeros_like(inits[j]) for j in range(k)]
            for i in wanted:
                g = got[inner["gin"][i]]
                if i < s:
                    grads[i][t] = g
                elif i < s + k:
                    carry[i - s] = g
                else:
                    grads[i] += g
        for j in range(k):
            grads[s + j] = carry[j]
        return tuple(np.asarray(grads[i]).astype(fwd[i].dtype, copy=False) for i in wanted)

    return run

"""Cases for LSTMUnit, GRUUnit and RecurrentNetwork.

The cell ops get plain [N, D] and Caffe2's [1, N, D] layouts, a forget bias, and sequence lengths
with a timestep (rows past their length keep or drop their state). RecurrentNetwork gets step nets
built from kaffa ops: a tanh RNN, an LSTM (LSTMUnit), a Caffe2-style GRU (GRUUnit), a reversed run
with a per-step output, masking by sequence length through the timestep blob, and a stateless
scan. Every case doubles as a gradient case (the backward step net over time).
"""

from __future__ import annotations

import numpy as np

from kaffa.core import Net
from kaffa_conformance.cases import ELEMENTWISE, GEMM, Case, cases, uniform


# -- cell ops --------------------------------------------------------------------------------------
def _lengths_inputs(rng, rows: int, t: int) -> list[np.ndarray]:
    """seq_lengths around t (some rows finished, some not) and the timestep."""
    lengths = np.array([t - 1, t, t + 1, t + 2, 0, t][:rows], np.int64)
    return [lengths, np.array([t], np.int64)]


@cases("LSTMUnit")
def lstm_unit(rng):
    def case(name, lead, d, lengths_t=None, **args):
        inputs = [
            uniform(rng, (*lead, d)),
            uniform(rng, (*lead, d), -2, 2),
            uniform(rng, (*lead, 4 * d), -3, 3),
        ]
        fixed = {}
        if lengths_t is not None:
            inputs += _lengths_inputs(rng, int(np.prod(lead)), lengths_t)
            fixed = {3: np.int32, 4: np.int32}
        return Case(
            "LSTMUnit", name, inputs, args, num_outputs=2, op_class=ELEMENTWISE, fixed_dtype_inputs=fixed
        )

    return [
        case("2d", (3,), 4),
        case("caffe2_layout", (1, 2, 3), 3),
        case("forget_bias", (4,), 2, forget_bias=1.0),
        case("one_unit", (2,), 1),
        case("seq_lengths_keep", (1, 5), 3, lengths_t=2),
        case("seq_lengths_drop", (5,), 2, lengths_t=1, drop_states=1),
    ]


@cases("GRUUnit")
def gru_unit(rng):
    def case(name, lead, d, lengths_t=None, **args):
        inputs = [uniform(rng, (*lead, d)), uniform(rng, (*lead, 3 * d), -3, 3)]
        fixed = {}
        if lengths_t is not None:
            inputs += _lengths_inputs(rng, int(np.prod(lead)), lengths_t)
            fixed = {2: np.int32, 3: np.int32}
        return Case("GRUUnit", name, inputs, args, op_class=ELEMENTWISE, fixed_dtype_inputs=fixed)

    return [
        case("2d", (3,), 4),
        case("caffe2_layout", (1, 2, 3), 3),
        case("one_unit", (4,), 1),
        case("seq_lengths_keep", (1, 4), 2, lengths_t=2),
        case("seq_lengths_drop", (6,), 3, lengths_t=3, drop_states=1),
    ]


# -- RecurrentNetwork ------------------------------------------------------------------------------
def _tanh_rnn(with_output: bool = False) -> Net:
    step = Net("tanh_rnn_step")
    a = step.FC(["x_t", "wx", "b"], "a")
    r = step.FC(["h_prev", "wh"], "r")
    step.Tanh(step.Add([a, r], "pre"), "h")
    if with_output:
        step.FC(["h", "wy"], "y")
    return step


def _lstm() -> Net:
    step = Net("lstm_step")
    gates = step.Add(["g_t", step.FC(["h_prev", "r"], "hr")], "gates")
    step.LSTMUnit(["h_prev", "c_prev", gates], ["h", "c"], forget_bias=0.5)
    return step


def _lstm_masked() -> Net:
    step = Net("lstm_masked_step")
    gates = step.Add(["g_t", step.FC(["h_prev", "r"], "hr")], "gates")
    step.LSTMUnit(["h_prev", "c_prev", gates, "lengths", "t"], ["h", "c"])
    return step


def _gru() -> Net:
    """Caffe2's GRU cell: the reset gate scales h_prev before the candidate's recurrent FC."""
    step = Net("gru_step")
    x_rz, x_n = step.Split(["x_t"], ["x_rz", "x_n"], axis=1, split=[4, 2])
    rz = step.Add([x_rz, step.FC(["h_prev", "r_rz"], "h_rz")], "rz")
    r_pre, _ = step.Split([rz], ["r_pre", "z_pre"], axis=1)
    rh = step.Mul([step.Sigmoid(r_pre, "r"), "h_prev"], "rh")
    n = step.Add([x_n, step.FC([rh, "r_n"], "h_n")], "n_pre")
    gates, _ = step.Concat([rz, n], ["gates", "gates_info"], axis=1)
    step.GRUUnit(["h_prev", gates], ["h"])
    return step


def _scan() -> Net:
    step = Net("scan_step")
    step.Mul([step.Add(["a_t", "b_t"], "s"), "w"], "y", broadcast=1)
    return step


def _rnn_case(rng, name, step: Net, t, seqs, states, params, reduction, fixed=None, **args) -> Case:
    """seqs/states/params: (step-net name, shape) lists; args: the link lists beyond these."""
    inputs = [uniform(rng, (t, *shape)) for _, shape in seqs]
    inputs += [uniform(rng, shape) for _, shape in states]
    inputs += [uniform(rng, shape) if not callable(shape) else shape(rng) for _, shape in params]
    args = {
        "step_net": step.Proto(),
        "sequence_inputs": [n for n, _ in seqs],
        "state_inputs": [n for n, _ in states],
        "param_inputs": [n for n, _ in params],
        **args,
    }
    n_out = 2 * len(states) + len(args.get("step_outputs", []))
    return Case(
        "RecurrentNetwork",
        name,
        inputs,
        args,
        num_outputs=n_out,
        op_class=GEMM,
        reduction=reduction,
        fixed_dtype_inputs=fixed or {},
    )


@cases("RecurrentNetwork")
def recurrent_network(rng):
    n, i, h = 3, 4, 5
    tanh = {"state_outputs": ["h"]}
    lengths = lambda r: np.array([4, 1, 3], np.int64)  # noqa: E731
    return [
        _rnn_case(
            rng,
            "tanh_rnn",
            _tanh_rnn(),
            4,
            [("x_t", (n, i))],
            [("h_prev", (n, h))],
            [("wx", (h, i)), ("wh", (h, h)), ("b", (h,))],
            4 * (i + h),
            **tanh,
        ),
        _rnn_case(
            rng,
            "lstm",
            _lstm(),
            5,
            [("g_t", (n, 4 * h))],
            [("h_prev", (n, h)), ("c_prev", (n, h))],
            [("r", (4 * h, h))],
            5 * h,
            state_outputs=["h", "c"],
        ),
        _rnn_case(
            rng,
            "reverse_with_step_output",
            _tanh_rnn(with_output=True),
            3,
            [("x_t", (2, i))],
            [("h_prev", (2, h))],
            [("wx", (h, i)), ("wh", (h, h)), ("b", (h,)), ("wy", (2, h))],
            3 * (i + h),
            reverse=1,
            step_outputs=["y"],
            **tanh,
        ),
        _rnn_case(
            rng,
            "lstm_seq_lengths_timestep",
            _lstm_masked(),
            4,
            [("g_t", (n, 4 * 2))],
            [("h_prev", (n, 2)), ("c_prev", (n, 2))],
            [("r", (4 * 2, 2)), ("lengths", lengths)],
            4 * 2,
            fixed={4: np.int32},
            state_outputs=["h", "c"],
            timestep="t",
        ),
        _rnn_case(
            rng,
            "gru_caffe2_cell",
            _gru(),
            3,
            [("x_t", (2, 6))],
            [("h_prev", (2, 2))],
            [("r_rz", (4, 2)), ("r_n", (2, 2))],
            3 * 4,
            state_outputs=["h"],
        ),
        _rnn_case(
            rng,
            "one_step",
            _tanh_rnn(),
            1,
            [("x_t", (1, 2))],
            [("h_prev", (1, 3))],
            [("wx", (3, 2)), ("wh", (3, 3)), ("b", (3,))],
            5,
            **tanh,
        ),
        _rnn_case(
            rng,
            "stateless_scan_two_sequences",
            _scan(),
            4,
            [("a_t", (2, 3)), ("b_t", (2, 3))],
            [],
            [("w", (3,))],
            1,
            step_outputs=["y"],
        ),
    ]

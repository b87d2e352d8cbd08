"""Recurrent networks: RecurrentNetwork (a step net run once per timestep) and the cell ops LSTMUnit
and GRUUnit (schemas, shape inference, gradient makers).

**RecurrentNetwork** follows Caffe2's design (a ``step_net`` NetDef argument run in a child
workspace once per timestep, with *links* from outer tensors to step-net blobs), with links given
by position instead of by outer blob name, so the op does not depend on what its blobs are called:

* inputs: ``S`` sequences ``[T, ...]`` (``sequence_inputs[i]`` names slice ``t`` inside the step
  net), then ``K`` initial states (``state_inputs[k]`` names the previous state), then the rest
  (``param_inputs``: weights and anything else the step net reads whole, every step);
* each step reads the ``state_inputs`` and writes the new states under ``state_outputs``;
  ``step_outputs`` name further step-net blobs collected every step; ``timestep`` (if given) names
  an int32 ``[1]`` blob holding ``t``; ``reverse`` runs ``t`` from ``T - 1`` down to 0;
* outputs: the ``K`` state sequences ``[T, ...]`` (the state after step ``t`` at index ``t``), the
  ``K`` final states, then the ``step_outputs`` sequences ``[T, ...]``.

The gradient is RecurrentNetworkGradient, which runs a *backward step net* over time in reverse:
``kaffa.subnet.backward_net`` of the step net (the step recomputed from the saved states, then its
gradient ops from kaffa's autodiff), with the state gradient carried from step to step and the
parameter gradients summed over the steps.

**LSTMUnit** (Caffe2's): gates ``[..., 4D]`` in the order input, forget, output, cell candidate:
``c = sigmoid(f + forget_bias) * c_prev + sigmoid(i) * tanh(g)``, ``h = sigmoid(o) * tanh(c)``.
**GRUUnit** (Caffe2's): gates ``[..., 3D]`` in the order reset, update, candidate, the reset gate
already applied to the candidate's recurrent term by the caller (so the unit ignores it):
``h = z * h_prev + (1 - z) * tanh(candidate)``, ``z = sigmoid(update)``. Both take optional
``seq_lengths`` ``[rows]`` and ``timestep`` ``[1]`` (int): rows with ``timestep >= seq_lengths``
keep their previous state (zeros with ``drop_states``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.errors import ArgumentError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.proto import NetDef
from kaffa.schema import REQUIRED, UNKNOWN, Arg, ArgType, TensorInfo, check, define, same_dtype
from kaffa.subnet import backward_net, infer

INT32 = np.dtype(np.int32)


def _s(info: TensorInfo) -> str:
    return (
        "[?]"
        if info.shape is None
        else "[" + ",".join("?" if d is None else str(d) for d in info.shape) + "]"
    )


# -- cell ops --------------------------------------------------------------------------------------
def _check_lengths(op: str, ins: list[TensorInfo], rows: int | None) -> None:
    """seq_lengths [rows] and timestep [1], both integer."""
    lengths, step = ins
    for name, info in (("seq_lengths", lengths), ("timestep", step)):
        check(
            info.dtype is None or info.dtype.kind in "iu",
            f"{op}: {name} must be an integer tensor, got {dtypes.name(info.dtype)}",
        )
    if lengths.shape is not None:
        check(
            len(lengths.shape) == 1 and (rows is None or lengths.shape[0] in (None, rows)),
            f"{op}: seq_lengths {_s(lengths)} must be [rows] = [{rows}] (the hidden state's leading dims)",
        )
    if step.known:
        check(math.prod(step.shape) == 1, f"{op}: timestep {_s(step)} must have one element")  # type: ignore[arg-type]


def _unit_layout(op: str, hidden: TensorInfo, gates: TensorInfo, k: int) -> tuple[int | None, int | None]:
    """(rows, D) of a cell op whose gates are [..., k * D] next to a [..., D] state."""
    rows = d = None
    if hidden.shape is not None:
        check(len(hidden.shape) >= 1, f"{op}: the hidden state {_s(hidden)} needs at least one dim")
        d = hidden.shape[-1]
        lead = hidden.shape[:-1]
        rows = None if any(x is None for x in lead) else math.prod(lead)  # type: ignore[arg-type]
    if gates.shape is not None and hidden.shape is not None:
        ok = len(gates.shape) == len(hidden.shape) and all(
            a is None or b is None or a == b for a, b in zip(gates.shape[:-1], hidden.shape[:-1])
        )
        g = gates.shape[-1]
        ok = ok and (g is None or d is None or g == k * d)
        check(ok, f"{op}: gates {_s(gates)} must be [..., {k}D] for a hidden state {_s(hidden)} [..., D]")
    return rows, d


def _infer_lstm_unit(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "LSTMUnit"
    check(len(ins) in (3, 5), f"{op} takes 3 inputs (or 5 with seq_lengths, timestep), got {len(ins)}")
    h, c, gates = ins[:3]
    dtype = same_dtype(op, ins[:3])
    check(
        h.shape is None or c.shape is None or h.shape == c.shape,
        f"{op}: hidden_prev {_s(h)} and cell_prev {_s(c)} must have one shape",
    )
    state = h if h.shape is not None else c
    rows, _ = _unit_layout(op, state, gates, 4)
    if len(ins) == 5:
        _check_lengths(op, ins[3:], rows)
    out = TensorInfo(state.shape, dtype)
    return [out, out]


def _infer_gru_unit(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "GRUUnit"
    check(len(ins) in (2, 4), f"{op} takes 2 inputs (or 4 with seq_lengths, timestep), got {len(ins)}")
    h, gates = ins[:2]
    dtype = same_dtype(op, ins[:2])
    rows, _ = _unit_layout(op, h, gates, 3)
    if len(ins) == 4:
        _check_lengths(op, ins[2:], rows)
    return [TensorInfo(h.shape, dtype)]


_CELL_ARGS = [
    Arg("drop_states", ArgType.BOOL, False, "rows past their sequence length get zero states (else: keep)"),
    # Caffe2 spells "inputs 3 and 4 are given" with this flag; here the input count says it.
    Arg(
        "sequence_lengths", ArgType.BOOL, True, "accepted for Caffe2 compatibility (the input count decides)"
    ),
]
_LENGTH_DOCS = [
    ("seq_lengths", "optional [rows] int: rows at timestep >= their length keep their state"),
    ("timestep", "optional [1] int: the current step (with seq_lengths)"),
]

define(
    "LSTMUnit",
    family="recurrent",
    doc="One LSTM step (Caffe2's LSTMUnit). Gates [..., 4D] hold the pre-activations of the input, "
    "forget, output gates and the cell candidate, in that order: c = sigmoid(f + forget_bias) * "
    "c_prev + sigmoid(i) * tanh(g), h = sigmoid(o) * tanh(c). With seq_lengths and timestep, rows "
    "with timestep >= seq_lengths keep hidden_prev / cell_prev (zeros with drop_states).",
    inputs=(3, 5),
    outputs=2,
    input_docs=[
        ("hidden_prev", "[..., D]"),
        ("cell_prev", "[..., D]"),
        ("gates", "[..., 4D]: input, forget, output, candidate"),
        *_LENGTH_DOCS,
    ],
    output_docs=[("hidden", "[..., D]"), ("cell", "[..., D]")],
    args=[Arg("forget_bias", ArgType.FLOAT, 0.0, "added to the forget gate's pre-activation"), *_CELL_ARGS],
    infer=_infer_lstm_unit,
)

define(
    "LSTMUnitGradient",
    family="recurrent",
    doc="Gradient of LSTMUnit: inputs hidden_prev, cell_prev, gates, [seq_lengths, timestep], "
    "hidden, cell, d_hidden, d_cell; outputs d_hidden_prev, d_cell_prev, d_gates.",
    inputs=(7, 9),
    outputs=3,
    args=[Arg("forget_bias", ArgType.FLOAT, 0.0), *_CELL_ARGS],
    infer=lambda args, ins, n: (
        [TensorInfo(ins[0].shape, ins[0].dtype)] * 2 + [TensorInfo(ins[2].shape, ins[2].dtype)]
    ),
    gradient_op=True,
    differentiable=False,
)

define(
    "GRUUnit",
    family="recurrent",
    doc="One GRU step (Caffe2's GRUUnit). Gates [..., 3D] hold the pre-activations of the reset "
    "gate (unused here: the caller applies it to the candidate's recurrent term), the update gate z "
    "and the candidate: h = sigmoid(z) * h_prev + (1 - sigmoid(z)) * tanh(candidate). With "
    "seq_lengths and timestep, rows with timestep >= seq_lengths keep hidden_prev (zeros with "
    "drop_states).",
    inputs=(2, 4),
    outputs=1,
    input_docs=[("hidden_prev", "[..., D]"), ("gates", "[..., 3D]: reset, update, candidate"), *_LENGTH_DOCS],
    output_docs=[("hidden", "[..., D]")],
    args=_CELL_ARGS,
    infer=_infer_gru_unit,
)

define(
    "GRUUnitGradient",
    family="recurrent",
    doc="Gradient of GRUUnit: inputs hidden_prev, gates, [seq_lengths, timestep], hidden, d_hidden; "
    "outputs d_hidden_prev, d_gates (zero for the reset part).",
    inputs=(4, 6),
    outputs=2,
    args=_CELL_ARGS,
    infer=lambda args, ins, n: [
        TensorInfo(ins[0].shape, ins[0].dtype),
        TensorInfo(ins[1].shape, ins[1].dtype),
    ],
    gradient_op=True,
    differentiable=False,
)


def _zeros_for_missing(g: GradientContext, j: int, like: str, ops: list) -> str:
    """GO(j), or a ZerosLike(``like``) when nothing downstream gave output j a gradient."""
    go = g.GO(j)
    if go is not None:
        return go
    name = g.temp(f"zero_go{j}")
    ops.append(g.make("ZerosLike", [like], [name]))
    return name


@gradient("LSTMUnit")
def _lstm_unit_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None and g.GO(1) is None:
        return GradientOps([], [None] * g.num_inputs)
    ops: list = []
    dh = _zeros_for_missing(g, 0, g.O(0), ops)
    dc = _zeros_for_missing(g, 1, g.O(1), ops)
    ins = [g.I(i) for i in range(g.num_inputs)]
    ops.append(
        g.make(
            "LSTMUnitGradient",
            [*ins, g.O(0), g.O(1), dh, dc],
            [g.GI(0), g.GI(1), g.GI(2)],
            **g.forward_args(),
        )
    )
    return GradientOps(ops, [g.GI(0), g.GI(1), g.GI(2)] + [None] * (g.num_inputs - 3))


@gradient("GRUUnit")
def _gru_unit_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None] * g.num_inputs)
    ins = [g.I(i) for i in range(g.num_inputs)]
    op = g.make("GRUUnitGradient", [*ins, g.O(0), g.GO(0)], [g.GI(0), g.GI(1)], **g.forward_args())
    return GradientOps([op], [g.GI(0), g.GI(1)] + [None] * (g.num_inputs - 2))


# -- RecurrentNetwork ------------------------------------------------------------------------------
def _canon_rnn(op: str):
    def canon(args: dict[str, Any]) -> dict[str, Any]:
        k_in, k_out = args["state_inputs"], args["state_outputs"]
        if len(k_in) != len(k_out):
            raise ArgumentError(
                f"{op}: state_inputs ({len(k_in)} names) and state_outputs ({len(k_out)} names) must pair up"
            )
        if not args["sequence_inputs"]:
            raise ArgumentError(f"{op}: sequence_inputs must name at least one sequence (it gives T)")
        inner = [*args["sequence_inputs"], *k_in, *args["param_inputs"]]
        if args["timestep"]:
            inner.append(args["timestep"])
        dup = sorted({n for n in inner if inner.count(n) > 1})
        if dup:
            raise ArgumentError(f"{op}: the step-net names {dup} are bound more than once")
        both = sorted(set(args["step_outputs"]) & set(k_out))
        if both:
            raise ArgumentError(
                f"{op}: {both} are state_outputs already (their sequences are outputs 0..K-1); drop them "
                "from step_outputs"
            )
        return args

    return canon


_RNN_ARGS = [
    Arg("step_net", ArgType.NET, REQUIRED, "the net run once per timestep"),
    Arg("sequence_inputs", ArgType.STRINGS, [], "step-net names of slice t of inputs 0..S-1"),
    Arg(
        "state_inputs",
        ArgType.STRINGS,
        [],
        "step-net names of the previous states (inputs S..S+K-1 at the start)",
    ),
    Arg("state_outputs", ArgType.STRINGS, [], "step-net names the step writes the new states to"),
    Arg(
        "param_inputs", ArgType.STRINGS, [], "step-net names of the remaining inputs (read whole every step)"
    ),
    Arg("step_outputs", ArgType.STRINGS, [], "further step-net blobs stacked over time as the last outputs"),
    Arg("timestep", ArgType.STRING, "", "step-net name of an int32 [1] blob holding t (none if empty)"),
    Arg("reverse", ArgType.BOOL, False, "run t from T-1 down to 0"),
]


_LINK_ARGS = (
    "sequence_inputs",
    "state_inputs",
    "state_outputs",
    "param_inputs",
    "step_outputs",
    "timestep",
    "reverse",
)


def rnn_layout(args: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(S, K, P, O): sequences, states, params, step outputs."""
    return (
        len(args["sequence_inputs"]),
        len(args["state_inputs"]),
        len(args["param_inputs"]),
        len(args["step_outputs"]),
    )


def step_bindings(args: Mapping[str, Any]) -> list[str]:
    """Step-net names of the op's inputs, in order (sequence slices, previous states, params)."""
    return [*args["sequence_inputs"], *args["state_inputs"], *args["param_inputs"]]


def _infer_rnn(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "RecurrentNetwork"
    s, k, p, o = rnn_layout(args)
    check(
        len(ins) == s + k + p,
        f"{op}: {s} sequence_inputs + {k} state_inputs + {p} param_inputs need {s + k + p} inputs, "
        f"got {len(ins)}",
    )
    check(n == 2 * k + o, f"{op}: {k} states and {o} step_outputs make {2 * k + o} outputs, got {n}")
    t = None
    slices = []
    for i, info in enumerate(ins[:s]):
        if info.shape is None:
            slices.append(TensorInfo(None, info.dtype))
            continue
        check(len(info.shape) >= 1, f"{op}: sequence input {i} {_s(info)} needs a time axis (axis 0)")
        d0 = info.shape[0]
        check(
            t is None or d0 is None or d0 == t,
            f"{op}: sequence input {i} {_s(info)} has T={d0}, others T={t}",
        )
        t = d0 if d0 is not None else t
        slices.append(TensorInfo(info.shape[1:], info.dtype))
    bound = dict(zip(step_bindings(args), [*slices, *ins[s:]]))
    if args["timestep"]:
        bound[args["timestep"]] = TensorInfo((1,), INT32)
    want = [*args["state_outputs"], *args["step_outputs"]]
    got = infer(args["step_net"], bound, want, what=f"{op}.step_net")
    states = []
    for j, (init, new) in enumerate(zip(ins[s : s + k], got[:k])):
        check(
            init.shape is None or new.shape is None or init.shape == new.shape,
            f"{op}: the step net turns state {j} {_s(init)} into {_s(new)}; a state must keep its shape",
        )
        states.append(
            TensorInfo(init.shape if init.shape is not None else new.shape, init.dtype or new.dtype)
        )

    def seq(info: TensorInfo) -> TensorInfo:
        return TensorInfo(None if info.shape is None else (t, *info.shape), info.dtype)

    return [*(seq(x) for x in states), *states, *(seq(x) for x in got[k:])]


define(
    "RecurrentNetwork",
    family="recurrent",
    doc="Run step_net once per timestep t of the sequence inputs (axis 0), carrying states from "
    "step to step: inputs are S sequences, K initial states, then the params the step reads whole; "
    "outputs are the K state sequences [T, ...], the K final states and the step_outputs sequences.",
    inputs=(1, math.inf),
    outputs=(0, math.inf),
    input_docs=[
        ("sequences", "S inputs [T, ...] (slice t bound to sequence_inputs)"),
        ("initial_states", "K inputs (bound to state_inputs at the first step)"),
        ("params", "the rest, bound whole to param_inputs"),
    ],
    output_docs=[
        ("state_sequences", "K outputs [T, ...]: the state after step t at index t"),
        ("final_states", "K outputs: the state after the last step"),
        ("step_output_sequences", "one [T, ...] per step_outputs name"),
    ],
    args=_RNN_ARGS,
    canonicalize=_canon_rnn("RecurrentNetwork"),
    infer=_infer_rnn,
)


def _grad_names(args: Mapping[str, Any]) -> dict[str, list[str]]:
    """The backward step net's fixed inner names (no clash with step-net blobs)."""
    s, k, p, o = rnn_layout(args)
    return {
        "gstate": [f"__rnn_gstate{j}" for j in range(k)],
        "gout": [f"__rnn_gout{j}" for j in range(o)],
        "gin": [f"__rnn_gin{i}" for i in range(s + k + p)],
    }


def _infer_rnn_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    return [TensorInfo(ins[i].shape, ins[i].dtype) if i < len(ins) else UNKNOWN for i in args["input_grads"]]


define(
    "RecurrentNetworkGradient",
    family="recurrent",
    doc="Gradient of RecurrentNetwork: runs backward_step_net (the step recomputed, then its "
    "gradient ops) for t in reverse order of the forward run, carrying the state gradients; "
    "inputs are the forward inputs, the K forward state sequences and the gradients of the "
    "forward outputs in outputs_with_grads; outputs are the gradients of the forward inputs in "
    "input_grads (parameter gradients summed over the steps).",
    inputs=(1, math.inf),
    outputs=(0, math.inf),
    args=[
        *_RNN_ARGS,
        Arg("backward_step_net", ArgType.NET, REQUIRED, "the step's gradient net"),
        Arg("outputs_with_grads", ArgType.INTS, [], "forward outputs whose gradients are inputs"),
        Arg("input_grads", ArgType.INTS, [], "forward inputs whose gradients are the outputs"),
    ],
    canonicalize=_canon_rnn("RecurrentNetworkGradient"),
    infer=_infer_rnn_grad,
    gradient_op=True,
    differentiable=False,
)


def backward_step(
    args: Mapping[str, Any], with_outputs: list[int], name: str = ""
) -> tuple[NetDef, list[int]]:
    """The backward step net of a RecurrentNetwork and the forward inputs it gives real gradients.

    It binds the step's inputs under their step-net names, the gradient of state k's new value as
    ``__rnn_gstate{k}`` and of step output j (for j in ``with_outputs``) as ``__rnn_gout{j}``, and
    writes the gradient of forward input i as ``__rnn_gin{i}``.
    """
    names = _grad_names(args)
    inner = step_bindings(args)
    g_out = dict(zip(args["state_outputs"], names["gstate"]))
    g_out.update((args["step_outputs"][j], names["gout"][j]) for j in with_outputs)
    all_in = dict(zip(inner, names["gin"]))
    _, got = backward_net(args["step_net"], inner, g_out, all_in, name)
    wanted = [i for i, x in enumerate(inner) if x in got]
    net, _ = backward_net(args["step_net"], inner, g_out, {inner[i]: names["gin"][i] for i in wanted}, name)
    return net, wanted


@gradient("RecurrentNetwork")
def _rnn_grad(g: GradientContext) -> GradientOps:
    _, k, _, _ = rnn_layout(g.args)
    with_grads = [j for j in range(g.num_outputs) if g.GO(j) is not None]
    if not with_grads:
        return GradientOps([], [None] * g.num_inputs)
    step_outs = [j - 2 * k for j in with_grads if j >= 2 * k]
    net, wanted = backward_step(
        g.args, step_outs, name=(g.op.name or "RecurrentNetwork") + ".backward_step_net"
    )
    if not wanted:
        return GradientOps([], [None] * g.num_inputs)
    inputs = [*g.op.input, *(g.O(j) for j in range(k)), *(g.GO(j) for j in with_grads)]
    outputs = [g.GI(i) for i in wanted]
    op = g.make(
        "RecurrentNetworkGradient",
        inputs,
        outputs,
        backward_step_net=net,
        outputs_with_grads=with_grads,
        input_grads=wanted,
        **g.forward_args(*_LINK_ARGS),
    )
    op.arg.extend(a for a in g.op.arg if a.name == "step_net")
    g_inputs: list[str | None] = [None] * g.num_inputs
    for i in wanted:
        g_inputs[i] = g.GI(i)
    return GradientOps([op], g_inputs)

"""Recurrent layers built from RecurrentNetwork: LSTM and GRU (single or stacked, optionally
bidirectional), and ``recurrent_net`` to wrap any step net (Caffe2's ``recurrent.recurrent_net`` and
``rnn_cell.LSTM``/``GRU``).

    model = ModelHelper("seq")
    out = rnn.lstm(model, "x", dim_in=1, dim_out=32, scope="lstm")     # x: [T, N, 1]
    out.output            # [T, N, 32]: the hidden state after every step
    out.hidden_last       # [N, 32], out.cell_last: [N, 32]
    rnn.lstm(model, "x", 1, [32, 32], "deep", bidirectional=True)   # two layers, both directions

Sequences are time-major, ``[T, N, features]``. Each layer projects its whole input sequence once
(``FC`` with ``axis=2``, parameters ``<scope>/i2h_w``, ``<scope>/i2h_b``), then a RecurrentNetwork
runs the step net: the recurrent ``FC`` (``<scope>/gates_t_w``; GRU: ``<scope>/gates_rz_w`` and
``<scope>/gates_n_w``), then ``LSTMUnit`` / ``GRUUnit``; stacked layers use ``<scope>/layer<k>``
and bidirectional ones ``.../forward`` and ``.../backward``. Initial states default to zeros (no
gradient); pass ``initial_states`` (``[N, H]`` blobs, one pair (h, c) per LSTM layer and direction)
to learn or feed them. With ``seq_lengths`` (int32 ``[N]``), rows past their length keep their
state (zeros with ``drop_states``), so ``hidden_last`` is each row's last valid state, in both
directions. Gradients come from ``model.add_gradient_ops`` like any other op's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaffa.core import BlobReference, Net
from kaffa.model_helper import ModelHelper, ParameterTags
from kaffa.scope import scoped_name

Blob = str | BlobReference

__all__ = ["RNNOutput", "gru", "lstm", "recurrent_net"]


@dataclass
class RNNOutput:
    """What a layer helper returns: the last layer's output sequence ``[T, N, H * directions]``,
    its final hidden (and, for LSTM, cell) state ``[N, H * directions]``, and every layer's and
    direction's final states in order (``finals``: (hidden, cell or None) pairs)."""

    output: BlobReference
    hidden_last: BlobReference
    cell_last: BlobReference | None = None
    finals: list[tuple[BlobReference, BlobReference | None]] = field(default_factory=list)

    def __iter__(self):  # (output, hidden_last, cell_last), as Caffe2's helpers return tuples
        return iter((self.output, self.hidden_last, self.cell_last))


def _net_of(model: ModelHelper | Net) -> Net:
    return model.net if isinstance(model, ModelHelper) else model


def recurrent_net(
    model: ModelHelper | Net,
    step_net: Net,
    sequences: Mapping[str, Blob],
    states: Sequence[tuple[str, str, Blob]],
    params: Mapping[str, Blob] | None = None,
    step_outputs: Sequence[str] = (),
    outputs: Sequence[Blob] | None = None,
    *,
    reverse: bool = False,
    timestep: str = "",
    name: str = "",
) -> tuple[BlobReference, ...]:
    """Add a RecurrentNetwork running ``step_net`` over time.

    ``sequences``: {step-net name: outer [T, ...] blob} (slice t is bound each step). ``states``:
    (step-net name of the previous value, step-net name of the new value, outer initial value).
    ``params``: {step-net name: outer blob read whole}. ``step_outputs``: step-net blobs stacked
    over time. ``outputs`` (default: derived from ``name``) name the K state sequences, the K final
    states and the step-output sequences, in that order. Returns those blobs.
    """
    net = _net_of(model)
    params = dict(params or {})
    base = name or net.next_name("rnn")
    if outputs is None:
        outputs = [
            *(f"{base}/{new}_all" for _, new, _ in states),
            *(f"{base}/{new}_last" for _, new, _ in states),
            *(f"{base}/{o}_all" for o in step_outputs),
        ]
    inputs = [*sequences.values(), *(init for _, _, init in states), *params.values()]
    refs = net.RecurrentNetwork(
        inputs,
        list(outputs),
        step_net=step_net.Proto(),
        sequence_inputs=list(sequences),
        state_inputs=[prev for prev, _, _ in states],
        state_outputs=[new for _, new, _ in states],
        param_inputs=list(params),
        step_outputs=list(step_outputs),
        timestep=timestep,
        reverse=bool(reverse),
        name=name,
    )
    return refs if isinstance(refs, tuple) else (refs,)


def _ref(name: str) -> BlobReference:
    # Step-net names are private to the step net: never NameScope'd.
    return BlobReference(name)


def _zeros_state(net: Net, projected: Blob, hidden: int, name: str) -> BlobReference:
    """[N, hidden] zeros shaped from the projected input [T, N, G] (no gradient flows back)."""
    first = net.Slice([projected], _ref(name + "_slice"), starts=[0, 0, 0], ends=[1, -1, hidden])
    return net.ZerosLike([net.Squeeze([first], _ref(name + "_shape"), dims=[0])], _ref(name))


def _params(model: ModelHelper, prefix: str, shapes: Mapping[str, list[int]]) -> dict[str, BlobReference]:
    out = {}
    for key, shape in shapes.items():
        is_bias = key.endswith("_b")
        init = ("ConstantFill", {}) if is_bias else ("XavierFill", {})
        tag = ParameterTags.BIAS if is_bias else ParameterTags.WEIGHT
        out[key] = model.create_param(_ref(f"{prefix}/{key}"), shape, init, tag)
    return out


def _lstm_direction(
    model: ModelHelper,
    x: Blob,
    dim_in: int,
    hidden: int,
    prefix: str,
    seq_lengths: Blob | None,
    init: tuple[Blob, Blob] | None,
    reverse: bool,
    forget_bias: float,
    drop_states: bool,
) -> tuple[BlobReference, BlobReference, BlobReference]:
    net = model.net
    p = _params(
        model,
        prefix,
        {"i2h_w": [4 * hidden, dim_in], "i2h_b": [4 * hidden], "gates_t_w": [4 * hidden, hidden]},
    )
    projected = net.FC([x, p["i2h_w"], p["i2h_b"]], _ref(f"{prefix}/i2h"), axis=2)
    if init is None:
        zero = _zeros_state(net, projected, hidden, f"{prefix}/zero_state")
        init = (zero, zero)
    step = Net(f"{prefix}/step")
    gates = step.Add([_ref("x_t"), step.FC([_ref("h_prev"), _ref("gates_t_w")], _ref("h2h"))], _ref("gates"))
    unit_in = [_ref("h_prev"), _ref("c_prev"), gates]
    params: dict[str, Blob] = {"gates_t_w": p["gates_t_w"]}
    if seq_lengths is not None:
        unit_in += [_ref("seq_lengths"), _ref("timestep")]
        params["seq_lengths"] = seq_lengths
    step.LSTMUnit(
        unit_in, [_ref("h"), _ref("c")], forget_bias=float(forget_bias), drop_states=bool(drop_states)
    )
    h_all, _, h_last, c_last = recurrent_net(
        model,
        step,
        {"x_t": projected},
        [("h_prev", "h", init[0]), ("c_prev", "c", init[1])],
        params,
        outputs=[_ref(f"{prefix}/{n}") for n in ("hidden_all", "cell_all", "hidden_last", "cell_last")],
        reverse=reverse,
        timestep="timestep" if seq_lengths is not None else "",
        name=prefix,
    )
    return h_all, h_last, c_last


def _gru_direction(
    model: ModelHelper,
    x: Blob,
    dim_in: int,
    hidden: int,
    prefix: str,
    seq_lengths: Blob | None,
    init: Blob | None,
    reverse: bool,
    drop_states: bool,
) -> tuple[BlobReference, BlobReference]:
    net = model.net
    h = hidden
    p = _params(
        model,
        prefix,
        {"i2h_w": [3 * h, dim_in], "i2h_b": [3 * h], "gates_rz_w": [2 * h, h], "gates_n_w": [h, h]},
    )
    projected = net.FC([x, p["i2h_w"], p["i2h_b"]], _ref(f"{prefix}/i2h"), axis=2)
    if init is None:
        init = _zeros_state(net, projected, h, f"{prefix}/zero_state")
    # Caffe2's GRU cell (ONNX's linear_before_reset=0): the reset gate scales h_prev before the
    # candidate's recurrent FC; GRUUnit then mixes h_prev and the candidate by the update gate.
    step = Net(f"{prefix}/step")
    x_rz, x_n = step.Split([_ref("x_t")], [_ref("x_rz"), _ref("x_n")], axis=1, split=[2 * h, h])
    rz = step.Add([x_rz, step.FC([_ref("h_prev"), _ref("gates_rz_w")], _ref("h_rz"))], _ref("rz"))
    r_pre, _ = step.Split([rz], [_ref("r_pre"), _ref("z_pre")], axis=1)
    rh = step.Mul([step.Sigmoid([r_pre], _ref("r")), _ref("h_prev")], _ref("rh"))
    n = step.Add([x_n, step.FC([rh, _ref("gates_n_w")], _ref("h_n"))], _ref("n_pre"))
    gates, _ = step.Concat([rz, n], [_ref("gates"), _ref("gates_split")], axis=1)
    unit_in = [_ref("h_prev"), gates]
    params: dict[str, Blob] = {"gates_rz_w": p["gates_rz_w"], "gates_n_w": p["gates_n_w"]}
    if seq_lengths is not None:
        unit_in += [_ref("seq_lengths"), _ref("timestep")]
        params["seq_lengths"] = seq_lengths
    step.GRUUnit(unit_in, [_ref("h")], drop_states=bool(drop_states))
    h_all, h_last = recurrent_net(
        model,
        step,
        {"x_t": projected},
        [("h_prev", "h", init)],
        params,
        outputs=[_ref(f"{prefix}/hidden_all"), _ref(f"{prefix}/hidden_last")],
        reverse=reverse,
        timestep="timestep" if seq_lengths is not None else "",
        name=prefix,
    )
    return h_all, h_last


def _layers(dim_out: int | Sequence[int], num_layers: int) -> list[int]:
    dims = [int(dim_out)] * num_layers if isinstance(dim_out, int) else [int(d) for d in dim_out]
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"hidden sizes must be positive, got {dims}")
    return dims


def _stack(
    model: ModelHelper,
    kind: str,
    input_blob: Blob,
    dim_in: int,
    dim_out: int | Sequence[int],
    scope: str,
    num_layers: int,
    bidirectional: bool,
    initial_states: Sequence[Any] | None,
    run_direction: Any,
) -> RNNOutput:
    dims = _layers(dim_out, num_layers)
    scope = scoped_name(scope)
    directions = 2 if bidirectional else 1
    n_dirs = len(dims) * directions
    if initial_states is not None and len(initial_states) != n_dirs:
        raise ValueError(
            f"{kind}: initial_states needs one entry per layer and direction ({n_dirs}), "
            f"got {len(initial_states)}"
        )
    x, d_in = input_blob, dim_in
    finals: list[tuple[BlobReference, BlobReference | None]] = []
    out = h_last = c_last = None
    for layer, h in enumerate(dims):
        outs = []
        for direction in range(directions):
            prefix = scope if len(dims) == 1 else f"{scope}/layer{layer}"
            if bidirectional:
                prefix += "/backward" if direction else "/forward"
            init = initial_states[layer * directions + direction] if initial_states is not None else None
            got = run_direction(x, d_in, h, prefix, init, bool(direction))
            outs.append(got)
            finals.append((got[1], got[2] if len(got) > 2 else None))
        base = scope if len(dims) == 1 else f"{scope}/layer{layer}"
        if directions == 1:
            out, h_last = outs[0][0], outs[0][1]
            c_last = outs[0][2] if len(outs[0]) > 2 else None
        else:
            net = model.net
            out = net.Concat(
                [o[0] for o in outs], [_ref(f"{base}/output"), _ref(f"{base}/output_split")], axis=2
            )[0]
            h_last = net.Concat(
                [o[1] for o in outs], [_ref(f"{base}/hidden_last"), _ref(f"{base}/hidden_split")], axis=1
            )[0]
            c_last = None
            if len(outs[0]) > 2:
                c_last = net.Concat(
                    [o[2] for o in outs], [_ref(f"{base}/cell_last"), _ref(f"{base}/cell_split")], axis=1
                )[0]
        x, d_in = out, h * directions
    assert out is not None and h_last is not None
    return RNNOutput(out, h_last, c_last, finals)


def lstm(
    model: ModelHelper,
    input_blob: Blob,
    dim_in: int,
    dim_out: int | Sequence[int],
    scope: str = "lstm",
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    seq_lengths: Blob | None = None,
    initial_states: Sequence[tuple[Blob, Blob]] | None = None,
    forget_bias: float = 0.0,
    drop_states: bool = False,
) -> RNNOutput:
    """LSTM layer(s) over ``input_blob`` [T, N, dim_in]. ``dim_out``: the hidden size, or a list of
    hidden sizes, one per stacked layer (else ``num_layers`` layers of ``dim_out``). Gates follow
    LSTMUnit (input, forget, output, candidate); ``forget_bias`` is added to the forget gate."""

    def one(x, d_in, h, prefix, init, reverse):
        return _lstm_direction(
            model, x, d_in, h, prefix, seq_lengths, init, reverse, forget_bias, drop_states
        )

    return _stack(
        model, "lstm", input_blob, dim_in, dim_out, scope, num_layers, bidirectional, initial_states, one
    )


def gru(
    model: ModelHelper,
    input_blob: Blob,
    dim_in: int,
    dim_out: int | Sequence[int],
    scope: str = "gru",
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    seq_lengths: Blob | None = None,
    initial_states: Sequence[Blob] | None = None,
    drop_states: bool = False,
) -> RNNOutput:
    """GRU layer(s) over ``input_blob`` [T, N, dim_in] (gates reset, update, candidate; the reset
    gate applied before the candidate's recurrent product). Arguments as for ``lstm``;
    ``initial_states`` holds one [N, H] blob per layer and direction."""

    def one(x, d_in, h, prefix, init, reverse):
        return _gru_direction(model, x, d_in, h, prefix, seq_lengths, init, reverse, drop_states)

    return _stack(
        model, "gru", input_blob, dim_in, dim_out, scope, num_layers, bidirectional, initial_states, one
    )

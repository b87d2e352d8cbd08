"""ONNX LSTM, GRU and RNN onto RecurrentNetwork.

Each direction becomes one RecurrentNetwork (``reverse=1`` for the backward one). The input
projection ``X W^T + biases`` is one FC over the whole sequence (``axis=2``) outside the step net;
the step net does the recurrent FC and the gate arithmetic from elementwise ops, so ONNX's variants
map directly: gate orders (LSTM i, o, f, c; GRU z, r, h), ``activations`` with their
``activation_alpha``/``activation_beta``, ``clip`` (a Clip before every activation), peepholes
(``P``), ``linear_before_reset``, ``layout`` (Transposes around the op) and ``sequence_lens``
(the step reads the timestep: rows past their length keep their state and output zeros, so
``Y_h`` is each row's last valid state in both directions). Weights may be constants or runtime
inputs: per-direction slices are Split ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.onnx.importer import Context, Node, translator, unsupported
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import make_argument

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
# Which activations consume an activation_alpha / activation_beta entry (in order), the
# untranslated ones too, so the entries after them reach the right activation.
_TAKES_ALPHA = {"LeakyRelu", "Elu", "ScaledTanh", "ThresholdedRelu", "Affine", "HardSigmoid"}
_TAKES_BETA = {"ScaledTanh", "Affine", "HardSigmoid"}


class _Step:
    """A step net under construction (plain OperatorDefs: its names are private to it)."""

    def __init__(self, name: str) -> None:
        self.net = NetDef(name=name)
        self._n = 0

    def tmp(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def op(
        self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | str | None = None, **args: Any
    ) -> str:
        outs = [outputs] if isinstance(outputs, str) else list(outputs or [self.tmp(op_type.lower())])
        op = OperatorDef(type=op_type, input=list(inputs), output=outs)
        op.arg.extend(make_argument(k, v) for k, v in args.items() if v is not None)
        self.net.op.append(op)
        return outs[0]

    def act(
        self, spec: tuple[str, float | None, float | None], x: str, clip: float | None, out: str | None = None
    ) -> str:
        """``spec`` applied to ``x`` (after the cell clip, as ONNX clips every activation's input)."""
        if clip is not None:
            x = self.op("Clip", [x], min=-clip, max=clip)
        name, alpha, beta = spec
        if name in ("Sigmoid", "Tanh", "Relu", "Softplus"):
            return self.op(name, [x], out)
        if name == "LeakyRelu":
            return self.op("LeakyRelu", [x], out, alpha=0.01 if alpha is None else alpha)
        if name == "Elu":
            return self.op("Elu", [x], out, alpha=1.0 if alpha is None else alpha)
        if name == "ScaledTanh":  # alpha * tanh(beta * x)
            inner = self.op("Scale", [x], scale=1.0 if beta is None else beta)
            return self.op("Scale", [self.op("Tanh", [inner])], out, scale=1.0 if alpha is None else alpha)
        raise unsupported(f"activation {name} inside a recurrent cell is not translated")


def _activations(node: Node, kind: str, dirs: int) -> list[list[tuple[str, float | None, float | None]]]:
    """Per direction, the cell's activation specs (name, alpha, beta)."""
    per = len(_DEFAULT_ACTS[kind])
    names = node.attr("activations") or _DEFAULT_ACTS[kind] * dirs
    if len(names) == per and dirs == 2:
        names = list(names) * 2
    if len(names) != per * dirs:
        raise unsupported(f"{kind} takes {per * dirs} activations for {dirs} direction(s), got {len(names)}")
    alphas, betas = list(node.attr("activation_alpha") or []), list(node.attr("activation_beta") or [])
    specs = []
    for n in names:
        canon = {
            a.lower(): a
            for a in (
                "Sigmoid",
                "Tanh",
                "Relu",
                "Softplus",
                "LeakyRelu",
                "Elu",
                "ScaledTanh",
                "ThresholdedRelu",
                "Affine",
                "HardSigmoid",
                "Softsign",
            )
        }.get(n.lower(), n)
        a = float(alphas.pop(0)) if canon in _TAKES_ALPHA and alphas else None
        b = float(betas.pop(0)) if canon in _TAKES_BETA and betas else None
        specs.append((canon, a, b))
    return [specs[d * per : (d + 1) * per] for d in range(dirs)]


def _per_direction(ctx: Context, name: str, dirs: int, hint: str) -> list[str]:
    """``name`` [dirs, ...] as ``dirs`` blobs without the leading axis."""
    if dirs == 1:
        out = ctx.temp(hint)
        ctx.op("Squeeze", [name], [out], dims=[0])
        return [out]
    outs = [ctx.temp(f"{hint}_forward"), ctx.temp(f"{hint}_backward")]
    ctx.op("Split", [name], outs, axis=0, add_axis=1)
    return outs


def _split(ctx: Context, name: str, sizes: Sequence[int], hint: str) -> list[str]:
    outs = [ctx.temp(f"{hint}{k}") for k in range(len(sizes))]
    ctx.op("Split", [name], outs, axis=0, split=list(sizes))
    return outs


def _stack(ctx: Context, parts: list[str], axis: int, out: str) -> None:
    if len(parts) == 1:
        ctx.op("ExpandDims", parts, [out], dims=[axis])
    else:
        ctx.op("Concat", parts, [out], axis=axis, add_axis=1)


def _zero_state(ctx: Context, projected: str, hidden: int, hint: str) -> str:
    """[N, hidden] zeros shaped from the projected sequence [T, N, G] (N may be dynamic)."""
    first, row, zeros = ctx.temp(hint + "_slice"), ctx.temp(hint + "_row"), ctx.temp(hint + "0")
    ctx.op("Slice", [projected], [first], starts=[0, 0, 0], ends=[1, -1, hidden])
    ctx.op("Squeeze", [first], [row], dims=[0])
    ctx.op("ZerosLike", [row], [zeros])
    return zeros


def _translate(ctx: Context, node: Node, kind: str) -> None:
    g = _GATES[kind]
    x, w, r = node.inputs[0], node.input(1), node.input(2)
    b, lens = node.input(3), node.input(4)
    init_h = node.input(5)
    init_c = node.input(6) if kind == "LSTM" else ""
    peep = node.input(7) if kind == "LSTM" else ""
    direction = node.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise unsupported(f"direction {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    layout = int(node.attr("layout", 0))
    clip = node.attr("clip")
    clip = None if clip is None else float(clip)
    if kind == "LSTM" and int(node.attr("input_forget", 0)):
        raise unsupported("input_forget=1 (coupled input and forget gates)")
    lbr = kind == "GRU" and int(node.attr("linear_before_reset", 0))
    hidden = node.attr("hidden_size")
    if hidden is None:
        r_shape = ctx.shape(r)
        if r_shape is None or r_shape[-1] is None:
            raise unsupported("hidden_size is not given and R's shape is unknown")
        hidden = r_shape[-1]
    h = int(hidden)
    acts = _activations(node, kind, dirs)
    dtype = ctx.dtype(x) or np.dtype(np.float32)

    # Time-major input [T, N, I]; per-direction weights.
    seq = x
    if layout:
        seq = ctx.temp(x + "_time_major")
        ctx.op("Transpose", [x], [seq], axes=[1, 0, 2])
    ws = _per_direction(ctx, w, dirs, w + "_dir")
    rs = _per_direction(ctx, r, dirs, r + "_dir")
    bs = _per_direction(ctx, b, dirs, b + "_dir") if b else [None] * dirs
    ps = _per_direction(ctx, peep, dirs, peep + "_dir") if peep else [None] * dirs

    def states_of(name: str, what: str) -> list[str | None]:
        if not name:
            return [None] * dirs
        src = name
        if layout:  # [N, D, H] -> [D, N, H]
            src = ctx.temp(name + "_dir_major")
            ctx.op("Transpose", [name], [src], axes=[1, 0, 2])
        return list(_per_direction(ctx, src, dirs, f"{name}_{what}"))

    hs0, cs0 = states_of(init_h, "h0"), states_of(init_c, "c0")

    y_parts, yh_parts, yc_parts = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        tag = f"{node.name}_{'backward' if reverse else 'forward'}"
        # Input projection with every bias that is not inside the reset product.
        x_bias = rec_bias = None
        if bs[d] is not None:
            wb, rb = _split(ctx, bs[d], [g * h, g * h], tag + "_b")
            if kind == "GRU":
                wb_zr, wb_h = _split(ctx, wb, [2 * h, h], tag + "_wb")
                rb_zr, rb_h = _split(ctx, rb, [2 * h, h], tag + "_rb")
                zr = ctx.temp(tag + "_bias_zr")
                ctx.op("Add", [wb_zr, rb_zr], [zr])
                cand = wb_h
                if lbr:
                    rec_bias = rb_h
                else:
                    cand = ctx.temp(tag + "_bias_h")
                    ctx.op("Add", [wb_h, rb_h], [cand])
                x_bias = ctx.temp(tag + "_bias")
                ctx.op("Concat", [zr, cand], [x_bias], axis=0)
            else:
                x_bias = ctx.temp(tag + "_bias")
                ctx.op("Add", [wb, rb], [x_bias])
        projected = ctx.temp(tag + "_projected")
        ctx.op("FC", [seq, ws[d], *([x_bias] if x_bias else [])], [projected], axis=2)

        h0 = hs0[d] or _zero_state(ctx, projected, h, f"{tag}_h")
        step = _Step(f"{tag}_step")
        params: dict[str, str] = {}
        masked = bool(lens)
        if kind == "RNN":
            params["R"] = rs[d]
            pre = step.op("Add", ["x_t", step.op("FC", ["h_prev", "R"])])
            new_h = step.act(acts[d][0], pre, clip)
            state_pairs = [("h_prev", "h", h0)]
            news = {"h": new_h}
        elif kind == "GRU":
            f_act, g_act = acts[d]
            r_zr, r_h = _split(ctx, rs[d], [2 * h, h], tag + "_r")
            params.update(R_zr=r_zr, R_h=r_h)
            x_zr, x_h = step.op("Split", ["x_t"], ["x_zr", "x_h"], axis=1, split=[2 * h, h]), "x_h"
            zr = step.op("Add", [x_zr, step.op("FC", ["h_prev", "R_zr"])])
            z_pre, r_pre = step.op("Split", [zr], ["z_pre", "r_pre"], axis=1), "r_pre"
            z, rg = step.act(f_act, z_pre, clip), step.act(f_act, r_pre, clip)
            if lbr:
                rec_in = ["h_prev", "R_h"]
                if rec_bias is not None:
                    params["Rb_h"] = rec_bias
                    rec_in.append("Rb_h")
                rec = step.op("Mul", [rg, step.op("FC", rec_in)])
            else:
                rec = step.op("FC", [step.op("Mul", [rg, "h_prev"]), "R_h"])
            cand = step.act(g_act, step.op("Add", [x_h, rec]), clip)
            # h = (1 - z) * cand + z * h_prev = cand + z * (h_prev - cand)
            new_h = step.op("Add", [cand, step.op("Mul", [z, step.op("Sub", ["h_prev", cand])])])
            state_pairs = [("h_prev", "h", h0)]
            news = {"h": new_h}
        else:
            f_act, g_act, h_act = acts[d]
            params["R"] = rs[d]
            gates = step.op("Add", ["x_t", step.op("FC", ["h_prev", "R"])])
            i_pre, o_pre, f_pre, c_pre = (
                step.op("Split", [gates], ["i_pre", "o_pre", "f_pre", "c_pre"], axis=1),
                "o_pre",
                "f_pre",
                "c_pre",
            )
            if ps[d] is not None:
                p_i, p_o, p_f = _split(ctx, ps[d], [h, h, h], tag + "_p")
                params.update(P_i=p_i, P_o=p_o, P_f=p_f)
                i_pre = step.op("Add", [i_pre, step.op("Mul", ["c_prev", "P_i"])])
                f_pre = step.op("Add", [f_pre, step.op("Mul", ["c_prev", "P_f"])])
            ig, fg = step.act(f_act, i_pre, clip), step.act(f_act, f_pre, clip)
            new_c = step.op(
                "Add", [step.op("Mul", [fg, "c_prev"]), step.op("Mul", [ig, step.act(g_act, c_pre, clip)])]
            )
            if ps[d] is not None:
                o_pre = step.op("Add", [o_pre, step.op("Mul", [new_c, "P_o"])])
            og = step.act(f_act, o_pre, clip)
            new_h = step.op("Mul", [og, step.act(h_act, new_c, clip)])
            c0 = cs0[d] or _zero_state(ctx, projected, h, f"{tag}_c")
            state_pairs = [("h_prev", "h", h0), ("c_prev", "c", c0)]
            news = {"h": new_h, "c": new_c}
        step_outputs = []
        if masked:
            params["lens"] = lens
            valid = step.op("ExpandDims", [step.op("GT", ["lens", "t"])], dims=[1])  # [N, 1]
            for prev, new, _ in state_pairs:
                step.op("Where", [valid, news[new], prev], new)
            step.op("Mul", ["h", step.op("Cast", [valid], to=dtype)], "y")
            step_outputs = ["y"]
        else:
            for _, new, _ in state_pairs:
                step.op("Copy", [news[new]], new)
        k = len(state_pairs)
        outs = [ctx.temp(f"{tag}_{n}_all") for _, n, _ in state_pairs]
        outs += [ctx.temp(f"{tag}_{n}_last") for _, n, _ in state_pairs]
        outs += [ctx.temp(f"{tag}_y_all")] * len(step_outputs)
        ctx.op(
            "RecurrentNetwork",
            [projected, *(init for _, _, init in state_pairs), *params.values()],
            outs,
            step_net=step.net,
            sequence_inputs=["x_t"],
            state_inputs=[p for p, _, _ in state_pairs],
            state_outputs=[n for _, n, _ in state_pairs],
            param_inputs=list(params),
            step_outputs=step_outputs,
            timestep="t" if masked else "",
            reverse=int(reverse),
        )
        y_parts.append(outs[-1] if masked else outs[0])
        yh_parts.append(outs[k])
        if kind == "LSTM":
            yc_parts.append(outs[k + 1])

    def emit(index: int, parts: list[str], axis: int, perm: list[int]) -> None:
        if index >= len(node.outputs) or not node.outputs[index]:
            return
        out = node.outputs[index]
        if not layout:
            _stack(ctx, parts, axis, out)
            return
        tmp = ctx.temp(out + "_dir_major")
        _stack(ctx, parts, axis, tmp)
        ctx.op("Transpose", [tmp], [out], axes=perm)

    emit(0, y_parts, 1, [2, 0, 1, 3])  # [T, D, N, H]; layout 1: [N, T, D, H]
    emit(1, yh_parts, 0, [1, 0, 2])  # [D, N, H]; layout 1: [N, D, H]
    if kind == "LSTM":
        emit(2, yc_parts, 0, [1, 0, 2])


@translator("LSTM")
def _lstm(ctx: Context, node: Node) -> None:
    _translate(ctx, node, "LSTM")


@translator("GRU")
def _gru(ctx: Context, node: Node) -> None:
    _translate(ctx, node, "GRU")


@translator("RNN")
def _rnn(ctx: Context, node: Node) -> None:
    _translate(ctx, node, "RNN")

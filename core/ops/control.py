"""Control flow: If, While, Do (schemas, bindings, the gradients of If and Do).

Each op carries its sub-nets as NetDef arguments (``Argument.n``) and runs them in a private child
workspace (``kaffa.subnet``). Kernels are pure functions, so a sub-net sees only what the op gives
it: **every outer blob a sub-net reads must be an input of the op**, and the sub-net's results
come back as the op's outputs. By default a sub-net refers to a blob by its outer name (an input
``x`` is bound as ``x`` inside, an output ``y`` is the inner blob ``y``); Caffe2's Do-style
``inner_blobs`` / ``outer_blobs_idx`` arguments rename: ``inner_blobs[k]`` is the inner name of
position ``outer_blobs_idx[k]`` of the op's inputs followed by its outputs.

* ``If(cond, X...) -> Y...``: runs ``then_net`` when the one-element bool ``cond`` is true, else
  ``else_net`` (without one, every output must be an input it passes through). An output a
  branch does not write but that is bound as an input comes out unchanged.
* ``While(cond, X...) -> Y..., S...``: the state starts as the bound inputs; then, repeatedly:
  run ``cond_net`` if given (its writes update the state), stop when the state's ``cond`` (input 0)
  is false, run ``loop_net`` (its writes update the state). Y are read from the final state;
  ``scan_blobs`` names inner blobs collected after every ``loop_net`` run and stacked on a new
  axis 0 as the last outputs S. More than ``max_iterations`` iterations raises
  ``kaffa.errors.IterationLimitError`` instead of hanging. Not differentiable (gradients stop at
  it, as at other non-differentiable ops).
* ``Do(X...) -> Y...``: runs ``net`` once.

Output shapes are not inferred (the schema sees shapes, not blob names, and the binding is by
name); the kernel checks at net creation that every blob a sub-net reads is bound and every output
is produced, and runs the sub-nets' own shape inference on the inputs it knows.

The gradient of If is an If over the branches' gradient nets (``kaffa.subnet.backward_net``: the
branch recomputed, then its gradient ops), each writing every input's gradient (zeros from the
branch that does not use an input); the gradient of Do is a Do over its net's gradient net.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kaffa import dtypes
from kaffa.errors import ArgumentError, SchemaError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import REQUIRED, UNKNOWN, Arg, ArgType, TensorInfo, check, define
from kaffa.subnet import backward_net, reads, writes

DEFAULT_MAX_ITERATIONS = 1_000_000

_BINDING_ARGS = [
    Arg("inner_blobs", ArgType.STRINGS, [], "inner names of the positions in outer_blobs_idx"),
    Arg(
        "outer_blobs_idx",
        ArgType.INTS,
        [],
        "positions in the op's inputs followed by its outputs that inner_blobs rename",
    ),
]


def _canon_bindings(op: str):
    def canon(args: dict[str, Any]) -> dict[str, Any]:
        inner, idx = args["inner_blobs"], args["outer_blobs_idx"]
        if len(inner) != len(idx):
            raise ArgumentError(
                f"{op}: inner_blobs ({len(inner)} names) and outer_blobs_idx ({len(idx)} positions) "
                "must have the same length"
            )
        if len(set(idx)) != len(idx):
            raise ArgumentError(f"{op}: outer_blobs_idx {idx} names a position twice")
        if op == "While" and args["max_iterations"] < 0:
            raise ArgumentError(f"While: max_iterations must be >= 0, got {args['max_iterations']}")
        return args

    return canon


def bindings(op: OperatorDef, args: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The inner names of ``op``'s inputs and of its outputs (outer names unless renamed)."""
    outer = [*op.input, *op.output]
    inner = list(outer)
    for name, k in zip(args["inner_blobs"], args["outer_blobs_idx"]):
        if not 0 <= k < len(outer):
            raise ArgumentError(
                f"{op.type}: outer_blobs_idx {k} is out of range for {len(op.input)} inputs + "
                f"{len(op.output)} outputs"
            )
        inner[k] = name
    ins, outs = inner[: len(op.input)], inner[len(op.input) :]
    data = ins[1:] if op.type in ("If", "While") else ins
    dup = sorted({n for n in data if data.count(n) > 1})
    if dup:
        raise SchemaError(f"{op.type}: inputs bind the inner name(s) {dup} more than once")
    return ins, outs


def check_net(
    op_type: str, what: str, net: NetDef, bound: Sequence[str], outputs: Sequence[str] = ()
) -> None:
    """Every blob ``net`` reads is bound, and every name in ``outputs`` is written or bound."""
    missing = [n for n in reads(net) if n not in bound]
    if missing:
        raise SchemaError(
            f"{op_type}: {what} reads {', '.join(repr(m) for m in missing)}, which the op does not bind "
            f"(bound: {', '.join(bound) or 'nothing'}); list every outer blob a sub-net reads as an "
            "input of the op"
        )
    made = set(writes(net)) | set(bound)
    absent = [n for n in outputs if n not in made]
    if absent:
        raise SchemaError(
            f"{op_type}: {what} does not produce output(s) {', '.join(repr(a) for a in absent)} "
            f"(it writes: {', '.join(writes(net)) or 'nothing'})"
        )


def _check_cond(op: str, cond: TensorInfo) -> None:
    check(
        cond.dtype is None or cond.dtype == dtypes.BOOL,
        f"{op}: the condition (input 0) must be bool, got {dtypes.name(cond.dtype)}",
    )
    check(
        not cond.known or math.prod(cond.shape or ()) == 1,  # type: ignore[arg-type]
        f"{op}: the condition (input 0) must have one element, got shape {list(cond.shape or ())}",
    )


def _infer_if(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _check_cond("If", ins[0])
    return [UNKNOWN] * n


def _infer_while(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _check_cond("While", ins[0])
    check(
        len(args["scan_blobs"]) <= n,
        f"While: {len(args['scan_blobs'])} scan_blobs need as many outputs, the op has {n}",
    )
    return [UNKNOWN] * n


def _infer_unknown(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    return [UNKNOWN] * n


define(
    "If",
    family="control",
    doc="Run then_net if the one-element bool `cond` is true, else else_net, in a child workspace "
    "that sees only the op's inputs; the outputs are the branch's blobs of those names.",
    inputs=(1, math.inf),
    outputs=(1, math.inf),
    input_docs=[("cond", "one-element bool"), ("X...", "every outer blob the branches read")],
    output_docs=[("Y...", "blobs the taken branch writes (or bound inputs it passes through)")],
    args=[
        Arg("then_net", ArgType.NET, REQUIRED, "net run when cond is true"),
        Arg("else_net", ArgType.NET, None, "net run when cond is false (none: outputs pass through)"),
        *_BINDING_ARGS,
    ],
    canonicalize=_canon_bindings("If"),
    inplace="any",
    infer=_infer_if,
    dtypes=dtypes.ALL_TYPES,
    type_input=1,
)

define(
    "While",
    family="control",
    doc="Loop: run cond_net (if given), stop when `cond` is false, run loop_net; every blob the "
    "sub-nets write carries to the next iteration. More than max_iterations iterations raise "
    "IterationLimitError.",
    inputs=(1, math.inf),
    outputs=(0, math.inf),
    input_docs=[("cond", "one-element bool: the loop condition"), ("X...", "the initial state")],
    output_docs=[("Y...", "blobs of the final state"), ("S...", "scan_blobs, stacked on a new axis 0")],
    args=[
        Arg("loop_net", ArgType.NET, REQUIRED, "the loop body"),
        Arg("cond_net", ArgType.NET, None, "run before every check of cond (may recompute it)"),
        Arg("max_iterations", ArgType.INT, DEFAULT_MAX_ITERATIONS, "more iterations raise an error"),
        Arg("scan_blobs", ArgType.STRINGS, [], "inner blobs stacked over iterations as the last outputs"),
        *_BINDING_ARGS,
    ],
    canonicalize=_canon_bindings("While"),
    inplace="any",
    infer=_infer_while,
    dtypes=dtypes.ALL_TYPES,
    type_input=1,
    differentiable=False,  # gradients stop here, as at other non-differentiable ops
)

define(
    "Do",
    family="control",
    doc="Run `net` once in a child workspace that sees only the op's inputs; the outputs are its "
    "blobs of those names.",
    inputs=(0, math.inf),
    outputs=(1, math.inf),
    input_docs=[("X...", "every outer blob the net reads")],
    output_docs=[("Y...", "blobs the net writes (or bound inputs it passes through)")],
    args=[Arg("net", ArgType.NET, REQUIRED, "the net to run"), *_BINDING_ARGS],
    canonicalize=_canon_bindings("Do"),
    inplace="any",
    infer=_infer_unknown,
    dtypes=dtypes.ALL_TYPES,
    type_input=0,
)


def required_net(op_type: str, args: Mapping[str, Any], key: str) -> NetDef:
    net = args.get(key)
    if net is None:
        raise ArgumentError(f"{op_type} requires argument '{key}' (a net)")
    return net


# -- gradients ------------------------------------------------------------------------------------------
def _grad_over_nets(g: GradientContext, nets: list[tuple[str, NetDef | None]], skip: int) -> GradientOps:
    """The gradient op of If (skip=1: cond) or Do (skip=0): the same op type over gradient nets.
    Inner names of the gradient op: the forward inputs keep theirs; output gradients are bound as
    ``__kaffa_go{j}`` and input gradients written as ``__kaffa_gi{i}`` (no clash with branch blobs)."""
    ins, outs = bindings(g.op, g.args)
    go = {outs[j]: f"__kaffa_go{j}" for j in range(g.num_outputs) if g.GO(j) is not None}
    if not go:
        return GradientOps([], [None] * g.num_inputs)
    data = list(range(skip, g.num_inputs))
    gi = {ins[i]: f"__kaffa_gi{i}" for i in data}
    built = []
    got: set[str] = set()
    for key, net in nets:
        if net is None:  # no else_net: outputs pass their bound inputs through
            net = NetDef(name=key)
        grad_net, real = backward_net(net, [ins[i] for i in data], go, gi, f"{g.op.type}.{key}_grad")
        built.append((key, grad_net))
        got |= real
    wanted = [i for i in data if ins[i] in got]
    if not wanted:
        return GradientOps([], [None] * g.num_inputs)
    for _, grad_net in built:  # drop the copies/zeros of inputs neither branch differentiates
        keep = {f"__kaffa_gi{i}" for i in wanted}
        ops = [
            op for op in grad_net.op if not (op.is_gradient_op and set(op.output) & (set(gi.values()) - keep))
        ]
        del grad_net.op[:]
        grad_net.op.extend(ops)
    g_names = [g.GO(j) for j in range(g.num_outputs) if g.GO(j) is not None]
    new_in = [*g.op.input, *g_names]
    new_out = [g.GI(i) for i in wanted]
    inner = [*ins, *(go[outs[j]] for j in range(g.num_outputs) if g.GO(j) is not None)]
    inner += [f"__kaffa_gi{i}" for i in wanted]
    net_args = {key: net for key, net in built}
    op = g.make(
        g.op.type,
        new_in,
        new_out,
        inner_blobs=inner,
        outer_blobs_idx=list(range(len(inner))),
        **net_args,
    )
    g_inputs: list[str | None] = [None] * g.num_inputs
    for i in wanted:
        g_inputs[i] = g.GI(i)
    return GradientOps([op], g_inputs)


@gradient("If")
def _if_grad(g: GradientContext) -> GradientOps:
    then_net = required_net("If", g.args, "then_net")
    return _grad_over_nets(g, [("then_net", then_net), ("else_net", g.args.get("else_net"))], skip=1)


@gradient("Do")
def _do_grad(g: GradientContext) -> GradientOps:
    return _grad_over_nets(g, [("net", required_net("Do", g.args, "net"))], skip=0)

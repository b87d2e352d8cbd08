"""ONNX translators onto kaffa's control ops (see kaffa.ops.control): If, Loop, Scan.

Subgraphs become NetDef arguments (``importer.translate_subgraph``); the outer-scope names a
subgraph reads are captured as inputs of the control op, since kaffa's sub-nets run in a child
workspace that sees only what the op binds.

* ``If`` -> If, each branch ending with Copy ops from its output names to the node's. A constant
  condition translates only the taken branch, inline.
* ``Loop`` -> While. The body's formal inputs (iteration number, condition, carried values) are
  the While's inner names; the body ends by copying its outputs onto them and counting the
  iteration; a trip count M adds a cond_net ``cond = cond and iter < M``. Scan outputs are the
  While's ``scan_blobs`` (stacked on a new axis 0, as ONNX concatenates them).
* ``Scan`` (opset 9+) -> While over a counter: each scan input is transposed so its scan axis comes
  first (outside the loop) and gathered at the counter (or at T-1-counter when reversed); scan
  outputs are stacked, reversed and transposed back as the attributes ask. Opset 8's batched Scan
  is unrolled over its (static) batch dimension. The trip count must be static.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.checkpoint import fill_op
from kaffa.onnx.importer import (
    Context,
    Node,
    infer_subgraph_shapes,
    translate_inline,
    translate_subgraph,
    translator,
    unsupported,
)
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import make_argument


def _op(op_type: str, ins: list[str], outs: list[str], **args: Any) -> OperatorDef:
    op = OperatorDef(type=op_type, input=ins, output=outs)
    op.arg.extend(make_argument(k, v) for k, v in args.items() if v is not None)
    return op


def _outputs(ctx: Context, node: Node) -> list[str]:
    """The node's outputs, with fresh names for omitted ones (kaffa ops need every output named)."""
    return [o or ctx.temp(f"{node.name}_unused{k}") for k, o in enumerate(node.outputs)]


@translator("If")
def _if(ctx: Context, node: Node) -> None:
    cond = node.inputs[0]
    then_g, else_g = node.attr("then_branch"), node.attr("else_branch")
    value = ctx.const(cond)
    if value is not None:
        translate_inline(ctx, then_g if bool(np.asarray(value).reshape(-1)[0]) else else_g, node.outputs)
        return
    outs = _outputs(ctx, node)
    nets, captured = [], []
    for g in (then_g, else_g):
        infer_subgraph_shapes(ctx, g, {})
        net, cap = translate_subgraph(ctx, g)
        for inner, outer in zip((o.name for o in g.output), outs):
            net.op.append(_op("Copy", [inner], [outer]))
        nets.append(net)
        captured += [c for c in cap if c not in captured]
    ctx.op("If", [cond, *captured], outs, then_net=nets[0], else_net=nets[1])


def _snapshot(ctx: Context, net: NetDef, names: list[str], bound: set[str]) -> list[str]:
    """Body outputs that are also bound names get copied aside before the state update
    overwrites them (a body may return an input unchanged, or swap two)."""
    out = []
    for name in names:
        if name in bound:
            tmp = ctx.temp(name + "_out")
            net.op.append(_op("Copy", [name], [tmp]))
            name = tmp
        out.append(name)
    return out


def _const_fill(ctx: Context, net: NetDef, hint: str, value: Any) -> str:
    name = ctx.temp(hint)
    net.op.append(fill_op(name, np.asarray(value)))
    return name


@translator("Loop")
def _loop(ctx: Context, node: Node) -> None:
    body = node.attr("body")
    b_in = [i.name for i in body.input]
    b_out = [o.name for o in body.output]
    it, cond_in, v_in = b_in[0], b_in[1], b_in[2:]
    n = len(v_in)
    cond_out, v_out, scan_out = b_out[0], b_out[1 : 1 + n], b_out[1 + n :]
    trip, cond0 = node.input(0), node.input(1)
    if not trip and not cond0:
        raise unsupported("a Loop with neither a trip count nor a condition never ends")
    infos: dict[str, Any] = {it: ((), np.int64), cond_in: ((), np.bool_)}
    for name, init in zip(v_in, node.inputs[2:]):
        shape = ctx.shape(init)  # carried values may change size: keep only the rank
        infos[name] = (None if shape is None else (None,) * len(shape), ctx.dtype(init))
    infer_subgraph_shapes(ctx, body, infos)
    net, captured = translate_subgraph(ctx, body, bound=b_in)
    bound = set(b_in)
    cond_src = _snapshot(ctx, net, [cond_out], bound)[0]
    v_src = _snapshot(ctx, net, v_out, bound)
    scan_src = _snapshot(ctx, net, scan_out, bound)
    one = _const_fill(ctx, net, "loop_one", np.int64(1))
    net.op.append(_op("Add", [it, one], [it]))
    for src, dst in [(cond_src, cond_in), *zip(v_src, v_in)]:
        if src != dst:
            net.op.append(_op("Copy", [src], [dst]))

    ins = [cond0 or ctx.add_const("loop_cond", np.array(True)), ctx.add_const("loop_iter", np.int64(0))]
    inner = [cond_in, it]
    args: dict[str, Any] = {}
    if trip:
        if trip not in captured:  # (a body that reads M itself has it bound already)
            ins.append(trip)
            inner.append(trip)
        below = ctx.temp("loop_below_trip")
        args["cond_net"] = NetDef(
            name=f"{node.name}_trip_count",
            op=[_op("LT", [it, trip], [below]), _op("And", [cond_in, below], [cond_in])],
        )
        m = ctx.const(trip)
        if m is not None:
            args["max_iterations"] = max(int(np.asarray(m).reshape(-1)[0]), 0)
    ins += [*node.inputs[2 : 2 + n], *captured]
    inner += [*v_in, *captured]
    outs = _outputs(ctx, node)
    inner_outs = [*v_in, *outs[n:]]
    all_inner = inner + inner_outs
    ctx.op(
        "While",
        ins,
        outs,
        loop_net=net,
        scan_blobs=scan_src or None,
        inner_blobs=all_inner,
        outer_blobs_idx=list(range(len(all_inner))),
        **args,
    )


def _move_axis_first(rank: int, axis: int) -> list[int]:
    return [axis] + [d for d in range(rank) if d != axis]


def _scan_loop(
    ctx: Context,
    body: Any,
    states: list[str],
    xs: list[str],
    outs: list[str],
    in_axes: list[int],
    in_dirs: list[int],
    out_axes: list[int],
    out_dirs: list[int],
    name: str,
) -> None:
    """One ONNX Scan (opset 9 semantics) as a While: states -> outs[:N], scan outputs -> outs[N:]."""
    b_in = [i.name for i in body.input]
    b_out = [o.name for o in body.output]
    n, k = len(states), len(xs)
    s_in, x_elem = b_in[:n], b_in[n:]
    s_out, y_elem = b_out[:n], b_out[n:]
    trips = set()
    firsts = []
    infos: dict[str, Any] = {s: (ctx.shape(v), ctx.dtype(v)) for s, v in zip(s_in, states)}
    for j, x in enumerate(xs):  # scan axis first, outside the loop
        shape = ctx.shape(x)
        if shape is None:
            raise unsupported(f"the shape of scan input '{x}' is unknown")
        axis = ctx.norm_axis(in_axes[j], len(shape))
        trips.add(shape[axis])
        infos[x_elem[j]] = (shape[:axis] + shape[axis + 1 :], ctx.dtype(x))
        if axis:
            moved = ctx.temp(x + "_scan_first")
            ctx.op("Transpose", [x], [moved], axes=_move_axis_first(len(shape), axis))
            x = moved
        firsts.append(x)
    if len(trips) != 1 or None in trips:
        raise unsupported(
            f"scan inputs need one static length along their scan axes, got {sorted(map(str, trips))}"
        )
    (t,) = trips
    it, cond = ctx.temp(name + "_iter"), ctx.temp(name + "_cond")
    infer_subgraph_shapes(ctx, body, infos)
    net, captured = translate_subgraph(ctx, body, bound=[*s_in, *x_elem])
    captured = [c for c in captured if c not in firsts]
    pro = NetDef()
    for j in range(k):
        idx = it
        if in_dirs[j]:
            last = _const_fill(ctx, pro, name + "_last", np.int64(t - 1))
            idx = ctx.temp(name + "_rev_index")
            pro.op.append(_op("Sub", [last, it], [idx]))
        pro.op.append(_op("Gather", [firsts[j], idx], [x_elem[j]]))
    loop_net = NetDef(name=net.name, op=[*pro.op, *net.op])
    bound = {*s_in, *x_elem}
    s_src = _snapshot(ctx, loop_net, s_out, bound)
    y_src = _snapshot(ctx, loop_net, y_elem, bound)
    one = _const_fill(ctx, loop_net, name + "_one", np.int64(1))
    loop_net.op.append(_op("Add", [it, one], [it]))
    for src, dst in zip(s_src, s_in):
        if src != dst:
            loop_net.op.append(_op("Copy", [src], [dst]))
    trip = ctx.temp(name + "_trips")
    cond_net = NetDef(name=name + "_cond", op=[fill_op(trip, np.int64(t)), _op("LT", [it, trip], [cond])])

    stacked = [
        ctx.temp(o + "_stacked") if (out_dirs[j] or out_axes[j]) else o for j, o in enumerate(outs[n:])
    ]
    ins = [ctx.add_const(name + "_cond0", np.array(True)), ctx.add_const(name + "_iter0", np.int64(0))]
    ins += [*states, *firsts, *captured]
    inner = [cond, it, *s_in, *firsts, *captured]
    inner_outs = [*s_in, *stacked]
    all_inner = inner + inner_outs
    ctx.op(
        "While",
        ins,
        [*outs[:n], *stacked],
        loop_net=loop_net,
        cond_net=cond_net,
        scan_blobs=y_src or None,
        max_iterations=int(t),
        inner_blobs=all_inner,
        outer_blobs_idx=list(range(len(all_inner))),
    )
    for j, o in enumerate(outs[n:]):
        src = stacked[j]
        if src == o:
            continue
        if out_dirs[j]:
            rev = ctx.add_const(name + "_reverse", np.arange(t - 1, -1, -1, dtype=np.int64))
            dst = o if not out_axes[j] else ctx.temp(o + "_reversed")
            ctx.op("Gather", [src, rev], [dst])
            src = dst
        if out_axes[j]:
            shape = ctx.shape(o)
            if shape is None:
                raise unsupported(f"the rank of scan output '{o}' is unknown")
            r = len(shape)
            axis = ctx.norm_axis(out_axes[j], r)
            perm = [*range(1, axis + 1), 0, *range(axis + 1, r)]
            ctx.op("Transpose", [src], [o], axes=perm)


@translator("Scan")
def _scan(ctx: Context, node: Node) -> None:
    body = node.attr("body")
    k = int(node.attr("num_scan_inputs"))
    outs = _outputs(ctx, node)
    if ctx.opset >= 9:
        n = len(node.inputs) - k
        states, xs = node.inputs[:n], node.inputs[n:]
        n_y = len(outs) - n
        _scan_loop(
            ctx,
            body,
            states,
            xs,
            outs,
            list(node.attr("scan_input_axes", [0] * k)),
            list(node.attr("scan_input_directions", [0] * k)),
            list(node.attr("scan_output_axes", [0] * n_y)),
            list(node.attr("scan_output_directions", [0] * n_y)),
            node.name,
        )
        return
    # Opset 8: input 0 is sequence_lens, states and scan inputs carry a batch axis 0 (scan axis 1).
    if node.input(0):
        raise unsupported("Scan-8 with sequence_lens (variable-length sequences)")
    n = len(node.inputs) - 1 - k
    states, xs = node.inputs[1 : 1 + n], node.inputs[1 + n :]
    shape = ctx.shape(xs[0])
    if shape is None or shape[0] is None:
        raise unsupported("Scan-8 needs a static batch size")
    batch = shape[0]
    dirs = list(node.attr("directions", [0] * k))
    n_y = len(outs) - n
    per_out: list[list[str]] = [[] for _ in outs]
    for b in range(batch):
        idx = ctx.add_const(f"{node.name}_b{b}", np.int64(b))
        s_b = []
        for s in states:
            s_b.append(ctx.temp(f"{s}_b{b}"))
            ctx.op("Gather", [s, idx], [s_b[-1]])
            ctx.shapes[s_b[-1]] = (ctx.shape(s) or (None,))[1:]
        x_b = []
        for x in xs:
            x_b.append(ctx.temp(f"{x}_b{b}"))
            ctx.op("Gather", [x, idx], [x_b[-1]])
            ctx.shapes[x_b[-1]] = (ctx.shape(x) or (None,))[1:]
        o_b = [ctx.temp(f"{o}_b{b}") for o in outs]
        _scan_loop(ctx, body, s_b, x_b, o_b, [0] * k, dirs, [0] * n_y, [0] * n_y, f"{node.name}_b{b}")
        for j, o in enumerate(o_b):
            per_out[j].append(o)
    for j, o in enumerate(outs):
        expanded = []
        for part in per_out[j]:
            expanded.append(ctx.temp(part + "_batched"))
            ctx.op("ExpandDims", [part], [expanded[-1]], dims=[0])
        if len(expanded) == 1:
            ctx.op("Copy", expanded, [o])
        else:
            ctx.op("Concat", expanded, [o, ctx.temp(o + "_split_info")], axis=0)

"""Automatic differentiation, Caffe2 style: gradients are operators added to the net.

Every differentiable op type has a *gradient maker*: given the forward OperatorDef and the names of
its output gradients, it returns the gradient OperatorDefs and, per forward input, the name of
that input's gradient (or None). Makers live next to their op's schema (``kaffa.ops.*``):

    @gradient("Relu")
    def _relu_grad(g: GradientContext) -> GradientOps:
        return g.single("ReluGradient", [g.O(0), g.GO(0)], [g.GI(0)])

``add_gradient_ops(ops, losses)`` walks the forward ops backwards, calls each maker, and sums
the partial gradients of blobs that feed several ops (``X_grad_autosplit_k`` -> Sum -> ``X_grad``).
A blob overwritten in place by a later op (``Relu(h, h)``) gets one gradient per version: the last
version's is ``h_grad``, earlier ones ``h_grad_v0``, ``h_grad_v1``..., so gradient ops never need
to run in place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaffa.errors import OpLocation, SchemaError
from kaffa.proto import OperatorDef
from kaffa.schema import SCHEMAS, make_argument


@dataclass
class GradientOps:
    """What a maker returns: ops to append, and per forward input its gradient blob (or None)."""

    ops: list[OperatorDef]
    g_inputs: list[str | None]


class GradientContext:
    """The view of one forward op a gradient maker works from."""

    def __init__(self, op: OperatorDef, g_outputs: Sequence[str | None], g_input_names: Sequence[str]):
        self.op = op
        self.args: dict[str, Any] = SCHEMAS.get(op.type).parse_args(op.arg)
        self._g_outputs = list(g_outputs)
        self._g_input_names = list(g_input_names)
        self._n = 0

    # Caffe2's names: I/O are forward inputs/outputs, GI/GO their gradients.
    def I(self, i: int) -> str:  # noqa: E743
        return self.op.input[i]

    def O(self, i: int) -> str:  # noqa: E743
        return self.op.output[i]

    def GO(self, i: int) -> str | None:
        """Gradient of output i, or None when nothing downstream produced one."""
        return self._g_outputs[i]

    def GI(self, i: int) -> str:
        """The name to write input i's gradient to."""
        return self._g_input_names[i]

    @property
    def num_inputs(self) -> int:
        return len(self.op.input)

    @property
    def num_outputs(self) -> int:
        return len(self.op.output)

    def refuse_inplace(self, *needed: int, why: str = "") -> None:
        """The gradient reads these inputs' values (``why``: for what): an op that overwrote one of
        them in place cannot have it, so say so instead of differentiating garbage."""
        for i in needed:
            if self.I(i) not in self.op.output:
                continue
            if why:
                raise SchemaError(
                    f"the gradient of {self.op.type} needs input {i} ('{self.I(i)}') for {why}, but the "
                    f"op overwrites it in place; write the output to a new blob"
                )
            raise SchemaError(
                f"the gradient of {self.op.type} needs input {i} ('{self.I(i)}'), which the op overwrites "
                f"in place; write the output to a new blob"
            )

    def temp(self, what: str) -> str:
        """A fresh blob name for an intermediate of this gradient."""
        self._n += 1
        return f"{self.op.output[0]}_{what}_grad_tmp{self._n}"

    def make(self, op_type: str, inputs: Iterable[str], outputs: Iterable[str], **args: Any) -> OperatorDef:
        """An OperatorDef on the forward op's device and engine (arguments given as values)."""
        op = OperatorDef(type=op_type, is_gradient_op=True)
        op.input.extend(inputs)
        op.output.extend(outputs)
        if self.op.HasField("device_option"):
            op.device_option.CopyFrom(self.op.device_option)
        if self.op.engine:
            op.engine = self.op.engine
        for key, value in args.items():
            if value is not None:
                op.arg.append(make_argument(key, value))
        return op

    def forward_args(self, *names: str) -> dict[str, Any]:
        """The forward op's arguments as given (only ``names`` if any), to pass on to a gradient op."""
        return {
            a.name: _arg_value(a)
            for a in self.op.arg
            if (not names or a.name in names) and a.name in SCHEMAS.get(self.op.type).args
        }

    def single(
        self,
        op_type: str,
        inputs: Iterable[str],
        outputs: Iterable[str],
        g_inputs: Sequence[str | None] | None = None,
        **args: Any,
    ) -> GradientOps:
        """The common case: one gradient op whose outputs are the inputs' gradients, in order."""
        outputs = list(outputs)
        if g_inputs is None:
            g_inputs = outputs + [None] * (self.num_inputs - len(outputs))
        return GradientOps([self.make(op_type, inputs, outputs, **args)], list(g_inputs))


Maker = Callable[[GradientContext], GradientOps]


def _arg_value(arg: Any) -> Any:
    for name in ("f", "i", "s"):
        if arg.HasField(name):
            return getattr(arg, name)
    for name in ("floats", "ints", "strings"):
        if len(getattr(arg, name)):
            return list(getattr(arg, name))
    return []


def gradient(*op_types: str) -> Callable[[Maker], Maker]:
    """Register a gradient maker for the (already defined) op types."""

    def deco(fn: Maker) -> Maker:
        for name in op_types:
            schema = SCHEMAS.get(name)
            if schema.gradient is not None:
                raise ValueError(f"{name} already has a gradient maker")
            schema.gradient = fn
        return fn

    return deco


def no_gradient(*op_types: str) -> None:
    """Mark op types as not differentiable (add_gradient_ops stops at them, as at StopGradient)."""
    for name in op_types:
        SCHEMAS.get(name).differentiable = False


def make_gradient(
    op: OperatorDef, g_outputs: Sequence[str | None], g_input_names: Sequence[str]
) -> GradientOps:
    """Call ``op``'s maker. Raises SchemaError when the op has none."""
    schema = SCHEMAS.get(op.type)
    if schema.gradient is None:
        why = "is not differentiable" if not schema.differentiable else "has no gradient maker"
        raise SchemaError(f"{op.type} {why}; put StopGradient before it or drop it from the loss path")
    ctx = GradientContext(op, g_outputs, g_input_names)
    out = schema.gradient(ctx)
    if len(out.g_inputs) != len(op.input):
        raise SchemaError(
            f"gradient maker of {op.type} returned {len(out.g_inputs)} input gradients "
            f"for {len(op.input)} inputs"
        )
    return out


@dataclass
class _Version:
    """One value a blob takes in the forward net: who consumes it (op index, input slot)."""

    consumers: list[tuple[int, int]] = field(default_factory=list)
    latest: bool = False


def add_gradient_ops(
    ops: Sequence[OperatorDef],
    losses: Iterable[str] | Mapping[str, str | None],
    net_name: str = "",
) -> tuple[list[OperatorDef], dict[str, str]]:
    """Gradient ops for ``ops`` w.r.t. ``losses``; returns (new ops, {blob: gradient blob}).

    ``losses`` is a list of scalar blobs (each seeded with a gradient of 1.0 by ConstantFill) or a
    mapping {loss: existing gradient blob, or None for the 1.0 seed}.
    """
    loss_map = dict(losses) if isinstance(losses, Mapping) else {name: None for name in losses}
    if not loss_map:
        raise ValueError("add_gradient_ops: no losses given")

    # Forward pass: number the versions of every blob and record who reads each version.
    version: dict[str, int] = defaultdict(int)
    versions: dict[tuple[str, int], _Version] = defaultdict(_Version)
    read: list[list[tuple[str, int]]] = []
    written: list[dict[str, int]] = []
    writers: dict[str, list[int]] = defaultdict(list)
    for k, op in enumerate(ops):
        read.append([(b, version[b]) for b in op.input])
        for slot, b in enumerate(op.input):
            versions[(b, version[b])].consumers.append((k, slot))
        for b in op.output:
            version[b] += 1
            writers[b].append(k)
        written.append({b: version[b] for b in op.output})
    final = dict(version)
    for name in loss_map:
        if final.get(name, 0) == 0 and not any(name in op.output for op in ops):
            raise SchemaError(f"add_gradient_ops: loss '{name}' is not produced by net '{net_name}'")

    def grad_name(blob: str, v: int) -> str:
        return f"{blob}_grad" if v == final.get(blob, 0) else f"{blob}_grad_v{v}"

    out_ops: list[OperatorDef] = []
    pending: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name, g in loss_map.items():
        key = (name, final[name])
        if g is None:
            g = f"{name}_autogen_grad"
            seed = OperatorDef(type="ConstantFill", input=[name], output=[g], is_gradient_op=True)
            seed.arg.append(make_argument("value", 1.0))
            out_ops.append(seed)
        pending[key].append(g)

    def collect(key: tuple[str, int]) -> str | None:
        """The gradient of one blob version: its single contribution, or the Sum of several."""
        parts = pending.pop(key, [])
        if not parts:
            return None
        total = grad_name(*key)
        if len(parts) == 1:
            part = parts[0]
            if "_autosplit_" in part and not any(part in p for p in pending.values()):
                # Only one consumer produced a gradient after all: give it the plain name.
                for op in out_ops:
                    op.output[:] = [total if o == part else o for o in op.output]
                return total
            return part
        out_ops.append(OperatorDef(type="Sum", input=parts, output=[total], is_gradient_op=True))
        return total

    cur = dict(final)
    grads: dict[str, str] = {}
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        g_out = []
        for b in op.output:
            g = collect((b, cur[b]))
            if g is not None and cur[b] == final[b]:
                grads[b] = g
            g_out.append(g)
            cur[b] -= 1
        if all(g is None for g in g_out):
            continue
        schema = SCHEMAS.get(op.type)
        if not schema.differentiable:
            continue  # a gradient stops here (integer ops, comparisons, StopGradient's kin)
        names = []
        for slot, (b, v) in enumerate(read[k]):
            n_consumers = len(versions[(b, v)].consumers)
            base = grad_name(b, v)
            names.append(base if n_consumers == 1 else f"{base}_autosplit_{len(pending[(b, v)])}_{slot}")
        try:
            made = make_gradient(op, g_out, names)
        except SchemaError as e:
            raise e.at(OpLocation(net=net_name, index=k, op_type=op.type, op_name=op.name)) from None
        _check_versions(op, k, made.ops, read[k], written[k], final, writers, net_name)
        out_ops.extend(made.ops)
        for (b, v), g in zip(read[k], made.g_inputs):
            if g is not None:
                pending[(b, v)].append(g)
    # Blobs read but never written in the net (parameters, data): their one version 0.
    for key in list(pending):
        g = collect(key)
        if g is not None:
            grads[key[0]] = g
    return out_ops, grads


def _check_versions(
    op: OperatorDef,
    k: int,
    grad_ops: list[OperatorDef],
    read: list[tuple[str, int]],
    written: dict[str, int],
    final: dict[str, int],
    writers: dict[str, list[int]],
    net_name: str,
) -> None:
    """Gradient ops read forward blobs as the forward run left them. If the value this op's
    gradient needs was overwritten later (in place), the gradient would be silently wrong:
    refuse, as Caffe2's gradient builder does."""
    read_at = dict(read)
    for gop in grad_ops:
        for name in gop.input:
            need = written.get(name, read_at.get(name))
            if need is None or need == final.get(name, 0):
                continue
            later = [w for w in writers[name] if w > k]
            raise SchemaError(
                f"the gradient of {op.type} needs '{name}' as op #{k} saw it, but op #{later[0]} "
                f"{'overwrites' if later else 'changes'} it later (in place?); write that op's "
                f"output to a new blob"
            ).at(OpLocation(net=net_name, index=k, op_type=op.type, op_name=op.name))

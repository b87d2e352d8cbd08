"""ONNX -> kaffa: ``import_model`` and the translator registry it dispatches through.

One small function per ONNX op type translates a node into kaffa OperatorDefs::

    @translator("Relu")
    def _relu(ctx: Context, node: Node) -> None:
        ctx.op("Relu", node.inputs[:1], node.outputs[:1])

``Context`` holds what a translator needs beyond the node: the opset, constant values
(initializers, Constant nodes, and anything folded from them), static shapes from ONNX shape
inference, and helpers that emit ops or new constants. A node whose inputs are all constants is
folded at import time (evaluated with ``onnx.reference``), so shape arithmetic such as
Shape -> Gather -> Unsqueeze -> Concat -> Reshape leaves a constant shape and no ops.

Initializers and other constants the predict net reads become GivenTensor*Fill ops in the init
net (``kaffa.checkpoint.fill_op``); graph inputs that are not initializers become the predict
net's external inputs, graph outputs its external outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kaffa.checkpoint import fill_op
from kaffa.errors import ModelFormatError
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import make_argument

__all__ = [
    "TRANSLATORS",
    "Context",
    "Node",
    "OnnxImportError",
    "UnsupportedOnnxOpError",
    "import_model",
    "translator",
]

# Ops whose result is random: never folded, even with constant inputs.
_NOT_FOLDABLE = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
_DEFAULT_DOMAINS = ("", "ai.onnx")
# Ops whose opset-1 definition means what the newest one does (later versions only added types), so
# models older than opset 7 that use nothing else are read.
_SAME_SINCE_OPSET_1 = frozenset({"Not", "Identity", "Size", "Transpose"})


class OnnxImportError(ModelFormatError):
    """A node could be read but not translated (an attribute value kaffa cannot express)."""


class UnsupportedOnnxOpError(ModelFormatError):
    """Nodes of the model cannot be translated. ``nodes`` lists (node name, op type, opset, reason)
    for every one of them, so a single import shows everything that is missing."""

    def __init__(self, nodes: Sequence[tuple[str, str, int, str]], needs_const: Sequence[str | None] = ()):
        self.nodes = list(nodes)
        # Per node: the blob that would have had to be a constant (an input a translator reads as
        # an argument: axes, pads, starts, ...), or None when the node fails for another reason.
        self.needs_const = list(needs_const) or [None] * len(self.nodes)
        lines = [
            f"  node '{name}' ({op_type}, opset {opset}): {reason}" for name, op_type, opset, reason in nodes
        ]
        kinds = sorted({n[1] for n in nodes})
        super().__init__(
            f"{len(nodes)} ONNX node(s) cannot be translated to kaffa (op types: {', '.join(kinds)}):\n"
            + "\n".join(lines)
        )


class _Untranslatable(Exception):
    """Raised inside a translator: this node cannot be expressed (collected, reported together).
    ``needs_const`` names the blob that would have to be a constant for it to translate."""

    def __init__(self, reason: str, needs_const: str | None = None) -> None:
        super().__init__(reason)
        self.needs_const = needs_const


@dataclass
class Node:
    """An ONNX node as translators see it: attributes decoded to Python values; ``inputs`` keeps
    empty strings for omitted optional inputs."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def input(self, i: int) -> str:
        """Input ``i``, or "" when it is omitted."""
        return self.inputs[i] if i < len(self.inputs) else ""


TranslateFn = Callable[["Context", Node], None]
TRANSLATORS: dict[str, TranslateFn] = {}


def translator(*op_types: str) -> Callable[[TranslateFn], TranslateFn]:
    """Register a translator for ONNX op types (default domain)."""

    def register(fn: TranslateFn) -> TranslateFn:
        for t in op_types:
            TRANSLATORS[t] = fn
        return fn

    return register


def unsupported(reason: str, needs_const: str | None = None) -> _Untranslatable:
    """What a translator raises for a node it cannot express (``needs_const``: because that blob
    is not a constant)."""
    return _Untranslatable(reason, needs_const)


class Context:
    """The state of one import, shared by the translators."""

    def __init__(self, model: Any, opset: int) -> None:
        self.model = model
        self.opset = opset
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.ops: list[OperatorDef] = []
        self._taken: set[str] = set()
        self._count = 0

    # -- what is known about a blob ----------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it is a constant (initializer, Constant, folded), else None."""
        return self.consts.get(name) if name else None

    def need_const(self, name: str, what: str) -> np.ndarray:
        value = self.const(name)
        if value is None:
            raise unsupported(f"{what} ('{name}') must be a constant (an initializer or Constant)", name)
        return value

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """The static shape of ``name`` (None entries for unknown dims), or None if even the rank
        is unknown."""
        value = self.const(name)
        if value is not None:
            return tuple(value.shape)
        return self.shapes.get(name)

    def rank(self, name: str, what: str = "") -> int:
        shape = self.shape(name)
        if shape is None:
            raise unsupported(f"the rank of '{name}' is unknown{what} (ONNX shape inference found none)")
        return len(shape)

    def dtype(self, name: str) -> np.dtype | None:
        value = self.const(name)
        return value.dtype if value is not None else self.dtypes.get(name)

    # -- emitting -----------------------------------------------------------------------------------
    def temp(self, hint: str) -> str:
        """A fresh blob name."""
        while True:
            self._count += 1
            name = f"{hint}__kaffa{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def add_const(self, hint: str, value: Any, dtype: Any = None) -> str:
        """A new constant blob (it goes to the init net if the predict net reads it)."""
        name = self.temp(hint)
        self.consts[name] = np.asarray(value, dtype=dtype)
        return name

    def op(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **args: Any) -> OperatorDef:
        """Append a kaffa op to the predict net; ``None`` argument values are left out."""
        op = OperatorDef(type=op_type, input=list(inputs), output=list(outputs))
        for key, value in args.items():
            if value is not None:
                op.arg.append(make_argument(key, value))
        self.ops.append(op)
        self._infer(op)
        return op

    def _infer(self, op: OperatorDef) -> None:
        """Fill in the shapes and dtypes of ``op``'s outputs from kaffa's shape inference where
        ONNX's found none (it gives up after, e.g., a Split whose sizes are computed), so later
        translators that need a rank still get one. ONNX's own results are never replaced."""
        from kaffa.schema import SCHEMAS, TensorInfo

        if op.type not in SCHEMAS:
            return
        schema = SCHEMAS.get(op.type)
        try:
            ins = [TensorInfo(self.shape(i), self.dtype(i)) for i in op.input]
            outs = schema.infer_outputs(schema.parse_args(op.arg), ins, len(op.output))
        except Exception:  # inference is best effort here: the planner checks for real
            return
        for name, info in zip(op.output, outs):
            if info.shape is not None and self.shape(name) is None:
                self.shapes[name] = info.shape
            if info.dtype is not None and self.dtype(name) is None:
                self.dtypes[name] = info.dtype

    def norm_axis(self, axis: int, rank: int) -> int:
        if not -rank <= axis < rank:
            raise unsupported(f"axis {axis} is out of range for rank {rank}")
        return axis + rank if axis < 0 else axis


# -- reading the model -----------------------------------------------------------------------------
def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is a declared extra
        raise ModelFormatError("kaffa.onnx needs the onnx package: pip install 'kaffa[onnx]'") from e
    return onnx


def _load(model: Any) -> Any:
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if not p.is_file():
            raise ModelFormatError(f"ONNX model file {p} does not exist")
        try:
            # External data files are found next to the model (onnx.load uses its folder as base dir).
            return onnx.load(str(p), load_external_data=True)
        except Exception as e:
            raise ModelFormatError(f"cannot read ONNX model {p}: {type(e).__name__}: {e}") from e
    raise TypeError(f"import_model takes a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def _attr_value(attr: Any) -> Any:
    from onnx import helper, numpy_helper

    if attr.type == attr.TENSOR:
        return numpy_helper.to_array(attr.t)
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


def _np_dtype(elem_type: int) -> np.dtype | None:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def _value_infos(model: Any) -> list[Any]:
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        inferred = model
    g = inferred.graph
    return [*g.input, *g.value_info, *g.output, *_subgraph_value_infos(g)]


def _subgraph_value_infos(graph: Any) -> list[Any]:
    """Value infos of every subgraph (If branches, Loop and Scan bodies), nested ones too: ONNX
    names are unique across a model's scopes, so one table serves them all."""
    out: list[Any] = []
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                out += [*sub.input, *sub.value_info, *sub.output, *_subgraph_value_infos(sub)]
    return out


def _fold(ctx: Context, node: Node, opset: int) -> bool:
    """Evaluate a node whose inputs are all constants; True if it was folded."""
    if node.op_type in _NOT_FOLDABLE or not node.outputs:
        return False
    present = [i for i in node.inputs if i]
    if node.op_type == "Shape" and present:
        shape = ctx.shape(present[0])
        if shape is None or any(d is None for d in shape):
            return False
    elif any(ctx.const(i) is None for i in present):
        return False
    if not present and node.op_type != "Constant":
        return False
    from onnx.reference import ReferenceEvaluator

    try:
        if node.op_type == "Shape":
            start, end = node.attr("start", 0), node.attr("end", None)
            full = np.asarray(ctx.shape(present[0]), dtype=np.int64)
            values = [full[start:end]]
        else:
            proto = node.__dict__["_proto"]
            ev = ReferenceEvaluator(proto)
            values = ev.run(None, {i: ctx.consts[i] for i in present})
    except Exception:
        return False
    for name, value in zip(node.outputs, values):
        if name:
            ctx.consts[name] = np.asarray(value)
    return True


def import_model(model: Any, name: str | None = None) -> tuple[NetDef, NetDef]:
    """Translate an ONNX model (a path, serialized bytes or an ``onnx.ModelProto``) into
    ``(init_net, predict_net)``. Raises UnsupportedOnnxOpError listing every node that cannot be
    translated, and ModelFormatError for files that are not readable ONNX."""
    onnx = _onnx()
    m = _load(model)
    opset = next((o.version for o in m.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is None:
        raise ModelFormatError("the ONNX model imports no version of the default (ai.onnx) opset")
    if opset < 7:
        # Older opsets changed many ops since; only those whose meaning has not changed are read.
        old = sorted({n.op_type for n in m.graph.node} - _SAME_SINCE_OPSET_1)
        if old:
            raise ModelFormatError(
                f"ONNX opset {opset} is older than the oldest kaffa reads (7) for {', '.join(old)} "
                f"(below 7 it reads only {', '.join(sorted(_SAME_SINCE_OPSET_1))})"
            )
    from kaffa.onnx import (  # noqa: F401  (fill the registry)  # noqa: F401
        ops_attention,
        ops_control,
        ops_linalg,
        ops_nn,
        ops_preprocess,
        ops_quant,
        ops_recurrent,
        ops_signal,
        ops_tensor,
    )

    g = m.graph
    ctx = Context(m, opset)
    for init in g.initializer:
        ctx.consts[init.name] = onnx.numpy_helper.to_array(init)
    for vi in _value_infos(m):
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if t is None:
            continue
        if t.HasField("shape"):
            ctx.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        dt = _np_dtype(t.elem_type)
        if dt is not None:
            ctx.dtypes[vi.name] = dt
    ctx._taken |= {i.name for i in g.input} | set(ctx.consts)
    for n in g.node:
        ctx._taken |= set(n.input) | set(n.output)

    problems, needs_const = _translate_nodes(ctx, g.node, opset)
    if problems:
        raise UnsupportedOnnxOpError(problems, needs_const)

    graph_name = name or g.name or "onnx_model"
    predict = NetDef(name=graph_name)
    made = {o for op in ctx.ops for o in op.output}
    init_names = {i.name for i in g.initializer}
    predict.external_input.extend(i.name for i in g.input if i.name not in init_names)
    const_outputs = [o.name for o in g.output if o.name not in made and o.name in ctx.consts]
    for o in const_outputs:  # an output that is a constant: recreated by the predict net itself
        predict.op.append(_fill(o, ctx.consts[o]))
    predict.op.extend(ctx.ops)
    predict.external_output.extend(o.name for o in g.output)

    init = NetDef(name=graph_name + "_init")
    read = []
    seen: set[str] = set()
    for op in ctx.ops:
        for i in op.input:
            if i and i in ctx.consts and i not in made and i not in seen:
                seen.add(i)
                read.append(i)
    for blob in read:
        init.op.append(_fill(blob, ctx.consts[blob]))
    init.external_output.extend(read)
    predict.external_input.extend(read)
    return init, predict


def _translate_nodes(
    ctx: Context, nodes: Any, opset: int
) -> tuple[list[tuple[str, str, int, str]], list[str | None]]:
    """Translate ``nodes`` into ``ctx.ops`` (folding constant ones); returns the problems, one
    (node name, op type, opset, reason) per node that cannot be translated, and per problem the
    blob that would have had to be a constant."""
    problems: list[tuple[str, str, int, str]] = []
    needs_const: list[str | None] = []
    for index, proto in enumerate(nodes):
        node = Node(
            proto.name or f"{proto.op_type}_{index}",
            proto.op_type,
            list(proto.input),
            list(proto.output),
            {a.name: _attr_value(a) for a in proto.attribute},
        )
        node.__dict__["_proto"] = proto
        if proto.domain not in _DEFAULT_DOMAINS:
            problems.append((node.name, f"{proto.domain}.{proto.op_type}", opset, "custom domain"))
            needs_const.append(None)
            continue
        fn = TRANSLATORS.get(proto.op_type)
        if fn is None:
            if not _fold(ctx, node, opset):
                problems.append((node.name, proto.op_type, opset, "no kaffa translation"))
                needs_const.append(None)
            continue
        if proto.op_type != "Constant" and _fold(ctx, node, opset):
            continue
        try:
            fn(ctx, node)
        except _Untranslatable as e:
            problems.append((node.name, proto.op_type, opset, str(e)))
            needs_const.append(e.needs_const)
    return problems, needs_const


# -- subgraphs (If branches, Loop and Scan bodies) ----------------------------------------------------
def _raise_subgraph_problems(what: str, problems: list[Any], needs: list[str | None]) -> None:
    if problems:
        detail = "; ".join(f"{p[1]} '{p[0]}': {p[3]}" for p in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        # Pass a needed constant up only when every problem is one: the backend can specialize then.
        need = needs[0] if needs and all(n is not None for n in needs) else None
        raise unsupported(f"{what}: {detail}{more}", need)


def infer_subgraph_shapes(
    ctx: Context, graph: Any, inputs: dict[str, tuple[tuple[int | None, ...] | None, np.dtype | None]]
) -> None:
    """ONNX shape inference of a subgraph on its own, for bodies whose formal inputs carry no
    types (Scan and Loop bodies often do not, so the model-wide pass learns nothing inside them).
    ``inputs``: (shape, dtype) of formal inputs; outer-scope names come from ``ctx`` (constants as
    initializers, so data propagation sees them). Adds what it finds to ``ctx.shapes``/``dtypes``."""
    onnx = _onnx()
    from onnx import helper, numpy_helper

    def typed(name: str, shape: Any, dtype: Any) -> Any:
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype)) if dtype is not None else 0
        dims = None if shape is None else [d if d is not None else None for d in shape]
        return helper.make_tensor_value_info(name, elem, dims)

    g = onnx.GraphProto()
    g.CopyFrom(graph)
    formal = []
    for vi in graph.input:
        has_type = vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
        if vi.name in inputs and not has_type:
            formal.append(typed(vi.name, *inputs[vi.name]))
        else:
            formal.append(vi)
    known = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    free: list[str] = []
    for node in graph.node:
        free += [n for n in node.input if n and n not in known and n not in free]
        known |= set(node.output)
    del g.input[:]
    g.input.extend(formal)
    for name in free:
        value = ctx.const(name)
        if value is not None:
            g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        elif ctx.dtype(name) is not None:
            g.input.append(typed(name, ctx.shape(name), ctx.dtype(name)))
    model = helper.make_model(g, opset_imports=list(ctx.model.opset_import))
    model.ir_version = ctx.model.ir_version
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return
    out = inferred.graph
    for vi in [*out.value_info, *out.output, *_subgraph_value_infos(out)]:
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if t is None:
            continue
        if t.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            old = ctx.shapes.get(vi.name)
            if old is None or (
                len(old) == len(shape) and sum(d is None for d in shape) < sum(d is None for d in old)
            ):
                ctx.shapes[vi.name] = shape  # new, or more specific (outer constants are known here)
        dt = _np_dtype(t.elem_type)
        if dt is not None and vi.name not in ctx.dtypes:
            ctx.dtypes[vi.name] = dt
    for name, (shape, dtype) in inputs.items():
        if shape is not None:
            ctx.shapes.setdefault(name, tuple(shape))
        if dtype is not None:
            ctx.dtypes.setdefault(name, np.dtype(dtype))


def translate_subgraph(ctx: Context, graph: Any, bound: Sequence[str] = ()) -> tuple[NetDef, list[str]]:
    """Translate an ONNX subgraph into a NetDef that a control op runs in a child workspace
    (``kaffa.subnet``). ``bound``: the names the control op binds (the subgraph's formal inputs).

    Returns ``(net, captured)``: ``captured`` lists the outer-scope names the net reads (and outputs
    it passes through), which the control op must take as inputs. Constants made inside the
    subgraph (Constant nodes, folded values) are filled at the start of the net; outer constants are
    captured, so they reach the init net as inputs of the control op. Untranslatable nodes raise
    ``unsupported`` naming them."""
    from onnx import numpy_helper

    from kaffa.subnet import reads

    child = Context(ctx.model, ctx.opset)
    child.shapes, child.dtypes = ctx.shapes, ctx.dtypes  # one table: names are unique across scopes
    child._taken = ctx._taken  # shared, so temporaries stay unique across scopes too
    child.consts = {k: v for k, v in ctx.consts.items() if k not in bound}
    inherited = set(child.consts)
    for init in graph.initializer:
        child.consts[init.name] = numpy_helper.to_array(init)
    child._taken |= set(bound)
    for n in graph.node:
        child._taken |= set(n.input) | set(n.output)
    problems, needs = _translate_nodes(child, graph.node, ctx.opset)
    _raise_subgraph_problems(f"subgraph '{graph.name}'", problems, needs)
    body = NetDef(name=graph.name or "subgraph")
    body.op.extend(child.ops)
    made = {o for op in child.ops for o in op.output}
    needed = reads(body, bound) + [o.name for o in graph.output if o.name not in made and o.name not in bound]
    local = set(child.consts) - inherited
    net = NetDef(name=body.name)
    captured: list[str] = []
    for name in dict.fromkeys(needed):
        if name in local:
            net.op.append(_fill(name, child.consts[name]))
        elif name not in captured:
            captured.append(name)
    net.op.extend(child.ops)
    return net, captured


def translate_inline(ctx: Context, graph: Any, outputs: Sequence[str]) -> None:
    """Translate a subgraph straight into ``ctx`` (an If branch whose condition is a constant),
    its outputs becoming ``outputs`` (constants stay constants; other values are copied)."""
    from onnx import numpy_helper

    infer_subgraph_shapes(ctx, graph, {})
    for init in graph.initializer:
        ctx.consts[init.name] = numpy_helper.to_array(init)
    for n in graph.node:
        ctx._taken |= set(n.input) | set(n.output)
    problems, needs = _translate_nodes(ctx, graph.node, ctx.opset)
    _raise_subgraph_problems(f"subgraph '{graph.name}'", problems, needs)
    for inner, outer in zip((o.name for o in graph.output), outputs):
        if not outer:
            continue
        if ctx.const(inner) is not None:
            ctx.consts[outer] = ctx.consts[inner]
            continue
        ctx.op("Copy", [inner], [outer])
        if inner in ctx.shapes:
            ctx.shapes.setdefault(outer, ctx.shapes[inner])
        if inner in ctx.dtypes:
            ctx.dtypes.setdefault(outer, ctx.dtypes[inner])


def _fill(name: str, value: np.ndarray) -> OperatorDef:
    arr = np.asarray(value)
    if arr.dtype.kind in "iu" and arr.dtype not in (np.int32, np.int64):
        arr = arr.astype(np.int32 if arr.dtype.itemsize < 4 else np.int64)
    try:
        return fill_op(name, arr)
    except ValueError as e:
        raise ModelFormatError(f"ONNX constant '{name}': {e}") from None

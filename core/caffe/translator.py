"""Caffe -> kaffa: ``translate_model`` and the per-layer translator registry it dispatches through.

One small function per Caffe layer type emits kaffa ops through a ``Context``::

    @layer("TanH")
    def _tanh(ctx: Context, lp: LayerParameter) -> None:
        x = ctx.bottom(0)
        ctx.op("Tanh", [x], [ctx.top(0, "Tanh", x)])

The context keeps Caffe's blob names apart from kaffa's: ``binding`` maps every Caffe blob name
to the kaffa blob that holds its current value. Identity layers (Split, Dropout) only rebind
names; an in-place Caffe layer (top == bottom) writes in place in kaffa too when the kaffa op
allows it and no other Caffe name shares the blob, else it writes a fresh blob. Every op's
output shapes are inferred from kaffa's schemas as it is emitted, so a bad layer fails at
translation, naming the layer, and translators can read static shapes (Crop, Slice, Reshape).

Trained blobs become GivenTensorFill ops of the init net, named ``<layer>_w``, ``<layer>_b``,
... (Caffe2's caffe_translator names), and external inputs of the predict net.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kaffa.checkpoint import fill_op
from kaffa.errors import KaffaError, ModelFormatError
from kaffa.proto import NetDef, OperatorDef, caffe_pb2
from kaffa.schema import SCHEMAS, TensorInfo, make_argument

from .reader import blob_array, included_layers, read_caffemodel, read_prototxt

__all__ = [
    "LAYERS",
    "CaffeImportError",
    "Context",
    "Translation",
    "UnsupportedCaffeLayerError",
    "layer",
    "translate",
    "translate_model",
]

LayerParameter = caffe_pb2.LayerParameter
Shape = tuple[int, ...]
_F32 = np.dtype(np.float32)


class CaffeImportError(ModelFormatError):
    """A Caffe layer of a known type that cannot be translated (parameters kaffa cannot express,
    missing weights, shapes that do not fit). ``layer_name`` and ``layer_type`` say which."""

    def __init__(self, message: str, layer_name: str = "", layer_type: str = "") -> None:
        self.layer_name = layer_name
        self.layer_type = layer_type
        where = f"Caffe layer '{layer_name}' (type {layer_type}): " if layer_name or layer_type else ""
        super().__init__(where + message)


class UnsupportedCaffeLayerError(CaffeImportError):
    """Layers whose type kaffa.caffe has no translation for. ``layers`` lists (name, type) of
    every one of them, so one run shows all that is missing; ``layer_name``/``layer_type`` are
    the first."""

    def __init__(self, layers: Sequence[tuple[str, str]]) -> None:
        self.layers = list(layers)
        lines = "\n".join(f"  layer '{n}' (type {t})" for n, t in self.layers)
        types = sorted({t for _, t in self.layers})
        message = (
            f"{len(self.layers)} Caffe layer(s) have a type kaffa cannot translate "
            f"({', '.join(types)}):\n{lines}\n"
            f"translated types: {', '.join(sorted(LAYERS))}"
        )
        if any(t in _TRAINING_ONLY for t in types):
            message += (
                "\n(data, loss and accuracy layers belong to training nets: translate the deploy prototxt)"
            )
        ModelFormatError.__init__(self, message)
        self.layer_name, self.layer_type = self.layers[0]


_TRAINING_ONLY = frozenset(
    {
        "Data",
        "ImageData",
        "HDF5Data",
        "HDF5Output",
        "MemoryData",
        "WindowData",
        "DummyData",
        "Accuracy",
        "SoftmaxWithLoss",
        "EuclideanLoss",
        "HingeLoss",
        "InfogainLoss",
        "MultinomialLogisticLoss",
        "SigmoidCrossEntropyLoss",
        "ContrastiveLoss",
    }
)

LayerFn = Callable[["Context", Any], None]
LAYERS: dict[str, LayerFn] = {}


def layer(*types: str) -> Callable[[LayerFn], LayerFn]:
    """Register a translator for Caffe layer types (the V2 type strings)."""

    def register(fn: LayerFn) -> LayerFn:
        for t in types:
            LAYERS[t] = fn
        return fn

    return register


class Context:
    """The state of one translation, shared by the layer translators."""

    def __init__(
        self, layers: Sequence[Any], weights: Mapping[str, list[np.ndarray]], in_place: bool = True
    ) -> None:
        self.layers = list(layers)
        self.in_place = in_place  # False: never write in place (every value gets its own blob)
        self.weights = weights
        self.ops: list[OperatorDef] = []
        self.params: dict[str, np.ndarray] = {}
        self.shapes: dict[str, Shape | None] = {}
        self.binding: dict[str, str] = {}  # Caffe blob name -> kaffa blob holding its value now
        self.inputs: list[str] = []
        self.skip: set[int] = set()  # layers already translated with an earlier one (folded)
        self.input_overrides: dict[str, Shape] = {}  # input_shapes=... of translate_model
        self.index = -1
        self.layer: Any = None
        self._used: set[str] = set()  # kaffa blob names defined so far
        self._reserved = {b for lp in self.layers for b in (*lp.bottom, *lp.top)}
        self._count = 0
        self._readers: dict[tuple[int, int], list[int]] = {}

    # -- errors ------------------------------------------------------------------------------------
    def error(self, message: str, lp: Any = None) -> CaffeImportError:
        lp = lp if lp is not None else self.layer
        return CaffeImportError(message, lp.name if lp is not None else "", lp.type if lp is not None else "")

    # -- what is known about blobs -----------------------------------------------------------------
    def bottom(self, i: int, lp: Any = None) -> str:
        """The kaffa blob holding bottom ``i`` of the layer."""
        lp = lp if lp is not None else self.layer
        if i >= len(lp.bottom):
            raise self.error(f"needs at least {i + 1} bottom(s), has {len(lp.bottom)}", lp)
        return self.binding[lp.bottom[i]]

    def shape(self, blob: str) -> Shape | None:
        """The static shape of a kaffa blob, or None when it is unknown."""
        s = self.shapes.get(blob)
        return None if s is None or any(d is None for d in s) else tuple(int(d) for d in s)

    def rank(self, blob: str) -> int | None:
        s = self.shapes.get(blob)
        return None if s is None else len(s)

    def need_shape(self, blob: str, why: str) -> Shape:
        s = self.shape(blob)
        if s is None:
            raise self.error(
                f"{why} needs the static shape of its input, which is unknown: give the net's inputs a "
                "shape (an Input layer's input_param, or input_shapes=...)"
            )
        return s

    def axis(self, axis: int, blob: str, what: str = "axis") -> int:
        """A Caffe axis (negative: from the end) as a non-negative one."""
        rank = self.rank(blob)
        if rank is None:
            if axis >= 0:
                return axis
            raise self.error(f"{what} {axis} counts from the end of an input whose rank is unknown")
        if not -rank <= axis < rank:
            raise self.error(f"{what} {axis} is out of range for an input of rank {rank}")
        return axis % rank

    # -- weights -----------------------------------------------------------------------------------
    def blobs(self, need: int, lp: Any = None) -> list[np.ndarray]:
        """The layer's trained blobs (from the caffemodel, matched by layer name as Caffe does, or
        from the prototxt itself); at least ``need`` of them."""
        lp = lp if lp is not None else self.layer
        found = self.weights.get(lp.name)
        if found is None and lp.blobs:
            found = [blob_array(b, f"layer '{lp.name}' blob {i}") for i, b in enumerate(lp.blobs)]
        if found is None or len(found) < need:
            have = "no weights" if not found else f"{len(found)} blob(s)"
            raise self.error(f"needs {need} trained blob(s), the caffemodel has {have} for it", lp)
        return found

    def param(self, suffix: str, value: Any, lp: Any = None) -> str:
        """A new float32 parameter blob of the init net, named ``<layer>_<suffix>``."""
        lp = lp if lp is not None else self.layer
        name = self._fresh(f"{lp.name}_{suffix}", first_plain=True)
        arr = np.ascontiguousarray(value, dtype=np.float32)
        self.params[name] = arr
        self.shapes[name] = tuple(arr.shape)
        return name

    # -- naming ------------------------------------------------------------------------------------
    def _fresh(self, hint: str, first_plain: bool = False) -> str:
        if first_plain and hint not in self._used and hint not in self._reserved:
            self._used.add(hint)
            return hint
        while True:
            self._count += 1
            name = f"{hint}_{self._count}"
            if name not in self._used and name not in self._reserved:
                self._used.add(name)
                return name

    def temp(self, hint: str = "") -> str:
        """A fresh kaffa blob for an intermediate value of a composed translation."""
        return self._fresh(f"{self.layer.name}__{hint or 'tmp'}")

    def add_input(self, caffe_name: str, shape: Sequence[int] | None) -> None:
        if caffe_name in self.binding:
            raise self.error(f"input blob '{caffe_name}' is defined twice")
        self._used.add(caffe_name)
        self.binding[caffe_name] = caffe_name
        self.inputs.append(caffe_name)
        self.shapes[caffe_name] = None if shape is None else tuple(int(d) for d in shape)

    def alias(self, i: int, blob: str, lp: Any = None) -> None:
        """Top ``i`` of the layer holds the same value as kaffa blob ``blob`` (no op)."""
        lp = lp if lp is not None else self.layer
        self.binding[lp.top[i]] = blob

    def top(self, i: int, op_type: str | None = None, x: str | None = None, lp: Any = None) -> str:
        """The kaffa blob that top ``i`` of the layer is written to by an ``op_type`` op whose
        input 0 is ``x``: ``x`` itself when Caffe writes in place (the top's current value is
        ``x``), the op may write input 0 in place, ``x`` is no net input and no other Caffe name
        shares it; else the top's own name, or a fresh one once that name is taken."""
        lp = lp if lp is not None else self.layer
        t = lp.top[i]
        current = self.binding.get(t)
        shared = sum(1 for v in self.binding.values() if v == x)
        if (
            self.in_place
            and x is not None
            and current == x
            and op_type is not None
            and SCHEMAS.get(op_type)._inplace_allowed(0, 0)
            and x not in self.inputs
            and shared == 1
        ):
            name = x
        elif t not in self._used:
            name = t
            self._used.add(t)
        else:
            name = self._fresh(t)
        self.binding[t] = name
        return name

    def readers(self, index: int, top: int) -> list[int]:
        """The indices of the layers that read top ``top`` of layer ``index`` (that version of it)."""
        return self._readers.get((index, top), [])

    # -- emitting ----------------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **args: Any) -> OperatorDef:
        """Append a kaffa op (``None`` argument values left out) and infer its output shapes."""
        op = OperatorDef(type=op_type, input=list(inputs), output=list(outputs))
        if self.layer is not None:
            op.name = self.layer.name
        for key, value in args.items():
            if value is not None:
                op.arg.append(make_argument(key, value))
        schema = SCHEMAS.get(op_type)
        infos = [TensorInfo(self.shapes.get(i), _F32) for i in op.input]
        try:
            schema.check_arity(op)
            schema.check_inplace(op)
            outs = schema.infer_outputs(schema.parse_args(op.arg), infos, len(op.output))
        except KaffaError as e:
            raise self.error(f"the kaffa {op_type} op it translates to rejects it: {e}") from None
        for name, info in zip(op.output, outs):
            self.shapes[name] = info.shape
            self._used.add(name)
        self.ops.append(op)
        return op


@dataclass
class Translation:
    """What ``translate_model`` returns: the two nets, and the inputs with their declared shapes
    (None when the prototxt gives none) and the outputs (Caffe's rule: blobs no layer reads)."""

    init_net: NetDef
    predict_net: NetDef
    input_shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def _legacy_inputs(net: Any) -> list[tuple[str, tuple[int, ...] | None]]:
    """NetParameter's deprecated input / input_shape / input_dim fields."""
    out = []
    dims = list(net.input_dim)
    if dims and len(dims) != 4 * len(net.input):
        raise ModelFormatError(f"the net has {len(net.input)} input(s) but {len(dims)} input_dim values")
    if net.input_shape and len(net.input_shape) != len(net.input):
        raise ModelFormatError(
            f"the net has {len(net.input)} input(s) but {len(net.input_shape)} input_shape"
        )
    for i, name in enumerate(net.input):
        if net.input_shape:
            shape: tuple[int, ...] | None = tuple(int(d) for d in net.input_shape[i].dim)
        elif dims:
            shape = tuple(dims[4 * i : 4 * i + 4])
        else:
            shape = None
        out.append((name, shape))
    return out


def _weights(model: Any) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for lp in model.layer:
        if lp.blobs:
            out[lp.name] = [
                blob_array(b, f"caffemodel layer '{lp.name}' blob {i}") for i, b in enumerate(lp.blobs)
            ]
    return out


def _net_outputs(inputs: Sequence[str], layers: Sequence[Any]) -> list[str]:
    """Caffe's rule: the blobs left when every layer's bottoms are removed and tops added in turn."""
    available = dict.fromkeys(inputs)
    for lp in layers:
        for b in lp.bottom:
            available.pop(b, None)
        for t in lp.top:
            available[t] = None
    return list(available)


def translate_model(
    prototxt: Any,
    caffemodel: Any = None,
    *,
    name: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    in_place: bool = True,
) -> Translation:
    """Translate a Caffe net (``prototxt``: a path, prototxt text or a caffe NetParameter) with its
    trained weights (``caffemodel``: a path, bytes, a NetParameter, or None for a net without
    parameters) into kaffa nets. The TEST-phase layers are translated. ``input_shapes`` sets or
    overrides the inputs' shapes. ``in_place=False`` gives every value its own blob (for
    exporters that need single assignment, such as ONNX) instead of writing in place where Caffe
    does. Raises UnsupportedCaffeLayerError listing every layer of a type
    kaffa cannot translate, CaffeImportError for a layer that cannot be expressed, and
    ModelFormatError for files that are not Caffe's."""
    from . import layers as _layers  # noqa: F401  (fill LAYERS)

    net = read_prototxt(prototxt)
    weights = _weights(read_caffemodel(caffemodel)) if caffemodel is not None else {}
    lps = included_layers(net)
    unknown = [(lp.name, lp.type) for lp in lps if lp.type not in LAYERS]
    if unknown:
        raise UnsupportedCaffeLayerError(unknown)

    ctx = Context(lps, weights, in_place)
    overrides = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
    for blob, shape in _legacy_inputs(net):
        ctx.add_input(blob, overrides.get(blob, shape))
    input_layer_tops = [t for lp in lps if lp.type == "Input" for t in lp.top]
    unknown_overrides = sorted(set(overrides) - {n for n, _ in _legacy_inputs(net)} - set(input_layer_tops))
    if unknown_overrides:
        raise ModelFormatError(f"input_shapes names {unknown_overrides}, which are not inputs of the net")
    ctx.input_overrides = overrides

    # Which layers read each layer's tops (for folding BatchNorm + Scale).
    version: dict[str, tuple[int, int]] = {b: (-1, k) for k, b in enumerate(ctx.inputs)}
    for index, lp in enumerate(lps):
        for b in lp.bottom:
            if b in version:
                ctx._readers.setdefault(version[b], []).append(index)
        for k, t in enumerate(lp.top):
            version[t] = (index, k)
    outputs = _net_outputs(list(ctx.inputs), lps)
    for b in outputs:  # a net output counts as read, so it is never folded away
        if b in version:
            ctx._readers.setdefault(version[b], []).append(len(lps))

    for index, lp in enumerate(lps):
        if index in ctx.skip:
            continue
        ctx.index, ctx.layer = index, lp
        for b in lp.bottom:
            if b not in ctx.binding:
                raise ctx.error(f"reads blob '{b}', which no earlier layer produces and no input declares")
        LAYERS[lp.type](ctx, lp)
        folded = index + 1 in ctx.skip  # its top is computed only as part of the next layer's
        for t in lp.top:
            if t not in ctx.binding and not folded:  # pragma: no cover - a translator bug
                raise ctx.error(f"the translation left top '{t}' undefined")
    ctx.layer = None

    graph = name or net.name or "caffe_model"
    predict = NetDef(name=graph)
    sources = {ctx.binding[o] for o in outputs}
    final = []
    for o in outputs:
        k = ctx.binding[o]
        if k == o or o in sources or o in ctx.inputs or o in ctx.params:
            final.append(k)
        else:  # the value sits under another kaffa name: give the output its Caffe name
            ctx.op("Copy", [k], [o])
            final.append(o)
    predict.op.extend(ctx.ops)
    predict.external_input.extend(ctx.inputs)
    read = {i for op in ctx.ops for i in op.input}
    params = [p for p in ctx.params if p in read]
    predict.external_input.extend(params)
    predict.external_output.extend(dict.fromkeys(final))

    init = NetDef(name=graph + "_init")
    init.op.extend(fill_op(p, ctx.params[p]) for p in params)
    init.external_output.extend(params)
    shapes = {i: ctx.shapes.get(i) for i in ctx.inputs}
    return Translation(
        init, predict, {k: (None if v is None else tuple(v)) for k, v in shapes.items()}, final
    )


def translate(
    prototxt: Any,
    caffemodel: Any = None,
    *,
    name: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    in_place: bool = True,
) -> tuple[NetDef, NetDef]:
    """``(init_net, predict_net)`` for a Caffe net and its weights (see ``translate_model``)."""
    t = translate_model(prototxt, caffemodel, name=name, input_shapes=input_shapes, in_place=in_place)
    return t.init_net, t.predict_net

"""ModelHelper: a model as two nets plus its parameters, Caffe2's ``model_helper``.

    model = ModelHelper("mlp")
    h = brew.fc(model, "x", "fc1", dim_in=4, dim_out=16)      # fc1_w, fc1_b in param_init_net
    h = brew.relu(model, h, h)
    y = brew.fc(model, h, "fc2", dim_in=16, dim_out=2)
    _, loss = model.SoftmaxWithLoss([y, "label"], ["softmax", "loss"])  # forwards to model.net
    model.add_gradient_ops([loss])                               # fills model.param_to_grad
    optimizer.build_sgd(model, base_learning_rate=0.1)

``param_init_net`` fills the parameters (run it once); ``net`` is the forward pass, then the
backward pass and the parameter updates (run it every iteration). Parameters carry tags: WEIGHT
(weight decay applies), BIAS, and COMPUTED_PARAM (SpatialBN's running statistics: saved with the
model, never given a gradient or an optimizer).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from kaffa.core import BlobReference, Net
from kaffa.proto import DeviceOption, NetDef, OperatorDef
from kaffa.schema import SCHEMAS, make_argument
from kaffa.scope import SEPARATOR, current_name_scope, scoped_name

__all__ = [
    "ExternalInitializer",
    "ExtractPredictorNet",
    "Initializer",
    "ModelHelper",
    "ParameterInfo",
    "ParameterTags",
    "extract_predictor_net",
    "update_initializer",
]


class ParameterTags:
    """Caffe2's ``parameter_info.ParameterTags``."""

    BIAS = "BIAS"
    WEIGHT = "WEIGHT"
    COMPUTED_PARAM = "COMPUTED_PARAM"


@dataclass
class ParameterInfo:
    """One parameter: its blob, shape, tags, and (after add_gradient_ops) its gradient blob."""

    blob: BlobReference
    shape: list[int] | None = None
    tags: set[str] = field(default_factory=set)
    grad: BlobReference | None = None
    initializer: Any = None

    @property
    def name(self) -> str:
        return str(self.blob)

    def __str__(self) -> str:
        return self.name


class Initializer:
    """Fills a parameter with one filler op of ``param_init_net``: ``Initializer("GaussianFill",
    std=0.01)``. Caffe2's ``modeling.initializers.Initializer``."""

    def __init__(self, operator_name: str | None = None, **kwargs: Any) -> None:
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def update(self, operator_name: str, kwargs: dict[str, Any]) -> None:
        if self.operator_name is not None:
            raise ValueError(f"this initializer already uses {self.operator_name}")
        self.operator_name = operator_name
        self.operator_kwargs = dict(kwargs)

    def create_param(self, param_name: BlobReference, init_net: Net, shape: Sequence[int]) -> ParameterInfo:
        if not self.operator_name:
            raise ValueError(f"no filler op given for parameter '{param_name}'")
        blob = init_net.add_op(
            self.operator_name, [], [param_name], shape=list(shape), **self.operator_kwargs
        )
        return ParameterInfo(blob=blob, shape=list(shape), initializer=self)


class ExternalInitializer:
    """The parameter is filled elsewhere (loaded, or shared with another model): no op is added."""

    def create_param(self, param_name: BlobReference, init_net: Net, shape: Sequence[int]) -> ParameterInfo:
        return ParameterInfo(
            blob=BlobReference(str(param_name), init_net), shape=list(shape), initializer=self
        )


InitializerSpec = Union[Initializer, ExternalInitializer, "tuple[str, dict[str, Any]]", None]


def update_initializer(
    initializer_class: type | None,
    operator_name_and_kwargs: tuple[str, dict[str, Any]] | None,
    default_operator_name_and_kwargs: tuple[str, dict[str, Any]],
) -> Initializer | ExternalInitializer:
    """Caffe2's helper for brew: an initializer class and/or an ``("Filler", {args})`` tuple, falling
    back to the default tuple."""
    name, kwargs = operator_name_and_kwargs or default_operator_name_and_kwargs
    if initializer_class is None:
        return Initializer(name, **kwargs)
    init = initializer_class()
    if isinstance(init, Initializer) and init.operator_name is None:
        init.update(name, kwargs)
    return init


def _as_initializer(spec: InitializerSpec) -> Initializer | ExternalInitializer:
    if spec is None:
        return ExternalInitializer()
    if isinstance(spec, tuple):
        name, kwargs = spec
        return Initializer(name, **kwargs)
    return spec


def _normalize_tags(tags: str | Iterable[str] | None) -> set[str]:
    if tags is None:
        return set()
    if isinstance(tags, str):
        return {tags}
    return set(tags)


def _normalize_namescope(namescope: str | None) -> str:
    if namescope is None:
        return current_name_scope()
    if namescope == "" or namescope.endswith(SEPARATOR):
        return namescope
    return namescope + SEPARATOR


class ModelHelper:
    """Caffe2's ``model_helper.ModelHelper``: ``param_init_net``, ``net``, parameters and their
    gradients. ``model.<Op>(...)`` adds an op to ``model.net``.

    ``init_params=False`` builds a model whose parameters are filled elsewhere (a test model sharing
    a training model's workspace): ``create_param`` (and so every brew helper) then adds no filler
    op. ``param_model`` shares another model's parameters and init net. ``arg_scope`` updates the
    defaults brew helpers get from the model (order="NCHW", use_cudnn=True,
    cudnn_exhaustive_search=False); a helper takes only the keys it names as parameters.
    """

    def __init__(
        self,
        name: str | None = None,
        init_params: bool = True,
        arg_scope: dict[str, Any] | None = None,
        param_model: ModelHelper | None = None,
    ) -> None:
        self.name = name or "model"
        self.net = Net(self.name)
        self.params: list[BlobReference]
        self.weights: list[BlobReference]
        self.biases: list[BlobReference]
        if param_model is not None:
            self.param_init_net = param_model.param_init_net
            self.params = param_model.params
            self._parameters_info: dict[str, ParameterInfo] = param_model._parameters_info
            self._computed_params: list[BlobReference] = param_model._computed_params
            self.weights = param_model.weights
            self.biases = param_model.biases
        else:
            self.param_init_net = Net(self.name + "_init")
            self.params = []
            self._parameters_info = {}
            self._computed_params = []
            self.weights = []
            self.biases = []
        self.param_to_grad: dict[BlobReference, BlobReference] = {}
        self.grad_map: dict[str, BlobReference] = {}
        self.gradient_ops_added = False
        self.init_params = init_params
        self._arg_scope: dict[str, Any] = {
            "order": "NCHW",
            "use_cudnn": True,
            "cudnn_exhaustive_search": False,
        }
        if arg_scope is not None:
            self._arg_scope.update(arg_scope)

    @property
    def arg_scope(self) -> dict[str, Any]:
        return self._arg_scope

    def get_name(self) -> str:
        return self.name

    @property
    def computed_params(self) -> list[BlobReference]:
        return self._computed_params

    # -- parameters --------------------------------------------------------------------------------
    def create_param(
        self,
        param_name: str | BlobReference,
        shape: Sequence[int],
        initializer: InitializerSpec,
        tags: str | Iterable[str] | None = None,
    ) -> BlobReference:
        """Create (or, if it exists with the same shape, return) a parameter. A string name gets the
        current NameScope; a BlobReference is used as it is. ``initializer`` is an Initializer, a
        ``("XavierFill", {...})`` tuple, or None (filled elsewhere). With ``init_params=False`` no
        filler op is added."""
        name = str(param_name) if isinstance(param_name, BlobReference) else scoped_name(param_name)
        shape = [int(d) for d in shape]
        if name in self._parameters_info:
            known = self._parameters_info[name]
            if known.shape is not None and known.shape != shape:
                raise ValueError(
                    f"parameter '{name}' already exists with shape {known.shape}, asked for {shape}"
                )
            return known.blob
        init = _as_initializer(initializer) if self.init_params else ExternalInitializer()
        info = init.create_param(BlobReference(name, self.param_init_net), self.param_init_net, shape)
        info.tags = _normalize_tags(tags)
        self._parameters_info[name] = info
        self.add_parameter(info.blob, info.tags)
        return info.blob

    def add_parameter(self, param: BlobReference, tags: str | Iterable[str] | None = None) -> None:
        """Register a blob as a parameter (COMPUTED_PARAM-tagged blobs go to the computed params)."""
        if not isinstance(param, BlobReference):
            raise TypeError(f"a parameter must be a BlobReference, got {type(param).__name__}")
        tag_set = _normalize_tags(tags)
        info = self._parameters_info.setdefault(str(param), ParameterInfo(blob=param))
        info.tags |= tag_set
        if ParameterTags.COMPUTED_PARAM in tag_set:
            if param not in self._computed_params:
                self._computed_params.append(param)
        elif param not in self.params:
            self.params.append(param)
        if ParameterTags.WEIGHT in tag_set and param not in self.weights:
            self.weights.append(param)
        if ParameterTags.BIAS in tag_set and param not in self.biases:
            self.biases.append(param)

    def get_param_info(self, param: str | BlobReference) -> ParameterInfo | None:
        return self._parameters_info.get(str(param))

    def get_params(self, namescope: str | None = None, top_scope: bool = False) -> list[BlobReference]:
        """The trained parameters under ``namescope`` (default: the current NameScope)."""
        prefix = _normalize_namescope(namescope)
        return [p for p in self.params if str(p).startswith(prefix)]

    def get_computed_params(self, namescope: str | None = None) -> list[BlobReference]:
        """Parameters computed from data rather than trained (SpatialBN's running mean and inverse
        variance): saved with the model, never updated by an optimizer."""
        prefix = _normalize_namescope(namescope)
        return [p for p in self._computed_params if str(p).startswith(prefix)]

    def get_all_params(self, namescope: str | None = None) -> list[BlobReference]:
        return self.get_params(namescope) + self.get_computed_params(namescope)

    def get_weights(self) -> list[BlobReference]:
        return list(self.weights)

    def get_biases(self) -> list[BlobReference]:
        return list(self.biases)

    def validate(self) -> None:
        names = [str(p) for p in self.params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate params: {dupes}")

    # -- gradients ---------------------------------------------------------------------------------
    def add_gradient_ops(self, losses: Any) -> dict[str, BlobReference]:
        """Append the backward pass of ``net`` for ``losses`` (see Net.add_gradient_ops) and fill
        ``param_to_grad``. Returns the full {blob: gradient} map. Allowed once per model."""
        if self.gradient_ops_added:
            raise RuntimeError("add_gradient_ops was already called on this model")
        self.validate()
        self.grad_map = self.net.add_gradient_ops(losses)
        self.gradient_ops_added = True
        self.param_to_grad = self.get_param_to_grad(self.params)
        for param, grad in self.param_to_grad.items():
            info = self._parameters_info.setdefault(str(param), ParameterInfo(blob=param))
            info.grad = grad
        return self.grad_map

    def get_param_to_grad(self, params: Iterable[BlobReference | str]) -> dict[BlobReference, BlobReference]:
        """{param: gradient blob} for those of ``params`` that have a gradient."""
        if not self.gradient_ops_added:
            raise RuntimeError("call add_gradient_ops first")
        out: dict[BlobReference, BlobReference] = {}
        for p in params:
            if str(p) in self.grad_map:
                key = p if isinstance(p, BlobReference) else BlobReference(p, self.param_init_net)
                out[key] = self.grad_map[str(p)]
        return out

    def get_optimization_param_info(
        self, params: Iterable[BlobReference | str] | None = None
    ) -> list[ParameterInfo]:
        """ParameterInfo (``grad`` set) of every parameter with a gradient, or of those of ``params``."""
        if not self.gradient_ops_added:
            raise RuntimeError("call add_gradient_ops first")
        chosen = self.param_to_grad if params is None else self.get_param_to_grad(params)
        infos = []
        for param, grad in chosen.items():
            info = self._parameters_info.setdefault(str(param), ParameterInfo(blob=param))
            info.grad = grad
            infos.append(info)
        return infos

    # -- nets --------------------------------------------------------------------------------------
    def Proto(self) -> NetDef:
        return self.net.Proto()

    def InitProto(self) -> NetDef:
        return self.param_init_net.Proto()

    def run_all_on(self, device: Any, engine: str | None = None) -> None:
        """Put both nets on ``device`` (Caffe2's RunAllOnGPU)."""
        self.param_init_net.run_all_on(device, engine)
        self.net.run_all_on(device, engine)

    def get_complete_net(self) -> Net:
        """param_init_net followed by net, as one Net."""
        proto = NetDef()
        proto.CopyFrom(self.param_init_net.Proto())
        proto.name = self.name + "_complete_net"
        proto.op.extend(self.net.Proto().op)
        init_outputs = {o for op in self.param_init_net.ops for o in op.output}
        for b in self.net.Proto().external_input:
            if b not in proto.external_input and b not in init_outputs:
                proto.external_input.append(b)
        for b in self.net.Proto().external_output:
            if b not in proto.external_output:
                proto.external_output.append(b)
        return Net(proto)

    def extract_predictor_net(
        self,
        input_blobs: Iterable[Any],
        output_blobs: Iterable[Any],
        device: DeviceOption | None = None,
        renames: dict[str, str] | None = None,
        disabled_inputs: Iterable[Any] | None = None,
    ) -> tuple[Net, list[str]]:
        """The inference net of this model: see the module function ``extract_predictor_net``."""
        return extract_predictor_net(
            self.net.Proto(), input_blobs, output_blobs, device, renames, disabled_inputs
        )

    def __getattr__(self, op_type: str) -> Any:
        """``model.Relu(...)`` is ``model.net.Relu(...)``."""
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        if op_type not in SCHEMAS:
            close = difflib.get_close_matches(op_type, list(SCHEMAS), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise AttributeError(
                f"ModelHelper has no attribute '{op_type}', and no operator has that name{hint}"
            )
        return getattr(self.net, op_type)

    # Caffe2 spellings.
    AddParameter = add_parameter
    GetParams = get_params
    GetComputedParams = get_computed_params
    GetAllParams = get_all_params
    GetWeights = get_weights
    GetBiases = get_biases
    GetParamInfo = get_param_info
    AddGradientOperators = add_gradient_ops
    GetOptimizationParamInfo = get_optimization_param_info
    Validate = validate
    RunAllOnGPU = run_all_on
    GetCompleteNet = get_complete_net
    ExtractPredictorNet = extract_predictor_net


# Ops that, run with is_test=1, produce only their output 0.
_TEST_MODE_OUTPUTS = {"SpatialBN": 1, "Dropout": 1, "InstanceNorm": 1}


def _takes_is_test(op: OperatorDef) -> bool:
    return op.type in _TEST_MODE_OUTPUTS or (op.type in SCHEMAS and "is_test" in SCHEMAS.get(op.type).args)


def _set_is_test(op: OperatorDef) -> None:
    kept = [a for a in op.arg if a.name != "is_test"]
    del op.arg[:]
    op.arg.extend(kept)
    op.arg.append(make_argument("is_test", 1))
    keep = _TEST_MODE_OUTPUTS.get(op.type)
    if keep is not None and len(op.output) > keep:
        del op.output[keep:]


def extract_predictor_net(
    net_proto: NetDef | Net,
    input_blobs: Iterable[Any],
    output_blobs: Iterable[Any],
    device: DeviceOption | None = None,
    renames: dict[str, str] | None = None,
    disabled_inputs: Iterable[Any] | None = None,
) -> tuple[Net, list[str]]:
    """Cut an inference net out of a training net: the forward ops that lead from ``input_blobs``
    to ``output_blobs``, without gradient, loss, metric or optimizer ops. Ops with an ``is_test``
    argument (Dropout, SpatialBN) are switched to is_test=1 and keep only their output 0 (Caffe2
    refused is_test=0 instead). ``disabled_inputs`` count as absent (branches reading them are
    dropped); ``renames`` renames blobs; ``device`` is stamped on every op.

    Returns ``(predict_net, export_blobs)``: the net (named ``<net>_predict``) and the blobs it reads
    besides the inputs, i.e. the parameters (computed ones included) a deployment has to save.
    """
    proto = net_proto.Proto() if isinstance(net_proto, Net) else net_proto
    inputs = [str(b) for b in input_blobs]
    outputs = [str(b) for b in output_blobs]
    renames = dict(renames or {})
    known = set(proto.external_input) | set(inputs)
    if disabled_inputs is not None:
        known -= {str(b) for b in disabled_inputs}
    ops = list(proto.op)

    first = [k for k, op in enumerate(ops) if set(inputs) & set(op.input) and op.type != "StopGradient"]
    if not first:
        raise ValueError(f"no op of net '{proto.name}' reads the inputs {inputs}")
    last = [k for k, op in enumerate(ops) if set(outputs) & set(op.output) and not op.is_gradient_op]
    if not last:
        raise ValueError(f"no forward op of net '{proto.name}' produces the outputs {outputs}")

    # Forward: ops of the range whose inputs follow from the inputs and the parameters.
    candidates: list[OperatorDef] = []
    for op in ops[min(first) : max(last) + 1]:
        if op.is_gradient_op or not known.issuperset(op.input):
            continue
        copy = OperatorDef()
        copy.CopyFrom(op)
        if _takes_is_test(copy):
            _set_is_test(copy)
        candidates.append(copy)
        known.update(copy.output)

    # Backward: only the ops an output depends on (drops losses, metrics, side branches).
    needed = set(outputs)
    kept: list[OperatorDef] = []
    for op in reversed(candidates):
        if needed & set(op.output):
            kept.append(op)
            needed -= set(op.output)
            needed |= set(op.input)
    kept.reverse()
    produced = {o for op in kept for o in op.output}
    unreached = [o for o in outputs if o not in produced and o not in inputs]
    if unreached:
        raise ValueError(
            f"cannot compute {unreached} from the inputs {inputs} and the parameters of net '{proto.name}'"
        )

    def rn(name: str) -> str:
        return renames.get(name, name)

    pproto = NetDef(name=proto.name + "_predict")
    externals: list[str] = [rn(b) for b in inputs]
    written: set[str] = set()
    for op in kept:
        op.input[:] = [rn(b) for b in op.input]
        op.output[:] = [rn(b) for b in op.output]
        if device is not None:
            op.device_option.CopyFrom(device)
        for b in op.input:
            if b not in written and b not in externals:
                externals.append(b)
        written.update(op.output)
        pproto.op.append(op)
    pproto.external_input.extend(externals)
    pproto.external_output.extend(rn(b) for b in outputs)
    ins = {rn(b) for b in inputs}
    return Net(pproto), [b for b in externals if b not in ins]


ExtractPredictorNet = extract_predictor_net

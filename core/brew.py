"""brew: layer helpers that create parameters in ``model.param_init_net`` and ops in ``model.net``
(Caffe2's ``brew``).

    model = ModelHelper("cnn")
    with brew.arg_scope([brew.conv, brew.max_pool], order="NHWC"):
        c = brew.conv(model, "data", "conv1", dim_in=3, dim_out=8, kernel=3, pad=1)   # conv1_w, conv1_b
        p = brew.max_pool(model, c, "pool1", kernel=2, stride=2)
    f = brew.fc(model, p, "fc1", dim_in=8 * 4 * 4, dim_out=10)                         # fc1_w, fc1_b

Every helper takes the model first, then blob names; keyword arguments it does not consume become
arguments of its op. Defaults come, lowest first, from the model's ``arg_scope`` (only the keys
a helper names as parameters, e.g. ``order``, ``use_cudnn``), then from the enclosing
``brew.arg_scope`` blocks (nested blocks compose), then from the call itself.

Parameters follow Caffe2's names: ``<out>_w`` (XavierFill) and ``<out>_b`` (ConstantFill 0) for
fc/conv, ``<out>_s``, ``<out>_b``, ``<out>_rm``, ``<out>_riv`` for spatial_bn. Initializers are given
as ``weight_init=("GaussianFill", {"std": 0.01})`` tuples or ``WeightInitializer=`` classes.
``brew.Register(fn)`` adds a helper (``brew.<fn name>`` then calls it with the same scoping).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from kaffa.core import BlobReference, Net
from kaffa.device import device_option
from kaffa.model_helper import ModelHelper, ParameterTags, update_initializer
from kaffa.schema import SCHEMAS
from kaffa.scope import DeviceScope, current_device_scope

Blob = str | BlobReference
Init = tuple[str, dict[str, Any]] | None

_registry: dict[str, Callable[..., Any]] = {}
_wrapped: dict[str, Callable[..., Any]] = {}
_scope = threading.local()


# -- arg_scope -------------------------------------------------------------------------------------
def get_current_scope() -> dict[str, dict[str, Any]]:
    """{helper name: default kwargs} of the enclosing ``arg_scope`` blocks (this thread)."""
    if not hasattr(_scope, "current"):
        _scope.current = {}
    return _scope.current


def _helper_name(helper: Callable[..., Any] | str) -> str:
    if isinstance(helper, str):
        return helper
    if not callable(helper):
        raise TypeError(f"arg_scope takes brew helpers (or their names), got {type(helper).__name__}")
    return helper.__name__


@contextlib.contextmanager
def arg_scope(
    single_helper_or_list: Callable[..., Any] | str | Sequence[Any], **kwargs: Any
) -> Iterator[None]:
    """Default ``kwargs`` for the given helpers inside the block; the previous defaults come back
    on exit. ``with brew.arg_scope([brew.conv, brew.max_pool], order="NHWC"): ...``"""
    helpers = (
        list(single_helper_or_list)
        if isinstance(single_helper_or_list, (list, tuple))
        else [single_helper_or_list]
    )
    names = [_helper_name(h) for h in helpers]
    old = copy.deepcopy(get_current_scope())
    current = get_current_scope()
    for name in names:
        current.setdefault(name, {}).update(kwargs)
    try:
        yield
    finally:
        _scope.current = old


# -- registry --------------------------------------------------------------------------------------
def _wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    params = list(inspect.signature(func).parameters.values())
    named = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    positional = [p.name for p in params if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]

    @functools.wraps(func)
    def helper(*args: Any, **kwargs: Any) -> Any:
        model = args[0] if args else kwargs.get("model")
        if not isinstance(model, ModelHelper):
            raise TypeError(
                f"brew.{name}: the first argument must be a ModelHelper (or pass model=...), "
                f"got {type(model).__name__}"
            )
        taken = set(positional[: len(args)])
        merged = {k: v for k, v in model.arg_scope.items() if k in named and k not in taken}
        merged.update((k, v) for k, v in get_current_scope().get(name, {}).items() if k not in taken)
        merged.update(kwargs)
        return func(*args, **merged)

    helper.__name__ = name
    return helper


def Register(helper: Callable[..., Any]) -> Callable[..., Any]:
    """Add a helper (its ``__name__`` is its brew name); returns the scoped wrapper, so it also
    works as a decorator. A name already taken raises ValueError."""
    name = helper.__name__
    if name in _registry:
        raise ValueError(f"brew already has a helper named '{name}'; rename yours")
    _registry[name] = helper
    _wrapped[name] = _wrap(name, helper)
    return _wrapped[name]


register = Register


def has_helper(helper_or_helper_name: Callable[..., Any] | str) -> bool:
    return _helper_name(helper_or_helper_name) in _registry


def __getattr__(name: str) -> Any:
    # Helpers added with Register are module attributes too (Caffe2's HelperWrapper).
    if name in _wrapped:
        return _wrapped[name]
    raise AttributeError(f"brew has no helper named '{name}'")


def _builtin(func: Callable[..., Any]) -> Callable[..., Any]:
    return Register(func)


# -- naming ----------------------------------------------------------------------------------------
def _out(model: ModelHelper, blob_out: Blob | None) -> Blob:
    """The output name; an automatic one is already scoped, so it is returned as a reference."""
    if blob_out is None:
        return BlobReference(model.net.next_name(), model.net)
    return blob_out


def _derived(blob: Blob, prefix: str = "", suffix: str = "") -> Blob:
    """A name built from ``blob`` that stays in its NameScope: ``_<out>_mask`` for ``ns/out`` is
    ``ns/_out_mask``. A plain string is left for the net to scope."""
    if isinstance(blob, BlobReference):
        scope, sep, base = str(blob).rpartition("/")
        return BlobReference(f"{scope}{sep}{prefix}{base}{suffix}")
    return f"{prefix}{blob}{suffix}"


def _op_args(op_type: str, **candidates: Any) -> dict[str, Any]:
    """The candidates the op's schema accepts (``order`` reaches ops that have one)."""
    schema = SCHEMAS.get(op_type)
    return {k: v for k, v in candidates.items() if k in schema.args}


def _cudnn(
    kwargs: dict[str, Any], use_cudnn: bool, exhaustive: bool = False, ws_limit: int | None = None
) -> None:
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
        kwargs["exhaustive_search"] = bool(exhaustive)
        if ws_limit:
            kwargs["ws_nbytes_limit"] = int(ws_limit)


def _on_cpu(kwargs: dict[str, Any]) -> bool:
    dev = kwargs.get("device_option") or current_device_scope()
    return dev is None or dev.device_type == 0


# -- layers with parameters ------------------------------------------------------------------------
@_builtin
def fc(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    dim_out: int,
    weight_init: Init = None,
    bias_init: Init = None,
    WeightInitializer: type | None = None,
    BiasInitializer: type | None = None,
    **kwargs: Any,
) -> BlobReference:
    """FC: ``<out>_w`` [dim_out, dim_in] (XavierFill), ``<out>_b`` [dim_out] (ConstantFill 0)."""
    w_init = update_initializer(WeightInitializer, weight_init, ("XavierFill", {}))
    b_init = update_initializer(BiasInitializer, bias_init, ("ConstantFill", {}))
    blob_out = _out(model, blob_out)
    w = model.create_param(blob_out + "_w", [dim_out, dim_in], w_init, ParameterTags.WEIGHT)
    b = model.create_param(blob_out + "_b", [dim_out], b_init, ParameterTags.BIAS)
    return model.net.FC([blob_in, w, b], blob_out, **kwargs)


def _conv_base(
    model: ModelHelper,
    is_nd: bool,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    dim_out: int,
    kernel: int | Sequence[int],
    weight_init: Init,
    bias_init: Init,
    WeightInitializer: type | None,
    BiasInitializer: type | None,
    group: int,
    transform_inputs: Callable[..., Any] | None,
    use_cudnn: bool,
    order: str,
    cudnn_exhaustive_search: bool,
    ws_nbytes_limit: int | None,
    no_bias: bool,
    kwargs: dict[str, Any],
) -> BlobReference:
    if isinstance(kernel, (list, tuple)):
        kernels, is_nd = [int(k) for k in kernel], True
    else:
        kernels = [int(kernel)] * (1 if is_nd else 2)
    if dim_in % group:
        raise ValueError(f"conv: dim_in {dim_in} does not divide into {group} groups")
    _cudnn(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit)
    blob_out = _out(model, blob_out)
    if order == "NCHW":
        w_shape = [dim_out, dim_in // group, *kernels]
    else:
        w_shape = [dim_out, *kernels, dim_in // group]
    w_init = update_initializer(WeightInitializer, weight_init, ("XavierFill", {}))
    b_init = update_initializer(BiasInitializer, bias_init, ("ConstantFill", {}))
    inputs: list[Any] = [blob_in, model.create_param(blob_out + "_w", w_shape, w_init, ParameterTags.WEIGHT)]
    if not no_bias:
        inputs.append(model.create_param(blob_out + "_b", [dim_out], b_init, ParameterTags.BIAS))
    if transform_inputs is not None:
        transform_inputs(model, blob_out, inputs)
    if group != 1:
        kwargs["group"] = group
    if is_nd:
        kwargs["kernels"] = kernels
    else:
        kwargs["kernel"] = kernels[0]
    return model.net.Conv(inputs, blob_out, order=order, **kwargs)


@_builtin
def conv(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    dim_out: int,
    kernel: int | Sequence[int],
    weight_init: Init = None,
    bias_init: Init = None,
    WeightInitializer: type | None = None,
    BiasInitializer: type | None = None,
    group: int = 1,
    transform_inputs: Callable[..., Any] | None = None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    cudnn_exhaustive_search: bool = False,
    ws_nbytes_limit: int | None = None,
    no_bias: bool = False,
    **kwargs: Any,
) -> BlobReference:
    """2-d Conv (a list ``kernel`` gives per-axis sizes): ``<out>_w`` [dim_out, dim_in/group, k, k]
    for NCHW ([dim_out, k, k, dim_in/group] for NHWC, XavierFill) and ``<out>_b`` [dim_out]."""
    return _conv_base(
        model, False, blob_in, blob_out, dim_in, dim_out, kernel, weight_init, bias_init,
        WeightInitializer, BiasInitializer, group, transform_inputs, use_cudnn, order,
        cudnn_exhaustive_search, ws_nbytes_limit, no_bias, kwargs,
    )  # fmt: skip


@_builtin
def conv_nd(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    dim_out: int,
    kernel: int | Sequence[int],
    weight_init: Init = None,
    bias_init: Init = None,
    WeightInitializer: type | None = None,
    BiasInitializer: type | None = None,
    group: int = 1,
    transform_inputs: Callable[..., Any] | None = None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    cudnn_exhaustive_search: bool = False,
    ws_nbytes_limit: int | None = None,
    no_bias: bool = False,
    **kwargs: Any,
) -> BlobReference:
    """N-d Conv: ``kernel`` is a list with one size per spatial axis."""
    return _conv_base(
        model, True, blob_in, blob_out, dim_in, dim_out, kernel, weight_init, bias_init,
        WeightInitializer, BiasInitializer, group, transform_inputs, use_cudnn, order,
        cudnn_exhaustive_search, ws_nbytes_limit, no_bias, kwargs,
    )  # fmt: skip


@_builtin
def group_conv(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    dim_out: int,
    kernel: int | Sequence[int],
    weight_init: Init = None,
    bias_init: Init = None,
    group: int = 1,
    **kwargs: Any,
) -> BlobReference:
    """Conv with ``group`` channel groups (Caffe2 kept this name for old code)."""
    return conv(
        model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=weight_init, bias_init=bias_init,
        group=group, **kwargs,
    )  # fmt: skip


@_builtin
def conv_transpose(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    dim_out: int,
    kernel: int,
    weight_init: Init = None,
    bias_init: Init = None,
    group: int = 1,
    use_cudnn: bool = False,
    order: str = "NCHW",
    cudnn_exhaustive_search: bool = False,
    ws_nbytes_limit: int | None = None,
    **kwargs: Any,
) -> BlobReference:
    """ConvTranspose: ``<out>_w`` [dim_in, dim_out/group, k, k] for NCHW ([dim_in, k, k,
    dim_out/group] for NHWC, XavierFill) and ``<out>_b`` [dim_out]."""
    if dim_out % group:
        raise ValueError(f"conv_transpose: dim_out {dim_out} does not divide into {group} groups")
    blob_out = _out(model, blob_out)
    m = dim_out // group
    w_shape = [dim_in, m, kernel, kernel] if order == "NCHW" else [dim_in, kernel, kernel, m]
    if group != 1:
        kwargs["group"] = group
    w = model.create_param(blob_out + "_w", w_shape, weight_init or ("XavierFill", {}), ParameterTags.WEIGHT)
    b = model.create_param(blob_out + "_b", [dim_out], bias_init or ("ConstantFill", {}), ParameterTags.BIAS)
    _cudnn(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit)
    return model.net.ConvTranspose([blob_in, w, b], blob_out, kernel=kernel, order=order, **kwargs)


@_builtin
def spatial_bn(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int,
    init_scale: float = 1.0,
    init_bias: float = 0.0,
    ScaleInitializer: type | None = None,
    BiasInitializer: type | None = None,
    RunningMeanInitializer: type | None = None,
    RunningVarianceInitializer: type | None = None,
    order: str = "NCHW",
    is_test: bool = False,
    **kwargs: Any,
) -> BlobReference:
    """SpatialBN with ``<out>_s`` (scale, WEIGHT), ``<out>_b`` (bias, BIAS) and the computed params
    ``<out>_rm`` (running mean, 0) and ``<out>_riv`` (running variance, 1). Training also writes the
    running stats in place and ``<out>_sm``/``<out>_siv``; ``is_test=True`` has one output."""
    blob_out = _out(model, blob_out)

    def init(cls: type | None, value: float) -> Any:
        return update_initializer(cls, ("ConstantFill", {"value": float(value)}), ("ConstantFill", {}))

    scale = model.create_param(
        blob_out + "_s", [dim_in], init(ScaleInitializer, init_scale), ParameterTags.WEIGHT
    )
    bias = model.create_param(blob_out + "_b", [dim_in], init(BiasInitializer, init_bias), ParameterTags.BIAS)
    rm = model.create_param(
        blob_out + "_rm", [dim_in], init(RunningMeanInitializer, 0.0), ParameterTags.COMPUTED_PARAM
    )
    riv = model.create_param(
        blob_out + "_riv", [dim_in], init(RunningVarianceInitializer, 1.0), ParameterTags.COMPUTED_PARAM
    )
    inputs = [blob_in, scale, bias, rm, riv]
    if is_test:
        return model.net.SpatialBN(inputs, [blob_out], order=order, is_test=True, **kwargs)
    outputs = [blob_out, rm, riv, _derived(blob_out, suffix="_sm"), _derived(blob_out, suffix="_siv")]
    return model.net.SpatialBN(inputs, outputs, order=order, is_test=False, **kwargs)[0]


@_builtin
def layer_norm(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    dim_in: int | Sequence[int],
    axis: int = 1,
    epsilon: float = 1e-4,
    initial_scale: float = 1.0,
    initial_bias: float = 0.0,
) -> tuple[BlobReference, BlobReference, BlobReference]:
    """LayerNorm over the dims from ``axis`` on, then a learned ``<out>_scale`` (WEIGHT) and
    ``<out>_bias`` (BIAS) of shape ``dim_in`` broadcast from ``axis``. Returns (``<out>_biased``,
    mean, std), as Caffe2's helper."""
    blob_out = _out(model, blob_out)
    shape = [dim_in] if isinstance(dim_in, int) else list(dim_in)
    normalized, mean, std = model.net.LayerNorm(
        [blob_in], [blob_out, blob_out + "_mean", blob_out + "_std"], axis=axis, epsilon=epsilon
    )
    scale = model.create_param(
        blob_out + "_scale", shape, ("ConstantFill", {"value": float(initial_scale)}), ParameterTags.WEIGHT
    )
    bias = model.create_param(
        blob_out + "_bias", shape, ("ConstantFill", {"value": float(initial_bias)}), ParameterTags.BIAS
    )
    scaled = model.net.Mul([normalized, scale], [blob_out + "_scaled"], broadcast=1, axis=axis)
    biased = model.net.Add([scaled, bias], [blob_out + "_biased"], broadcast=1, axis=axis)
    return biased, mean, std


@_builtin
def prelu(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    num_channels: int = 1,
    slope_init: Init = None,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    """PRelu with ``<out>_slope`` [num_channels] (ConstantFill 0.25; untagged, so no weight decay)."""
    blob_out = _out(model, blob_out)
    kwargs.update(_op_args("PRelu", order=order))
    slope = model.create_param(
        blob_out + "_slope", [num_channels], slope_init or ("ConstantFill", {"value": 0.25})
    )
    return model.net.PRelu([blob_in, slope], [blob_out], **kwargs)


# -- layers without parameters ---------------------------------------------------------------------
def _pool(
    model: ModelHelper,
    op_type: str,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool,
    order: str,
    kw: Any,
) -> BlobReference:
    if use_cudnn:
        kw["engine"] = "CUDNN"
    return model.net.add_op(op_type, blob_in, _out(model, blob_out), order=order, **kw)


@_builtin
def max_pool(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    """MaxPool (kernel, stride, pad, global_pooling... as op arguments)."""
    return _pool(model, "MaxPool", blob_in, blob_out, use_cudnn, order, kwargs)


@_builtin
def average_pool(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    """AveragePool (kernel, stride, pad, global_pooling... as op arguments)."""
    return _pool(model, "AveragePool", blob_in, blob_out, use_cudnn, order, kwargs)


def _unary(
    model: ModelHelper,
    op_type: str,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool,
    order: str,
    kw: Any,
) -> BlobReference:
    if use_cudnn:
        kw["engine"] = "CUDNN"
    kw.update(_op_args(op_type, order=order))
    return model.net.add_op(op_type, blob_in, _out(model, blob_out), **kw)


@_builtin
def relu(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    """Relu (may run in place: ``brew.relu(model, h, h)``)."""
    return _unary(model, "Relu", blob_in, blob_out, use_cudnn, order, kwargs)


@_builtin
def tanh(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    return _unary(model, "Tanh", blob_in, blob_out, use_cudnn, order, kwargs)


@_builtin
def sigmoid(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool = False,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    return _unary(model, "Sigmoid", blob_in, blob_out, use_cudnn, order, kwargs)


@_builtin
def softmax(
    model: ModelHelper, blob_in: Blob, blob_out: Blob | None = None, use_cudnn: bool = False, **kwargs: Any
) -> BlobReference:
    """Softmax over ``axis`` (default 1)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.Softmax(blob_in, _out(model, blob_out), **kwargs)


@_builtin
def dropout(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    use_cudnn: bool = False,
    is_test: bool = False,
    **kwargs: Any,
) -> BlobReference:
    """Dropout (``ratio``, default 0.5). Training writes the mask to ``_<out>_mask``; ``is_test=True``
    (directly or from ``brew.arg_scope([brew.dropout], is_test=True)``) makes it the identity."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    blob_out = _out(model, blob_out)
    if is_test:
        return model.net.Dropout(blob_in, [blob_out], is_test=True, **kwargs)
    outs = model.net.Dropout(blob_in, [blob_out, _derived(blob_out, "_", "_mask")], is_test=False, **kwargs)
    return outs[0]


@_builtin
def lrn(
    model: ModelHelper,
    blob_in: Blob,
    blob_out: Blob | None,
    order: str = "NCHW",
    use_cudnn: bool = False,
    **kwargs: Any,
) -> BlobReference:
    """LRN (size, alpha, beta, bias). On cpu the scale goes to ``_<out>_scale``, as in Caffe2."""
    blob_out = _out(model, blob_out)
    if use_cudnn and not _on_cpu(kwargs):
        return model.net.LRN(blob_in, [blob_out], order=order, engine="CUDNN", **kwargs)
    return model.net.LRN(blob_in, [blob_out, _derived(blob_out, "_", "_scale")], order=order, **kwargs)[0]


@_builtin
def concat(
    model: ModelHelper,
    blobs_in: Sequence[Blob],
    blob_out: Blob | None = None,
    order: str = "NCHW",
    **kwargs: Any,
) -> BlobReference:
    """Concat along ``axis`` (default: the channel axis of ``order``); the split sizes go to
    ``_<out>_concat_dims``."""
    blob_out = _out(model, blob_out)
    return model.net.Concat(
        list(blobs_in), [blob_out, _derived(blob_out, "_", "_concat_dims")], order=order, **kwargs
    )[0]


@_builtin
def depth_concat(
    model: ModelHelper, blobs_in: Sequence[Blob], blob_out: Blob | None = None, **kwargs: Any
) -> BlobReference:
    """Concat along the channel axis (Caffe2's old name)."""
    return concat(model, blobs_in, blob_out, **kwargs)


@_builtin
def transpose(
    model: ModelHelper, blob_in: Blob, blob_out: Blob | None, use_cudnn: bool = False, **kwargs: Any
) -> BlobReference:
    """Transpose by ``axes`` (default: reversed)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.Transpose(blob_in, _out(model, blob_out), **kwargs)


@_builtin
def sum(model: ModelHelper, blob_in: Sequence[Blob], blob_out: Blob | None, **kwargs: Any) -> BlobReference:
    """Element-wise Sum of the inputs."""
    return model.net.Sum(blob_in, _out(model, blob_out), **kwargs)


@_builtin
def batch_mat_mul(
    model: ModelHelper, blob_in: Sequence[Blob], blob_out: Blob | None, **kwargs: Any
) -> BlobReference:
    return model.net.BatchMatMul(blob_in, _out(model, blob_out), **kwargs)


# -- training --------------------------------------------------------------------------------------
@_builtin
def iter(model: ModelHelper, blob_out: Blob, **kwargs: Any) -> BlobReference:
    """An int64 counter on cpu: filled with 0 in param_init_net, incremented by Iter each run."""
    kwargs.pop("device_option", None)
    with DeviceScope(device_option("cpu")):
        model.param_init_net.ConstantFill([], blob_out, shape=[1], value=0.0, dtype=np.int64)
        return model.net.Iter(blob_out, blob_out, **kwargs)


@_builtin
def accuracy(
    model: ModelHelper, blob_in: Sequence[Blob], blob_out: Blob | None, **kwargs: Any
) -> BlobReference:
    """Accuracy([prediction, label]) (top_k=1)."""
    return model.net.Accuracy(list(blob_in), _out(model, blob_out), **kwargs)


@_builtin
def add_weight_decay(model: ModelHelper, weight_decay: float) -> None:
    """L2 regularization: ``grad += weight_decay * param`` for every WEIGHT-tagged parameter that has
    a gradient (biases, scales of other kinds and computed params are left alone). Call it after
    add_gradient_ops and before the optimizer's update ops (the build_* functions do)."""
    if weight_decay <= 0.0:
        return
    if not model.gradient_ops_added:
        raise RuntimeError("add_weight_decay needs the gradients: call model.add_gradient_ops first")
    wd = _init_constant(model.param_init_net, "wd", weight_decay)
    one = _init_constant(model.param_init_net, "ONE", 1.0)
    for param in model.get_weights():
        grad = model.param_to_grad.get(param)
        if grad is not None:
            model.net.WeightedSum([grad, one, param, wd], grad)


def _init_constant(init: Net, name: str, value: float) -> BlobReference:
    """A [1] float constant in ``init`` (a param_init_net), reused if an op there already fills
    ``name`` with ``value`` (another value gets a fresh name)."""
    stem, k = name, 0
    while True:
        for op in init.ops:
            if name in op.output:
                same = op.type == "ConstantFill" and any(
                    a.name == "value" and a.f == np.float32(value) for a in op.arg
                )
                if same:
                    return BlobReference(name, init)
                break
        else:
            return init.ConstantFill([], BlobReference(name, init), shape=[1], value=float(value))
        k += 1
        name = f"{stem}_{k}"


# Recurrent layers (LSTM, GRU on RecurrentNetwork) live in kaffa.rnn; brew.lstm / brew.gru call them.
from kaffa import rnn as _rnn  # noqa: E402

lstm = _builtin(_rnn.lstm)
gru = _builtin(_rnn.gru)

# Not star-exported: the helpers named iter and sum would hide the builtins.
__all__ = sorted(
    {"arg_scope", "get_current_scope", "Register", "register", "has_helper", *_registry} - {"iter", "sum"}
)

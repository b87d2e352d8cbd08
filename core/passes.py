"""Graph passes for inference: rewrite a predict net into a cheaper one that computes the same
outputs, given the parameter values the init net made.

Each pass takes the ``NetDef`` and a mutable ``{name: array}`` of parameters and returns the new
``NetDef``; parameters it creates are added under new names, so a blob another op (or another
net) still reads is never changed. ``kaffa.Predictor`` runs ``optimize`` by default
(``optimize=False`` turns it off); tests/test_passes.py checks each pass's outputs before and after.

* ``fold_batchnorm``: Conv (or ConvTranspose, FC) followed by an inference-mode SpatialBN becomes
  one op with scaled weights and a shifted bias: ``W' = W * s``, ``b' = (b - mean) * s + beta``
  with ``s = gamma / sqrt(var + eps)`` per output channel.
* ``fold_bias_add``: Conv or FC without a bias followed by an Add of a per-channel constant takes it
  as its bias (exporters often write the bias as a separate Add).
* ``channels_last`` (only for a backend whose ``conv_order`` is NHWC: cpu with the ONEDNN engine):
  2-D Conv, FusedConv and pools run NHWC, with Transposes only at the edges (see its docstring).
* ``fuse_conv_activation``: Conv -> Relu | Clip, Conv -> Add(conv, Z) and Conv -> Add(conv, Z) ->
  Relu | Clip become one ``FusedConv`` (Y = act(Conv(X, W, b) + Z)), so the output is written once
  instead of two or three times. A 2-input Sum counts as an Add. The Add must add Z as it is (no
  Caffe2 ``broadcast``/``axis``; shapes, where inference knows them, equal), every intermediate
  value must be read only by the next op of the chain and be no net output, and nothing between
  the Conv and the chain's last op may overwrite the Conv's inputs or Z: the FusedConv takes the
  last op's place and output name. A Conv without a bias gets a zero bias when Z is fused.

Passes that write an op not every backend has say so in ``needs_kernels`` (``fuse_conv_activation``:
FusedConv). ``optimize(..., backend=name)`` skips those a backend lacks a kernel for (the kernel
registry answers), so a net for opencl keeps its plain Conv ops; ``Predictor`` passes its device's
backend. ``fuse_conv_activation`` also checks each Conv's own device (its DeviceOption, else the
net's), so a net stamped for another backend, or one mixing devices, stays right with ``backend=None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping, Sequence

import numpy as np

from kaffa.errors import KaffaError
from kaffa.plugins import registry
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import SCHEMAS, TensorInfo, infer_net, make_argument

Params = MutableMapping[str, np.ndarray]
Pass = Callable[[NetDef, Params], NetDef]

__all__ = [
    "DEFAULT_PASSES",
    "channels_last",
    "fold_batchnorm",
    "fold_bias_add",
    "fuse_conv_activation",
    "has_kernels",
    "optimize",
]


def _args(op: OperatorDef) -> dict:
    return SCHEMAS.get(op.type).parse_args(op.arg)


def _fresh(params: Params, net: NetDef, base: str, suffix: str = "_folded") -> str:
    taken = set(params) | {n for op in net.op for n in (*op.input, *op.output)}
    name, k = f"{base}{suffix}", 1
    while name in taken:
        k += 1
        name = f"{base}{suffix}{k}"
    return name


def _channel_axis(op: OperatorDef, args: dict) -> int:
    """The output-channel axis of the weight: Conv [M, C/g, *K] (NCHW) or [M, *K, C/g] (NHWC) and FC
    [M, K] have it first; ConvTranspose [C, M/g, *K] has it second (NCHW) or last (NHWC)."""
    if op.type == "ConvTranspose":
        return 1 if args.get("order", "NCHW") == "NCHW" else -1
    return 0


def _single_use(net: NetDef, i: int) -> int | None:
    """The index of the only op reading op i's output 0 before anything rewrites that blob (an
    in-place successor such as SpatialBN(y) -> y counts), if the value is not a net output."""
    out = net.op[i].output[0]
    users = []
    for k in range(i + 1, len(net.op)):
        if out in net.op[k].input:
            users.append(k)
        if out in net.op[k].output:
            break
    else:
        if out in net.external_output:
            return None
    return users[0] if len(users) == 1 else None


def _with_ops(net: NetDef, ops: Iterable[OperatorDef]) -> NetDef:
    """A copy of ``net`` (name, device, external inputs and outputs, ...) with ``ops``."""
    new = NetDef()
    new.CopyFrom(net)
    del new.op[:]
    new.op.extend(ops)
    return new


def _rebuild(net: NetDef, replace: dict[int, OperatorDef | None]) -> NetDef:
    """``net`` with op i replaced by ``replace[i]`` (dropped where that is None)."""
    ops = (replace.get(i, op) for i, op in enumerate(net.op))
    return _with_ops(net, (op for op in ops if op is not None))


def _fold_into(
    net: NetDef, params: Params, i: int, scale: np.ndarray | None, shift: np.ndarray, out: str
) -> OperatorDef | None:
    """Op i with its weight scaled per output channel by ``scale`` and ``shift`` added to its bias,
    writing ``out``; None if its weight or bias is not a known parameter."""
    op = net.op[i]
    args = _args(op)
    if len(op.input) < 2 or op.input[1] not in params:
        return None
    w = params[op.input[1]]
    if len(op.input) > 2 and op.input[2] not in params:
        return None
    axis = _channel_axis(op, args)
    if op.type == "ConvTranspose" and int(args.get("group", 1)) != 1:
        return None  # its output channels are split over the groups of the weight's axis 1
    m = w.shape[axis]
    if shift.size != m or (scale is not None and scale.size != m):
        return None
    wt = w.dtype
    b = params[op.input[2]].astype(np.float64) if len(op.input) > 2 else np.zeros(m)
    new = OperatorDef()
    new.CopyFrom(op)
    if scale is not None:
        shape = [1] * w.ndim
        shape[axis] = m
        w_name = _fresh(params, net, op.input[1])
        params[w_name] = (w.astype(np.float64) * scale.reshape(shape)).astype(wt)
        new.input[1] = w_name
        b = b * scale
    b_name = _fresh(params, net, op.input[2] if len(op.input) > 2 else f"{op.output[0]}_b")
    params[b_name] = (b + shift).astype(wt)
    if len(new.input) > 2:
        new.input[2] = b_name
    else:
        new.input.append(b_name)
    new.output[0] = out
    return new


_FOLDABLE = ("Conv", "ConvTranspose", "FC")


def fold_batchnorm(net: NetDef, params: Params) -> NetDef:
    replace: dict[int, OperatorDef | None] = {}
    for i, op in enumerate(net.op):
        if op.type not in _FOLDABLE or i in replace:
            continue
        j = _single_use(net, i)
        if j is None or net.op[j].type != "SpatialBN" or len(net.op[j].output) != 1:
            continue
        bn = net.op[j]
        bn_args = _args(bn)
        if not bn_args.get("is_test") or bn.input[0] != op.output[0]:
            continue
        if op.type != "FC" and bn_args["order"] != _args(op).get("order", "NCHW"):
            continue
        if not all(n in params for n in bn.input[1:5]):
            continue
        gamma, beta, mean, var = (params[n].astype(np.float64).ravel() for n in bn.input[1:5])
        s = gamma / np.sqrt(var + float(bn_args["epsilon"]))
        folded = _fold_into(net, params, i, s, beta - mean * s, bn.output[0])
        if folded is not None:
            replace[i], replace[j] = folded, None
    return _rebuild(net, replace) if replace else net


def _is_channel_bias(b: np.ndarray, w: np.ndarray, op: OperatorDef, args: dict) -> bool:
    """Whether ``b`` added to op's output is a per-output-channel bias: [M] or [1, M] for FC and
    NHWC (channels last), [M, 1, .., 1] or [1, M, 1, .., 1] for NCHW (one 1 per spatial axis)."""
    m = w.shape[0]
    if op.type == "FC" or args.get("order", "NCHW") == "NHWC":
        return b.shape in ((m,), (1, m)) or b.shape == (1,) * (w.ndim - 1) + (m,)
    ones = (1,) * (w.ndim - 2)
    return b.shape in ((m, *ones), (1, m, *ones))


def fold_bias_add(net: NetDef, params: Params) -> NetDef:
    replace: dict[int, OperatorDef | None] = {}
    for i, op in enumerate(net.op):
        if op.type not in ("Conv", "FC") or len(op.input) != 2 or i in replace:
            continue
        j = _single_use(net, i)
        if j is None or net.op[j].type != "Add":
            continue
        add = net.op[j]
        other = add.input[1] if add.input[0] == op.output[0] else add.input[0]
        if other == op.output[0] or other not in params or _args(add).get("broadcast"):
            continue
        b, w = params[other], params.get(op.input[1])
        if w is None or b.dtype != w.dtype or not _is_channel_bias(b, w, op, _args(op)):
            continue
        folded = _fold_into(net, params, i, None, b.reshape(-1).astype(np.float64), add.output[0])
        if folded is not None:
            replace[i], replace[j] = folded, None
    return _rebuild(net, replace) if replace else net


# -- Conv + residual + activation fusion ------------------------------------------------------------


def has_kernels(backend: str, ops: Sequence[str]) -> bool:
    """Whether ``backend`` has a kernel (any engine) for every op type in ``ops``."""
    kernels = registry().kernels
    return all(kernels.engines(backend, op) for op in ops)


def _op_backend(net: NetDef, op: OperatorDef) -> str | None:
    """The backend the op runs on (its device, else the net's, else cpu); None if none serves it."""
    opt = op.device_option if op.HasField("device_option") else net.device_option
    try:
        return registry().backend_for_type(opt.device_type).name
    except KaffaError:
        return None


def _same_shape(a: TensorInfo, b: TensorInfo, b_is_param: bool) -> bool:
    """Whether adding b to a cannot broadcast, as far as the shapes are known. Both unknown (both
    computed from the net's inputs) is taken as the same shape; one known and the other not, or a
    known 1 facing an unknown dim, might broadcast; a parameter Z needs a fully known match."""
    if a.shape is None or b.shape is None:
        return a.shape is None and b.shape is None
    if len(a.shape) != len(b.shape):
        return False
    if b_is_param:
        return a.shape == b.shape
    for x, y in zip(a.shape, b.shape):
        if x is not None and y is not None:
            if x != y:
                return False
        elif (x if x is not None else y) == 1:
            return False
    return True


def _residual(net: NetDef, j: int, y: str, params: Params, infos: dict[str, TensorInfo]) -> str | None:
    """Z when op j is a plain same-shape Add(y, Z) / Add(Z, y) / Sum(y, Z), else None."""
    op = net.op[j]
    if op.type not in ("Add", "Sum") or len(op.input) != 2 or len(op.output) != 1:
        return None
    if op.type == "Add" and (_args(op)["broadcast"] or any(a.name in ("axis", "axis_str") for a in op.arg)):
        return None
    if list(op.input).count(y) != 1:
        return None
    z = op.input[1] if op.input[0] == y else op.input[0]
    if op.type == "Add" and not _same_shape(
        infos.get(y, TensorInfo()), infos.get(z, TensorInfo()), z in params
    ):
        return None
    return z


def _activation(op: OperatorDef, y: str) -> dict | None:
    """FusedConv's activation arguments for a Relu(y) / Clip(y), else None."""
    if op.type not in ("Relu", "Clip") or list(op.input) != [y] or len(op.output) != 1:
        return None
    if op.type == "Relu":
        return {"activation": "Relu"}
    a = _args(op)
    return {"activation": "Clip", "min": float(a["min"]), "max": float(a["max"])}


def _rewritten(net: NetDef, names: set[str], lo: int, hi: int, skip: set[int]) -> bool:
    """Whether an op in (lo, hi], other than those in ``skip``, writes one of ``names``."""
    return any(k not in skip and names & set(net.op[k].output) for k in range(lo + 1, hi + 1))


def _chain_ok(net: NetDef, chain: list[int], z: str | None) -> bool:
    """Whether the FusedConv for ``chain`` (Conv, [Add], [activation]) can take its last op's place:
    one device, and the Conv's inputs (and Z) still hold, there, what the Conv (and Add) read."""
    conv, last = net.op[chain[0]], chain[-1]
    if any(net.op[k].device_option != conv.device_option for k in chain[1:]):
        return False  # each op stays where it was put
    ins, skip = set(conv.input), set(chain)
    if net.op[last].output[0] in ins or _rewritten(net, ins, chain[0], last, skip):
        return False  # only Z may be overwritten in place by the fused output
    return z is None or not _rewritten(net, {z}, chain[1], last, skip)


def _fused(
    net: NetDef, params: Params, chain: list[int], z: str | None, act: dict | None
) -> OperatorDef | None:
    """The FusedConv for ``chain``, or None when a missing bias cannot be sized."""
    conv = net.op[chain[0]]
    fused = OperatorDef()
    fused.CopyFrom(conv)
    fused.type = "FusedConv"
    fused.output[0] = net.op[chain[-1]].output[0]
    if z is not None:
        if len(conv.input) == 2:  # Z sits after the bias: give the Conv a zero one
            w = params.get(conv.input[1])
            if w is None:
                return None
            b_name = _fresh(params, net, f"{conv.output[0]}_b", "_zero")
            params[b_name] = np.zeros(w.shape[0], w.dtype)
            fused.input.append(b_name)
        fused.input.append(z)
    for key, value in (act or {}).items():
        fused.arg.append(make_argument(key, value))
    return fused


def fuse_conv_activation(net: NetDef, params: Params) -> NetDef:
    replace: dict[int, OperatorDef | None] = {}
    infos: dict[str, TensorInfo] | None = None
    kernel_for: dict[str | None, bool] = {}
    for i, conv in enumerate(net.op):
        if conv.type != "Conv" or i in replace or len(conv.output) != 1:
            continue
        backend = _op_backend(net, conv)
        if backend not in kernel_for:
            kernel_for[backend] = backend is not None and has_kernels(backend, ("FusedConv",))
        if not kernel_for[backend]:
            continue
        chain, z, act, y = [i], None, None, conv.output[0]
        j = _single_use(net, i)
        if j is not None and j not in replace and net.op[j].type in ("Add", "Sum"):
            if infos is None:
                infos = infer_net(net.op, {n: TensorInfo.of(v) for n, v in params.items()})
            z = _residual(net, j, y, params, infos)
            if z is not None:
                chain.append(j)
                y = net.op[j].output[0]
                j = _single_use(net, j)
        if j is not None and j not in replace:
            act = _activation(net.op[j], y)
            if act is not None:
                chain.append(j)
        if act is not None and len(chain) == 3 and not _chain_ok(net, chain, z):
            chain.pop()  # Conv + Add alone may still fuse at the Add's place
            act = None
        if len(chain) == 1 or not _chain_ok(net, chain, z):
            continue
        fused = _fused(net, params, chain, z, act)
        if fused is None:
            continue
        for k in chain:
            replace[k] = None
        replace[chain[-1]] = fused
    return _rebuild(net, replace) if replace else net


fuse_conv_activation.needs_kernels = ("FusedConv",)  # type: ignore[attr-defined]

# -- channels-last layout ---------------------------------------------------------------------------

_NHWC_OPS = ("Conv", "FusedConv", "MaxPool", "AveragePool")
_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _has_subnets(net: NetDef) -> bool:
    return any(a.HasField("n") or len(a.nets) for op in net.op for a in op.arg)


def _nhwc_ok(op: OperatorDef, params: Params, infos: dict[str, TensorInfo], twin: dict[str, str]) -> bool:
    """Whether op is a 2-D NCHW Conv, FusedConv or pool this pass can turn NHWC. A Conv's filter
    must be a known 4-D parameter (it is transposed here; X's rank must match it, so X may be a
    data input of unknown shape); a pool's X must be known 4-D or come from a rewritten op."""
    if op.type not in _NHWC_OPS or len(op.output) != 1 or _args(op).get("order") != "NCHW":
        return False
    if op.type in ("Conv", "FusedConv"):
        w = params.get(op.input[1]) if len(op.input) > 1 else None
        return w is not None and w.ndim == 4
    return op.input[0] in twin or infos.get(op.input[0], TensorInfo()).rank == 4


def channels_last(net: NetDef, params: Params) -> NetDef:
    """Run 2-D Conv, FusedConv, MaxPool and AveragePool channels-last (order NHWC) on a backend whose
    fast Conv reads NHWC (``Backend.conv_order``), with Transposes only where a value crosses
    between NCHW ops and NHWC ones. Filters are transposed here, [M, C/g, kh, kw] to [M, kh, kw, C/g].

    Each rewritten op writes ``<out>_nhwc`` and a Transpose restores ``<out>``; that Transpose is
    dropped when nothing reads ``<out>`` before it is written again and it is no net output (a net
    that declares no outputs keeps every final value). An op reading a value another rewritten op
    made takes its NHWC twin, which is valid until the value is written again; other inputs get a
    Transpose in front, shared by later readers."""
    if _has_subnets(net):
        return net  # a subnet could read a value whose NCHW form was dropped
    infos = infer_net(net.op, {n: TensorInfo.of(v) for n, v in params.items()})
    if not any(op.type in ("Conv", "FusedConv") and _nhwc_ok(op, params, infos, {}) for op in net.op):
        return net
    taken = set(params) | {n for op in net.op for n in (*op.input, *op.output)}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}{k}"
        taken.add(name)
        return name

    def transpose(src: str, dst: str, axes: tuple[int, ...], like: OperatorDef) -> OperatorDef:
        """A layout Transpose placed on the device of the op it serves."""
        t = OperatorDef(type="Transpose", input=[src], output=[dst])
        t.arg.append(make_argument("axes", list(axes)))
        if like.HasField("device_option"):
            t.device_option.CopyFrom(like.device_option)
        return t

    ops: list[OperatorDef] = []
    twin: dict[str, str] = {}  # NCHW value -> its NHWC twin, while both hold the same data
    filters: dict[str, str] = {}
    restores: list[int] = []  # indices in ops of the Transposes back to NCHW
    for op in net.op:
        if not _nhwc_ok(op, params, infos, twin):
            ops.append(op)
            for o in op.output:
                twin.pop(o, None)
            continue
        new = OperatorDef()
        new.CopyFrom(op)
        for a in new.arg:
            if a.name == "order":
                a.s = b"NHWC"
        if not any(a.name == "order" for a in new.arg):
            new.arg.append(make_argument("order", "NHWC"))
        data = [0, 3] if op.type == "FusedConv" and len(op.input) > 3 else [0]
        for k in data:
            name = op.input[k]
            if name not in twin:
                twin[name] = fresh(f"{name}_nhwc")
                ops.append(transpose(name, twin[name], _TO_NHWC, op))
            new.input[k] = twin[name]
        if op.type in ("Conv", "FusedConv"):
            w = op.input[1]
            if w not in filters:
                filters[w] = fresh(f"{w}_nhwc")
                params[filters[w]] = np.ascontiguousarray(params[w].transpose(_TO_NHWC))
            new.input[1] = filters[w]
        out = op.output[0]
        new.output[0] = fresh(f"{out}_nhwc")
        ops.append(new)
        restores.append(len(ops))
        ops.append(transpose(new.output[0], out, _TO_NCHW, op))
        twin[out] = new.output[0]
    keep = [True] * len(ops)
    for i in restores:
        out = ops[i].output[0]
        needed = True
        for later in ops[i + 1 :]:
            if out in later.input:
                break
            if out in later.output:
                needed = False
                break
        else:  # the final value: a net that declares its outputs reads only those
            needed = out in net.external_output or not net.external_output
        keep[i] = needed
    return _with_ops(net, (op for op, k in zip(ops, keep) if k))


channels_last.wants_conv_order = "NHWC"  # type: ignore[attr-defined]

DEFAULT_PASSES: tuple[Pass, ...] = (fold_batchnorm, fold_bias_add, fuse_conv_activation, channels_last)


def optimize(
    net: NetDef, params: Params, passes: Sequence[Pass] = DEFAULT_PASSES, backend: str | None = None
) -> NetDef:
    """Run ``passes`` in order; parameters they create are added to ``params``. With ``backend``,
    a pass whose ``needs_kernels`` that backend lacks is skipped, and so is a layout pass
    (``wants_conv_order``) the backend's ``conv_order`` does not ask for. Without a backend, layout
    passes are skipped (NCHW is right everywhere)."""
    for p in passes:
        needed = getattr(p, "needs_kernels", ())
        if backend is not None and needed and not has_kernels(backend, needed):
            continue
        order = getattr(p, "wants_conv_order", None)
        if order is not None and (backend is None or _conv_order(backend) != order):
            continue
        net = p(net, params)
    return net


def _conv_order(backend: str) -> str:
    try:
        return registry().backends[backend].conv_order
    except KeyError:
        return "NCHW"

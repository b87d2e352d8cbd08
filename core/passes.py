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
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence

import numpy as np

from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import SCHEMAS

Params = MutableMapping[str, np.ndarray]
Pass = Callable[[NetDef, Params], NetDef]

__all__ = ["DEFAULT_PASSES", "fold_batchnorm", "fold_bias_add", "optimize"]


def _args(op: OperatorDef) -> dict:
    return SCHEMAS.get(op.type).parse_args(op.arg)


def _fresh(params: Params, net: NetDef, base: str) -> str:
    taken = set(params) | {n for op in net.op for n in (*op.input, *op.output)}
    name, k = f"{base}_folded", 1
    while name in taken:
        k += 1
        name = f"{base}_folded{k}"
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


def _rebuild(net: NetDef, replace: dict[int, OperatorDef | None]) -> NetDef:
    new = NetDef()
    new.CopyFrom(net)
    del new.op[:]
    for i, op in enumerate(net.op):
        if i in replace:
            if replace[i] is not None:
                new.op.append(replace[i])
        else:
            new.op.append(op)
    return new


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


DEFAULT_PASSES: tuple[Pass, ...] = (fold_batchnorm, fold_bias_add)


def optimize(net: NetDef, params: Params, passes: Sequence[Pass] = DEFAULT_PASSES) -> NetDef:
    """Run ``passes`` in order; parameters they create are added to ``params``."""
    for p in passes:
        net = p(net, params)
    return net

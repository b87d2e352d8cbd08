"""float64 references for the index family (see kaffa.ops.index).

Written with explicit loops over np.ndindex where that is the clearest statement of the op."""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference


def _norm(i, dim):
    i = int(i)
    return i + dim if i < 0 else i


def _int(v):
    return int(np.asarray(v).reshape(()))


def _arg(largest):
    def ref(args, x):
        axis = args["axis"] % x.ndim
        xt = np.moveaxis(x, axis, -1)
        out = np.zeros(xt.shape[:-1], dtype=np.int64)
        for pos in np.ndindex(*xt.shape[:-1]):
            row = list(xt[pos])
            best = 0
            for j, v in enumerate(row):
                better = v > row[best] if largest else v < row[best]
                if better or (args["select_last_index"] and v == row[best]):
                    best = j
            out[pos] = best
        if args["keepdims"]:
            out = np.expand_dims(out, axis)
        return (out,)

    return ref


reference("ArgMax")(_arg(True))
reference("ArgMin")(_arg(False))


@reference("TopK")
def top_k(args, x, k=None, *, num_outputs=2):
    k = args["k"] if k is None else _int(k)
    axis = args["axis"] % x.ndim
    xt = np.moveaxis(x, axis, -1)
    values = np.zeros((*xt.shape[:-1], k), dtype=x.dtype)
    indices = np.zeros((*xt.shape[:-1], k), dtype=np.int64)
    for pos in np.ndindex(*xt.shape[:-1]):
        row = list(xt[pos])
        # Python's sort is stable: equal values keep index order.
        order = sorted(range(len(row)), key=lambda j: -row[j] if args["largest"] else row[j])[:k]
        values[pos] = [row[j] for j in order]
        indices[pos] = order
    return (np.moveaxis(values, -1, axis), np.moveaxis(indices, -1, axis))[:num_outputs]


@reference("GatherElements")
def gather_elements(args, data, idx):
    axis = args["axis"] % data.ndim
    out = np.zeros(idx.shape, dtype=data.dtype)
    for pos in np.ndindex(*idx.shape):
        src = list(pos)
        src[axis] = _norm(idx[pos], data.shape[axis])
        out[pos] = data[tuple(src)]
    return (out,)


def _combine(old, new, reduction):
    if reduction == "none":
        return new
    if reduction == "add":
        return old + new
    if reduction == "mul":
        return old * new
    if reduction == "max":
        return max(old, new)
    return min(old, new)


@reference("ScatterElements")
def scatter_elements(args, data, idx, upd):
    axis = args["axis"] % data.ndim
    out = data.copy()
    for pos in np.ndindex(*idx.shape):
        dst = list(pos)
        dst[axis] = _norm(idx[pos], data.shape[axis])
        out[tuple(dst)] = _combine(out[tuple(dst)], upd[pos], args["reduction"])
    return (out,)


def _nd_targets(data, idx, b):
    """(position in indices.shape[:-1], index tuple into data) pairs."""
    k = idx.shape[-1]
    for pos in np.ndindex(*idx.shape[:-1]):
        where = tuple(pos[:b]) + tuple(_norm(idx[pos][j], data.shape[b + j]) for j in range(k))
        yield pos, where


@reference("GatherND")
def gather_nd(args, data, idx):
    b = args["batch_dims"]
    k = idx.shape[-1]
    out = np.zeros((*idx.shape[:-1], *data.shape[b + k :]), dtype=data.dtype)
    for pos, where in _nd_targets(data, idx, b):
        out[pos] = data[where]
    return (out,)


@reference("ScatterND")
def scatter_nd(args, data, idx, upd):
    out = data.copy()
    for pos, where in _nd_targets(data, idx, args["batch_dims"]):
        old = out[where]
        if args["reduction"] == "max":
            out[where] = np.maximum(old, upd[pos])
        elif args["reduction"] == "min":
            out[where] = np.minimum(old, upd[pos])
        else:
            out[where] = _combine(old, upd[pos], args["reduction"])
    return (out,)


@reference("Trilu")
def trilu(args, x, k=None):
    k = args["k"] if k is None else _int(k)
    out = x.copy()
    for pos in np.ndindex(*x.shape):
        i, j = pos[-2], pos[-1]
        keep = j - i >= k if args["upper"] else j - i <= k
        if not keep:
            out[pos] = 0
    return (out,)


@reference("OneHot")
def one_hot(args, idx, depth, values):
    depth = int(np.asarray(depth).reshape(()))
    axis = args["axis"] % (idx.ndim + 1)
    out_shape = (*idx.shape[:axis], depth, *idx.shape[axis:])
    out = np.full(out_shape, values[0], dtype=values.dtype)
    for pos in np.ndindex(*idx.shape):
        c = int(idx[pos])
        c = c + depth if c < 0 else c
        if 0 <= c < depth:
            out[(*pos[:axis], c, *pos[axis:])] = values[1]
    return (out,)


@reference("Range")
def range_(args, start, limit, delta):
    s, lim, d = (np.asarray(v).reshape(()).item() for v in (start, limit, delta))
    n = max(math.ceil((lim - s) / d), 0)
    return (np.array([s + i * d for i in range(n)], dtype=np.asarray(start).dtype),)


def _axis(args, x, axis_in):
    axis = args["axis"] if axis_in is None else _int(axis_in)
    return axis % x.ndim


def _cum_members(n, i, exclusive, reverse):
    """The positions j whose values go into output i."""
    if reverse:
        return range(i + 1 if exclusive else i, n)
    return range(0, i if exclusive else i + 1)


def _cum(product):
    def ref(args, x, axis_in=None):
        axis = _axis(args, x, axis_in)
        xt = np.moveaxis(x, axis, -1)
        out = np.zeros_like(xt)
        n = xt.shape[-1]
        for pos in np.ndindex(*xt.shape[:-1]):
            for i in range(n):
                members = [xt[pos][j] for j in _cum_members(n, i, args["exclusive"], args["reverse"])]
                out[(*pos, i)] = math.prod(members) if product else sum(members)
        return (np.moveaxis(out, -1, axis),)

    return ref


reference("CumSum")(_cum(False))
reference("CumProd")(_cum(True))


@reference("CumProdGradient")
def cum_prod_gradient(args, x, y, dy, axis_in=None):
    """dx_i = sum over outputs j that contain x_i of dy_j * (product of y_j's other factors)."""
    axis = _axis(args, x, axis_in)
    xt, dyt = np.moveaxis(x, axis, -1), np.moveaxis(dy, axis, -1)
    dx = np.zeros_like(xt)
    n = xt.shape[-1]
    for pos in np.ndindex(*xt.shape[:-1]):
        for j in range(n):
            members = list(_cum_members(n, j, args["exclusive"], args["reverse"]))
            for i in members:
                others = math.prod(xt[pos][m] for m in members if m != i)
                dx[(*pos, i)] += dyt[(*pos, j)] * others
    return (np.moveaxis(dx, -1, axis),)


@reference("EyeLike")
def eye_like(args, x):
    dtype = args["dtype"] or x.dtype
    out = np.zeros(x.shape, dtype=np.float64)
    for i, j in np.ndindex(*x.shape):
        if j - i == args["k"]:
            out[i, j] = 1
    return (out.astype(dtype),)


@reference("ConstantOfShape")
def constant_of_shape(args, shape):
    return (np.full([int(d) for d in shape], args["value"], dtype=np.float64).astype(args["dtype"]),)


@reference("NonZero")
def non_zero(args, x):
    found = [pos for pos in np.ndindex(*x.shape) if x[pos] != 0]
    return (np.array(found, dtype=np.int64).reshape(len(found), x.ndim).T,)


def _selected(cond):
    return [i for i, c in enumerate(cond) if c]


@reference("Compress")
def compress(args, x, cond):
    if args["axis"] is None:
        flat = x.reshape(-1)
        return (np.array([flat[i] for i in _selected(cond)], dtype=x.dtype),)
    axis = args["axis"] % x.ndim
    return (np.take(x, np.array(_selected(cond), dtype=np.int64), axis=axis),)


@reference("CompressGradient")
def compress_gradient(args, x, cond, dy):
    dx = np.zeros(x.shape, dtype=dy.dtype)
    sel = _selected(cond)
    if args["axis"] is None:
        flat = dx.reshape(-1)
        for k, i in enumerate(sel):
            flat[i] = dy[k]
        return (flat.reshape(x.shape),)
    axis = args["axis"] % x.ndim
    for k, i in enumerate(sel):
        index = [slice(None)] * x.ndim
        src = list(index)
        index[axis], src[axis] = i, k
        dx[tuple(index)] = dy[tuple(src)]
    return (dx,)


@reference("Hardmax")
def hardmax(args, x):
    axis = args["axis"] % x.ndim
    (idx,) = _arg(True)({"axis": axis, "keepdims": False, "select_last_index": False}, x)
    out = np.zeros_like(x)
    for pos in np.ndindex(*idx.shape):
        out[(*pos[:axis], idx[pos], *pos[axis:])] = 1
    return (out,)


@reference("ReverseSequence")
def reverse_sequence(args, x, lens):
    b_ax, t_ax = args["batch_axis"], args["time_axis"]
    out = x.copy()
    for pos in np.ndindex(*x.shape):
        b, t = pos[b_ax], pos[t_ax]
        n = int(lens[b])
        if t < n:
            src = list(pos)
            src[t_ax] = n - 1 - t
            out[pos] = x[tuple(src)]
    return (out,)

"""cpu kernels for the index family (see kaffa.ops.index)."""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import ALL_NUMERIC_TYPES, ALL_TYPES, FLOAT_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")

INT64 = np.dtype(np.int64)
F64 = np.dtype(np.float64)


def _contiguous(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else x.copy()


def _scalar_int(op: str, what: str, v: np.ndarray) -> int:
    check(
        v.size == 1 and v.ndim <= 1 and v.dtype.kind in "iu",
        f"{op}: {what} must be one int, got {v.dtype}{list(v.shape)}",
    )
    return int(v.reshape(()))


def _norm_indices(op: str, idx: np.ndarray, dim: int, what: str = "indices") -> np.ndarray:
    """int64 indices with negatives counted from the end; all must fall in [0, dim)."""
    idx = idx.astype(INT64, copy=False)
    idx = np.where(idx < 0, idx + dim, idx)
    check(
        idx.size == 0 or (int(idx.min()) >= 0 and int(idx.max()) < dim),
        f"{op}: {what} out of range [-{dim}, {dim})",
    )
    return idx


# -- ArgMax / ArgMin ----------------------------------------------------------------------------------
def _arg_reduce(fn):
    def build(ctx: KernelContext) -> RunFn:
        op, axis, keep = ctx.op_type, int(ctx.args["axis"]), bool(ctx.args["keepdims"])
        last = bool(ctx.args["select_last_index"])

        def run(x: np.ndarray) -> tuple[np.ndarray]:
            check(x.ndim >= 1, f"{op}: the input is a scalar; it needs an axis")
            ax = norm_axis(axis, x.ndim, op)
            check(x.shape[ax] > 0, f"{op}: axis {ax} of input shape {list(x.shape)} is empty")
            if last:
                y = x.shape[ax] - 1 - fn(np.flip(x, ax), axis=ax)
            else:
                y = fn(x, axis=ax)
            y = y.astype(INT64)
            return (np.expand_dims(y, ax) if keep else y,)

        return run

    return build


table.kernel("ArgMax", dtypes=NUMERIC_TYPES)(_arg_reduce(np.argmax))
table.kernel("ArgMin", dtypes=NUMERIC_TYPES)(_arg_reduce(np.argmin))


# -- TopK ---------------------------------------------------------------------------------------------
@table.kernel("TopK", dtypes=ALL_NUMERIC_TYPES)
def top_k(ctx: KernelContext) -> RunFn:
    arg_k, axis, largest = int(ctx.args["k"]), int(ctx.args["axis"]), bool(ctx.args["largest"])
    two = ctx.num_outputs > 1

    def run(x: np.ndarray, k_in: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        k = arg_k if k_in is None else _scalar_int("TopK", "K", k_in)
        check(x.ndim >= 1, "TopK: the input is a scalar; it needs an axis")
        ax = norm_axis(axis, x.ndim, "TopK")
        check(0 <= k <= x.shape[ax], f"TopK: k={k} is out of range for axis {ax} of shape {list(x.shape)}")
        # Stable sort: among equal values the lower index comes first.
        # Descending by an order-reversing key: ~x for integers (-x overflows unsigned and the minimum).
        order = np.argsort((~x if x.dtype.kind in "iu" else -x) if largest else x, axis=ax, kind="stable")
        idx = np.take(order, np.arange(k), axis=ax)
        values = _contiguous(np.take_along_axis(x, idx, axis=ax))
        return (values, _contiguous(idx.astype(INT64))) if two else (values,)

    return run


# -- GatherElements / ScatterElements ------------------------------------------------------------------
def _elements_index(op: str, data: np.ndarray, idx: np.ndarray, ax: int) -> tuple[np.ndarray, ...]:
    """Full index tuple addressing data at idx along ax and at the positions elsewhere."""
    grid = list(np.indices(idx.shape, sparse=True))
    grid[ax] = _norm_indices(op, idx, data.shape[ax])
    return tuple(grid)


def _check_elements(op: str, data: np.ndarray, idx: np.ndarray, axis: int) -> int:
    check(
        data.ndim == idx.ndim and data.ndim >= 1,
        f"{op}: data shape {list(data.shape)} and indices shape {list(idx.shape)} need one rank (>= 1)",
    )
    ax = norm_axis(axis, data.ndim, op)
    check(
        all(i <= d for k, (i, d) in enumerate(zip(idx.shape, data.shape)) if k != ax),
        f"{op}: indices shape {list(idx.shape)} exceeds data shape {list(data.shape)} off axis {ax}",
    )
    return ax


@table.kernel("GatherElements", dtypes=ALL_TYPES)
def gather_elements(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(data: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray]:
        ax = _check_elements("GatherElements", data, idx, axis)
        return (_contiguous(data[_elements_index("GatherElements", data, idx, ax)]),)

    return run


_UFUNC_AT = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_into(out: np.ndarray, where: tuple[np.ndarray, ...], upd: np.ndarray, reduction: str) -> None:
    if reduction == "none":
        out[where] = upd
    elif out.dtype == np.bool_ and reduction in ("add", "mul"):
        (np.logical_or if reduction == "add" else np.logical_and).at(out, where, upd)
    else:
        _UFUNC_AT[reduction].at(out, where, upd)


@table.kernel("ScatterElements", dtypes=ALL_TYPES)
def scatter_elements(ctx: KernelContext) -> RunFn:
    axis, reduction = int(ctx.args["axis"]), ctx.args["reduction"]

    def run(data: np.ndarray, idx: np.ndarray, upd: np.ndarray) -> tuple[np.ndarray]:
        ax = _check_elements("ScatterElements", data, idx, axis)
        check(
            upd.shape == idx.shape,
            f"ScatterElements: updates shape {list(upd.shape)} differs from indices shape {list(idx.shape)}",
        )
        out = data.copy()
        _scatter_into(
            out, _elements_index("ScatterElements", data, idx, ax), upd.astype(data.dtype), reduction
        )
        return (out,)

    return run


# -- GatherND / ScatterND -----------------------------------------------------------------------------
def _nd_index(op: str, data: np.ndarray, idx: np.ndarray, b: int) -> tuple[tuple[np.ndarray, ...], tuple]:
    """(index tuple into data, the shape of one gathered entry's leading part) for GatherND/ScatterND.
    The index tuple addresses data with leading shape idx.shape[:-1]."""
    check(idx.ndim >= 1, f"{op}: indices is a scalar; it needs a last dim")
    check(
        0 <= b < min(data.ndim, idx.ndim),
        f"{op}: batch_dims {b} needs data and indices of rank > {b}, got shapes {list(data.shape)} "
        f"and {list(idx.shape)}",
    )
    check(
        data.shape[:b] == idx.shape[:b],
        f"{op}: the first {b} dims of data shape {list(data.shape)} and indices shape "
        f"{list(idx.shape)} differ",
    )
    k = idx.shape[-1]
    check(1 <= k <= data.ndim - b, f"{op}: indices' last dim {k} must be in [1, {data.ndim - b}]")
    lead = idx.shape[:-1]
    grid = np.indices(lead, sparse=True)
    parts: list[np.ndarray] = [grid[i] for i in range(b)]
    for j in range(k):
        parts.append(_norm_indices(op, idx[..., j], data.shape[b + j]))
    return tuple(parts), lead


@table.kernel("GatherND", dtypes=ALL_TYPES)
def gather_nd(ctx: KernelContext) -> RunFn:
    b = int(ctx.args["batch_dims"])

    def run(data: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray]:
        where, _ = _nd_index("GatherND", data, idx, b)
        return (_contiguous(data[where]),)

    return run


@table.kernel("ScatterND", dtypes=ALL_TYPES)
def scatter_nd(ctx: KernelContext) -> RunFn:
    b, reduction = int(ctx.args["batch_dims"]), ctx.args["reduction"]

    def run(data: np.ndarray, idx: np.ndarray, upd: np.ndarray) -> tuple[np.ndarray]:
        where, lead = _nd_index("ScatterND", data, idx, b)
        want = (*lead, *data.shape[b + idx.shape[-1] :])
        check(upd.shape == want, f"ScatterND: updates shape {list(upd.shape)}, want {list(want)}")
        out = data.copy()
        _scatter_into(out, where, upd.astype(data.dtype), reduction)
        return (out,)

    return run


# -- Trilu ----------------------------------------------------------------------------------------------
@table.kernel("Trilu", dtypes=ALL_TYPES)
def trilu(ctx: KernelContext) -> RunFn:
    upper, arg_k = bool(ctx.args["upper"]), int(ctx.args["k"])

    def run(x: np.ndarray, k_in: np.ndarray | None = None) -> tuple[np.ndarray]:
        k = arg_k if k_in is None else _scalar_int("Trilu", "k", k_in)
        check(x.ndim >= 2, f"Trilu: input shape {list(x.shape)} needs rank >= 2")
        return (np.triu(x, k) if upper else np.tril(x, k),)

    return run


# -- OneHot -------------------------------------------------------------------------------------------
@table.kernel("OneHot", dtypes=ALL_TYPES)
def one_hot(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(idx: np.ndarray, depth_in: np.ndarray, values: np.ndarray) -> tuple[np.ndarray]:
        check(depth_in.size == 1, f"OneHot: depth must hold one value, got shape {list(depth_in.shape)}")
        depth = int(depth_in.reshape(()).astype(np.float64))
        check(depth >= 1, f"OneHot: depth must be >= 1, got {depth}")
        check(values.shape == (2,), f"OneHot: values must have shape [2], got {list(values.shape)}")
        ax = norm_axis(axis, idx.ndim + 1, "OneHot")
        i = idx.astype(INT64)
        i = np.where(i < 0, i + depth, i)
        classes = np.arange(depth).reshape((depth,) + (1,) * (idx.ndim - ax))
        hot = np.expand_dims(i, ax) == classes
        return (np.where(hot, values[1], values[0]).astype(values.dtype),)

    return run


# -- Range ----------------------------------------------------------------------------------------------
@table.kernel("Range", dtypes=NUMERIC_TYPES)
def range_(ctx: KernelContext) -> RunFn:
    def run(start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray]:
        for v, what in ((start, "start"), (limit, "limit"), (delta, "delta")):
            check(v.size == 1, f"Range: {what} must be a scalar, got shape {list(v.shape)}")
        dtype = start.dtype
        if dtype.kind in "iu":
            s, lim, d = (int(v.reshape(())) for v in (start, limit, delta))
            check(d != 0, "Range: delta is 0")
            n = max(-((s - lim) // d), 0)
            return ((s + np.arange(n, dtype=INT64) * d).astype(dtype),)
        s, lim, d = (float(v.reshape(())) for v in (start, limit, delta))
        check(d != 0 and math.isfinite(d), f"Range: delta must be finite and non-zero, got {d}")
        n = max(math.ceil((lim - s) / d), 0)
        return ((s + np.arange(n, dtype=F64) * d).astype(dtype),)

    return run


# -- CumSum / CumProd -----------------------------------------------------------------------------------
def cumulate(x: np.ndarray, ax: int, exclusive: bool, reverse: bool, product: bool) -> np.ndarray:
    """Cumulative sum/product of x along ax in x's dtype (shared with the gradient kernel)."""
    if reverse:
        x = np.flip(x, ax)
    y = (np.cumprod if product else np.cumsum)(x, axis=ax, dtype=x.dtype)
    if exclusive and x.shape[ax] > 0:
        first = np.full((*x.shape[:ax], 1, *x.shape[ax + 1 :]), 1 if product else 0, dtype=x.dtype)
        y = np.concatenate([first, np.take(y, np.arange(x.shape[ax] - 1), axis=ax)], axis=ax)
    if reverse:
        y = np.flip(y, ax)
    return _contiguous(y)


def _cum_axis(op: str, arg_axis: int, x: np.ndarray, axis_in: np.ndarray | None) -> int:
    check(x.ndim >= 1, f"{op}: the input is a scalar; it needs an axis")
    axis = arg_axis if axis_in is None else _scalar_int(op, "axis", axis_in)
    return norm_axis(axis, x.ndim, op)


def _cum(product: bool):
    def build(ctx: KernelContext) -> RunFn:
        op, arg_axis = ctx.op_type, int(ctx.args["axis"])
        excl, rev = bool(ctx.args["exclusive"]), bool(ctx.args["reverse"])

        def run(x: np.ndarray, axis_in: np.ndarray | None = None) -> tuple[np.ndarray]:
            return (cumulate(x, _cum_axis(op, arg_axis, x, axis_in), excl, rev, product),)

        return run

    return build


table.kernel("CumSum", dtypes=NUMERIC_TYPES)(_cum(False))
table.kernel("CumProd", dtypes=NUMERIC_TYPES)(_cum(True))


@table.kernel("CumProdGradient", dtypes=FLOAT_TYPES)
def cum_prod_gradient(ctx: KernelContext) -> RunFn:
    arg_axis = int(ctx.args["axis"])
    excl, rev = bool(ctx.args["exclusive"]), bool(ctx.args["reverse"])

    def run(
        x: np.ndarray, y: np.ndarray, dy: np.ndarray, axis_in: np.ndarray | None = None
    ) -> tuple[np.ndarray]:
        ax = _cum_axis("CumProdGradient", arg_axis, x, axis_in)
        if np.all(x != 0):  # dx_i = sum over the y_j that hold x_i of dy_j * y_j / x_i
            return (cumulate(dy * y, ax, excl, not rev, False) / x,)
        # With zeros: for each i, the products with x_i replaced by 1.
        xt, dyt = np.moveaxis(x, ax, -1), np.moveaxis(dy, ax, -1)
        dx = np.zeros_like(xt)
        n = xt.shape[-1]
        for i in range(n):
            xi = xt.copy()
            xi[..., i] = 1
            yi = cumulate(xi, xi.ndim - 1, excl, rev, True)
            j = np.arange(n)
            holds = (j > i if not rev else j < i) if excl else (j >= i if not rev else j <= i)
            dx[..., i] = np.sum(dyt[..., holds] * yi[..., holds], axis=-1)
        return (_contiguous(np.moveaxis(dx, -1, ax)),)

    return run


# -- EyeLike, ConstantOfShape ----------------------------------------------------------------------------
@table.kernel("EyeLike", dtypes=ALL_TYPES)
def eye_like(ctx: KernelContext) -> RunFn:
    k, arg_dtype = int(ctx.args["k"]), ctx.args["dtype"]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        check(x.ndim == 2, f"EyeLike: input shape {list(x.shape)} must be 2-D")
        return (np.eye(x.shape[0], x.shape[1], k, dtype=np.dtype(arg_dtype or x.dtype)),)

    return run


@table.kernel("ConstantOfShape", dtypes=ALL_TYPES)
def constant_of_shape(ctx: KernelContext) -> RunFn:
    dtype = np.dtype(ctx.args["dtype"])
    value = np.asarray(ctx.args["value"], dtype=F64).astype(dtype)

    def run(shape: np.ndarray) -> tuple[np.ndarray]:
        check(
            shape.ndim == 1 and shape.dtype.kind in "iu",
            f"ConstantOfShape: shape must be a 1-D int tensor, got {shape.dtype}{list(shape.shape)}",
        )
        dims = tuple(int(d) for d in shape)
        check(all(d >= 0 for d in dims), f"ConstantOfShape: shape {list(dims)} has a negative dim")
        return (np.full(dims, value, dtype),)

    return run


# -- NonZero, Compress --------------------------------------------------------------------------------
@table.kernel("NonZero", dtypes=ALL_TYPES)
def non_zero(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim == 0:
            return (np.zeros((0, int(bool(x))), INT64),)
        return (np.array(np.nonzero(x), dtype=INT64).reshape(x.ndim, -1),)

    return run


def _compress_positions(op: str, cond: np.ndarray, dim: int) -> np.ndarray:
    check(
        cond.ndim == 1 and cond.dtype == np.bool_,
        f"{op}: condition must be 1-D bool, got {cond.dtype}{list(cond.shape)}",
    )
    pos = np.flatnonzero(cond)
    check(pos.size == 0 or int(pos[-1]) < dim, f"{op}: condition selects past the end ({dim} entries)")
    return pos


@table.kernel("Compress", dtypes=ALL_TYPES)
def compress(ctx: KernelContext) -> RunFn:
    axis = ctx.args["axis"]

    def run(x: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray]:
        if axis is None:
            flat = x.reshape(-1)
            return (flat[_compress_positions("Compress", cond, flat.size)],)
        check(x.ndim >= 1, "Compress: the input is a scalar; it needs an axis")
        ax = norm_axis(int(axis), x.ndim, "Compress")
        return (_contiguous(np.take(x, _compress_positions("Compress", cond, x.shape[ax]), axis=ax)),)

    return run


@table.kernel("CompressGradient", dtypes=FLOAT_TYPES)
def compress_gradient(ctx: KernelContext) -> RunFn:
    axis = ctx.args["axis"]

    def run(x: np.ndarray, cond: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros(x.shape, dy.dtype)
        if axis is None:
            dx.reshape(-1)[_compress_positions("CompressGradient", cond, dx.size)] = dy
            return (dx,)
        ax = norm_axis(int(axis), x.ndim, "CompressGradient")
        pos = _compress_positions("CompressGradient", cond, x.shape[ax])
        dx[(slice(None),) * ax + (pos,)] = dy
        return (dx,)

    return run


# -- Hardmax, ReverseSequence ---------------------------------------------------------------------------
@table.kernel("Hardmax", dtypes=NUMERIC_TYPES)
def hardmax(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        check(x.ndim >= 1, "Hardmax: the input is a scalar; it needs an axis")
        ax = norm_axis(axis, x.ndim, "Hardmax")
        y = np.zeros_like(x)
        if x.shape[ax] > 0 and x.size:
            np.put_along_axis(y, np.expand_dims(np.argmax(x, axis=ax), ax), 1, axis=ax)
        return (y,)

    return run


@table.kernel("ReverseSequence", dtypes=ALL_TYPES)
def reverse_sequence(ctx: KernelContext) -> RunFn:
    b_ax, t_ax = int(ctx.args["batch_axis"]), int(ctx.args["time_axis"])

    def run(x: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray]:
        check(x.ndim >= 2, f"ReverseSequence: input shape {list(x.shape)} needs rank >= 2")
        check(
            lens.ndim == 1 and lens.shape[0] == x.shape[b_ax] and lens.dtype.kind in "iu",
            f"ReverseSequence: sequence_lens {lens.dtype}{list(lens.shape)} does not match batch axis "
            f"{b_ax} of input shape {list(x.shape)}",
        )
        xt = np.moveaxis(x, (b_ax, t_ax), (0, 1))
        out = xt.copy()
        for b, n in enumerate(lens.tolist()):
            check(0 <= n <= xt.shape[1], f"ReverseSequence: sequence_lens[{b}] = {n} exceeds {xt.shape[1]}")
            out[b, :n] = xt[b, :n][::-1]
        return (_contiguous(np.moveaxis(out, (0, 1), (b_ax, t_ax))),)

    return run

"""float64 references for the sampling family (see kaffa.ops.sampling).

GridSample follows ONNX's reference one output point at a time: denormalize, pad the coordinate
(border clamps, reflection mirrors), then read taps with the index padded again. Every
discrete choice (rounding, floor, inside/outside) looks at the real part only, so the same
function runs on complex inputs and the gradients of GridSample and AffineGrid are taken by the
complex step (d f / d x_j = Im f(x + i h e_j) / h). Col2Im, DeformConv and the pooling pair are
plain loops over windows and taps. None of this shares code with the kernels.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from kaffa_conformance.reference import reference
from kaffa_conformance.reference.complex_step import vjp as _vjp

# -- GridSample ------------------------------------------------------------------------------------


def _reflect(v, lo: float, hi: float):
    """ONNX's _gs_reflect: mirror v at the nearer border until it lies in [lo, hi]."""
    span = hi - lo
    if v.real < lo:
        dist = lo - v
        flips = int(dist.real / span)
        rest = dist - flips * span
        return lo + rest if flips % 2 == 0 else hi - rest
    if v.real > hi:
        dist = v - hi
        flips = int(dist.real / span)
        rest = dist - flips * span
        return hi - rest if flips % 2 == 0 else lo + rest
    return v


def _cubic(t):
    a = -0.75
    return [
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
        ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
    ]


def _read(img: np.ndarray, cells: tuple[int, ...], padding: str, bounds):
    """img at integer cells, with the index padding of ONNX's _pixel_at."""
    idx = []
    for i, d, (lo, hi) in zip(cells, img.shape, bounds):
        if 0 <= i < d:
            idx.append(i)
        elif padding == "zeros":
            return 0.0
        elif padding == "border":
            idx.append(min(max(i, 0), d - 1))
        else:
            idx.append(0 if d == 1 else int(_reflect(complex(i), lo, hi).real))
    return img[tuple(idx)]


def _sample(img: np.ndarray, coords, mode: str, padding: str, align: bool):
    bounds = [(0.0, d - 1.0) if align else (-0.5, d - 0.5) for d in img.shape]
    pts = []
    for v, d, (lo, hi) in zip(coords, img.shape, bounds):
        if mode == "nearest":
            v = complex(np.rint(v.real))
        if v.real < lo or v.real > hi:
            if padding == "border":
                v = complex(min(max(v.real, 0.0), d - 1.0))
            elif padding == "reflection":
                v = _reflect(v, lo, hi)
        pts.append(v)
    if mode == "nearest":
        return _read(img, tuple(int(v.real) for v in pts), padding, bounds)
    taps = []
    for v in pts:
        lo = math.floor(v.real)
        t = v - lo
        if mode == "linear":
            taps.append([(lo, 1 - t), (lo + 1, t)])
        else:
            taps.append(list(zip(range(lo - 1, lo + 3), _cubic(t))))
    total = 0.0
    for combo in itertools.product(*taps):
        w = 1.0
        for _, wt in combo:
            w = w * wt
        total = total + w * _read(img, tuple(i for i, _ in combo), padding, bounds)
    return total


def _grid_sample(args, x, grid):
    n, c, *sizes = x.shape
    out_sp = grid.shape[1:-1]
    dtype = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(grid) else np.float64
    y = np.zeros((n, c, *out_sp), dtype)
    for b in range(n):
        for pos in np.ndindex(*out_sp):
            g = grid[(b, *pos)][::-1]  # the grid's last entry indexes the last axis
            coords = []
            for v, d in zip(g, sizes):
                v = complex(v)
                coords.append((v + 1) / 2 * (d - 1) if args["align_corners"] else ((v + 1) * d - 1) / 2)
            for ch in range(c):
                val = _sample(x[b, ch], coords, args["mode"], args["padding_mode"], args["align_corners"])
                y[(b, ch, *pos)] = val if dtype == np.complex128 else complex(val).real
    return y


@reference("GridSample")
def grid_sample(args, x, grid):
    return (_grid_sample(args, x, grid),)


@reference("GridSampleGradient")
def grid_sample_gradient(args, x, grid, dy):
    return tuple(_vjp(lambda a, b: _grid_sample(args, a, b), [x, grid], dy, [0, 1]))


# -- AffineGrid ------------------------------------------------------------------------------------


def _affine_grid(args, theta):
    size = list(args["size"])
    sizes = size[2:]
    k = len(sizes)
    grid = np.zeros((size[0], *sizes, k), np.complex128 if np.iscomplexobj(theta) else np.float64)
    for n in range(size[0]):
        for pos in np.ndindex(*sizes):
            point = []
            for i, d in zip(pos, sizes):
                if args["align_corners"]:
                    point.append(-1.0 if d == 1 else -1 + 2 * i / (d - 1))
                else:
                    point.append(-1 + (2 * i + 1) / d)
            homo = np.array([*point[::-1], 1.0])  # (x, y[, z], 1)
            grid[(n, *pos)] = theta[n] @ homo
    return grid


@reference("AffineGrid")
def affine_grid(args, theta):
    return (_affine_grid(args, theta),)


@reference("AffineGridGradient")
def affine_grid_gradient(args, dgrid):
    size = list(args["size"])
    k = len(size) - 2
    theta = np.zeros((size[0], k, k + 1))
    return tuple(_vjp(lambda t: _affine_grid(args, t), [theta], dgrid, [0]))


# -- Col2Im ----------------------------------------------------------------------------------------


def _col2im_geometry(args):
    image, block = list(args["image_shape"]), list(args["block_shape"])
    k = len(image)

    def fit(v):
        v = list(v)
        return v * k if len(v) == 1 else v

    strides, dil = fit(args["strides"]), fit(args["dilations"])
    pads = list(args["pads"])
    pads = pads * (2 * k) if len(pads) == 1 else pads
    begins = pads[:k]
    blocks = [
        (image[j] + pads[j] + pads[k + j] - dil[j] * (block[j] - 1) - 1) // strides[j] + 1 for j in range(k)
    ]
    return image, block, strides, dil, begins, blocks


def _col2im_pairs(args):
    """(column row offset within a channel, block index l, image cell or None) for every pair."""
    image, block, strides, dil, begins, blocks = _col2im_geometry(args)
    for t, tap in enumerate(itertools.product(*(range(b) for b in block))):
        for li, pos in enumerate(itertools.product(*(range(b) for b in blocks))):
            cell = tuple(p * s - pb + q * d for p, s, pb, q, d in zip(pos, strides, begins, tap, dil))
            inside = all(0 <= v < size for v, size in zip(cell, image))
            yield t, li, cell if inside else None


@reference("Col2Im")
def col2im(args, x):
    image, block, *_ = _col2im_geometry(args)
    kp = math.prod(block)
    n, ck, _ = x.shape
    c = ck // kp
    y = np.zeros((n, c, *image))
    for t, li, cell in _col2im_pairs(args):
        if cell is not None:
            for b in range(n):
                for ch in range(c):
                    y[(b, ch, *cell)] += x[b, ch * kp + t, li]
    return (y,)


@reference("Col2ImGradient")
def col2im_gradient(args, dy):
    _image, block, *_, blocks = _col2im_geometry(args)
    kp = math.prod(block)
    n, c = dy.shape[:2]
    dx = np.zeros((n, c * kp, math.prod(blocks)))
    for t, li, cell in _col2im_pairs(args):
        if cell is not None:
            for b in range(n):
                for ch in range(c):
                    dx[b, ch * kp + t, li] = dy[(b, ch, *cell)]
    return (dx,)


# -- DeformConv ------------------------------------------------------------------------------------


def _fit(values, k, default):
    values = list(values or [default])
    return values * k if len(values) == 1 else values


def _bilinear_zero(img: np.ndarray, coords) -> float:
    """img read bilinearly at real coordinates, cells outside counting 0."""
    taps = []
    for v in coords:
        lo = math.floor(v)
        taps.append([(lo, 1 - (v - lo)), (lo + 1, v - lo)])
    total = 0.0
    for combo in itertools.product(*taps):
        cell = tuple(i for i, _ in combo)
        if all(0 <= i < d for i, d in zip(cell, img.shape)):
            total += math.prod(w for _, w in combo) * img[cell]
    return total


@reference("DeformConv")
def deform_conv(args, x, w, offset, b=None, mask=None):
    n, c, *sizes = x.shape
    k = len(sizes)
    m, cg = w.shape[:2]
    kern = list(args["kernels"]) if args.get("kernels") else list(w.shape[2:])
    kern = _fit(kern, k, 1)
    strides, dil = _fit(args["strides"], k, 1), _fit(args["dilations"], k, 1)
    pads = list(args["pads"] or [0])
    pads = pads * (2 * k) if len(pads) == 1 else pads
    group, og = args["group"], args["offset_group"]
    outs = offset.shape[2:]
    taps = list(itertools.product(*(range(q) for q in kern)))
    off = offset.reshape(n, og, len(taps), k, *outs)
    msk = None if mask is None else mask.reshape(n, og, len(taps), *outs)
    y = np.zeros((n, m, *outs))
    for bi in range(n):
        for mi in range(m):
            g = mi // (m // group)
            for pos in np.ndindex(*outs):
                total = 0.0 if b is None else float(b.reshape(-1)[mi])
                for cj in range(cg):
                    ch = g * cg + cj
                    og_i = ch // (c // og)
                    for t, tap in enumerate(taps):
                        coords = [
                            pos[j] * strides[j] - pads[j] + tap[j] * dil[j] + off[(bi, og_i, t, j, *pos)]
                            for j in range(k)
                        ]
                        v = _bilinear_zero(x[bi, ch], coords)
                        if msk is not None:
                            v *= msk[(bi, og_i, t, *pos)]
                        total += w[(mi, cj, *tap)] * v
                y[(bi, mi, *pos)] = total
    return (y,)


# -- MaxPoolWithIndices / MaxUnpool ----------------------------------------------------------------


def _pool_geometry(args, sizes):
    k = len(sizes)
    kern = _fit(args["kernels"], k, 1)
    strides, dil = _fit(args["strides"], k, 1), _fit(args["dilations"], k, 1)
    pads = list(args["pads"] or [0])
    pads = pads * (2 * k) if len(pads) == 1 else pads
    outs = []
    for j in range(k):
        span = dil[j] * (kern[j] - 1) + 1
        total = sizes[j] + pads[j] + pads[k + j] - span
        if args["legacy_pad"] == 3:  # Caffe's ceil mode, the last window starting inside
            o = -(-total // strides[j]) + 1
            if pads[j] > 0 and (o - 1) * strides[j] >= sizes[j] + pads[j]:
                o -= 1
        else:
            o = total // strides[j] + 1
        outs.append(o)
    return kern, strides, dil, pads[:k], outs


@reference("MaxPoolWithIndices")
def max_pool_with_indices(args, x):
    n, c, *sizes = x.shape
    kern, strides, dil, begins, outs = _pool_geometry(args, sizes)
    y = np.zeros((n, c, *outs))
    idx = np.zeros((n, c, *outs), np.int64)
    plane = math.prod(sizes)
    for b, ch in np.ndindex(n, c):
        for pos in np.ndindex(*outs):
            best, where = -np.inf, None
            for tap in itertools.product(*(range(q) for q in kern)):
                cell = tuple(p * s - pb + t * d for p, s, pb, t, d in zip(pos, strides, begins, tap, dil))
                if all(0 <= v < size for v, size in zip(cell, sizes)) and x[(b, ch, *cell)] > best:
                    best, where = x[(b, ch, *cell)], cell
            y[(b, ch, *pos)] = best
            if args["storage_order"] == 1:
                offset = sum(v * math.prod(sizes[:j]) for j, v in enumerate(where))
            else:
                offset = int(np.ravel_multi_index(where, sizes))
            idx[(b, ch, *pos)] = (b * c + ch) * plane + offset
    return y, idx


@reference("MaxPoolWithIndicesGradient")
def max_pool_with_indices_gradient(args, x, indices, dy):
    _n, c, *sizes = x.shape
    plane = math.prod(sizes)
    dx = np.zeros(x.shape)
    for pos in np.ndindex(*dy.shape):
        nc, offset = divmod(int(indices[pos]), plane)
        if args["storage_order"] == 1:
            cell = []
            for d in sizes:
                offset, r = divmod(offset, d)
                cell.append(r)
        else:
            cell = list(np.unravel_index(offset, sizes))
        dx[(nc // c, nc % c, *cell)] += dy[pos]
    return (dx,)


def _unpooled_shape(args, x_shape):
    n, c, *sizes = x_shape
    k = len(sizes)
    kern, strides = _fit(args["kernels"], k, 1), _fit(args["strides"], k, 1)
    pads = list(args["pads"] or [0])
    pads = pads * (2 * k) if len(pads) == 1 else pads
    return (n, c, *((sizes[j] - 1) * strides[j] + kern[j] - pads[j] - pads[k + j] for j in range(k)))


@reference("MaxUnpool")
def max_unpool(args, x, idx):
    inner = np.zeros(_unpooled_shape(args, x.shape))
    flat = inner.reshape(-1)
    for pos in np.ndindex(*x.shape):
        flat[int(idx[pos])] = x[pos]
    y = np.zeros(tuple(args["output_shape"]) or inner.shape)
    y[tuple(slice(0, d) for d in inner.shape)] = inner
    return (y,)


@reference("MaxUnpoolGradient")
def max_unpool_gradient(args, dy, idx):
    inner = dy[tuple(slice(0, d) for d in _unpooled_shape(args, idx.shape))]
    flat = inner.reshape(-1)
    dx = np.zeros(idx.shape)
    for pos in np.ndindex(*idx.shape):
        dx[pos] = flat[int(idx[pos])]
    return (dx,)

"""Host-side layouts and checks of the norm family (SpatialBN, LRN, LayerNorm) shared by the
device backends."""

from __future__ import annotations

from typing import Any

from kaffa.launch import split_at, split_axis
from kaffa.ops.norm import channel_axis
from kaffa.schema import check, norm_axis


def bn_layout(op: str, x: Any, order: str, **vectors: Any) -> tuple[int, int, int]:
    """(outer, C, inner) around the channel axis; checks that every vector is [C]."""
    outer, c, inner = split_axis(x.shape, channel_axis(op, x.shape, order))
    for name, v in vectors.items():
        check(v.shape == (c,), f"{op}: {name} {list(v.shape)} must be [C] = [{c}] for X {list(x.shape)}")
    return outer, c, inner


def check_bn_train(x: Any, m: int) -> None:
    """SpatialBN training needs more than one value per channel (``m`` of them)."""
    check(m > 1, f"SpatialBN: training needs more than one value per channel, X {list(x.shape)} has {m}")


def check_same_x(op: str, x: Any, dy: Any) -> None:
    """A norm gradient's X and dY must have one shape."""
    check(x.shape == dy.shape, f"{op}: X {list(x.shape)} and dY {list(dy.shape)} differ")


def layer_norm_rows(op: str, x: Any, axis: int) -> tuple[int, int, int]:
    """(rows, D, canonical axis) of X viewed as [rows, D] at ``axis``."""
    check(len(x.shape) >= 1, f"{op}: X must have at least one dim, got a scalar")
    ax = norm_axis(axis, len(x.shape), op)
    return (*split_at(x.shape, ax), ax)


def check_layer_norm_affine(affine: tuple[Any, ...], d: int) -> None:
    """LayerNorm's gamma and beta, when given, hold D elements."""
    for name, v in zip(("gamma", "beta"), affine):
        check(v.size == d, f"LayerNorm: {name} {list(v.shape)} must have {d} elements")


def layer_norm_grad_rows(dy: Any, x: Any, mean: Any, std: Any, axis: int) -> tuple[int, int]:
    """(rows, D) of LayerNormGradient, after its shape checks."""
    check(dy.shape == x.shape, f"LayerNormGradient: X {list(x.shape)} and dY {list(dy.shape)} differ")
    rows, d, _ = layer_norm_rows("LayerNormGradient", x, axis)
    check(
        mean.size == rows and std.size == rows,
        f"LayerNormGradient: mean {list(mean.shape)} does not fit X {list(x.shape)}",
    )
    return rows, d


def dropout_seed(seed: int) -> int:
    """The 32-bit seed of Dropout's hash from ctx.seed (63 bits)."""
    return (seed ^ (seed >> 32)) & 0xFFFFFFFF


def check_lrn_grad(x: Any, y: Any, dy: Any, scale: tuple[Any, ...]) -> None:
    """LRNGradient's Y, dY and optional scale have X's shape."""
    for name, t in (("Y", y), ("dY", dy), *(("scale", s) for s in scale)):
        check(t.shape == x.shape, f"LRNGradient: X {list(x.shape)} and {name} {list(t.shape)} differ")

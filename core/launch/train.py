"""Host-side checks of the optimizer ops (MomentumSGDUpdate, Adagrad, Adam) shared by the device
backends."""

from __future__ import annotations

from typing import Any

from kaffa.schema import check


def check_lr(op: str, lr: Any) -> None:
    """The learning rate is one element."""
    check(lr.size == 1, f"{op}: lr must hold one element, got shape {list(lr.shape)}")


def check_sizes(op: str, **arrays: Any) -> None:
    """Parameter, moments and gradient have one size."""
    sizes = {k: v.size for k, v in arrays.items()}
    check(
        len(set(sizes.values())) == 1,
        f"{op}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) + " must have equal sizes",
    )

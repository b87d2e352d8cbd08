"""Window geometry shared by convolution and pooling: Caffe2's many spellings of kernel, stride,
pad and dilation arguments, resolved once into per-axis lists, and the output-size rule.

Host code that every backend needs lives here, so the cpu, opencl, cuda and metal kernels
agree on what ``legacy_pad`` or ``pads`` mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaffa.schema import Arg, ArgType, check

NOTSET, VALID, SAME, CAFFE_LEGACY_POOLING = 0, 1, 2, 3

WINDOW_ARGS = [
    Arg("kernel", ArgType.INT, doc="kernel size on both spatial axes (2-D)"),
    Arg("kernel_h", ArgType.INT),
    Arg("kernel_w", ArgType.INT),
    Arg("kernels", ArgType.INTS, doc="kernel size per spatial axis (any rank)"),
    Arg("stride", ArgType.INT, doc="stride on every spatial axis"),
    Arg("stride_h", ArgType.INT),
    Arg("stride_w", ArgType.INT),
    Arg("strides", ArgType.INTS),
    Arg("pad", ArgType.INT, doc="padding at both ends of every spatial axis"),
    Arg("pad_t", ArgType.INT),
    Arg("pad_l", ArgType.INT),
    Arg("pad_b", ArgType.INT),
    Arg("pad_r", ArgType.INT),
    Arg("pads", ArgType.INTS, doc="all begin pads, then all end pads"),
    Arg("dilation", ArgType.INT),
    Arg("dilation_h", ArgType.INT),
    Arg("dilation_w", ArgType.INT),
    Arg("dilations", ArgType.INTS),
    Arg("order", ArgType.STRING, "NCHW", "NCHW or NHWC"),
    Arg(
        "legacy_pad",
        ArgType.INT,
        NOTSET,
        "0 explicit pads, 1 VALID, 2 SAME, 3 Caffe's ceil-mode pooling size",
    ),
]


def _per_axis(args: Mapping[str, Any], single: str, h: str, w: str, many: str, what: str) -> list[int] | None:
    forms = [f for f in (single, many) if args.get(f) not in (None, [])]
    hw = [args.get(h), args.get(w)]
    if any(v is not None for v in hw):
        forms.append(f"{h}/{w}")
    check(len(forms) <= 1, f"{what} is given more than once ({', '.join(forms)})")
    if args.get(many) not in (None, []):
        return list(args[many])
    if args.get(single) is not None:
        return [args[single]]  # broadcast to every spatial axis
    if any(v is not None for v in hw):
        check(all(v is not None for v in hw), f"{h} and {w} must be given together")
        return [int(hw[0]), int(hw[1])]
    return None


PAD_ARGS = [a for a in WINDOW_ARGS if a.name in ("pad", "pad_t", "pad_l", "pad_b", "pad_r", "pads")]

# ConvTranspose: Caffe2's ConvTransposeUnpoolBase has no dilation, and adds the output adjustment.
TRANSPOSE_ARGS = [
    *(a for a in WINDOW_ARGS if not a.name.startswith("dilation")),
    Arg("adj", ArgType.INT, doc="extra output cells at the end of every spatial axis (< stride)"),
    Arg("adj_h", ArgType.INT),
    Arg("adj_w", ArgType.INT),
    Arg("adjs", ArgType.INTS),
]


def _fold_pads(args: Mapping[str, Any], out: dict[str, Any]) -> None:
    side = [args.get(k) for k in ("pad_t", "pad_l", "pad_b", "pad_r")]
    forms = [f for f in ("pad", "pads") if args.get(f) not in (None, [])] + (
        ["pad_t/l/b/r"] if any(v is not None for v in side) else []
    )
    check(len(forms) <= 1, f"padding is given more than once ({', '.join(forms)})")
    if args.get("pads") not in (None, []):
        out["pads"] = list(args["pads"])
    elif args.get("pad") is not None:
        out["pads"] = [args["pad"]]
    elif any(v is not None for v in side):
        t, l, b, r = (v or 0 for v in side)
        out["pads"] = [t, l, b, r]
    else:
        out["pads"] = [0]
    for key in ("pad", "pad_t", "pad_l", "pad_b", "pad_r"):
        out.pop(key, None)


def _check_order(args: Mapping[str, Any]) -> None:
    check(
        args.get("order", "NCHW") in ("NCHW", "NHWC"),
        f"order must be NCHW or NHWC, got {args.get('order')!r}",
    )


def canonicalize_pads(args: dict[str, Any]) -> dict[str, Any]:
    """Fold pad, pad_t/l/b/r and pads into ``pads`` (PadImage's canonicalize step)."""
    out = dict(args)
    _fold_pads(args, out)
    _check_order(args)
    return out


def canonicalize_window(args: dict[str, Any]) -> dict[str, Any]:
    """Fold the spellings into ``kernels``, ``strides``, ``pads``, ``dilations`` (lists; a one-element
    list broadcasts over the spatial axes). Used as the schema's canonicalize step."""
    out = dict(args)
    out["kernels"] = _per_axis(args, "kernel", "kernel_h", "kernel_w", "kernels", "kernel")
    out["strides"] = _per_axis(args, "stride", "stride_h", "stride_w", "strides", "stride") or [1]
    out["dilations"] = _per_axis(args, "dilation", "dilation_h", "dilation_w", "dilations", "dilation") or [1]
    _fold_pads(args, out)
    _check_order(args)
    check(
        args.get("legacy_pad", 0) in (NOTSET, VALID, SAME, CAFFE_LEGACY_POOLING),
        f"legacy_pad must be 0..3, got {args.get('legacy_pad')}",
    )
    for key in (
        "kernel",
        "kernel_h",
        "kernel_w",
        "stride",
        "stride_h",
        "stride_w",
        "dilation",
        "dilation_h",
        "dilation_w",
    ):
        out.pop(key, None)
    return out


def canonicalize_transpose_window(args: dict[str, Any]) -> dict[str, Any]:
    """canonicalize_window plus ``adjs`` (a one-element list broadcasts). Caffe's ceil-mode
    pooling size means nothing for a transposed convolution."""
    out = canonicalize_window(args)
    out["adjs"] = _per_axis(args, "adj", "adj_h", "adj_w", "adjs", "adj") or [0]
    for key in ("adj", "adj_h", "adj_w"):
        out.pop(key, None)
    check(
        out.get("legacy_pad", NOTSET) != CAFFE_LEGACY_POOLING,
        "ConvTranspose: legacy_pad=3 (Caffe ceil-mode pooling) does not apply to transposed convolution",
    )
    return out


def split_pads(pads: Sequence[int], n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(begin pads, end pads) over ``n`` spatial axes from canonical ``pads``."""
    pads = pads or [0]
    if len(pads) == 1:
        begin = end = _fit(pads, n, "pads")
    else:
        check(len(pads) == 2 * n, f"pads has {len(pads)} values; {2 * n} needed for {n} spatial axes")
        begin, end = [int(p) for p in pads[:n]], [int(p) for p in pads[n:]]
    check(all(p >= 0 for p in begin + end), f"pads must be non-negative, got {begin + end}")
    return tuple(begin), tuple(end)


def _fit(values: Sequence[int], n: int, what: str) -> list[int]:
    if len(values) == 1:
        return [int(values[0])] * n
    check(len(values) == n, f"{what} has {len(values)} values for {n} spatial axes")
    return [int(v) for v in values]


@dataclass(frozen=True)
class Window:
    """A resolved window over ``n`` spatial axes."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    legacy_pad: int = NOTSET

    @classmethod
    def from_args(cls, args: Mapping[str, Any], n: int, kernels: Sequence[int] | None = None) -> Window:
        """``kernels`` overrides the argument (Conv without a kernel argument takes the filter's size;
        global pooling takes the input's)."""
        ks = kernels if kernels is not None else args.get("kernels")
        check(ks is not None, "no kernel size given (kernel, kernel_h/kernel_w or kernels)")
        begin, end = split_pads(args.get("pads") or [0], n)
        win = cls(
            tuple(_fit(ks, n, "kernels")),
            tuple(_fit(args.get("strides") or [1], n, "strides")),
            tuple(_fit(args.get("dilations") or [1], n, "dilations")),
            begin,
            end,
            int(args.get("legacy_pad", NOTSET)),
        )
        check(all(k > 0 for k in win.kernels), f"kernel sizes must be positive, got {list(win.kernels)}")
        check(all(s > 0 for s in win.strides), f"strides must be positive, got {list(win.strides)}")
        check(all(d > 0 for d in win.dilations), f"dilations must be positive, got {list(win.dilations)}")
        return win

    @property
    def extent(self) -> tuple[int, ...]:
        """The span of each dilated kernel."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernels, self.dilations))

    def resolve(self, in_sizes: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(output sizes, effective begin pads, effective end pads) for the given input sizes.

        The effective end pad may exceed the declared one: Caffe's ceil mode and SAME can ask for
        windows that hang over the end. Kernels pad by these amounts and need no other rule."""
        outs, begins, ends = [], [], []
        for i, size in enumerate(in_sizes):
            k, s, pb, pe = self.extent[i], self.strides[i], self.pads_begin[i], self.pads_end[i]
            if self.legacy_pad == VALID:
                pb = pe = 0
                out = (size - k) // s + 1
            elif self.legacy_pad == SAME:
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pb, pe = total // 2, total - total // 2
            elif self.legacy_pad == CAFFE_LEGACY_POOLING:
                out = -(-(size + pb + pe - k) // s) + 1  # ceil
                if pb > 0 and (out - 1) * s >= size + pb:
                    out -= 1  # the last window must start inside the image or its begin pad
            else:
                out = (size + pb + pe - k) // s + 1
            check(
                out > 0,
                f"spatial size {size} is too small for kernel {self.kernels[i]} "
                f"(dilation {self.dilations[i]}, pads {pb}+{pe}, stride {s})",
            )
            pe = max(pe, (out - 1) * s + k - size - pb)
            outs.append(out)
            begins.append(pb)
            ends.append(pe)
        return tuple(outs), tuple(begins), tuple(ends)

    def declared_end_pads(self, in_sizes: Sequence[int]) -> tuple[int, ...]:
        """End pads without Caffe's ceil-mode overhang (what count_include_pad counts)."""
        if self.legacy_pad in (VALID,):
            return (0,) * len(in_sizes)
        if self.legacy_pad == SAME:
            return self.resolve(in_sizes)[2]
        return self.pads_end

    def transpose_resolve(
        self, in_sizes: Sequence[int], adjs: Sequence[int]
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """For a transposed convolution: (output sizes, begin pads, end pads). The output,
        padded by these, is the input of the matching forward convolution: out = (in - 1) * stride
        + kernel + adj - pad_begin - pad_end. VALID and SAME mean no padding (as in Caffe2)."""
        adjs = _fit(adjs or [0], len(in_sizes), "adjs")
        outs, begins, ends = [], [], []
        for i, size in enumerate(in_sizes):
            k, s, adj = self.extent[i], self.strides[i], adjs[i]
            pb, pe = (0, 0) if self.legacy_pad in (VALID, SAME) else (self.pads_begin[i], self.pads_end[i])
            check(0 <= adj < s, f"adj must be in [0, stride); got adj {adj} with stride {s}")
            out = (size - 1) * s + k + adj - pb - pe
            check(
                out > 0,
                f"transposed convolution of spatial size {size} (kernel {k}, stride {s}, adj {adj}) "
                f"leaves no output after pads {pb}+{pe}",
            )
            outs.append(out)
            begins.append(pb)
            ends.append(pe)
        return tuple(outs), tuple(begins), tuple(ends)

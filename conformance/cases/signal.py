"""Cases for DFT, STFT, HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix.

DFT and STFT outputs are sums of n terms of size |x| (REDUCTION over the transform length).
"""

from __future__ import annotations

from kaffa import dtypes
from kaffa_conformance.cases import ELEMENTWISE, REDUCTION, Case, cases, uniform


@cases("DFT")
def dft(rng):
    def case(name, shape, **args):
        axis = args.get("axis", -2) % len(shape)
        n = max(shape[axis], args.get("dft_length", 0))
        return Case("DFT", name, [uniform(rng, shape)], args, op_class=REDUCTION, reduction=n)

    return [
        case("real", (3, 8, 1)),
        case("complex", (2, 7, 2)),
        case("axis1_4d", (1, 10, 4, 1), axis=1),
        case("axis0_complex", (6, 3, 2), axis=0),
        case("onesided_even", (2, 8, 1), onesided=1),
        case("onesided_odd_complex", (9, 2), onesided=1),
        case("pad", (2, 5, 1), dft_length=8),
        case("truncate", (2, 9, 2), dft_length=6),
        case("inverse", (3, 8, 2), inverse=1),
        case("inverse_real", (5, 1), inverse=1),
        case("inverse_pad_neg_axis", (4, 3, 2), inverse=1, axis=-3, dft_length=6),
        case("irfft_even", (2, 5, 2), inverse=1, onesided=1),
        case("irfft_odd_length", (2, 5, 2), inverse=1, onesided=1, dft_length=9),
        case("irfft_cut", (7, 2), inverse=1, onesided=1, dft_length=6),
        case("length1", (3, 1, 2)),
        case("odd_large", (13, 67, 1), axis=1),
    ]


@cases("STFT")
def stft(rng):
    def case(name, length, comps, window=None, **args):
        ins = [uniform(rng, (2, length, comps))]
        if window is not None:
            ins.append(uniform(rng, (window,), 0, 1))
        frame = args.get("frame_length") or window
        return Case("STFT", name, ins, args, op_class=REDUCTION, reduction=frame)

    return [
        case("plain", 32, 1, frame_step=8, frame_length=16),
        case("window", 30, 1, window=8, frame_step=4),
        case("window_and_length", 20, 2, window=6, frame_step=5, frame_length=6),
        case("complex_twosided", 17, 2, frame_step=3, frame_length=5, onesided=0),
        case("one_frame", 9, 1, window=9, frame_step=2),
        case("odd_frame", 23, 1, window=7, frame_step=7),
    ]


def _window_cases(op):
    def gen(rng):
        return [
            Case(op, f"{name}_{size}", [], {"size": size, "periodic": periodic}, op_class=ELEMENTWISE)
            for size in (1, 2, 10, 33)
            for name, periodic in (("periodic", 1), ("symmetric", 0))
            if size > 1 or periodic
        ]

    return gen


for _op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    cases(_op)(_window_cases(_op))


@cases("MelWeightMatrix")
def mel(rng):
    def case(name, **args):
        return Case("MelWeightMatrix", name, [], args, op_class=ELEMENTWISE, dtypes=dtypes.FLOAT_TYPES)

    return [
        case(
            "onnx_example",
            num_mel_bins=8,
            dft_length=16,
            sample_rate=8192,
            lower_edge_hertz=0.0,
            upper_edge_hertz=4096.0,
        ),
        case(
            "speech",
            num_mel_bins=20,
            dft_length=512,
            sample_rate=16000,
            lower_edge_hertz=20.0,
            upper_edge_hertz=8000.0,
        ),
        case(
            "narrow_band",
            num_mel_bins=4,
            dft_length=64,
            sample_rate=8000,
            lower_edge_hertz=300.0,
            upper_edge_hertz=3400.0,
        ),
        case(
            "crowded",
            num_mel_bins=12,
            dft_length=32,
            sample_rate=16000,
            lower_edge_hertz=100.0,
            upper_edge_hertz=2000.0,
        ),
    ]

"""Cases for ConstantFill, GivenTensor*Fill, GaussianFill, UniformFill, XavierFill, MSRAFill.

Without a `dtype` argument the runner sets it to the dtype under test. The random fillers are
checked by statistics on >= 10,000 samples (XavierFill as uniform on [-s, s], s = sqrt(3 / fan_in);
MSRAFill as normal with std sqrt(2 / fan_out); the fans from the expected shape). Every bound below
is 6 standard errors of the statistic (a false alarm about once in 5e8 checks) plus the rounding
of the output dtype:
  * mean:            SE = sigma / sqrt(N)
  * std (normal):    SE = sigma / sqrt(2N)       (sample std of a normal)
  * std (uniform):   SE = sigma / sqrt(5N)       (sqrt(mu4 - sigma^4) / (2 sigma sqrt(N)), mu4 = 9/5 sigma^4)
  * a fraction p:    SE = sqrt(p (1 - p) / N)   (within one sigma for normal: 0.6827; below the
                                                 midpoint for uniform: 0.5)
  * uniform extremes: P(no sample within 0.2% of a bound) = 0.998^N < 2e-9 for N >= 10,000
"""

from __future__ import annotations

import math

import numpy as np

from kaffa import dtypes
from kaffa.proto import TensorProto
from kaffa_conformance.cases import ELEMENTWISE, EXACT, RANDOM, Case, cases, ints, uniform

MIN_SAMPLES = 10_000
Z = 6.0  # standard errors allowed


@cases("ConstantFill")
def constant_fill(rng):
    def case(name, inputs=(), fixed=None, dtype=None, **args):
        dts = None
        if dtype is not None:
            args["dtype"] = dtype
            dts = [dtypes.parse(dtype)]
        return Case(
            "ConstantFill",
            name,
            list(inputs),
            args,
            op_class=EXACT,
            dtypes=dts,
            fixed_dtype_inputs=fixed or {},
        )

    return [
        case("shape_arg", shape=[2, 3], value=3.0),
        case("default_value_zero", shape=[4]),
        case("scalar", shape=[], value=-4.0),
        case("shape_of_input", [ints(rng, (2, 3, 4))], value=-2.0),
        case("input_as_shape", [np.array([2, 5, 1])], {0: np.int64}, input_as_shape=1, value=1.0),
        case("extra_shape", shape=[2], extra_shape=[3, 1], value=5.0),
        case("shape_of_input_extra", [ints(rng, (3,))], extra_shape=[2], value=7.0),
        Case(
            "ConstantFill",
            "fractional_value",
            [],
            {"shape": [3, 3], "value": -1.5},
            op_class=EXACT,
            dtypes=dtypes.FLOAT_TYPES,
        ),
        case("dtype_int64", dtype=np.int64, shape=[2, 2], value=9.0),
        case("dtype_by_name_int32", dtype="INT32", shape=[5], value=-3.0),
        case("dtype_by_number_bool", dtype=TensorProto.BOOL, shape=[2, 3], value=1.0),
    ]


def _given(op, values_fn, op_class):
    def gen(rng):
        def case(name, shape, inputs=(), **args):
            n = math.prod(shape) * math.prod(args.get("extra_shape", []))
            args["values"] = values_fn(rng, n)
            if not inputs:
                args["shape"] = list(shape)
            return Case(op, name, list(inputs), args, op_class=op_class)

        return [
            case("2d", (2, 3)),
            case("1d_odd", (7,)),
            case("scalar", ()),
            case("shape_of_input", (2, 2), inputs=[ints(rng, (2, 2))]),
            case("extra_shape", (3,), extra_shape=[2]),
        ]

    cases(op)(gen)


_given("GivenTensorFill", lambda rng, n: uniform(rng, (n,), -4, 4).tolist(), ELEMENTWISE)
_given("GivenTensorDoubleFill", lambda rng, n: uniform(rng, (n,), -4, 4).tolist(), ELEMENTWISE)
_given(
    "GivenTensorIntFill",
    lambda rng, n: [-(2**31), 2**31 - 1, *rng.integers(-1000, 1000, size=n).tolist()][:n],
    EXACT,
)
_given(
    "GivenTensorInt64Fill",
    lambda rng, n: [-(2**62), 2**40 + 1, *rng.integers(-1000, 1000, size=n).tolist()][:n],
    EXACT,
)
_given("GivenTensorBoolFill", lambda rng, n: [1, 0, *rng.integers(0, 2, size=n).tolist()][:n], EXACT)


# -- random fillers --------------------------------------------------------------------------------
def _rounding(dtype, scale):
    """How far rounding to ``dtype`` can move a value of magnitude ``scale``."""
    return float(np.finfo(dtype).eps) * scale


def _check_common(outputs, args, expected_shape):
    y = outputs[0]
    problems = []
    if y.shape != tuple(expected_shape):
        problems.append(f"shape {list(y.shape)}, expected {list(expected_shape)}")
    if y.dtype != args["dtype"]:
        problems.append(f"dtype {y.dtype}, expected {args['dtype']}")
    if not np.all(np.isfinite(y)):
        problems.append("non-finite samples")
    return problems


def _gaussian_check(expected_shape):
    def check(outputs, args, dtype):
        problems = _check_common(outputs, args, expected_shape)
        if problems:
            return problems
        x = outputs[0].astype(np.float64).ravel()
        mu, sigma, n = args["mean"], args["std"], x.size
        slack = _rounding(args["dtype"], abs(mu) + sigma)
        if np.max(np.abs(x - mu)) > 7 * sigma + slack:  # P(|z| > 7) = 2.6e-12 per sample
            problems.append(f"a sample is {np.max(np.abs(x - mu)) / sigma:.1f} std from the mean")
        if n < MIN_SAMPLES:
            return problems
        if abs(x.mean() - mu) > Z * sigma / math.sqrt(n) + slack:
            problems.append(f"mean {x.mean():.4g}, expected {mu} (N={n})")
        if abs(x.std() - sigma) > Z * sigma / math.sqrt(2 * n) + slack:
            problems.append(f"std {x.std():.4g}, expected {sigma} (N={n})")
        p = 0.682689  # P(|z| < 1)
        inside = np.mean(np.abs(x - mu) < sigma)
        # Rounding moves each boundary by <= slack; the density there is < 0.25 / sigma.
        if abs(inside - p) > Z * math.sqrt(p * (1 - p) / n) + slack / sigma:
            problems.append(f"{inside:.3f} of the samples lie within one std, expected {p:.3f}: not normal")
        return problems

    return check


def _uniform_check(expected_shape):
    def check(outputs, args, dtype):
        problems = _check_common(outputs, args, expected_shape)
        if problems:
            return problems
        x = outputs[0].astype(np.float64).ravel()
        lo, hi, n = args["min"], args["max"], x.size
        slack = _rounding(args["dtype"], max(abs(lo), abs(hi)))
        # [min, max): rounding to the output dtype may land a sample on max itself.
        if x.min() < lo or x.max() > hi:
            problems.append(f"samples in [{x.min():.6g}, {x.max():.6g}], outside [{lo}, {hi}]")
        if n < MIN_SAMPLES:
            return problems
        width = hi - lo
        sigma = width / math.sqrt(12)
        if abs(x.mean() - (lo + hi) / 2) > Z * sigma / math.sqrt(n) + slack:
            problems.append(f"mean {x.mean():.4g}, expected {(lo + hi) / 2} (N={n})")
        if abs(x.std() - sigma) > Z * sigma / math.sqrt(5 * n) + slack:
            problems.append(f"std {x.std():.4g}, expected {sigma:.4g} (N={n})")
        below = np.mean(x < (lo + hi) / 2)
        if abs(below - 0.5) > Z * math.sqrt(0.25 / n) + slack / width:
            problems.append(f"{below:.3f} of the samples lie below the midpoint, expected 0.5")
        if x.min() - lo > 0.002 * width + slack or hi - x.max() > 0.002 * width + slack:
            problems.append(f"samples span [{x.min():.6g}, {x.max():.6g}], not all of [{lo}, {hi})")
        return problems

    return check


def _random_cases(op, make_check, variants):
    def gen(rng):
        out = []
        for name, shape_or_input, args in variants:
            args = dict(args)
            if isinstance(shape_or_input, np.ndarray):  # input_as_shape: the shape is input 0's values
                inputs, fixed = [shape_or_input], {0: np.int64}
                expected = (*shape_or_input.tolist(), *args.get("extra_shape", []))
                args["input_as_shape"] = 1
            elif shape_or_input and isinstance(shape_or_input[0], tuple):  # shape of an input tensor
                inputs, fixed = [uniform(rng, shape_or_input[0])], {}
                expected = (*shape_or_input[0], *args.get("extra_shape", []))
            else:
                inputs, fixed = [], {}
                args["shape"] = list(shape_or_input)
                expected = (*shape_or_input, *args.get("extra_shape", []))
            out.append(
                Case(
                    op,
                    name,
                    inputs,
                    args,
                    op_class=RANDOM,
                    fixed_dtype_inputs=fixed,
                    check=make_check(expected),
                )
            )
        return out

    cases(op)(gen)


_random_cases(
    "GaussianFill",
    _gaussian_check,
    [
        ("standard", (100, 100), {}),
        ("mean_std", (20_000,), {"mean": 3.0, "std": 0.5}),
        ("input_as_shape", np.array([10, 40, 25]), {"mean": -1.0, "std": 2.0}),
        ("shape_of_input_extra", ((50, 40),), {"extra_shape": [5], "std": 0.1}),
        ("small", (1, 3), {}),
    ],
)
_random_cases(
    "UniformFill",
    _uniform_check,
    [
        ("default_unit", (10_000,), {}),
        ("range", (100, 120), {"min": -3.0, "max": 5.0}),
        ("narrow_offset", (10_000,), {"min": 10.0, "max": 10.5}),
        ("input_as_shape", np.array([20, 25, 20]), {"min": -1.0, "max": 1.0}),
        ("shape_of_input_extra", ((50, 40),), {"extra_shape": [5], "min": 0.0, "max": 2.0}),
        ("small", (2, 2), {"min": -1.0, "max": 1.0}),
    ],
)


def _xavier_check(expected_shape):
    """Uniform in [-s, s], s = sqrt(3 / fan_in), fan_in = size / shape[0]."""
    base = _uniform_check(expected_shape)
    s = math.sqrt(3.0 / (math.prod(expected_shape) / expected_shape[0]))

    def check(outputs, args, dtype):
        return base(outputs, {**args, "min": -s, "max": s}, dtype)

    return check


def _msra_check(expected_shape):
    """Normal with mean 0 and std sqrt(2 / fan_out), fan_out = size / shape[1]."""
    base = _gaussian_check(expected_shape)
    std = math.sqrt(2.0 / (math.prod(expected_shape) / expected_shape[1]))

    def check(outputs, args, dtype):
        return base(outputs, {**args, "mean": 0.0, "std": std}, dtype)

    return check


_random_cases(
    "XavierFill",
    _xavier_check,
    [
        ("fc_weights", (100, 200), {}),
        ("conv_filters", (64, 32, 3, 3), {}),
        ("1d_fan_in_1", (10_000,), {}),
        ("input_as_shape", np.array([50, 20, 12]), {}),
        ("shape_of_input_extra", ((50, 40),), {"extra_shape": [5]}),
        ("small", (3, 2), {}),
    ],
)
_random_cases(
    "MSRAFill",
    _msra_check,
    [
        ("fc_weights", (200, 100), {}),
        ("conv_filters", (64, 32, 3, 3), {}),
        ("input_as_shape", np.array([40, 25, 12]), {}),
        ("shape_of_input_extra", ((50, 40),), {"extra_shape": [5]}),
        ("wide_fan_out_1", (10_000, 1), {}),
        ("small", (2, 3), {}),
    ],
)

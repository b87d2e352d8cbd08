"""References for ConstantFill, GivenTensor*Fill, GaussianFill, UniformFill, XavierFill, MSRAFill.

The shape is the `shape` argument, or input 0's shape, or (input_as_shape) input 0's values, with
`extra_shape` appended. GaussianFill and UniformFill are checked by statistics (see the cases);
their references draw one seeded sample of the right shape and dtype.
"""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference


def _shape(args, inputs):
    if not inputs:
        base = list(args["shape"])
    elif args["input_as_shape"]:
        base = [int(d) for d in inputs[0]]
    else:
        base = list(inputs[0].shape)
    return (*base, *args["extra_shape"])


@reference("ConstantFill")
def constant_fill(args, *inputs):
    return (np.full(_shape(args, inputs), args["value"], dtype=np.float64).astype(args["dtype"]),)


def _given(dtype):
    def ref(args, *inputs):
        out_dtype = args.get("dtype") or dtype  # only GivenTensorFill has a dtype argument
        values = np.array(args["values"], dtype=np.float64 if out_dtype.kind in "fb" else np.int64)
        return (values.reshape(_shape(args, inputs)).astype(out_dtype),)

    return ref


for _op, _dtype in (
    ("GivenTensorFill", np.float32),
    ("GivenTensorDoubleFill", np.float64),
    ("GivenTensorIntFill", np.int32),
    ("GivenTensorInt64Fill", np.int64),
    ("GivenTensorBoolFill", np.bool_),
):
    reference(_op)(_given(np.dtype(_dtype)))


@reference("GaussianFill")
def gaussian_fill(args, *inputs):
    sample = np.random.default_rng(0).normal(args["mean"], args["std"], size=_shape(args, inputs))
    return (sample.astype(args["dtype"]),)


@reference("UniformFill")
def uniform_fill(args, *inputs):
    sample = np.random.default_rng(0).uniform(args["min"], args["max"], size=_shape(args, inputs))
    return (sample.astype(args["dtype"]),)


@reference("XavierFill")
def xavier_fill(args, *inputs):
    shape = _shape(args, inputs)
    scale = np.sqrt(3.0 / (np.prod(shape) / shape[0]))  # fan_in = size / shape[0]
    sample = np.random.default_rng(0).uniform(-scale, scale, size=shape)
    return (sample.astype(args["dtype"]),)


@reference("MSRAFill")
def msra_fill(args, *inputs):
    shape = _shape(args, inputs)
    std = np.sqrt(2.0 / (np.prod(shape) / shape[1]))  # fan_out = size / shape[1]
    sample = np.random.default_rng(0).normal(0.0, std, size=shape)
    return (sample.astype(args["dtype"]),)

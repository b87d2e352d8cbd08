"""Cases for Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad.

Iteration counters are int64 through ``fixed_dtype_inputs``. Learning rates follow Caffe2's sign
convention: positive for MomentumSGDUpdate, negative for Adam and Adagrad. Second moments are
non-negative, as squared-gradient histories are.
"""

from __future__ import annotations

import numpy as np

from kaffa_conformance.cases import ELEMENTWISE, EXACT, Case, cases, uniform

COUNTER = np.int64


@cases("Iter")
def iter_(rng):
    def case(name, value, shape=(1,)):
        return Case(
            "Iter",
            name,
            [np.full(shape, value, dtype=np.int64)],
            op_class=EXACT,
            fixed_dtype_inputs={0: COUNTER},
        )

    return [
        case("zero", 0),
        case("small", 41),
        case("large", 2**40 + 3),
        case("just_below_max", np.iinfo(np.int64).max - 1),
        case("0d", 7, shape=()),
    ]


@cases("LearningRate")
def learning_rate(rng):
    def case(name, it, policy, base_lr=-0.1, shape=(1,), **args):
        return Case(
            "LearningRate",
            name,
            [np.full(shape, it, dtype=np.int64)],
            {"base_lr": base_lr, "policy": policy, **args},
            op_class=ELEMENTWISE,
            fixed_dtype_inputs={0: COUNTER},
        )

    return [
        case("fixed", 7, "fixed"),
        case("fixed_positive_0d_iter", 0, "fixed", base_lr=0.05, shape=()),
        case("lr_scale", 3, "fixed", lr_scale=2.5),
        case("step_first", 0, "step", stepsize=10, gamma=0.5),
        case("step_mid", 25, "step", stepsize=10, gamma=0.5),
        case("step_boundary", 30, "step", stepsize=10, gamma=0.5),
        case("exp", 100, "exp", gamma=0.99),
        case("inv", 5000, "inv", gamma=1e-4, power=0.75),
        case("poly", 250, "poly", power=2.0, max_iter=1000),
        case("poly_past_max_iter", 1200, "poly", power=0.5, max_iter=1000),
        case("linear_warmup_during", 30, "linearWarmup", start_multiplier=0.1, num_iter=100),
        case("linear_warmup_after", 150, "linearWarmup", start_multiplier=0.1, num_iter=100),
        case("constant_warmup", 5, "constantWarmup", multiplier=0.2, num_iter=10),
        case("constant_warmup_after", 10, "constantWarmup", multiplier=0.2, num_iter=10),
        case("alter_inactive", 4, "alter", active_period=3, inactive_period=2),
        case("alter_active", 5, "alter", active_period=3, inactive_period=2),
        case("alter_inactive_first", 1, "alter", active_period=3, inactive_period=2, active_first=0),
        case(
            "hill_warmup",
            5,
            "hill",
            num_iter=10,
            start_multiplier=0.1,
            gamma=0.1,
            power=0.5,
            end_multiplier=0.2,
        ),
        case(
            "hill_decay",
            30,
            "hill",
            num_iter=10,
            start_multiplier=0.1,
            gamma=0.1,
            power=0.5,
            end_multiplier=0.2,
        ),
        case(
            "hill_floor",
            5000,
            "hill",
            num_iter=10,
            start_multiplier=0.1,
            gamma=0.1,
            power=0.5,
            end_multiplier=0.2,
        ),
    ]


def _lr(value, shape=(1,)):
    return np.full(shape, value)


@cases("MomentumSGDUpdate")
def momentum_sgd_update(rng):
    def case(name, shape, lr=0.1, lr_shape=(1,), **args):
        inputs = [
            uniform(rng, shape, -1, 1),
            uniform(rng, shape, -1, 1),
            _lr(lr, lr_shape),
            uniform(rng, shape, -2, 2),
        ]
        return Case(
            "MomentumSGDUpdate",
            name,
            inputs,
            args,
            num_outputs=3,
            op_class=ELEMENTWISE,
            inplace=[(0, 0)],
        )

    return [
        case("default_no_momentum", (3, 4)),
        case("momentum", (3, 4), momentum=0.9),
        case("nesterov", (3, 4), momentum=0.9, nesterov=1),
        case("1d_odd", (7,), lr=0.25, momentum=0.5),
        case("size1", (1,), momentum=0.9, nesterov=1),
        case("4d", (2, 3, 2, 2), lr=0.01, momentum=0.95),
        case("lr_0d", (5,), lr_shape=(), momentum=0.9),
    ]


@cases("Adam")
def adam(rng):
    def case(name, shape, it=0, lr=-0.01, num_outputs=3, **args):
        inputs = [
            uniform(rng, shape, -1, 1),
            uniform(rng, shape, -0.1, 0.1),
            uniform(rng, shape, 0.0, 0.05),
            uniform(rng, shape, -1, 1),
            _lr(lr),
            np.array([it], dtype=np.int64),
        ]
        return Case(
            "Adam",
            name,
            inputs,
            args,
            num_outputs=num_outputs,
            op_class=ELEMENTWISE,
            fixed_dtype_inputs={5: COUNTER},
            inplace=[(0, 0), (1, 1), (2, 2)],
        )

    return [
        case("first_step", (3, 4)),
        case("later_step", (3, 4), it=9),
        case("long_run", (6,), it=100_000),
        case("betas_epsilon", (2, 5), it=3, beta1=0.8, beta2=0.99, epsilon=1e-3),
        case("effective_grad_output", (4, 3), it=2, num_outputs=4),
        case("size1", (1,), it=1),
        case("3d", (2, 3, 4), it=50, lr=-0.001),
    ]


@cases("Adagrad")
def adagrad(rng):
    def case(name, shape, lr=-0.05, **args):
        inputs = [
            uniform(rng, shape, -1, 1),
            uniform(rng, shape, 0.0, 2.0),
            uniform(rng, shape, -1, 1),
            _lr(lr),
        ]
        return Case(
            "Adagrad",
            name,
            inputs,
            args,
            num_outputs=2,
            op_class=ELEMENTWISE,
            inplace=[(0, 0), (1, 1)],
        )

    return [
        case("2d", (3, 4)),
        case("1d_odd", (7,), lr=-0.5),
        case("size1", (1,)),
        case("decay", (2, 5), decay=0.9),
        case("epsilon", (4, 2), epsilon=1e-2),
        case("3d", (2, 3, 4), lr=-0.01),
    ]

"""References for Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad (Caffe2's formulas, in
float64, written out one policy and one update at a time)."""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference


@reference("Iter")
def iter_(args, it):
    return (it + 1,)


def _multiplier(args, it):
    policy = args["policy"]
    gamma, power, num_iter = args["gamma"], args["power"], args["num_iter"]
    if policy == "fixed":
        return 1.0
    if policy == "step":
        return gamma ** math.floor(it / args["stepsize"])
    if policy == "exp":
        return gamma**it
    if policy == "inv":
        return (1 + gamma * it) ** (-power)
    if policy == "poly":
        return max(0.0, 1 - it / args["max_iter"]) ** power
    if policy == "linearWarmup":
        if it >= num_iter:
            return 1.0
        start = args["start_multiplier"]
        return start + (1 - start) * it / num_iter
    if policy == "constantWarmup":
        return args["multiplier"] if it < num_iter else 1.0
    if policy == "alter":
        period = args["active_period"] + args["inactive_period"]
        phase = it % period
        if args["active_first"]:
            return 1.0 if phase < args["active_period"] else 0.0
        return 0.0 if phase < args["inactive_period"] else 1.0
    if policy == "hill":
        if it < num_iter:
            start = args["start_multiplier"]
            return start + (1 - start) * it / num_iter
        return max(args["end_multiplier"], (1 + gamma * (it - num_iter)) ** (-power))
    raise ValueError(policy)


@reference("LearningRate")
def learning_rate(args, it):
    n = int(it.reshape(()))
    return (np.array(args["base_lr"] * args["lr_scale"] * _multiplier(args, n)),)


@reference("MomentumSGDUpdate")
def momentum_sgd_update(args, grad, moment, lr, param):
    lr, mu = float(lr.reshape(())), args["momentum"]
    new_moment = mu * moment + lr * grad
    if args["nesterov"]:
        adjusted = (1 + mu) * new_moment - mu * moment
    else:
        adjusted = new_moment
    return adjusted, new_moment, param - adjusted.reshape(param.shape)


@reference("Adam")
def adam(args, param, m1, m2, grad, lr, it, num_outputs=3):
    b1, b2, eps = args["beta1"], args["beta2"], args["epsilon"]
    t = int(it.reshape(())) + 1
    correction = math.sqrt(1 - b2**t) / (1 - b1**t)
    new_m1 = b1 * m1 + (1 - b1) * grad
    new_m2 = b2 * m2 + (1 - b2) * grad**2
    step = correction * new_m1 / (np.sqrt(new_m2) + eps)
    out = (param + float(lr.reshape(())) * step, new_m1, new_m2, step)
    return out[:num_outputs]


@reference("Adagrad")
def adagrad(args, param, moment, grad, lr):
    new_moment = args["decay"] * moment + grad**2
    new_param = param + float(lr.reshape(())) * grad / (np.sqrt(new_moment) + args["epsilon"])
    return new_param, new_moment

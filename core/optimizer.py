"""Optimizers: update ops appended to ``model.net`` after its gradient ops (Caffe2's ``optimizer``).

    model.add_gradient_ops([loss])
    optimizer.build_sgd(model, base_learning_rate=0.1, policy="step", stepsize=100, gamma=0.5,
                        momentum=0.9, weight_decay=1e-4)

Every builder uses one shared int64 counter ``optimizer_iteration`` (a [1] ConstantFill in
``param_init_net`` and one ``Iter`` in ``net``, both on cpu), a ``LearningRate`` blob per optimizer
(``policy`` and its arguments: stepsize, gamma, power, max_iter, ...), and one update op per
parameter that has a gradient. Sign convention (kaffa.ops.train): LearningRate gets a negative
base_lr for WeightedSum (plain SGD), Adam and Adagrad, which add ``lr * step``; a positive one for
MomentumSGDUpdate, which subtracts. Weight decay only touches WEIGHT-tagged parameters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from kaffa.brew import _init_constant
from kaffa.brew import add_weight_decay as _brew_weight_decay
from kaffa.core import BlobReference, Net
from kaffa.device import device_option
from kaffa.model_helper import ModelHelper, ParameterInfo
from kaffa.scope import DeviceScope, current_device_scope

__all__ = [
    "AdagradOptimizer",
    "AdamOptimizer",
    "Optimizer",
    "SgdOptimizer",
    "add_weight_decay",
    "build_adagrad",
    "build_adam",
    "build_iteration",
    "build_sgd",
]

OPTIMIZER_ITERATION_NAME = "optimizer_iteration"
_instance_counts: dict[str, int] = defaultdict(int)


class AuxOptimizerParams(NamedTuple):
    """Blobs an optimizer adds besides the parameters: per-parameter (``local``: momenta, moments)
    and shared (``shared``: the iteration counter, constants). A checkpoint needs both."""

    local: list[BlobReference]
    shared: list[BlobReference]


def _defines(net: Net, name: str) -> bool:
    return any(name in op.output for op in net.ops)


def build_iteration(param_init_net: Net, net: Net, iter_val: int = 0) -> BlobReference:
    """The shared ``optimizer_iteration`` counter: created once in param_init_net (int64 [1],
    ``iter_val``) and incremented once per run of ``net``, on cpu as in Caffe2."""
    with DeviceScope(device_option("cpu")):
        if _defines(param_init_net, OPTIMIZER_ITERATION_NAME):
            iteration = BlobReference(OPTIMIZER_ITERATION_NAME, param_init_net)
        else:
            iteration = param_init_net.ConstantFill(
                [],
                BlobReference(OPTIMIZER_ITERATION_NAME, param_init_net),
                shape=[1],
                value=float(iter_val),
                dtype=np.int64,
            )
        if not any(op.type == "Iter" and OPTIMIZER_ITERATION_NAME in op.output for op in net.ops):
            net.Iter([iteration], [iteration])
    return iteration


def _device_suffix() -> str:
    dev = current_device_scope()
    if dev is None or dev.device_type == 0:
        return "cpu"
    return f"dev{dev.device_type}_{dev.device_id}"


class Optimizer:
    """Adds the update ops of one parameter: ``opt(net, param_init_net, param_info)`` (ParameterInfo
    with ``grad`` set) or ``opt(net, param_init_net, param, grad)``."""

    def __init__(self) -> None:
        self._aux_params = AuxOptimizerParams(local=[], shared=[])
        cls = type(self).__name__
        self._instance_num = _instance_counts[cls]
        _instance_counts[cls] += 1

    def __call__(self, net: Net, param_init_net: Net, param: Any, grad: Any = None) -> None:
        if grad is None:
            if not isinstance(param, ParameterInfo) or param.grad is None:
                raise ValueError("pass a ParameterInfo with its grad set, or a param and its grad")
            info = param
        else:
            blob = param if isinstance(param, BlobReference) else BlobReference(str(param), param_init_net)
            grad = grad if isinstance(grad, BlobReference) else BlobReference(str(grad), net)
            info = ParameterInfo(blob=blob, grad=grad)
        self._run(net, param_init_net, info)

    def _run(self, net: Net, param_init_net: Net, param_info: ParameterInfo) -> None:
        raise NotImplementedError

    def make_unique_blob_name(self, base_str: str) -> str:
        """``<Optimizer>_<k>_<base>_<device>``: one blob per optimizer instance and device."""
        return f"{type(self).__name__}_{self._instance_num}_{base_str}_{_device_suffix()}"

    def build_lr(
        self,
        net: Net,
        param_init_net: Net,
        base_learning_rate: float,
        learning_rate_blob: str | None = None,
        policy: str = "fixed",
        iter_val: int = 0,
        **kwargs: Any,
    ) -> tuple[BlobReference, BlobReference]:
        """The LearningRate blob (shared by this optimizer's parameters) and the iteration counter.
        As in Caffe2, LearningRate gets ``base_lr = -base_learning_rate``: descent for ops that add
        ``lr * step``."""
        iteration = build_iteration(param_init_net, net, iter_val)
        name = learning_rate_blob or self.make_unique_blob_name("lr")
        if _defines(net, name):
            return BlobReference(name, net), iteration
        # A scalar schedule read from the int64 counter: host work like Iter (a device that cannot
        # hold int64, like metal, could not run it). The planner copies the one value to the
        # device of each update op that reads it.
        with DeviceScope(device_option("cpu")):
            lr = net.LearningRate(
                [iteration],
                BlobReference(name, net),
                base_lr=-float(base_learning_rate),
                policy=policy,
                **kwargs,
            )
        if iteration not in self._aux_params.shared:
            self._aux_params.shared.append(iteration)
        return lr, iteration

    def get_auxiliary_parameters(self) -> AuxOptimizerParams:
        return self._aux_params

    def scale_learning_rate(self, scale: float) -> None:
        raise NotImplementedError

    build_LR = build_lr


class SgdOptimizer(Optimizer):
    """Plain SGD (``WeightedSum([param, ONE, grad, lr])`` with a negative lr) or, with ``momentum``,
    MomentumSGDUpdate (positive lr; ``nesterov`` for Nesterov's variant), momentum history in
    ``<param>_momentum``."""

    def __init__(
        self,
        base_learning_rate: float = 0.01,
        policy: str = "fixed",
        momentum: float = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if base_learning_rate < 0:
            raise ValueError(f"base_learning_rate must be >= 0, got {base_learning_rate}")
        self.base_learning_rate = base_learning_rate
        self.policy = policy
        self.momentum = momentum
        self.nesterov = nesterov
        self.init_kwargs = kwargs

    def _run(self, net: Net, param_init_net: Net, param_info: ParameterInfo) -> None:
        param, grad = param_info.blob, param_info.grad
        if self.base_learning_rate == 0:
            return
        # build_lr negates: MomentumSGDUpdate subtracts, so it gets +base_lr; WeightedSum gets -base_lr.
        lr_sign = -1.0 if self.momentum > 0 else 1.0
        lr, _ = self.build_lr(
            net, param_init_net, self.base_learning_rate * lr_sign, policy=self.policy, **self.init_kwargs
        )
        if self.momentum > 0:
            moment = param_init_net.ConstantFill(
                [param], BlobReference(str(param) + "_momentum", param_init_net), value=0.0
            )
            self._aux_params.local.append(moment)
            net.MomentumSGDUpdate(
                [grad, moment, lr, param],
                [grad, moment, param],
                momentum=float(self.momentum),
                nesterov=bool(self.nesterov),
            )
        else:
            one = _init_constant(param_init_net, "ONE", 1.0)
            if one not in self._aux_params.shared:
                self._aux_params.shared.append(one)
            net.WeightedSum([param, one, grad, lr], [param])

    def scale_learning_rate(self, scale: float) -> None:
        self.base_learning_rate *= scale


class AdamOptimizer(Optimizer):
    """Adam with moments ``<param>_first_moment`` and ``<param>_second_moment`` (Caffe2's defaults:
    alpha=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8)."""

    def __init__(
        self,
        alpha: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        policy: str = "fixed",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.policy = policy
        self.init_kwargs = kwargs

    def _run(self, net: Net, param_init_net: Net, param_info: ParameterInfo) -> None:
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, iteration = self.build_lr(net, param_init_net, self.alpha, policy=self.policy, **self.init_kwargs)
        m1 = param_init_net.ConstantFill(
            [param], BlobReference(str(param) + "_first_moment", param_init_net), value=0.0
        )
        m2 = param_init_net.ConstantFill(
            [param], BlobReference(str(param) + "_second_moment", param_init_net), value=0.0
        )
        self._aux_params.local.extend([m1, m2])
        net.Adam(
            [param, m1, m2, grad, lr, iteration],
            [param, m1, m2],
            beta1=float(self.beta1),
            beta2=float(self.beta2),
            epsilon=float(self.epsilon),
        )

    def scale_learning_rate(self, scale: float) -> None:
        self.alpha *= scale


class AdagradOptimizer(Optimizer):
    """AdaGrad with the squared-gradient history in ``<param>_squared_sum`` (Caffe2's defaults:
    alpha=0.01, epsilon=1e-4, decay=1)."""

    def __init__(
        self,
        alpha: float = 0.01,
        epsilon: float = 1e-4,
        decay: float = 1.0,
        policy: str = "fixed",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.epsilon = epsilon
        self.decay = decay
        self.policy = policy
        self.init_kwargs = kwargs

    def _run(self, net: Net, param_init_net: Net, param_info: ParameterInfo) -> None:
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, _ = self.build_lr(net, param_init_net, self.alpha, policy=self.policy, **self.init_kwargs)
        history = param_init_net.ConstantFill(
            [param], BlobReference(str(param) + "_squared_sum", param_init_net), value=0.0
        )
        self._aux_params.local.append(history)
        net.Adagrad(
            [param, history, grad, lr],
            [param, history],
            epsilon=float(self.epsilon),
            decay=float(self.decay),
        )

    def scale_learning_rate(self, scale: float) -> None:
        self.alpha *= scale


def _build(
    model: ModelHelper,
    opt: Optimizer,
    weight_decay: float,
    params: Iterable[Any] | None = None,
) -> Optimizer:
    if not model.gradient_ops_added:
        raise RuntimeError("build an optimizer after model.add_gradient_ops(losses)")
    add_weight_decay(model, weight_decay)
    for info in model.get_optimization_param_info(params):
        opt(model.net, model.param_init_net, info)
    return opt


def add_weight_decay(model: ModelHelper, weight_decay: float) -> None:
    """``grad += weight_decay * param`` for WEIGHT-tagged params (see brew.add_weight_decay)."""
    _brew_weight_decay(model, weight_decay)


def build_sgd(
    model: ModelHelper,
    base_learning_rate: float,
    policy: str = "fixed",
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    **policy_args: Any,
) -> SgdOptimizer:
    """SGD on every parameter with a gradient. ``policy_args`` go to LearningRate (stepsize, gamma,
    power, max_iter, ...)."""
    opt = SgdOptimizer(base_learning_rate, policy=policy, momentum=momentum, nesterov=nesterov, **policy_args)
    _build(model, opt, weight_decay)
    return opt


def build_adam(
    model: ModelHelper,
    base_learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    policy: str = "fixed",
    weight_decay: float = 0.0,
    **policy_args: Any,
) -> AdamOptimizer:
    """Adam on every parameter with a gradient."""
    opt = AdamOptimizer(base_learning_rate, beta1, beta2, epsilon, policy=policy, **policy_args)
    _build(model, opt, weight_decay)
    return opt


def build_adagrad(
    model: ModelHelper,
    base_learning_rate: float,
    parameters: Iterable[Any] | None = None,
    epsilon: float = 1e-4,
    decay: float = 1.0,
    policy: str = "fixed",
    weight_decay: float = 0.0,
    **policy_args: Any,
) -> AdagradOptimizer:
    """AdaGrad on every parameter with a gradient (or on ``parameters``)."""
    opt = AdagradOptimizer(base_learning_rate, epsilon, decay, policy=policy, **policy_args)
    _build(model, opt, weight_decay, parameters)
    return opt

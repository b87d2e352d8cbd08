"""Gradient conformance: every forward case of a differentiable op doubles as a gradient case.

For a case of op F with inputs x and a dtype under test, the row ``F:grad`` checks three things:

1. The reference gradient is right: the gradient ops that F's maker emits, run through their
   float64 references, agree with a central finite difference of F's own reference on
   L(x) = sum_j <g_j, F(x)_j> (g_j: seeded upstream gradients), at up to ``FD_SAMPLES`` elements
   per input. A disagreement is an *error* of the op definition, not of any backend.
2. The backend's gradient agrees with the reference gradient: the forward op and its gradient ops
   run as one net on the backend, in the dtype under test, within the dtype x op-class tolerance.
3. Dtype claims: every op of that net must be claimed, or the backend must refuse cleanly.

Upstream gradients are integer-valued for exact (data-movement) ops, so their gradients (which
may sum, as Tile's or Gather's do) stay exact in every dtype.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.core import create_operator
from kaffa.device import Device, device_option
from kaffa.errors import KaffaError, UnsupportedOperatorError
from kaffa.gradients import make_gradient
from kaffa.net import FALLBACK, STRICT
from kaffa.plugins import registry
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import SCHEMAS
from kaffa.workspace import Workspace
from kaffa_conformance import reference
from kaffa_conformance.cases import EXACT, GEMM, REDUCTION, Case
from kaffa_conformance.tolerance import Tolerance, measure, tolerance, within

FD_SAMPLES = 16
FD_STEP = 1e-6  # relative step; float64 central differences are then good to ~1e-9
FD_RTOL, FD_ATOL = 1e-4, 1e-6
SUFFIX = ":grad"


def grad_row(op: str) -> str:
    return op + SUFFIX


def wants_grad(case: Case) -> bool:
    """Does this case get a gradient row? (its op has a maker; stochastic ops only on request)"""
    schema = SCHEMAS.get(case.op)
    if schema.gradient is None or not schema.differentiable or case.grad is False:
        return False
    return case.grad is True or not schema.stochastic


def grad_dtypes(case: Case, dtypes: Sequence[np.dtype]) -> list[np.dtype]:
    return [d for d in dtypes if np.dtype(d).kind == "f"]


def _rng(case: Case) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{case.id}:grad".encode()))


def _names(case: Case) -> tuple[list[str], list[str]]:
    ins = [f"in{i}" for i in range(len(case.inputs))]
    outs = [f"out{j}" for j in range(case.num_outputs)]
    for i, o in SCHEMAS.get(case.op).enforce_inplace:
        if i < len(ins) and o < len(outs):
            outs[o] = ins[i]
    return ins, outs


def _ref_view(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        return x.astype(np.float64)
    if x.dtype.kind in "iu":
        return x.astype(np.int64)
    return x


class Plan:
    """Everything about one case's gradient that does not depend on the backend or dtype."""

    def __init__(self, case: Case, dtype: np.dtype):
        self.case = case
        schema = SCHEMAS.get(case.op)
        self.in_names, self.out_names = _names(case)
        fixed = case.fixed_dtype_inputs
        masters = [np.asarray(x).astype(fixed.get(i, dtype)) for i, x in enumerate(case.inputs)]
        self.inputs = masters  # as fed to the backend (rounded to the dtype under test)
        self.ref_inputs = [_ref_view(x) for x in masters]
        self.forward = create_operator(case.op, self.in_names, self.out_names, **case.args)
        parsed = schema.parse_args(self.forward.arg)
        self.parsed = parsed
        want = reference.run(case.op, parsed, self.ref_inputs, case.num_outputs)
        flowing = schema.grad_outputs if schema.grad_outputs is not None else range(case.num_outputs)
        rng = _rng(case)
        self.g_out: dict[int, np.ndarray] = {}
        for j in flowing:
            if j < len(want) and np.asarray(want[j]).dtype.kind == "f":
                shape = np.shape(want[j])
                exact = case.op_class == EXACT
                g = rng.integers(-4, 5, size=shape) if exact else rng.uniform(-1, 1, size=shape)
                self.g_out[j] = np.asarray(g, dtype=np.float64)
        g_out_names = [f"out{j}_grad" if j in self.g_out else None for j in range(case.num_outputs)]
        made = make_gradient(self.forward, g_out_names, [f"in{i}_grad" for i in range(len(case.inputs))])
        self.grad_ops: list[OperatorDef] = made.ops
        self.g_inputs = made.g_inputs
        wanted = (
            case.grad_inputs
            if case.grad_inputs is not None
            else [i for i, x in enumerate(self.ref_inputs) if x.dtype.kind == "f" and i not in fixed]
        )
        self.checked = [i for i in wanted if self.g_inputs[i] is not None]
        self.ops_used = sorted({op.type for op in self.grad_ops})
        self.want_forward = want
        self._grads: dict[int, np.ndarray] | None = None
        self._fd: list[str] | None = None

    @property
    def grads(self) -> dict[int, np.ndarray]:
        if self._grads is None:
            self._grads = self.reference_grads()
        return self._grads

    @property
    def fd_problems(self) -> list[str]:
        if self._fd is None:
            self._fd = self.finite_difference_problems(self.grads)
        return self._fd

    def reference_grads(self) -> dict[int, np.ndarray]:
        """The gradient ops, run through their float64 references."""
        env: dict[str, np.ndarray] = dict(zip(self.in_names, self.ref_inputs))
        # zip: a reference may return more outputs than the case names (e.g. saved stats).
        env.update({n: np.asarray(w) for n, w in zip(self.out_names, self.want_forward)})
        env.update({f"out{j}_grad": g for j, g in self.g_out.items()})
        for op in self.grad_ops:
            schema = SCHEMAS.get(op.type)
            if reference.get(op.type) is None:
                raise LookupError(f"gradient op {op.type} has no conformance reference")
            ins = [env[n] for n in op.input]
            outs = reference.run(op.type, schema.parse_args(op.arg), ins, len(op.output))
            env.update({n: np.asarray(v) for n, v in zip(op.output, outs)})
        return {i: env[self.g_inputs[i]] for i in self.checked}

    def objective(self, inputs: list[np.ndarray]) -> float:
        outs = reference.run(self.case.op, self.parsed, inputs, self.case.num_outputs)
        return float(sum(np.sum(g * np.asarray(outs[j], dtype=np.float64)) for j, g in self.g_out.items()))

    def finite_difference_problems(self, grads: dict[int, np.ndarray]) -> list[str]:
        rng = _rng(self.case)
        problems = []
        for i in self.checked:
            x = self.ref_inputs[i]
            if np.shape(grads[i]) != x.shape:
                got = list(np.shape(grads[i]))
                problems.append(f"reference gradient of input {i} has shape {got}, want {list(x.shape)}")
                continue
            flat = np.arange(x.size)
            picks = flat if x.size <= FD_SAMPLES else rng.choice(flat, FD_SAMPLES, replace=False)
            worst = 0.0
            for e in picks:
                idx = np.unravel_index(e, x.shape)
                h = FD_STEP * max(1.0, abs(float(x[idx])))
                plus, minus = [a.copy() for a in self.ref_inputs], [a.copy() for a in self.ref_inputs]
                plus[i][idx] += h
                minus[i][idx] -= h
                fd = (self.objective(plus) - self.objective(minus)) / (2 * h)
                analytic = float(grads[i][idx])
                err = abs(fd - analytic)
                if err > FD_ATOL + FD_RTOL * max(abs(fd), abs(analytic)):
                    worst = max(worst, err)
                    problems.append(
                        f"input {i} element {tuple(int(k) for k in idx)}: reference gradient {analytic:.6g}, "
                        f"finite difference {fd:.6g}"
                    )
                    break
        return problems


_PLANS: dict[tuple[str, str, str], Plan] = {}


def _plan(case: Case, dtype: np.dtype) -> Plan:
    # The reference gradient depends on the rounded inputs: one plan per (case, dtype), shared by
    # every target, so the finite differences run once.
    key = (case.op, case.name, np.dtype(dtype).name)
    if key not in _PLANS:
        _PLANS[key] = Plan(case, np.dtype(dtype))
    return _PLANS[key]


def _tolerance(case: Case, plan: Plan, dtype: np.dtype) -> Tolerance:
    if case.op_class == EXACT:
        return tolerance(dtype, EXACT)
    # A gradient element sums over up to every output element (a broadcast input, a weight).
    k = max(case.reduction, max((g.size for g in plan.g_out.values()), default=1))
    mags = [float(np.max(np.abs(x))) for x in plan.ref_inputs if x.dtype.kind == "f" and x.size]
    magnitude = max(mags, default=1.0)
    return tolerance(dtype, GEMM if case.op_class == GEMM else REDUCTION, k, magnitude)


def run_grad_case(case: Case, dtype: np.dtype, target: Any, strict: bool = True) -> Any:
    """One gradient check on one target; returns a runner.CaseResult (never raises)."""
    from kaffa_conformance.runner import ERROR, FAIL, FALLBACK_RAN, PASS, UNSUPPORTED, CaseResult

    dtype = np.dtype(dtype)
    res = CaseResult(grad_row(case.op), case.name, dtype.name, target.label, ERROR)
    try:
        plan = _plan(case, dtype)
        if not plan.checked:
            res.message = "the gradient maker produced no gradient for any checked input"
            return res
        # The definition's correctness does not depend on the dtype under test: check it once.
        fd_problems = _plan(case, np.dtype(np.float64)).fd_problems
        want = plan.grads
    except Exception as e:  # a broken maker or reference is an error of the op definition
        res.message = f"building the reference gradient failed: {type(e).__name__}: {e}"
        return res
    res.uses = plan.ops_used
    if fd_problems:
        res.message = "reference gradient disagrees with a central finite difference: " + fd_problems[0]
        return res

    kern = registry().kernels
    op_types = {case.op, *plan.ops_used}
    kdefs = [kern.get(target.backend, t, target.engine) for t in op_types]
    claimed = all(k is not None and k.claims(dtype) for k in kdefs)
    dev = Device(target.backend, target.device)
    opt = device_option(dev.backend, dev.index)
    net = NetDef(name=f"{grad_row(case.op)}/{case.name}/{dtype.name}")
    for op in [plan.forward, *plan.grad_ops]:
        copy = net.op.add()
        copy.CopyFrom(op)
        copy.device_option.CopyFrom(opt)
        if target.engine:
            copy.engine = target.engine
    ws = Workspace(f"conformance-grad:{target.label}")
    stage = "feeding inputs"
    try:
        for n, a in zip(plan.in_names, plan.inputs):
            ws.feed_blob(n, a, dev)
        for j, g in plan.g_out.items():
            ws.feed_blob(f"out{j}_grad", g.astype(dtype), dev)
        stage = "creating the net"
        created = ws.create_net(net, policy=STRICT if strict else FALLBACK)
        placements = created.placement_report.placements
        res.ran_on = ",".join(sorted({p.ran_on for p in placements}))
        stage = "running"
        created.run()
        stage = "fetching gradients"
        got = {i: np.asarray(ws.fetch_blob(plan.g_inputs[i])) for i in plan.checked}
    except UnsupportedOperatorError as e:
        reasons = "; ".join(f"{u.op_type}: {u.reason}" for u in e.unsupported[:3])
        res.outcome, res.message = UNSUPPORTED, reasons
        return res
    except KaffaError as e:
        refused = refused_input_reason(dev, plan.inputs) if stage == "feeding inputs" else None
        if refused is not None:
            res.outcome, res.message = UNSUPPORTED, refused
        elif not claimed:
            res.outcome, res.message = UNSUPPORTED, f"refused while {stage}: {e}"
        else:
            res.message = f"{type(e).__name__} while {stage}: {e}"
        return res
    except Exception as e:
        res.message = f"crashed while {stage}: {type(e).__name__}: {e}"
        return res

    tol = _tolerance(case, plan, dtype)
    problems, worst_abs, worst_rel = [], 0.0, 0.0
    for i in plan.checked:
        g, w = got[i], want[i]
        if g.shape != np.shape(w):
            want_shape = list(np.shape(w))
            problems.append(f"gradient of input {i} has shape {list(g.shape)}, the reference {want_shape}")
            continue
        if g.dtype != dtype:
            problems.append(f"gradient of input {i} has dtype {g.dtype}, want {dtype}")
        a, r = measure(g, w)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
        if not within(g, w, tol):
            problems.append(f"gradient of input {i}: max abs error {a:.3g}, max rel {r:.3g} exceed {tol}")
    res.max_abs, res.max_rel, res.tolerance = worst_abs, worst_rel, tol
    fell_back = [p for p in placements if p.fell_back]
    if problems:
        res.outcome, res.message = FAIL, "; ".join(problems)
    elif fell_back:
        res.outcome = FALLBACK_RAN
        res.message = f"{len(fell_back)} op(s) ran on {fell_back[0].ran_on}: {fell_back[0].reason}"
    else:
        res.outcome = PASS
    return res


def refused_input_reason(dev: Device, arrays: Sequence[np.ndarray]) -> str | None:
    """Why ``dev`` cannot hold one of a case's inputs (e.g. int64 indices on metal), or None. A case
    with such an input is unsupported there, whichever dtype is under test: the backend never saw
    the op."""
    backend = registry().backend(dev.backend)
    for i, a in enumerate(arrays):
        reason = backend.unsupported_dtype_reason(np.asarray(a).dtype, dev.index)
        if reason is not None:
            return f"input {i} is {np.asarray(a).dtype}, which {dev} cannot hold: {reason}"
    return None


def gradient_ops_covered(cases_by_op: dict[str, list[Case]]) -> set[str]:
    """Every gradient op type some case's gradient uses (for the coverage check)."""
    used: set[str] = set()
    for op, cs in cases_by_op.items():
        for case in cs:
            if not wants_grad(case):
                continue
            dtypes = [np.dtype(d) for d in (case.dtypes or SCHEMAS.get(op).dtypes) if np.dtype(d).kind == "f"]
            if dtypes:
                with contextlib.suppress(Exception):  # reported as an error in the case's own row
                    used.update(_plan(case, dtypes[-1]).ops_used)
    return used

"""The conformance runner: every (op, case, dtype) on a backend, checked against the reference.

Per case it feeds the inputs (cast to the dtype under test) to the backend's device, creates a
one-op net, runs it, and checks:
  * the outputs against the float64 reference, within the dtype x op-class tolerance;
  * the output shapes and dtypes against the schema's shape inference;
  * dtype claims both ways: a claimed dtype must pass; an unclaimed one must be refused cleanly
    (a kaffa error at feed or net creation, never a crash or a silent wrong answer);
  * in-place variants, where the case asks for them.

Outcomes: pass, fail (with max abs / max rel error), unsupported (declared: dtype not claimed,
arguments rejected by the kernel's predicate, or no kernel), fallback (ran on cpu; only without
--strict), error (anything unexpected: a crash, a wrong exception, a drifted reference).
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import kaffa
from kaffa import engines
from kaffa.core import create_operator
from kaffa.device import Device, device_option
from kaffa.errors import KaffaError, UnsupportedOperatorError
from kaffa.net import FALLBACK, STRICT, FallbackWarning
from kaffa.plugins import registry
from kaffa.proto import NetDef
from kaffa.schema import SCHEMAS, TensorInfo, make_argument
from kaffa.workspace import Workspace
from kaffa_conformance import cases as _cases
from kaffa_conformance import goldens, gradcheck, reference
from kaffa_conformance.cases import GEMM, RANDOM, REDUCTION, Case
from kaffa_conformance.tolerance import Tolerance, measure, tolerance, within

PASS, FAIL, UNSUPPORTED, FALLBACK_RAN, ERROR = "pass", "fail", "unsupported", "fallback", "error"
OUTCOMES = (PASS, FALLBACK_RAN, UNSUPPORTED, FAIL, ERROR)
GRAD = "grad"  # the plan's marker for a gradient check of a case


@dataclass(frozen=True)
class Target:
    """A column of the matrix: a backend, one of its devices, and an engine ("" = default kernels)."""

    backend: str
    engine: str = ""
    device: int = 0

    @property
    def label(self) -> str:
        return self.backend + (f"/{self.engine}" if self.engine else "")

    @classmethod
    def parse(cls, text: str) -> Target:
        """ "cuda", "cuda/CUDNN", "opencl:1", "opencl:1/WINOGRAD"."""
        where, _, engine = text.partition("/")
        dev = Device.parse(where)
        return cls(dev.backend, engine.upper(), dev.index)


@dataclass
class CaseResult:
    op: str
    case: str
    dtype: str
    target: str
    outcome: str
    message: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance: Tolerance | None = None
    ran_on: str = ""
    uses: list[str] = field(default_factory=list)  # gradient rows: the gradient op types they ran

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["tolerance"] = self.tolerance.to_dict() if self.tolerance else None
        return d


@dataclass
class Cell:
    """One (op, dtype, target) cell: the cases in it, summarized."""

    op: str
    dtype: str
    target: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        got = {r.outcome for r in self.results}
        for worst in (ERROR, FAIL):
            if worst in got:
                return worst
        if got == {UNSUPPORTED}:
            return UNSUPPORTED
        return FALLBACK_RAN if FALLBACK_RAN in got else PASS

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out

    @property
    def max_abs(self) -> float | None:
        vals = [r.max_abs for r in self.results if r.max_abs is not None]
        return max(vals) if vals else None

    @property
    def max_rel(self) -> float | None:
        vals = [r.max_rel for r in self.results if r.max_rel is not None]
        return max(vals) if vals else None

    def worst(self) -> CaseResult | None:
        """The case that decided the outcome (the first failing one, or the largest error)."""
        order = {o: i for i, o in enumerate(OUTCOMES)}
        return max(self.results, key=lambda r: (order[r.outcome], r.max_abs or 0.0), default=None)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst()
        return {
            "op": self.op,
            "dtype": self.dtype,
            "target": self.target,
            "outcome": self.outcome,
            "cases": len(self.results),
            "counts": self.counts(),
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "tolerance": worst.tolerance.to_dict() if worst and worst.tolerance else None,
            "message": worst.message if worst and worst.outcome != PASS else "",
        }


@dataclass
class ConformanceResult:
    targets: list[str]
    strict: bool
    results: list[CaseResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        table: dict[tuple[str, str, str], Cell] = {}
        for r in self.results:
            key = (r.op, r.dtype, r.target)
            if key not in table:
                table[key] = Cell(r.op, r.dtype, r.target)
            table[key].results.append(r)
        return list(table.values())

    @property
    def ok(self) -> bool:
        return not any(r.outcome in (FAIL, ERROR) for r in self.results)

    def failures(self) -> list[Cell]:
        return [c for c in self.cells() if c.outcome in (FAIL, ERROR)]

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {t: dict.fromkeys(OUTCOMES, 0) for t in self.targets}
        for c in self.cells():
            out[c.target][c.outcome] += 1
        return out


def _magnitude(case: Case, inputs: Sequence[np.ndarray]) -> float:
    floats = [float(np.max(np.abs(x))) for x in inputs if x.dtype.kind == "f" and x.size]
    if case.op_class == GEMM and len(floats) >= 2:
        return floats[0] * floats[1]
    return floats[0] if floats else 1.0


def _cast_inputs(case: Case, dtype: np.dtype) -> list[np.ndarray]:
    return [np.asarray(x).astype(case.fixed_dtype_inputs.get(i, dtype)) for i, x in enumerate(case.inputs)]


def _reference_view(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        return x.astype(np.float64)
    if x.dtype.kind in "iu":
        return x.astype(np.int64)
    return x


def _claims(target: Target, op: str, dtype: np.dtype) -> bool:
    kdef = registry().kernels.get(target.backend, op, target.engine)
    return kdef is not None and kdef.claims(dtype)


def run_case(
    case: Case,
    dtype: np.dtype,
    target: Target,
    strict: bool = True,
    inplace: tuple[int, int] | None = None,
    golden_problems: Sequence[str] = (),
) -> CaseResult:
    """Run one case for one dtype on one target; never raises for backend misbehaviour."""
    dtype = np.dtype(dtype)
    name = case.name + ("@inplace" if inplace else "")
    res = CaseResult(case.op, name, dtype.name, target.label, ERROR)
    if golden_problems:
        res.message = "reference drifted from the frozen goldens: " + "; ".join(golden_problems[:2])
        return res
    claimed = _claims(target, case.op, dtype)
    ws = Workspace(f"conformance:{target.label}")
    dev = Device(target.backend, target.device)
    in_names = [f"in{i}" for i in range(len(case.inputs))]
    out_names = [f"out{j}" for j in range(case.num_outputs)]
    if inplace:
        out_names[inplace[1]] = in_names[inplace[0]]
    for i, o in SCHEMAS.get(case.op).enforce_inplace:  # updates (Iter, optimizers) must run in place
        if i < len(in_names) and o < len(out_names):
            out_names[o] = in_names[i]
    arrays = _cast_inputs(case, dtype)
    op_args = dict(case.args)
    schema = SCHEMAS.get(case.op)
    if schema.type_input is None and "dtype" in schema.args and "dtype" not in op_args:
        op_args["dtype"] = dtype  # fillers: the dtype under test is an argument, not an input
    stage = "feeding inputs"
    try:
        for n, a in zip(in_names, arrays):
            ws.feed_blob(n, a, dev)
        stage = "creating the net"
        op = create_operator(
            case.op,
            in_names,
            out_names,
            device_option=device_option(dev.backend, dev.index),
            engine=target.engine or None,
            **op_args,
        )
        net = NetDef(name=f"{case.op}/{name}/{dtype.name}")
        net.op.append(op)
        created = ws.create_net(net, policy=STRICT if strict else FALLBACK)
        placement = created.placement_report.placements[0]
        res.ran_on = placement.ran_on + (f"/{placement.engine}" if placement.engine else "")
        stage = "running"
        created.run()
        stage = "fetching outputs"
        got = [ws.fetch_blob(n) for n in out_names]
    except UnsupportedOperatorError as e:
        res.outcome, res.message = UNSUPPORTED, e.unsupported[0].reason
        if claimed and stage == "creating the net" and "claimed" in res.message:
            res.outcome = ERROR  # the registry says claimed, the planner says not: a contract bug
        return res
    except KaffaError as e:
        refused = gradcheck.refused_input_reason(dev, arrays) if stage == "feeding inputs" else None
        if refused is not None:  # e.g. int64 indices on metal: the op never reached the backend
            res.outcome, res.message = UNSUPPORTED, refused
        elif not claimed:  # an unclaimed dtype refused cleanly (e.g. no float64 on Metal)
            res.outcome, res.message = UNSUPPORTED, f"refused while {stage}: {e}"
        else:
            res.message = f"{type(e).__name__} while {stage}: {e}"
        return res
    except Exception as e:  # a crash is always an error, claimed or not
        res.message = f"crashed while {stage}: {type(e).__name__}: {e}"
        return res
    if target.engine and placement.engine != target.engine:
        res.outcome, res.message = (
            UNSUPPORTED,
            f"engine {target.engine} declined; ran {placement.engine or 'default'}",
        )
        return res
    if not claimed and strict and placement.ran_on == str(dev):
        res.message = f"dtype {dtype.name} is not claimed by {target.label} but was accepted"
        return res
    problems, errs = _check_outputs(case, op_args, dtype, arrays, got)
    res.max_abs, res.max_rel, res.tolerance = errs
    fell_back = placement.fell_back
    if problems:
        res.outcome, res.message = FAIL, "; ".join(problems)
    else:
        res.outcome = FALLBACK_RAN if fell_back else PASS
        res.message = f"ran on {placement.ran_on}: {placement.reason}" if fell_back else ""
    return res


def _check_outputs(
    case: Case, op_args: dict[str, Any], dtype: np.dtype, arrays: list[np.ndarray], got: list[np.ndarray]
) -> tuple[list[str], tuple[float | None, float | None, Tolerance | None]]:
    schema = SCHEMAS.get(case.op)
    args = schema.parse_args([make_argument(k, v) for k, v in op_args.items()])
    problems: list[str] = []
    inferred = schema.infer_outputs(args, [TensorInfo.of(a) for a in arrays], case.num_outputs)
    for j, (g, inf) in enumerate(zip(got, inferred)):
        if inf.dtype is not None and np.dtype(g.dtype) != inf.dtype:
            problems.append(f"output {j} has dtype {g.dtype}, shape inference says {inf.dtype}")
        if inf.shape is not None and any(
            d is not None and (len(inf.shape) != g.ndim or d != g.shape[k]) for k, d in enumerate(inf.shape)
        ):
            problems.append(f"output {j} has shape {list(g.shape)}, shape inference says {list(inf.shape)}")
    if case.op_class == RANDOM:
        if case.check is not None:
            problems += case.check(got, args, dtype)
        return problems, (None, None, None)
    want = reference.run(case.op, args, [_reference_view(a) for a in arrays], case.num_outputs)
    worst_abs = worst_rel = 0.0
    tol_used: Tolerance | None = None
    for j in case.compare if case.compare is not None else range(case.num_outputs):
        g, w = got[j], np.asarray(want[j])
        if g.shape != w.shape:
            problems.append(f"output {j} has shape {list(g.shape)}, the reference {list(w.shape)}")
            continue
        reduction = case.reduction if case.op_class in (GEMM, REDUCTION) else 1
        tol = tolerance(g.dtype, case.op_class, reduction, _magnitude(case, arrays))
        want_j = w.astype(g.dtype) if g.dtype.kind in "biu" else w
        a, r = measure(g, want_j)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
        tol_used = tol if tol_used is None or tol.atol > tol_used.atol else tol_used
        if not within(g, want_j, tol):
            problems.append(f"output {j}: max abs error {a:.3g}, max rel error {r:.3g} exceed {tol}")
    return problems, (worst_abs, worst_rel, tol_used)


def targets_for(backend: str, device: int = 0) -> list[Target]:
    """The default-kernel target plus one per extra engine registered on ``backend``."""
    kern = registry().kernels
    found = {e for op in kern.ops(backend) for e in kern.engines(backend, op) if e}
    return [Target(backend, "", device)] + [Target(backend, e, device) for e in sorted(found)]


def default_ops() -> list[str]:
    """Every op that has a schema, a reference and cases."""
    return [op for op in _cases.ops_with_cases() if op in SCHEMAS and reference.get(op) is not None]


def plan_cases(ops: Iterable[str], targets: Sequence[Target]) -> list[tuple[Case, np.dtype, Target, Any]]:
    """Every (case, dtype, target, variant) to run, in a stable order; the variant is None, an
    in-place (input, output) pair, or GRAD for the case's gradient check."""
    work = []
    for op in ops:
        schema = SCHEMAS.get(op)
        for case in _cases.for_op(op):
            dtypes = [np.dtype(d) for d in (case.dtypes or schema.dtypes)]
            for target in targets:
                if target.engine and registry().kernels.get(target.backend, op, target.engine) is None:
                    continue  # an engine column covers only the ops that engine implements
                for dt in dtypes:
                    work.append((case, dt, target, None))
                    for pair in case.inplace:
                        work.append((case, dt, target, tuple(pair)))
                if gradcheck.wants_grad(case):
                    work += [(case, dt, target, GRAD) for dt in gradcheck.grad_dtypes(case, dtypes)]
    return work


def run_planned(
    case: Case, dtype: np.dtype, target: Target, variant: Any, strict: bool, drift: Sequence[str] = ()
) -> CaseResult:
    """Run one item of ``plan_cases``: the forward case (plain or in place) or its gradient check."""
    if variant == GRAD:
        return gradcheck.run_grad_case(case, dtype, target, strict)
    return run_case(case, dtype, target, strict, variant, drift)


def run(
    targets: Sequence[Target | str],
    ops: Iterable[str] | None = None,
    strict: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> ConformanceResult:
    """Run the suite. ``progress(done, total, label)`` is called after every case."""
    tgts = [t if isinstance(t, Target) else Target.parse(t) for t in targets]
    reg = registry()
    for t in tgts:
        backend = reg.backend(t.backend)  # DeviceError for unknown names
        reason = backend.unavailable_reason()
        if reason is not None:
            raise kaffa.DeviceError(f"backend '{t.backend}' is unavailable here: {reason}")
    op_list = list(ops) if ops is not None else default_ops()
    for op in op_list:
        SCHEMAS.get(op)  # UnknownOperatorError with "did you mean"
        if reference.get(op) is None:
            raise KeyError(f"operator {op} has no conformance reference")
    work = plan_cases(op_list, tgts)
    # Drift from the frozen goldens fails the op's cells. An op without goldens yet (being developed)
    # is not drift: tests/test_conformance.py demands goldens for every op instead.
    drift = {op: [p for p in goldens.verify(op) if not p.startswith("no goldens")] for op in op_list}
    result = ConformanceResult([t.label for t in tgts], strict, meta=_meta(tgts, strict))
    with engines.explicit_engines_only(), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)  # recorded per cell instead
        for k, (case, dt, target, pair) in enumerate(work, 1):
            if pair == GRAD and drift.get(case.op):
                continue  # the forward rows already report the drift
            result.results.append(run_planned(case, dt, target, pair, strict, drift.get(case.op, ())))
            if progress:
                progress(k, len(work), f"{target.label} {case.op}")
    return result


def _meta(targets: Sequence[Target], strict: bool) -> dict[str, Any]:
    reg = registry()
    backends = {}
    for name in sorted({t.backend for t in targets}):
        b = reg.backend(name)
        backends[name] = {"description": b.describe(), "devices": [d.describe() for d in b.devices()]}
    return {
        "kaffa": kaffa.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "strict": strict,
        "backends": backends,
    }

"""onnx's own node tests through ``kaffa.onnx.backend``.

    python -m kaffa_conformance.onnx_node_suite [--backend cpu] [--backend opencl] \
        [--filter REGEX] [--json out.json] [--verbose]

Every case of ``onnx.backend.test.loader.load_model_tests(kind="node")`` (1,884 with onnx 1.23)
is prepared (imported + init net run) on each kaffa backend, run on each of its data sets, and its
outputs compared with onnx's expected outputs exactly as ``onnx.backend.test.BackendTest`` does
(``Runner.assert_similar_outputs``: same shapes, same dtypes, ``assert_allclose`` with the case's
rtol/atol, 1e-3/1e-7 unless onnx sets others).

Outcomes: ``pass``; ``skip`` for the cases in ``kaffa_conformance.onnx_excluded`` (one list, a
reason per entry); ``fail`` for everything else, of one of these kinds, by exception type:
``unsupported`` (``UnsupportedOnnxOpError`` at import: nodes kaffa cannot translate),
``import`` (any other error while preparing), ``run`` (an error while running), ``mismatch``
(outputs differ from the expected ones). BackendTest itself would count all four as failures.

The report prints, per backend, the pass/fail/skip counts, the failures per op type (the op the
case tests; ``Op (expanded)`` for its ``_expanded`` function-body variant) with the first error
line, and which untranslated ONNX op types cost how many cases.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import re
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kaffa_conformance.onnx_excluded import excluded_reason

__all__ = ["CaseResult", "counts", "load_cases", "main", "op_labels", "report", "run_case", "run_suite"]

_EXPANDED = re.compile(r"(.*)_expanded(_ver\d+)?$")


@dataclass
class CaseResult:
    name: str
    op: str
    status: str  # pass | fail | skip
    kind: str = ""  # fail: unsupported | import | run | mismatch; skip: excluded
    message: str = ""
    missing_ops: list[str] | None = None  # op types import_model could not translate
    seconds: float = 0.0


class _Timeout(Exception):
    pass


def load_cases(
    pattern: str | None = None, modules: list[str] | None = None
) -> tuple[list[Any], dict[str, str]]:
    """onnx's node test cases (``TestCase``), optionally only names matching ``pattern``
    (``re.search``), and the op type each tests (see ``op_labels``). ``modules`` (names in
    ``onnx.backend.test.case.node``, e.g. ["relu", "conv"]) generates only those modules' cases,
    which is much faster than all of them."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if modules:
            import importlib

            from onnx.backend.test.case.node import _NodeTestCases

            for m in modules:
                importlib.import_module(f"onnx.backend.test.case.node.{m}")
            cases = list(_NodeTestCases)
        else:
            from onnx.backend.test.loader import load_model_tests

            cases = list(load_model_tests(kind="node"))
    labels = op_labels(cases)
    if pattern:
        rx = re.compile(pattern)
        cases = [c for c in cases if rx.search(c.name)]
    return cases, labels


def op_labels(cases: list[Any]) -> dict[str, str]:
    """Test name -> the op type it tests. A one-node case: that node's op type. An ``_expanded``
    case (the op's function body, inlined): "Op (expanded)" for the op of its base case."""
    single = {}
    for c in cases:
        nodes = c.model.graph.node
        single[c.name] = nodes[0].op_type if len(nodes) == 1 else None
    labels = {}
    for c in cases:
        m = _EXPANDED.match(c.name)
        nodes = c.model.graph.node
        if m and single.get(m.group(1)):
            labels[c.name] = f"{single[m.group(1)]} (expanded)"
        elif single[c.name]:
            labels[c.name] = single[c.name]
        else:
            # Several nodes, no base case: the op types of the graph that are not plumbing.
            kinds = [n.op_type for n in nodes if n.op_type not in ("Constant", "Identity")]
            labels[c.name] = (kinds or [nodes[0].op_type])[-1]
    return labels


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(e, AssertionError) and lines:
        # numpy's assert messages: "Not equal to tolerance ...", "Mismatched elements ...", ...
        return "; ".join(lines[:3])[:300]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def run_case(case: Any, backend: str, timeout_s: float = 120.0) -> CaseResult:
    """Prepare and run one onnx node test case on ``backend``; never raises."""
    from onnx.backend.test.runner import Runner

    from kaffa.onnx import UnsupportedOnnxOpError
    from kaffa.onnx import backend as kb

    start = time.perf_counter()
    result = CaseResult(case.name, "", "pass")

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout(f"timed out after {timeout_s:.0f} s")

    use_alarm = timeout_s > 0 and hasattr(signal, "setitimer")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    stage = "import"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rep = kb.prepare(case.model, "CPU", backend=backend)
            for inputs, expected in case.data_sets:
                stage = "run"
                ins = [np.asarray(_normal(x)) for x in inputs]
                outs = list(rep.run(ins))
                stage = "mismatch"
                Runner.assert_similar_outputs(
                    [_normal(x) for x in expected],
                    outs,
                    rtol=case.rtol,
                    atol=case.atol,
                    model_dir=case.name,
                )
    except UnsupportedOnnxOpError as e:
        result.status, result.kind, result.message = "fail", "unsupported", _first_line(e)
        untranslated = ("no kaffa translation", "custom domain")
        result.missing_ops = sorted({n[1] for n in e.nodes if n[3] in untranslated})
        result.message = "; ".join(f"{n[1]}: {n[3]}" for n in e.nodes[:3])[:300]
    except AssertionError as e:
        result.status, result.kind, result.message = "fail", stage, _first_line(e)
    except (Exception, _Timeout) as e:  # every error is an outcome
        kind = "import" if stage == "import" else "run"
        result.status, result.kind, result.message = "fail", kind, _first_line(e)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    result.seconds = time.perf_counter() - start
    return result


def _normal(x: Any) -> Any:
    import onnx

    if isinstance(x, onnx.TensorProto):
        return onnx.numpy_helper.to_array(x)
    return x


def run_suite(
    backend: str,
    cases: list[Any],
    labels: dict[str, str] | None = None,
    timeout_s: float = 120.0,
    progress: bool = False,
) -> list[CaseResult]:
    labels = labels if labels is not None else op_labels(cases)
    results = []
    for k, case in enumerate(cases):
        reason = excluded_reason(case.name)
        if reason is not None:
            r = CaseResult(case.name, labels[case.name], "skip", "excluded", reason)
        else:
            r = run_case(case, backend, timeout_s)
            r.op = labels[case.name]
        results.append(r)
        if progress and (k + 1) % 100 == 0:
            print(f"  [{backend}] {k + 1}/{len(cases)}", file=sys.stderr, flush=True)
    return results


def counts(results: list[CaseResult]) -> dict[str, int]:
    c = collections.Counter(r.status for r in results)
    return {s: c.get(s, 0) for s in ("pass", "fail", "skip")}


def report(backend: str, results: list[CaseResult], verbose: bool = False, top: int = 0) -> str:
    c = counts(results)
    kinds = collections.Counter(r.kind for r in results if r.status == "fail")
    lines = [
        f"== {backend}: {len(results)} cases: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip",
        "   failures by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()),
    ]
    by_op: dict[str, list[CaseResult]] = collections.defaultdict(list)
    for r in results:
        if r.status == "fail":
            by_op[r.op].append(r)
    ordered = sorted(by_op.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    if top:
        ordered = ordered[:top]
    if ordered:
        lines.append(f"   failures per op type ({len(by_op)} op types):")
        width = max(len(op) for op, _ in ordered)
        for op, rs in ordered:
            total = sum(1 for r in results if r.op == op and r.status != "skip")
            first = rs[0]
            head = f"   {op:<{width}}  {len(rs):>3}/{total:<3} {first.kind:<11}"
            lines.append(f"{head} {first.name}: {first.message}")
    missing = collections.Counter(op for r in results if r.missing_ops for op in r.missing_ops)
    if missing:
        lines.append("   ONNX op types with no translator (cases they fail):")
        lines.append("   " + ", ".join(f"{op} {n}" for op, n in missing.most_common()))
    if verbose:
        lines.append("   all failures:")
        lines.extend(f"   {r.name} [{r.op}] {r.kind}: {r.message}" for r in results if r.status == "fail")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kaffa_conformance.onnx_node_suite", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--backend", action="append", help="kaffa backend (repeatable; default cpu)")
    ap.add_argument("--filter", help="only tests whose name matches this regex (re.search)")
    ap.add_argument("--json", help="write every case's outcome to this file")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case (default 120)")
    ap.add_argument("--top", type=int, default=0, help="show only the N op types with most failures")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every failing case")
    ap.add_argument("--progress", action="store_true", help="progress on stderr every 100 cases")
    args = ap.parse_args(argv)

    import onnx

    from kaffa.onnx import backend as kb

    backends = args.backend or ["cpu"]
    cases, labels = load_cases(args.filter)
    out: dict[str, Any] = {
        "onnx_version": onnx.__version__,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "filter": args.filter,
        "backends": {},
    }
    matching = f" matching {args.filter!r}" if args.filter else ""
    print(f"onnx {onnx.__version__} node tests: {len(cases)} cases{matching}")
    for name in backends:
        if not kb.supports_device(name):
            reason = kb._unavailable(kb.kaffa_device(name))
            print(f"== {name}: unavailable here ({reason}); not run")
            out["backends"][name] = {"unavailable": reason}
            continue
        t0 = time.perf_counter()
        results = run_suite(name, cases, labels, args.timeout, args.progress)
        print(report(name, results, args.verbose, args.top))
        print(f"   ({time.perf_counter() - t0:.0f} s)")
        out["backends"][name] = {"counts": counts(results), "cases": [asdict(r) for r in results]}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pytest plugin: run the conformance suite as test items, for a plugin's own CI.

    pytest --kaffa-backend mychip                       # uses kaffa_conformance.suite
    pytest --kaffa-backend mychip --kaffa-op Conv tests/ # your own test using the fixture

Any test that takes the ``kaffa_case`` fixture is parametrized over every (op, case, dtype)
of the chosen backend(s); ``kaffa_case.check()`` fails the test on a fail/error outcome and skips
it (with the reason) on a declared "unsupported" one. Registered through the ``pytest11`` entry
point, so installing kaffa is enough.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kaffa", "kaffa conformance")
    group.addoption(
        "--kaffa-backend",
        action="append",
        default=[],
        metavar="NAME[/ENGINE]",
        help="run the kaffa conformance suite on this backend (repeatable)",
    )
    group.addoption(
        "--kaffa-op", action="append", default=[], metavar="OP", help="only this operator (repeatable)"
    )
    group.addoption(
        "--kaffa-fallback",
        action="store_true",
        help="allow cpu fallback (cells show as 'fallback'); default is strict",
    )


@functools.cache
def _drift(op: str) -> tuple[str, ...]:
    """Differences from the frozen goldens, checked once per op (not once per item)."""
    from kaffa_conformance import goldens

    return tuple(p for p in goldens.verify(op) if not p.startswith("no goldens"))


@dataclass
class ConformanceCase:
    case: Any
    dtype: np.dtype
    target: Any
    variant: Any  # None, an in-place (input, output) pair, or runner.GRAD
    strict: bool

    def run(self) -> Any:
        from kaffa import engines
        from kaffa_conformance import runner

        with engines.explicit_engines_only(), np.errstate(all="ignore"):
            return runner.run_planned(
                self.case, self.dtype, self.target, self.variant, self.strict, _drift(self.case.op)
            )

    def check(self) -> Any:
        from kaffa_conformance import runner

        res = self.run()
        if res.outcome == runner.UNSUPPORTED:
            pytest.skip(f"unsupported (declared): {res.message}")
        if res.outcome in (runner.FAIL, runner.ERROR):
            pytest.fail(f"{res.outcome}: {res.message}", pytrace=False)
        return res


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kaffa_case" not in metafunc.fixturenames:
        return
    backends = metafunc.config.getoption("kaffa_backend")
    if not backends:
        metafunc.parametrize(
            "kaffa_case",
            [
                pytest.param(
                    None, marks=pytest.mark.skip(reason="no backend chosen: pass --kaffa-backend NAME")
                )
            ],
        )
        return
    from kaffa_conformance import runner

    targets = [runner.Target.parse(b) for b in backends]
    ops = metafunc.config.getoption("kaffa_op") or runner.default_ops()
    strict = not metafunc.config.getoption("kaffa_fallback")
    params, ids = [], []
    for case, dt, target, pair in runner.plan_cases(ops, targets):
        params.append(ConformanceCase(case, dt, target, pair, strict))
        suffix = ":grad" if pair == runner.GRAD else "@inplace" if pair else ""
        ids.append(f"{target.label}-{case.op}-{case.name}{suffix}-{dt.name}")
    metafunc.parametrize("kaffa_case", params, ids=ids)

"""Render a conformance result as JSON, Markdown and one self-contained HTML page."""

from __future__ import annotations

import html
import json
from pathlib import Path

from kaffa_conformance.runner import (
    ERROR,
    FAIL,
    FALLBACK_RAN,
    OUTCOMES,
    PASS,
    UNSUPPORTED,
    Cell,
    ConformanceResult,
)

SYMBOL = {PASS: "✅", FAIL: "❌", UNSUPPORTED: "·", FALLBACK_RAN: "↩", ERROR: "💥"}
FILES = ("conformance.json", "conformance.md", "conformance.html")


def _dtypes(cells: list[Cell]) -> list[str]:
    order = ["float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]
    seen = {c.dtype for c in cells}
    return [d for d in order if d in seen] + sorted(seen - set(order))


def _grid(result: ConformanceResult) -> dict[str, dict[str, dict[str, Cell]]]:
    """target -> op -> dtype -> cell."""
    grid: dict[str, dict[str, dict[str, Cell]]] = {t: {} for t in result.targets}
    for c in result.cells():
        grid[c.target].setdefault(c.op, {})[c.dtype] = c
    return grid


def _err(cell: Cell) -> str:
    return "" if cell.max_abs is None else f"{cell.max_abs:.1e}"


def to_json(result: ConformanceResult) -> str:
    return json.dumps(
        {
            "meta": result.meta,
            "ok": result.ok,
            "summary": result.summary(),
            "cells": [c.to_dict() for c in result.cells()],
            "cases": [r.to_dict() for r in result.results],
        },
        indent=1,
    )


def to_markdown(result: ConformanceResult) -> str:
    lines = ["# kaffa conformance", ""]
    meta = result.meta
    lines.append(
        f"kaffa {meta.get('kaffa')} · numpy {meta.get('numpy')} · {meta.get('platform')} · "
        f"{meta.get('date')} · {'strict (no fallback)' if result.strict else 'fallback allowed'}"
    )
    lines.append("")
    for name, b in meta.get("backends", {}).items():
        lines.append(f"- **{name}**: {b['description']}; " + "; ".join(b["devices"]))
    lines += [
        "",
        "Legend: ✅ pass (max abs error) · ❌ fail · · unsupported (declared) · ↩ ran on cpu fallback · "
        "💥 error",
        "",
    ]
    lines += ["| target | " + " | ".join(OUTCOMES) + " |", "|---|" + "---|" * len(OUTCOMES)]
    for target, counts in result.summary().items():
        lines.append(f"| {target} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    grid = _grid(result)
    for target in result.targets:
        cells = [c for ops in grid[target].values() for c in ops.values()]
        dts = _dtypes(cells)
        lines += ["", f"## {target}", "", "| op | " + " | ".join(dts) + " |", "|---|" + "---|" * len(dts)]
        for op in sorted(grid[target]):
            row = []
            for dt in dts:
                cell = grid[target][op].get(dt)
                row.append("" if cell is None else f"{SYMBOL[cell.outcome]} {_err(cell)}".strip())
            lines.append(f"| {op} | " + " | ".join(row) + " |")
    bad = result.failures()
    if bad:
        lines += ["", "## Failures", ""]
        for cell in bad:
            for r in cell.results:
                if r.outcome in (FAIL, ERROR):
                    lines.append(
                        f"- `{r.target}` **{r.op}** {r.dtype} case `{r.case}`: {r.outcome}: {r.message}"
                    )
    unsupported = [c for c in result.cells() if c.outcome == UNSUPPORTED]
    if unsupported:
        lines += ["", "## Unsupported cells (declared)", ""]
        for cell in unsupported:
            lines.append(f"- `{cell.target}` {cell.op} {cell.dtype}: {cell.results[0].message}")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:center;font-variant-numeric:tabular-nums}
th{background:#f4f4f4} td.op{text-align:left;font-weight:600}
.pass{background:#dff5df}.fail{background:#f9d0d0}.error{background:#f3b0e0}
.unsupported{background:#eee;color:#888}.fallback{background:#fff2c2}
details{margin:.3em 0} code{background:#f4f4f4;padding:0 3px}
"""


def to_html(result: ConformanceResult) -> str:
    esc = html.escape
    meta = result.meta
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>kaffa conformance</title>"
        f"<style>{_CSS}</style></head><body><h1>kaffa conformance</h1>"
    ]
    parts.append(
        f"<p>kaffa {esc(str(meta.get('kaffa')))} · numpy {esc(str(meta.get('numpy')))} · "
        f"{esc(str(meta.get('platform')))} · {esc(str(meta.get('date')))} · "
        f"{'strict (no fallback)' if result.strict else 'fallback allowed'} · "
        f"<b>{'OK' if result.ok else 'FAILED'}</b></p><ul>"
    )
    for name, b in meta.get("backends", {}).items():
        parts.append(f"<li><b>{esc(name)}</b>: {esc(b['description'])}; {esc('; '.join(b['devices']))}</li>")
    parts.append("</ul><table><tr><th>target</th>" + "".join(f"<th>{o}</th>" for o in OUTCOMES) + "</tr>")
    for target, counts in result.summary().items():
        parts.append(
            f"<tr><td class='op'>{esc(target)}</td>"
            + "".join(f"<td class='{o}'>{counts[o]}</td>" for o in OUTCOMES)
            + "</tr>"
        )
    parts.append("</table>")
    grid = _grid(result)
    for target in result.targets:
        cells = [c for ops in grid[target].values() for c in ops.values()]
        dts = _dtypes(cells)
        parts.append(
            f"<h2>{esc(target)}</h2><table><tr><th>op</th>"
            + "".join(f"<th>{esc(d)}</th>" for d in dts)
            + "</tr>"
        )
        for op in sorted(grid[target]):
            parts.append(f"<tr><td class='op'>{esc(op)}</td>")
            for dt in dts:
                cell = grid[target][op].get(dt)
                if cell is None:
                    parts.append("<td></td>")
                    continue
                worst = cell.worst()
                tip = "; ".join(f"{k}: {v}" for k, v in cell.counts().items())
                if worst and worst.tolerance:
                    tip += f"; tolerance {worst.tolerance}"
                if worst and worst.message:
                    tip += f"; {worst.message}"
                parts.append(
                    f"<td class='{cell.outcome}' title='{esc(tip, quote=True)}'>"
                    f"{SYMBOL[cell.outcome]} {esc(_err(cell))}</td>"
                )
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("<h2>Every case</h2>")
    for target in result.targets:
        rows = [r for r in result.results if r.target == target]
        parts.append(
            f"<details><summary>{esc(target)}: {len(rows)} cases</summary><table><tr><th>op</th>"
            "<th>case</th><th>dtype</th><th>outcome</th><th>max abs</th><th>max rel</th><th>tolerance</th>"
            "<th>ran on</th><th>message</th></tr>"
        )
        for r in rows:
            fmt = lambda v: "" if v is None else f"{v:.2e}"  # noqa: E731
            parts.append(
                f"<tr class='{r.outcome}'><td>{esc(r.op)}</td><td>{esc(r.case)}</td><td>{r.dtype}</td>"
                f"<td>{r.outcome}</td><td>{fmt(r.max_abs)}</td><td>{fmt(r.max_rel)}</td>"
                f"<td>{esc(str(r.tolerance or ''))}</td><td>{esc(r.ran_on)}</td>"
                f"<td style='text-align:left'>{esc(r.message)}</td></tr>"
            )
        parts.append("</table></details>")
    parts.append("</body></html>")
    return "".join(parts)


def write(result: ConformanceResult, directory: str | Path) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, render in zip(FILES, (to_json, to_markdown, to_html)):
        p = out / name
        p.write_text(render(result), encoding="utf-8")
        paths.append(p)
    return paths

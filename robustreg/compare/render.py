"""The toolkit comparison's report rendered: the terminal table, report.md and report.json.

Each row shows what it ran: ``same`` (yes / NO: the parameters it cannot take), its parameters in
robustreg's vocabulary and under the toolkit's own names.  Below the table: the pairwise agreement,
the random-start noise and the pairs that disagree by more than that noise, with their samples,
then the automatic checks (:mod:`robustreg.checks`), as in every evaluation report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import write_set_atomic
from ..report import adaptive_block, adaptive_markdown, checks_block, checks_markdown
from ..tables import format_table, shorten

__all__ = ["render_markdown", "render_table", "write_report"]


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "s":
        return f"{value:.2f}"
    return f"{value:.4g}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_params(params: Mapping[str, Any] | None) -> str:
    """``steps=20 step_size=0.075 ...`` (``-`` when empty)."""
    return " ".join(f"{k}={_value(v)}" for k, v in (params or {}).items()) or "-"


def _same(row: Mapping[str, Any]) -> str:
    if row.get("same_attack") is None:
        return "-"
    if row["same_attack"]:
        return "yes"
    return "NO: lacks " + ", ".join(row.get("missing", []))


def _table(report: Mapping[str, Any], note_width: int | None) -> tuple[list[str], list[list[str]]]:
    header = ["toolkit", "name", "robust acc", "seconds", "vs native", "fwd/sample", "bwd/sample", "max pert",
              "queries", "same attack", "params", "toolkit params", "note"]
    rows = []
    for r in report["results"]:
        note = r.get("error") or r.get("note") or ""
        if not r["available"] and "error" not in r:
            note = f"not available: {note}"
        rows.append([r["toolkit"], r["name"], _fmt(r["robust_accuracy"], "pct"), _fmt(r["seconds"], "s"),
                     _fmt(r["relative_seconds"], "x"), _fmt(r.get("forwards"), "g"), _fmt(r.get("backwards"), "g"),
                     _fmt(r["max_perturbation"], "g"),
                     _fmt(r.get("mean_queries"), "g"), _same(r), format_params(r.get("params")),
                     format_params(r.get("toolkit_params")), shorten(note, note_width)])
    return header, rows


def _title(report: Mapping[str, Any]) -> str:
    return (f"{report['attack']} ({report['norm']}, eps={report['eps']:.6g}) on n={report['n']}, "
            f"clean accuracy {_fmt(report['clean_accuracy'], 'pct')}")


def _samples(samples: list[int], limit: int | None) -> str:
    if limit is not None and len(samples) > limit:
        return ", ".join(map(str, samples[:limit])) + f", ... ({len(samples) - limit} more)"
    return ", ".join(map(str, samples))


def _noise_line(report: Mapping[str, Any]) -> str | None:
    noise = report.get("noise")
    if not noise:
        return None
    if len(noise["seeds"]) < 2:
        return f"random-start noise: 0 ({noise.get('note', 'deterministic attack')})"
    if noise.get("fraction") is None:
        return f"random-start noise: unknown ({noise.get('note', '')})"
    seeds = " vs ".join(map(str, noise["seeds"]))
    return (f"random-start noise: {_fmt(noise['fraction'], 'pct')} of the attacked samples change verdict "
            f"between two runs of the native attack (seeds {seeds})")


def _disagreement_lines(report: Mapping[str, Any], limit: int | None) -> list[str]:
    lines = []
    for d in report.get("disagreements", []):
        if d.get("beyond_noise") is False:
            continue
        a, b = d["pair"]
        only = d["only_broken_by"]
        expected = "unknown noise" if d["expected_noise"] is None else f"noise {_fmt(d['expected_noise'], 'pct')}"
        lines.append(f"{a} vs {b} disagree on {d['count']} samples ({_fmt(d['fraction'], 'pct')}, {expected}; "
                     f"broken only by {a}: {only[a]}, only by {b}: {only[b]}): {_samples(d['samples'], limit)}")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The comparison as a Markdown table plus the pairwise agreement, the noise and the disagreements."""
    lines = [f"# Toolkit comparison: {_title(report)}", "", format_table(*_table(report, None), markdown=True)]
    if report["agreement"]:
        pairs = [[pair.replace("|", " vs "), _fmt(v, "pct")] for pair, v in report["agreement"].items()]
        lines += ["", "Agreement (fraction of attacked samples with the same broken / not broken outcome):", "",
                  format_table(["pair", "agreement"], pairs, markdown=True)]
    noise = _noise_line(report)
    if noise:
        lines += ["", noise[0].upper() + noise[1:] + "."]
    found = _disagreement_lines(report, None)
    if found:
        lines += ["", "Disagreements beyond random-start noise (sample indices among the n samples):", ""]
        lines += [f"- {line}" for line in found]
    elif noise and len(report["results"]) > 1:
        lines += ["", "No pair of toolkits disagrees by more than the random-start noise."]
    checks = checks_markdown(report)
    if checks:
        lines += ["", *checks]
    lines += adaptive_markdown(report)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_table(report: Mapping[str, Any], note_width: int = 60) -> str:
    """The comparison as a plain-text table for the terminal (notes cut to ``note_width``)."""
    lines = [_title(report), format_table(*_table(report, note_width))]
    if report["agreement"]:
        lines.append("agreement: " + ", ".join(f"{k.replace('|', '/')} {_fmt(v, 'pct')}"
                                               for k, v in report["agreement"].items()))
    noise = _noise_line(report)
    if noise:
        lines.append(noise)
    found = _disagreement_lines(report, 20)
    lines += [f"DISAGREEMENT: {line}" for line in found]
    if noise and not found and len(report["results"]) > 1:
        lines.append("no pair of toolkits disagrees by more than the random-start noise")
    lines += [block for block in (checks_block(report), adaptive_block(report)) if block]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """Write ``report.md`` and ``report.json`` into the folder ``out`` as one set (report.json last); return it."""
    folder = Path(out)
    write_set_atomic(folder, {"report.md": render_markdown(report),
                              "report.json": json.dumps(report, indent=2, sort_keys=False) + "\n"}, last="report.json")
    return folder

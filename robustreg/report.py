"""Render an evaluation report (the dict :func:`robustreg.evaluation.evaluate` returns).

``report.json`` is the source of truth; Markdown, CSV, the terminal table and the PNG plot are
rendered from it.  :func:`write_report` writes the four files as one set, report.json last, so an
interrupted run never leaves a half-written report nor one whose files disagree with report.json.
"""

from __future__ import annotations

import csv
import io
import json
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import write_atomic, write_set_atomic
from .tables import format_table

__all__ = [
    "adaptive_block",
    "adaptive_markdown",
    "check_changes",
    "checks_block",
    "checks_markdown",
    "load_report",
    "render_csv",
    "render_markdown",
    "render_table",
    "plot_robust_accuracy",
    "robust_accuracy_figure",
    "write_report",
]

_MODE_NOTE = {
    "cascade": "cascade (early exit): each attack ran only on the points still standing, so an attack's robust "
               "accuracy is cumulative over it and every attack listed before it at that eps",
    "independent": "independent: every attack ran on all clean-correct points; each robust accuracy is standalone",
}


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report.json (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def _eps_text(eps: float, norm: str) -> str:
    scaled = eps * 255
    if norm == "linf" and eps > 0 and abs(scaled - round(scaled)) < 1e-6:
        return f"{eps:.4g} ({round(scaled)}/255)"
    return f"{eps:.4g}"


def _extra_keys(report: Mapping[str, Any]) -> list[str]:
    keys: list[str] = []
    for result in report.get("results", []):
        for key in result.get("extras", {}):
            if key not in keys:
                keys.append(key)
    return keys


def _rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table (shared by Markdown and the terminal)."""
    has_queries = any("queries" in r for r in report.get("results", []))
    has_passes = any("forwards" in r for r in report.get("results", []))
    extras = _extra_keys(report)
    header = ["eps", "attack", "robust acc", "broken", "attacked", "max pert", "mean pert (broken)", "seconds"]
    if has_passes:
        header += ["fwd/sample", "bwd/sample"]
    if has_queries:
        header.append("queries")
    header += extras
    rows = []
    for r in report.get("results", []):
        row = [_eps_text(r["eps"], report.get("norm", "linf")), r.get("label", r["attack"]),
               _pct(r["robust_accuracy"]), str(r.get("broken", "-")), str(r.get("attacked", "-")),
               _num(r.get("max_perturbation")), _num(r.get("mean_perturbation")), f"{r.get('seconds', 0):.2f}"]
        if has_passes:
            row += [_num(r.get("forwards")), _num(r.get("backwards"))]
        if has_queries:
            row.append(_num(r.get("queries")))
        row += [_num(r.get("extras", {}).get(k)) for k in extras]
        rows.append(row)
    return header, rows


def _worst_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["eps", "worst-case robust acc", "broken only by"]
    rows = []
    for w in report.get("worst_case", []):
        only = ", ".join(f"{k}: {v}" for k, v in w.get("broken_only_by", {}).items())
        rows.append([_eps_text(w["eps"], report.get("norm", "linf")), _pct(w["robust_accuracy"]), only or "-"])
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    return format_table(header, rows, markdown=True)


def _speed_lines(report: Mapping[str, Any]) -> list[str]:
    """The speed options that were on (none: no line); the verdicts are float32 either way."""
    speed = report.get("speed") or {}
    on = [f"amp {speed['amp']}" if speed.get("amp", "off") != "off" else ""]
    on += [key for key in ("channels_last", "cudnn_benchmark") if speed.get(key)]
    on += [f"compile ({speed['compile']})"] if speed.get("compile") else []
    on = [text for text in on if text]
    if not on:
        return []
    idle = speed.get("no_effect") or []
    note = f"; no effect on {report.get('device', 'this device')}: {', '.join(idle)}" if idle else ""
    return [f"- speed options on: {', '.join(on)} (verdicts in float32{note})"]


def _targeted_lines(report: Mapping[str, Any]) -> list[str]:
    """A targeted run's line: its mode, how the targets were chosen and what its robust accuracy counts."""
    targeted = report.get("targeted")
    if not isinstance(targeted, Mapping):
        return []
    return [f"- targeted ({targeted.get('mode')}): targets: {targeted.get('rule')}; broken = the model predicts "
            f"the target, so robust accuracy = clean-correct and target not reached"]


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: a summary, the results table and the worst case per eps."""
    model, data = report.get("model", {}), report.get("data", {})
    model_name = model.get("spec") or model.get("class", "?")
    data_name = data.get("spec") or data.get("name", "?")
    parts = [
        "# robustreg evaluation",
        "",
        f"- model: `{model_name}` (fingerprint {model.get('fingerprint', '-')})",
        f"- data: `{data_name}`, n = {report.get('n')}",
        f"- threat model: {report.get('norm')}, eps = "
        + ", ".join(_eps_text(e, report.get("norm", "linf")) for e in report.get("eps", [])),
        f"- clean accuracy: **{_pct(report.get('clean_accuracy'))}**",
        f"- mode: {_MODE_NOTE.get(report.get('mode', ''), report.get('mode', '?'))}",
        *_speed_lines(report),
        *_targeted_lines(report),
        f"- created {report.get('created', '-')}, robustreg {report.get('robustreg_version', '-')}",
        "",
        "## Robust accuracy per attack",
        "",
        _md_table(*_rows(report)),
        "",
        "## Worst case over all attacks (per-sample minimum)",
        "",
        _md_table(*_worst_rows(report)),
        "",
    ]
    if any(r.get("nan_detected") for r in report.get("results", [])):
        parts += ["**Warning:** the model returned NaN logits on some adversarial points (counted as broken).", ""]
    parts += checks_markdown(report)
    parts += adaptive_markdown(report)
    return "\n".join(parts)


def _ordered_checks(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The report's checks, warnings first (the order of docs/checks.md within each status)."""
    order = {"warn": 0, "ok": 1, "skipped": 2}
    return sorted(report.get("checks") or [], key=lambda c: order.get(str(c.get("status")), 3))


def checks_markdown(report: Mapping[str, Any]) -> list[str]:
    """The "Checks" section of report.md (empty when the report has no checks)."""
    checks = _ordered_checks(report)
    if not checks:
        return []
    warned = sum(c.get("status") == "warn" for c in checks)
    lines = ["## Checks", "",
             f"{warned} of {len(checks)} automatic checks warn that the robust accuracy may be overestimated "
             "(see docs/checks.md)." if warned else
             f"No automatic check warns ({len(checks)} checks; see docs/checks.md).", ""]
    rows = [[str(c.get("status", "?")).upper() if c.get("status") == "warn" else str(c.get("status", "?")),
             f"[{c.get('name')}]({c.get('doc', '')})", str(c.get("message", "")).replace("|", "\\|")]
            for c in checks]
    nan_clean = report.get("nan_clean")
    extra = [f"{nan_clean} clean points had NaN or inf logits (counted as misclassified).", ""] if nan_clean else []
    return lines + [_md_table(["status", "check", "message"], rows), ""] + extra


def checks_block(report: Mapping[str, Any], width: int = 100) -> str:
    """The terminal's short checks block: each warning on its own (name and message, wrapped at ``width``),
    the ok ones in one line, the skipped ones in another; empty when the report has no checks."""
    checks = _ordered_checks(report)
    if not checks:
        return ""
    lines = []
    adaptive = bool(report.get("adaptive"))
    for c in checks:
        if c.get("status") == "warn":
            text = f"WARN {c.get('name')}: {c.get('message', '')}"
            if c.get("remedies") and not adaptive:
                text += f" [remedy: {', '.join(c['remedies'])}; run the same command with --adaptive]"
            lines += textwrap.wrap(text, width, subsequent_indent="     ") or [text]
    for status in ("ok", "skipped"):
        names = [str(c.get("name")) for c in checks if c.get("status") == status]
        if names:
            lines.append(f"{status} ({len(names)}): {', '.join(names)}")
    if any(c.get("status") == "warn" for c in checks):
        lines.append("(what to do: docs/checks.md#<name>)")
    return "checks:\n" + "\n".join(f"  {line}" for line in lines)


def _remedy_lines(report: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """Per remedy run and eps: (remedy and the check it answered, what ran, before -> after, points and cost)."""
    norm = report.get("norm", "linf")
    out = []
    for run in (report.get("adaptive") or {}).get("runs", []):
        out.append((f"{run['remedy']} ({run['check']})", f"{run['label']} at eps {_eps_text(run['eps'], norm)}",
                    f"{_pct(run['before'])} -> {_pct(run['after'])}",
                    f"broke {len(run['broken'])} of {run['attacked']}, {run['passes']:g} passes/sample"))
    return out


def check_changes(report: Mapping[str, Any]) -> str:
    """The checks that warned before or after the remedies, ``name before -> after`` (empty when none did)."""
    adaptive = report.get("adaptive") or {}
    before = {str(c.get("name")): str(c.get("status")) for c in report.get("checks") or []}
    after = {str(c.get("name")): str(c.get("status")) for c in adaptive.get("checks_after") or []}
    names = [name for name in {**before, **after} if "warn" in (before.get(name), after.get(name))]
    return ", ".join(f"{name} {before.get(name, '-')} -> {after.get(name, '-')}" for name in names)


def adaptive_block(report: Mapping[str, Any]) -> str:
    """The terminal's "diagnosed and fixed" block: one before -> after line per remedy run, the verdict rule
    and the checks before -> after; empty without ``adaptive``."""
    adaptive = report.get("adaptive")
    if not adaptive:
        return ""
    lines = [f"{who}: {what}: {change} ({cost})" for who, what, change, cost in _remedy_lines(report)]
    lines += [f"{f['remedy']} ({f['check']}): failed: {f['error']}" for f in adaptive.get("failed", [])]
    lines += [f"{f['remedy']} ({f['check']}): skipped: {f['reason']}" for f in adaptive.get("skipped", [])]
    if not lines:
        lines = ["no check warned: no remedy ran"]
    if adaptive.get("clean_accuracy") is not None:  # a randomised model: judged by a stated majority
        lines.append(f"verdict: {adaptive.get('verdict')} (clean accuracy under it {_pct(adaptive['clean_accuracy'])})")
    changes = check_changes(report)
    if changes:
        lines.append(f"checks before -> after: {changes}")
    return "diagnosed and fixed (--adaptive):\n" + "\n".join(f"  {line}" for line in lines)


def adaptive_markdown(report: Mapping[str, Any]) -> list[str]:
    """The "Diagnosed and fixed" section of report.md (empty without ``adaptive``)."""
    adaptive = report.get("adaptive")
    if not adaptive:
        return []
    rows = [list(line) for line in _remedy_lines(report)]
    lines = ["## Diagnosed and fixed", "",
             f"The remedies of the checks that warned ran on the points still standing (budget "
             f"{adaptive.get('budget', 0):g} forward + backward passes per sample at each eps; "
             f"used {', '.join(f'{u:g}' for u in adaptive.get('budget_used', []))}); the worst case above "
             "includes what they broke (`remedy:NAME`).", ""]
    lines += [_md_table(["remedy (check)", "ran", "robust accuracy", "points, cost"], rows), ""] if rows else \
        ["No check warned, so no remedy ran.", ""]
    lines += [f"- {f['remedy']} ({f['check']}) failed: {f['error']}" for f in adaptive.get("failed", [])]
    lines += [f"- {f['remedy']} ({f['check']}) skipped: {f['reason']}" for f in adaptive.get("skipped", [])]
    if adaptive.get("verdict"):
        clean = adaptive.get("clean_accuracy")
        same = "" if clean is None else f"; the clean points by the same rule (clean accuracy {_pct(clean)})"
        lines += ["", f"Verdict: {adaptive['verdict']}{same}", ""]
    after = [c for c in adaptive.get("checks_after", []) if c.get("status") == "warn"]
    if after:
        lines += ["", "Still warning after the remedies: " + ", ".join(str(c.get("name")) for c in after), ""]
    changes = check_changes(report)
    if changes:
        lines += [f"Checks before -> after the remedies: {changes}", ""]
    return lines


def render_csv(report: Mapping[str, Any]) -> str:
    """One CSV row per result (eps x attack); extras as ``extra:<name>`` columns, params as JSON."""
    extras = _extra_keys(report)
    fields = ["eps", "norm", "attack", "label", "robust_accuracy", "attacked", "broken", "max_perturbation",
              "mean_perturbation", "queries", "seconds", "forwards", "backwards", "toolkit", "kind", "paper",
              "nan_detected", "params"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields + [f"extra:{k}" for k in extras])
    for r in report.get("results", []):
        row = []
        for f in fields:
            value = r.get(f, report.get(f) if f == "norm" else None)
            if f == "params":
                value = json.dumps(value, sort_keys=True)
            row.append("" if value is None else value)
        row += ["" if r.get("extras", {}).get(k) is None else r["extras"][k] for k in extras]
        writer.writerow(row)
    return buf.getvalue()


def render_table(report: Mapping[str, Any]) -> str:
    """A plain-text table for the terminal."""
    out = [f"clean accuracy: {_pct(report.get('clean_accuracy'))}  (n = {report.get('n')}, "
           f"norm = {report.get('norm')}, mode = {report.get('mode')}"
           + (f", targeted = {report['targeted'].get('mode')}" if isinstance(report.get("targeted"), Mapping) else "")
           + ")", ""]
    out += [format_table(*_rows(report)), "", format_table(*_worst_rows(report))]
    blocks = [block for block in (checks_block(report), adaptive_block(report)) if block]
    return "\n".join(out + [part for block in blocks for part in ("", block)])


def _plot_png(report: Mapping[str, Any]) -> bytes:
    """The robust-accuracy-vs-eps plot as PNG bytes (the user's matplotlib backend is left alone)."""
    from .figures import figure_png

    return figure_png(robust_accuracy_figure(report))


def robust_accuracy_figure(report: Mapping[str, Any]) -> Any:
    """Robust accuracy vs eps, one line per attack plus the worst case, as a ``matplotlib.figure.Figure``
    drawn on its own canvas (the user's backend and pyplot's figures are left alone)."""
    from .figures import figure

    fig = figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    labels: list[str] = []
    for r in report.get("results", []):
        label = r.get("label", r["attack"])
        if label not in labels:
            labels.append(label)
    eps0 = [0.0]
    clean = [report.get("clean_accuracy", 0.0)]
    for label in labels:
        points = sorted((r["eps"], r["robust_accuracy"]) for r in report["results"]
                        if r.get("label", r["attack"]) == label)
        ax.plot(eps0 + [p[0] for p in points], clean + [p[1] for p in points], marker="o", label=label)
    worst = sorted((w["eps"], w["robust_accuracy"]) for w in report.get("worst_case", []))
    ax.plot(eps0 + [p[0] for p in worst], clean + [p[1] for p in worst], "k--", marker="s", label="worst case")
    ax.set_xlabel(f"eps ({report.get('norm', '')})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1.02)
    title = "cumulative (cascade)" if report.get("mode") == "cascade" else "standalone"
    ax.set_title(f"robust accuracy vs eps, {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_robust_accuracy(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Robust accuracy vs eps: one line per attack plus the worst case (matplotlib, Agg backend)."""
    return write_atomic(path, _plot_png(report))


REPORT_FILES = {"markdown": "report.md", "csv": "results.csv", "plot": "robust_accuracy.png", "json": "report.json"}


def write_report(report: Mapping[str, Any], out: str | os.PathLike[str], *, plot: bool = True) -> dict[str, Path]:
    """Write report.json, report.md, results.csv and (if ``plot``) robust_accuracy.png into ``out``.

    Everything is rendered first (the PNG to bytes), then written as one set
    (:func:`~robustreg.files.write_set_atomic`) with report.json renamed last: a kill leaves the old
    report.json -- the source of truth the others are rendered from -- or the whole new set.
    """
    rendered: dict[str, bytes | str] = {"markdown": render_markdown(report), "csv": render_csv(report)}
    if plot:
        rendered["plot"] = _plot_png(report)
    rendered["json"] = json.dumps(report, indent=2, allow_nan=False) + "\n"
    write_set_atomic(out, {REPORT_FILES[key]: data for key, data in rendered.items()}, last="report.json")
    return {key: Path(out) / REPORT_FILES[key] for key in rendered}

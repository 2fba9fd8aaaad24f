"""Report: the finished state of a run -> the report dict (report.json is the source of truth).

One entry per eps x attack (``results``) and one per eps (``worst_case``); see the package docstring
for what each number means in cascade and independent mode.  ``speed`` records the speed options the
attacks ran under (the verdicts are always the float32 model's).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..attack import PASS_EXTRAS
from ..environment import environment
from ..report import render_csv, robust_accuracy_figure
from .cells import EVER_BROKEN, masked_mean
from .config import EvalConfig, Mode, Plan
from .samples import SampleVerdicts, bits, read_samples
from .state import RunState

__all__ = ["REPORT_SCHEMA_VERSION", "EvalReport", "build_report", "result_entry", "speed_entry", "worst_case_entry"]

REPORT_SCHEMA_VERSION = 1


class EvalReport(dict[str, Any]):
    """The report dict of :func:`robustreg.evaluate`, whose repr is a short summary (a notebook cell or a
    ``print`` shows the numbers, not a page of nested dicts); ``dict(report)`` or ``report["results"]`` give
    everything, and it is written and read as a plain dict."""

    def __repr__(self) -> str:
        try:
            return _summary(self)
        except (KeyError, TypeError, ValueError):  # a hand-edited or partial report: show it whole
            return dict.__repr__(self)

    __str__ = __repr__

    def to_pandas(self) -> Any:
        """One row per result (eps x attack), the columns of results.csv (``params`` as JSON text); needs
        pandas (``pip install pandas``), which robustreg itself does not."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("EvalReport.to_pandas needs pandas: pip install pandas") from None
        return pd.read_csv(io.StringIO(render_csv(self)))

    def plot(self) -> Any:
        """Robust accuracy vs eps (one line per attack and the worst case) as a ``matplotlib.figure.Figure``
        on its own canvas: the global backend never changes, and a notebook shows it when it is returned."""
        return robust_accuracy_figure(self)

    def samples(self) -> SampleVerdicts:
        """Every sample's verdicts (clean-correct, broken per cell, broken in the worst case) as bool tensors,
        read from the report's ``*_samples`` text (:mod:`robustreg.evaluation.samples`)."""
        return read_samples(self)


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f}%"


def _summary(report: Mapping[str, Any]) -> str:
    """``EvalReport(n=24, linf, cascade, clean 41.7%; eps 0.05: fgsm 12.5%, pgd 8.3%, worst 8.3%; checks: ...)``."""
    targeted = f", targeted {report['targeted']['mode']}" if report.get("targeted") else ""
    parts = [f"n={report['n']}, {report['norm']}, {report['mode']}{targeted}, "
             f"clean {_percent(report['clean_accuracy'])}"]
    for worst in report["worst_case"]:
        cells = [f"{r['label']} {_percent(r['robust_accuracy'])}" for r in report["results"]
                 if r["eps"] == worst["eps"]]
        parts.append(f"eps {worst['eps']:.4g}: {', '.join(cells)}, worst {_percent(worst['robust_accuracy'])}")
    warned = [c["name"] for c in report.get("checks", []) if c.get("status") == "warn"]
    parts.append(f"checks: {len(warned)} warning(s){' (' + ', '.join(warned) + ')' if warned else ''}")
    return f"EvalReport({'; '.join(parts)})"


def _plain(value: Any) -> Any:
    """JSON-safe copy (anything JSON does not know becomes its repr)."""
    return json.loads(json.dumps(value, default=repr))


def result_entry(plan: Plan, state: RunState, e: int, a: int) -> dict[str, Any]:
    """The report entry of attack ``a`` at eps ``e``."""
    attack, cell = plan.plans[a], state.cell(e, a)
    spec = plan.registry.attack(attack.name)
    survived = state.standing(e, a, plan.mode) & ~cell.broken
    ran = cell.ran
    entry: dict[str, Any] = {
        "attack": attack.name,
        "label": attack.label,
        "eps": plan.eps[e],
        "norm": plan.norm,
        "params": _plain(plan.params(a)),
        "robust_accuracy": float(survived.sum()) / state.n,
        "attacked": int(ran.sum()),
        "broken": int(cell.broken.sum()),
        "seconds": round(float(cell.seconds), 4),
        "max_perturbation": float(cell.distance[ran].max()) if bool(ran.any()) else 0.0,
        "mean_perturbation": masked_mean(cell.distance, cell.broken),
        "nan_detected": bool(cell.nan),
        "broken_samples": bits(cell.broken),  # one 0/1 per sample (see .samples)
        "plugin": spec.plugin,
        "toolkit": spec.info.toolkit,
        "kind": spec.info.kind,
        "paper": spec.info.paper,
        "randomized": spec.info.randomized,
    }
    if cell.queries is not None:
        entry["queries"] = cell.query_mean()
    if cell.flags:  # warnings the attack raised about the evaluation, message -> batches
        entry["flags"] = dict(cell.flags)
    extras = cell.reduced_extras()
    for key in PASS_EXTRAS:  # the base's pass counts, per attacked sample, at the entry's top level
        if key in extras:
            entry[key] = extras.pop(key)
    extras.pop(EVER_BROKEN, None)  # a per-point flag for the silent-success check, not a number to report
    if extras:
        entry["extras"] = extras
        # Scalar summaries an attack reports for the whole set (RayS' "adbd") also sit at the top level.
        entry.update({key: extras[key] for key in cell.scalars if key not in entry})
    return entry


def _broken_uniquely_by(plan: Plan, state: RunState, e: int) -> dict[str, int]:
    correct = state.clean_correct
    uniquely = {}
    for a, attack in enumerate(plan.plans):
        others = torch.zeros(state.n, dtype=torch.bool)
        for b in range(len(plan.plans)):
            if b != a:
                others |= state.cell(e, b).broken
        uniquely[attack.label] = int((state.cell(e, a).broken & correct & ~others).sum())
    return uniquely


def worst_case_entry(plan: Plan, state: RunState, e: int) -> dict[str, Any]:
    """The per-sample worst case over the attacks at eps ``e``, and who broke what."""
    correct = state.clean_correct
    broken_any = torch.zeros(state.n, dtype=torch.bool)
    only_by = {}
    for a, attack in enumerate(plan.plans):
        broken = state.cell(e, a).broken & correct
        only_by[attack.label] = int((broken & ~broken_any).sum())
        broken_any |= broken
    entry: dict[str, Any] = {
        "eps": plan.eps[e],
        "robust_accuracy": float((correct & ~broken_any).sum()) / state.n,
        "broken_only_by": only_by,
        "broken_samples": bits(broken_any),
    }
    if plan.mode is Mode.INDEPENDENT:
        entry["broken_uniquely_by"] = _broken_uniquely_by(plan, state, e)
    return entry


def speed_entry(config: EvalConfig, device: torch.device) -> dict[str, Any]:
    """The report's ``speed``: the four options (see :class:`robustreg.runtime.SpeedOptions`) and, when
    some are on but change nothing on ``device`` (cudnn_benchmark off CUDA), ``no_effect`` naming them."""
    speed = config.speed
    entry: dict[str, Any] = speed.to_dict()
    if speed.no_effect(device):
        entry["no_effect"] = speed.no_effect(device)
    return entry


def build_report(plan: Plan, state: RunState, model: nn.Module, data_info: Mapping[str, Any],
                 config: EvalConfig, device: torch.device, seconds: float, *,
                 checks: list[dict[str, str]] | None = None, nan_clean: int | None = None,
                 seconds_per_rank: list[float] | None = None,
                 gather_seconds_per_rank: list[float] | None = None,
                 targeted: Mapping[str, Any] | None = None) -> EvalReport:
    """The report dict (an :class:`EvalReport`: its repr is a short summary) of a finished run (``data_info``:
    the description :func:`first_samples` gave;
    ``checks``: the automatic checks' list, ``nan_clean``: clean points with non-finite logits;
    ``seconds_per_rank``: each torch.distributed rank's seconds in the attacks, one per rank, and
    ``gather_seconds_per_rank`` of them those after its own batches: waiting for the others, the gather;
    ``targeted``: a targeted run's entry, :meth:`robustreg.evaluation.targets.Targets.entry`: its robust
    accuracy counts the points clean-correct whose target was not reached)."""
    n = state.n
    return EvalReport({
        "schema_version": REPORT_SCHEMA_VERSION,
        "clean_accuracy": float(state.correct_count) / n,
        "n": n,
        "clean_correct_samples": bits(state.clean_correct),
        **({} if nan_clean is None else {"nan_clean": nan_clean}),
        "norm": plan.norm,
        "mode": plan.mode.value,
        **({} if targeted is None else {"targeted": dict(targeted)}),
        "eps": plan.eps,
        "attacks": [{"name": p.name, "label": p.label, "params": _plain(p.params)} for p in plan.plans],
        "seed": plan.seed,
        "results": [result_entry(plan, state, e, a) for e, a in plan.cells()],
        "worst_case": [worst_case_entry(plan, state, e) for e in range(len(plan.eps))],
        "model": {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
                  "fingerprint": state.fingerprint["model"], **dict(config.model_info or {})},
        "data": {**dict(data_info), "n": n, "fingerprint": state.fingerprint["data"],
                 **dict(config.data_info or {})},
        "device": str(device),
        "speed": speed_entry(config, device),
        "resumed": state.resumed,
        "seconds": round(seconds, 3),
        **({} if seconds_per_rank is None else {"distributed": {
            "world_size": len(seconds_per_rank), "seconds_per_rank": list(seconds_per_rank),
            "gather_seconds_per_rank": list(gather_seconds_per_rank or [0.0] * len(seconds_per_rank))}}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "robustreg_version": __version__,
        **({} if checks is None else {"checks": checks}),
        # versions, device, threads, command line: for the reader, not the run's identity (resume still matches)
        "environment": environment([type(plan.build(0, a)) for a in range(len(plan.plans))], device),
    })

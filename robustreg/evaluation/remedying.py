"""``adaptive=True``: after the cells and the checks, the remedies of the checks that warned (in a targeted
evaluation aimed at the same targets, broken = a target reached).

:func:`apply_remedies` hands :func:`robustreg.remedies.run_remedies` the points each eps leaves standing
(clean-correct and unbroken by every attack), and a way to run the checks again with each remedy attack
as a cell of its own; :func:`adaptive_report` folds the result into the report: the worst case per eps
includes the points the remedies broke (``broken_only_by["remedy:NAME"]``, the accuracy before them in
``robust_accuracy_before_adaptive``; its ``broken_samples`` too), and ``adaptive`` lists every remedy run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.source import Images
from ..remedies import ARGMAX, Adaptive, Attempt, RemedyJob, run_remedies
from ..remedies.views import attempt_views
from .checking import evaluation_checks
from .config import EvalConfig, Mode, Plan
from .run import Finished
from .samples import bits, unbits

__all__ = ["adaptive_report", "apply_remedies"]


def apply_remedies(model: nn.Module, x: Images, y: torch.Tensor, plan: Plan, run: Finished,
                   config: EvalConfig, device: torch.device) -> Adaptive:
    """The remedies for ``run.checks`` on the points ``run`` leaves standing (:func:`run_remedies` restores
    the model's placement, modes and gradients after)."""
    everything = len(plan.plans)
    standing = [run.state.standing(e, everything, Mode.CASCADE) for e in range(len(plan.eps))]

    def recheck(attempts: list[Attempt]) -> list[dict[str, Any]]:
        extra = attempt_views(attempts, plan.registry, run.state.n)
        return evaluation_checks(model, x, y, run.clean_logits, plan, run.state, device, config.no_check,
                                 extra=extra)

    chosen = run.targets
    aims = None if chosen is None else (lambda idx: chosen.rounds(idx, y[idx]))
    job = RemedyJob(model, x, y, plan.eps, plan.norm, plan.registry, device, plan.seed, plan.batch_size,
                    config.adaptive_budget, [(p.name, plan.params(a)) for a, p in enumerate(plan.plans)],
                    targets=aims)
    return run_remedies(job, standing, run.checks, recheck)


def adaptive_report(report: dict[str, Any], adaptive: Adaptive) -> dict[str, Any]:
    """``report`` with the remedies' points in its worst case and the ``adaptive`` entry."""
    n, eps = int(report["n"]), list(report["eps"])
    before = [float(w["robust_accuracy"]) for w in report["worst_case"]]
    for k, entry in enumerate(report["worst_case"]):
        counts: dict[str, int] = {}
        taken: set[int] = set()
        for a in adaptive.attempts:
            reaches = a.eps == eps[k] or (a.verdict == ARGMAX and a.eps <= eps[k])
            if reaches:
                new = set(a.broken) - taken
                taken |= new
                key = f"remedy:{a.remedy}"
                counts[key] = counts.get(key, 0) + len(new)
        entry["robust_accuracy_before_adaptive"] = entry["robust_accuracy"]
        entry["robust_accuracy"] = float(adaptive.standing[k].sum()) / n
        if "clean_correct_samples" in report:  # the per-sample worst case includes the remedies' points too
            clean = unbits(report["clean_correct_samples"], "clean_correct_samples", n)
            entry["broken_samples"] = bits(clean & ~adaptive.standing[k].cpu().bool())
        entry["broken_only_by"] = {**entry["broken_only_by"], **{key: c for key, c in counts.items() if c}}
    report["adaptive"] = adaptive.to_json(eps, before, n)
    return report

"""The evaluation's side of the automatic checks: clean correctness, one CellView per cell, run_checks.

:func:`clean_correct` (from :mod:`robustreg.verdict`, the one verdict) decides which clean predictions
count (a row with a NaN or inf logit never does).  :func:`evaluation_checks` builds a
:class:`robustreg.checks.CheckContext` from what the run already has (the clean logits, every cell's
per-sample records aligned to all n points, each attack's registry info and extras) and returns the
``checks`` list of the report.  It runs once, at the end of a run (a resumed run recomputes it from its
state), seeded by the run's seed, so the list is the same for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..checks import CellView, CheckContext, registered, run_checks
from ..data.source import Images, as_images
from ..verdict import clean_correct, nonfinite_rows
from .cells import EVER_BROKEN, Cell
from .config import Plan
from .state import RunState

__all__ = ["ITERATION_PARAMS", "cell_view", "clean_correct", "evaluation_checks", "nonfinite_rows", "single_step",
           "view_of"]

#: declared parameters that count an attack's iterations (one of them equal to 1: a single step)
ITERATION_PARAMS = ("steps", "max_iter", "iterations", "n_iter", "nb_iter")


def single_step(spec: Any, params: dict[str, Any]) -> bool:
    """Is this attack (registry spec, resolved parameters) a single gradient step (FGSM-like)?

    Its AttackInfo declares ``single_step``; an iterative attack run with an iteration count among its
    resolved parameters (:data:`ITERATION_PARAMS`) equal to 1 is one too.
    """
    if spec.info.single_step:
        return True
    counts = [params[key] for key in ITERATION_PARAMS if key in params]
    return bool(counts) and all(count == 1 for count in counts)


def _extras(cell: Cell) -> dict[str, Any]:
    """The extras the checks read, from the cell's records: mean loss curve, ever_broken, flags."""
    extras: dict[str, Any] = {}
    curve = cell.mean_trace()
    if curve is not None:
        extras["loss_trace"] = torch.tensor(curve, dtype=torch.float64)
    if EVER_BROKEN in cell.extras:
        extras[EVER_BROKEN] = cell.extras[EVER_BROKEN] == 1  # NaN (not attacked) -> False
    if cell.flags:
        extras["flags"] = [f"{message} ({count} batch{'es' if count > 1 else ''})" if count > 1 else message
                           for message, count in cell.flags.items()]
    return extras


def view_of(cell: Cell, label: str, eps: float, spec: Any, params: dict[str, Any]) -> CellView:
    """The checks' view of one recorded cell of attack ``spec`` (its registry entry) with ``params``:
    evaluated = the points it ran on.  The evaluation's cells and compare's rows alike."""
    finite = None if cell.nonfinite is None else ~cell.nonfinite
    return CellView(label, eps, spec.info.kind, single_step(spec, params), cell.broken & cell.ran, cell.ran.clone(),
                    finite, _extras(cell), spec.info.aims_at)


def cell_view(plan: Plan, state: RunState, e: int, a: int) -> CellView:
    """The checks' view of attack ``a`` at eps ``e``."""
    attack = plan.plans[a]
    return view_of(state.cell(e, a), attack.label, plan.eps[e], plan.registry.attack(attack.name), plan.params(a))


def evaluation_checks(model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, clean_logits: torch.Tensor,
                      plan: Plan, state: RunState, device: torch.device, disabled: Iterable[str] = (),
                      shard: Callable[[int, Callable[[int], Any]], list[Any]] | None = None,
                      extra: Sequence[CellView] = (), num_classes: int | None = None) -> list[dict[str, str]]:
    """The report's ``checks`` list (``disabled``: names from ``--no-check``); the model on ``device``;
    ``shard``: the context's :attr:`~robustreg.checks.CheckContext.shard` (a distributed run's ranks);
    ``extra``: more cells than the plan's (the remedies' attacks)."""
    cells = [cell_view(plan, state, e, a) for e, a in plan.cells()] + list(extra)
    ctx = CheckContext(model, as_images(x), y, clean_logits.detach().cpu(), norm=plan.norm, cells=cells, device=device,
                       seed=plan.seed if plan.seed is not None else 0, shard=shard, num_classes=num_classes)
    checks = registered(plan.registry.checks())
    return [result.to_json() for result in run_checks(ctx, disabled=disabled, checks=checks)]

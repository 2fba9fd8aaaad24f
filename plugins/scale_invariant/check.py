"""The ``logit-scale`` check: does a loss that ignores the logits' scale break points cross-entropy left?

Paper 004 (Xu et al., "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial Defenses",
2022, arXiv:2201.12527), sec. 3: a large logit scale saturates the softmax, so cross-entropy attacks find
small gradients and overestimate robustness.  The check runs the core's PGD (20 steps of eps/4, at the
largest evaluated eps) on a seeded subsample of the clean-correct points twice -- on cross-entropy and on
cross-entropy of s cos(theta) (s = :data:`SCALE`, the paper's; the DLR loss for a model without an
``nn.Linear`` head) -- and warns when the scale-invariant loss breaks more points beyond sampling noise.
Explained in docs/checks.md#logit-scale; the ``si-pgd`` remedy (:mod:`.remedy`) answers it.
"""

from __future__ import annotations

from torch import Tensor, nn

from robustreg import embed, hookimpl
from robustreg.checks import (
    DOC,
    CheckContext,
    Objective,
    Outcome,
    beyond_paired_noise,
    ce_loss,
    dlr_loss,
    largest_eps,
    pct,
    quiet_model,
    standing_after_pgd,
)

__all__ = ["NAME", "SCALE", "check_logit_scale", "robustreg_register_checks"]

NAME = "logit-scale"
SCALE = 15.0  # s of the cosine loss: the scale the paper trains and attacks with


def _ce_objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return ce_loss(model(x), y)


def _cosine_objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return ce_loss(SCALE * embed(model, x).cosine(), y)


def _scale_invariant(model: nn.Module, xs: Tensor) -> tuple[str, Objective]:
    """CE on s cos(theta) for a model ending in nn.Linear, else DLR: both ignore the logits' scale."""
    try:
        embed(model, xs[:1])
    except ValueError:
        return "DLR", lambda m, x, y: dlr_loss(m(x), y)
    return f"CE({SCALE:g} cos theta)", _cosine_objective


def check_logit_scale(ctx: CheckContext) -> Outcome:
    """Warn when PGD on a scale-invariant loss breaks more points than PGD on cross-entropy."""
    eps = largest_eps(ctx)
    if not eps:
        return "skipped", "no cell with eps > 0 to take the budget from"
    _, xs, ys = ctx.sample(ctx.clean_correct)
    if len(xs) == 0:
        return "skipped", "no clean-correct point"
    threat = ctx.threat(eps)
    with quiet_model(ctx) as model:
        name, objective = _scale_invariant(model, xs)
        if name == "DLR" and ctx.clean_logits.shape[1] < 3:
            return "skipped", "no nn.Linear head and fewer than 3 classes: no scale-invariant loss to compare"
        ce_standing = standing_after_pgd(ctx, model, _ce_objective, xs, ys, threat, 20, eps / 4)
        si_standing = standing_after_pgd(ctx, model, objective, xs, ys, threat, 20, eps / 4)
    n = len(xs)
    extra = int((ce_standing & ~si_standing).sum())  # broken by the scale-invariant loss alone
    fewer = int((si_standing & ~ce_standing).sum())  # broken by cross-entropy alone
    numbers = (f"on {n} clean-correct points at eps={eps:g} (20 steps of eps/4), PGD on cross-entropy leaves "
               f"{pct(int(ce_standing.sum()), n)} standing, PGD on {name} {pct(int(si_standing.sum()), n)}")
    if beyond_paired_noise(extra, fewer, n):
        return "warn", (f"{numbers}: the scale-invariant loss breaks {extra} points cross-entropy left standing "
                        f"(cross-entropy {fewer} it left), beyond sampling noise; the logits' scale weakens "
                        "cross-entropy attacks, so evaluate with a scale-invariant one")
    return "ok", numbers


@hookimpl
def robustreg_register_checks(registrar) -> None:
    """Register ``logit-scale`` (explained in docs/checks.md#logit-scale)."""
    registrar.add_check(NAME, check_logit_scale, doc=f"{DOC}#{NAME}")

"""The ``si-pgd`` remedy: when the ``logit-scale`` check warns, attack with SI-PGD (paper 004, eq. 24), whose
loss on ``s cos(theta)`` ignores the logits' scale.  It needs a final ``nn.Linear`` head whose output is the
model's (robustreg.embed finds it); without one it runs nothing and the ``margin-loss`` remedy's
scale-invariant DLR loss answers the warning alone."""

from __future__ import annotations

import robustreg
from robustreg.remedies import RemedyContext

__all__ = ["robustreg_register_remedies", "si_pgd"]

STEPS = 100


def si_pgd(ctx: RemedyContext) -> None:
    xs, _ = ctx.sample(1)
    if len(xs) == 0:
        return
    try:
        robustreg.embed(ctx.model, xs)
    except ValueError:
        return  # no linear head to take cos(theta) from
    ctx.attack("si-pgd", {"steps": STEPS}, label=f"si-pgd-{STEPS}")


@robustreg.hookimpl
def robustreg_register_remedies(registrar: robustreg.Registrar) -> None:
    registrar.add_remedy("si-pgd", si_pgd, answers=("logit-scale",), cost=2 * STEPS,
                         summary="SI-PGD (paper 004): PGD on s cos(theta), blind to the logits' scale")

"""Attack checks about what an attack does, not only what it leaves behind: randomness, targets, loss."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..threat import ThreatModel
from ._kit import Ctx, in_ball_problem
from .models import separable_batch, trained_tiny_model

__all__ = ["TRAINED_EPS_FACTOR", "loss_problem", "randomness_problem", "targeted_problem"]


#: The trained-model checks use this many times the check's eps: every point of the separable batch can
#: then be broken, so an ensemble (AutoAttack) stops after its first member and the kit stays fast.
TRAINED_EPS_FACTOR = 3.0


def _trained_problem(ctx: Ctx, x: Any) -> tuple[Ctx, nn.Module, torch.Tensor, torch.Tensor]:
    """``ctx`` with a larger eps, :func:`trained_tiny_model` and a :func:`separable_batch` it classifies
    correctly, of x's image shape."""
    shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) and x.dim() == 4 else (1, 8, 8)
    xs, ys = separable_batch(8, shape, seed=1)  # type: ignore[arg-type]
    t = ctx.threat
    eps = t.eps * TRAINED_EPS_FACTOR
    wider = dataclasses.replace(ctx, threat=ThreatModel(t.norm, min(eps, 1.0) if t.norm == "linf" else eps, t.box))
    return wider, trained_tiny_model(in_shape=shape), xs, ys  # type: ignore[arg-type]


def randomness_problem(ctx: Ctx, x: Any = None) -> str | None:
    """A ``randomized=True`` attack gives a different x_adv for at least one of seeds 0, 1, 2.

    It runs on :func:`trained_tiny_model` and a batch it classifies correctly (eps times
    :data:`TRAINED_EPS_FACTOR`): on an untrained model
    most points are misclassified already and many attacks return them untouched, which shows no
    randomness.  Three seeds, not two: an attack whose randomness does not matter on a batch (say a
    random start that every step then overrides) may agree for two seeds by chance, not for all three.
    Where every seed returned the clean batch itself (a search that found nothing within the kit's
    small budget returns the input) there is no randomness to compare, and the check passes.
    """
    if not ctx.flag("randomized"):
        return None
    ctx, model, xs, ys = _trained_problem(ctx, x)
    outs: list[torch.Tensor] = []
    for seed in (0, 1, 2):
        out = ctx.seeded(seed)(model, xs, ys)
        if any(not torch.allclose(out, other, rtol=0, atol=1e-6) for other in outs):
            return None
        outs.append(out)
    if all(torch.equal(out, xs) for out in outs):
        return None
    return ("declares randomized=True but seeds 0, 1 and 2 gave the same x_adv on a trained model; draw from "
            "the generator passed to perturb (or declare randomized=False)")


def wrong_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A target class != y for every sample (the next class, cyclically)."""
    return (y + 1) % num_classes


def targeted_problem(ctx: Ctx, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """An attack declaring ``targeted=True`` runs with ``target`` (a wrong class) and stays in the ball and box."""
    if not ctx.flag("targeted"):
        return None
    target = wrong_targets(y, _classes(model, x))
    out = ctx.seeded(0)(model, x, y, target=target)
    return in_ball_problem(ctx, out, x, "attack(model, x, y, target=wrong class)")


def _classes(model: nn.Module, x: torch.Tensor) -> int:
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            return int(model.eval()(x[:1]).shape[1])
    finally:
        for m, training in modes:
            m.training = training


def _mean_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def loss_problem(ctx: Ctx, model: Any = None, x: Any = None, y: Any = None) -> str | None:
    """A white-box attack raises the mean cross-entropy of a trained model above the clean input's.

    The model is :func:`trained_tiny_model` and the batch :func:`separable_batch` (both of the shape
    of ``x`` when given, which the model must accept), eps times :data:`TRAINED_EPS_FACTOR`; the clean
    loss is low, so an attack that
    follows the gradient visibly raises it.  Score- and decision-based attacks are not held to it:
    with the kit's budgets (tens of queries) a score attack's random search may accept no step, and a
    decision attack moves only the points it has already misclassified, towards the boundary, which
    lowers their loss by design (it minimises the distance); neither can be expected to raise the mean.
    """
    if ctx.flag("kind", "white-box") != "white-box":
        return None
    ctx, trained, xs, ys = _trained_problem(ctx, x)
    clean = _mean_ce(trained, xs, ys)
    adv = _mean_ce(trained, ctx.seeded(0)(trained, xs, ys), ys)
    if not adv > clean:
        return (f"a white-box attack did not raise the loss of a trained model: mean cross-entropy {adv:.4g} "
                f"on x_adv, {clean:.4g} on the clean batch")
    return None

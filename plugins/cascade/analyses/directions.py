"""Paper 000's three test-time directions, shared by ``gradient-correlation`` and ``softmax-argument``.

Paper 000 (Na et al., "Cascade Adversarial Machine Learning Regularized with a Unified Embedding", 2018,
arXiv:1708.02582), sec. 2 and Figs. 4-6, perturbs a clean image x by eps along

- ``step_ll``:    x - eps * sign(grad_x CE(f(x), y_LL)), y_LL = argmin_k f(x)_k (the least-likely class, eq. 2),
- ``step_FGSM``:  x + eps * sign(grad_x CE(f(x), y)) (eq. 1),
- ``random sign``: x + eps * sign(N(0, I)) (one draw per image, the same for every eps),

each clipped to [0, 1].  The two gradient directions are this plugin's own attacks (:class:`StepLL`,
:class:`StepFGSM`) run once at eps = 1: d = sign(attack(x) - x).  A direction d is a sign tensor, so
``perturb(x, d, eps)`` is ``clip(x + eps * d, 0, 1)``; where the attack's step was clipped to zero, x already
sits on the box in that direction, so clip(x + eps * d) is x there whatever the sign.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import ThreatModel, UsageError
from robustreg.analysis import analysis_eps, craft_batched
from robustreg.options import flag, positive_int, seed_value

from ..attacks import StepFGSM, StepLL, least_likely

__all__ = ["DEFAULT_EPS", "DIRECTIONS", "SweepConfig", "directions", "input_gradient", "perturb", "random_signs",
           "sign_eps"]

DIRECTIONS = ("step_ll", "step_FGSM", "random sign")
DEFAULT_EPS = "0,1/255,2/255,4/255,6/255,8/255,10/255,12/255,14/255,16/255"  # Figs. 4-6: eps = 0..16 (of 255)



@dataclass(frozen=True)
class SweepConfig:
    """The options of a sweep along the directions (gradient-correlation, softmax-argument: their keyword
    arguments), checked once; ``options`` given to the analysis replace these fields."""

    seed: int = 0
    batch_size: int = 256
    show_progress: bool = False

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, optional=False)
        positive_int("batch_size", self.batch_size)
        flag("show_progress", self.show_progress)

def input_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                   least_likely_class: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x CE(f(x), labels), logits) per image: the batch-summed CE, so each row is its own image's gradient.

    ``least_likely_class``: the labels are y_LL of this very forward pass (``labels`` is then ignored).
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        target = least_likely(logits.detach()) if least_likely_class else labels
        if target is None:
            raise ValueError("input_gradient needs labels unless least_likely_class=True")
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    return grad.detach(), logits.detach()


def random_signs(shape: torch.Size | tuple[int, ...], seed: int) -> torch.Tensor:
    """sign(N(0, I)) of ``shape``, drawn on the CPU from a local generator seeded with ``seed``: draw it for
    all the images at once, so it depends on neither the batch size nor the device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).sign()


def directions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, signs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sign tensors of :data:`DIRECTIONS` at the clean ``x`` (labels ``y``) for one batch;
    ``signs``: this batch's rows of :func:`random_signs`."""
    unit = ThreatModel("linf", 1.0)  # one full step: its sign is the direction, for every eps in [0, 1]
    step = {name: (craft_batched(attack, model, x, y, len(x)) - x).sign() for name, attack in
            (("step_ll", StepLL(unit)), ("step_FGSM", StepFGSM(unit)))}  # each one cell of the engine
    return {**step, "random sign": signs.to(x.device)}


def perturb(x: torch.Tensor, direction: torch.Tensor, eps: float) -> torch.Tensor:
    """clip(x + eps * direction, 0, 1) (a new tensor)."""
    return (x + eps * direction).clamp(0.0, 1.0)


def sign_eps(args: argparse.Namespace, analysis: str) -> list[float]:
    """``--eps`` of an analysis along these sign directions: linf only, every budget in [0, 1]."""
    if args.norm != "linf":
        raise UsageError(f"--norm {args.norm}: {analysis} steps along sign directions (paper 000), "
                         "so only linf is allowed")
    eps = analysis_eps(args)
    for value in eps:
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--eps {args.eps!r}: {value:g} is outside [0, 1] (linf budgets in [0, 1] units; "
                             f"did you mean {value:g}/255?)")
    return eps

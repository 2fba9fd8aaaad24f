"""The fast gradient sign method (Goodfellow et al. 2015), optionally from a random start."""

from __future__ import annotations

import math

import torch
from torch import nn

from robustreg import Attack, AttackInfo, Param, ParamSet

from .losses import attack_loss

__all__ = ["FGSM"]


class FGSM(Attack):
    """One signed-gradient step of size eps on the cross-entropy loss (linf).

    Paper: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", 2015,
    arXiv:1412.6572.  With ``random_start=True`` it is the R+FGSM / "fast AT" variant (Wong et al.,
    "Fast is better than free", 2020, arXiv:2001.03994): a uniform start in the ball, then one step
    of ``step_size``, projected back into the ball.

    Norm: linf.

    Parameters: keyword-only, declared in :attr:`params` (``robustreg list fgsm`` shows them), plus
    ``seed`` and ``eval_mode`` (see :class:`robustreg.Attack`).

    Targeted: ``attack(model, x, y, target=t)`` steps down the CE to ``t``.  Inputs: float
    N x C x H x W in [0, 1], int64 labels.

    Example::

        x_adv = FGSM(ThreatModel("linf", 8 / 255))(model, x, y)
    """

    name = "fgsm"
    info = AttackInfo(
        norms=("linf",), kind="white-box", targeted=True, randomized=False, single_step=True,
        source="Goodfellow et al. 2015, arXiv:1412.6572", toolkit="native", paper=None,
        summary="FGSM (Goodfellow 2015): one signed-gradient step of eps; optional random start",
    )
    params = ParamSet([
        Param("random_start", "bool", False, "start from a uniform point of the eps ball (R+FGSM / fast AT)"),
        Param("step_size", "float", None, "absolute step; None = eps", low=0, low_open=True, high=math.inf,
              high_open=True, optional=True, unit="pixels [0, 1]"),
    ])
    random_start: bool
    step_size: float | None

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> torch.Tensor:
        eps = self.threat.eps
        step = self.step_size if self.step_size is not None else eps
        start = self.threat.random_point(x, generator) if self.random_start else x.clone()
        start.requires_grad_(True)
        loss = attack_loss("ce", model(start), y, target)
        (grad,) = torch.autograd.grad(loss, start)
        with torch.no_grad():
            lo, hi = self.threat.clip_bounds(x)
            return torch.minimum(torch.maximum(start + step * grad.sign(), lo), hi)

"""SI-PGD, the scale-invariant PGD of paper 004: PGD on CE(s * cos(theta), y).

cos(theta_k) is the cosine between the penultimate features z and the head's weight row W_k
(:func:`robustreg.embed`).  Rescaling the logits (a temperature, h = alpha * f) changes neither z
nor W, so the attack's steps do not change either, while PGD's CE gradient vanishes for a large
alpha.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Attack, AttackInfo, AttackResult, Param, ParamSet, embed, projected_gradient_ascent

__all__ = ["SIPGD"]


class SIPGD(Attack):
    """Scale-invariant PGD: PGD steps on CE(s * cos(theta), y), linf or l2.

    Paper 004: "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial
    Defenses" (Xu et al., 2022, arXiv:2201.12527), section 4.2, eq. 23.  The model must end in an
    ``nn.Linear`` head (anything after it, such as a logit scale, is ignored by design).

    Norms: linf (signed steps, clip) and l2 (normalised-gradient steps, projection).

    Parameters: keyword-only, declared in :attr:`params` (``robustreg list si-pgd`` shows them), plus
    ``seed`` and ``eval_mode`` (see :class:`robustreg.Attack`).  A sample misclassified (by the
    model's own logits) after any restart stays broken.

    Targeted: ``target=`` minimises CE(s * cos(theta), target).

    Example::

        x_adv = SIPGD(ThreatModel("linf", 8 / 255), s=15, seed=0)(model, x, y)
    """

    name = "si-pgd"
    info = AttackInfo(
        norms=("linf", "l2"), kind="white-box", targeted=True, needs_embedding=True, randomized=True,
        source="paper 004 (Xu et al. 2022, arXiv:2201.12527) sec. 4.2", toolkit="native", paper="004",
        summary="SI-PGD (paper 004): PGD on CE(s * cos theta), invariant to logit rescaling",
    )

    params = ParamSet([
        Param("s", "float", 15.0, "the scale multiplying cos(theta) (paper: s = 15), unitless",
              low=0, low_open=True, high=math.inf, high_open=True),
        Param("steps", "int", 20, "gradient steps per restart", low=1, sane_high=100_000),
        Param("step_size", "float", None, "absolute step; None = eps / 4", low=0, low_open=True, high=math.inf,
              high_open=True, optional=True, unit="pixels [0, 1]"),
        Param("random_start", "bool", True, "start from a uniform point of the eps ball"),
        Param("restarts", "int", 1, "independent runs; a sample broken by any run stays broken", low=1,
              sane_high=100_000),
    ])
    s: float
    steps: int
    step_size: float | None
    random_start: bool
    restarts: int

    @property
    def effective_step_size(self) -> float:
        return self.step_size if self.step_size is not None else self.threat.eps / 4

    def _loss(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
              target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample CE(s * cos(theta), y) (targeted: minus the CE to the target), and the model's logits."""
        embedding = embed(model, x_adv)
        scaled = self.s * embedding.cosine()
        if target is None:
            return F.cross_entropy(scaled, y, reduction="none"), embedding.logits
        return -F.cross_entropy(scaled, target, reduction="none"), embedding.logits

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> AttackResult:
        extras: dict[str, torch.Tensor] = {}  # loss_trace and ever_broken, for the evaluation's checks
        x_adv = projected_gradient_ascent(
            model, self._loss, x, y, target, self.threat, steps=self.steps,
            step_size=self.effective_step_size,
            random_start=self.random_start, restarts=self.restarts, generator=generator, extras=extras,
        )
        return AttackResult(x_adv, extras=extras)

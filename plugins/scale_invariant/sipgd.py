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

from robustreg import Attack, AttackInfo, ThreatModel, embed, projected_gradient_ascent

__all__ = ["SIPGD"]


class SIPGD(Attack):
    """Scale-invariant PGD: PGD steps on CE(s * cos(theta), y), linf or l2.

    Paper 004: "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial
    Defenses" (Xu et al., 2022, arXiv:2201.12527), section 4.2, eq. 23.  The model must end in an
    ``nn.Linear`` head (anything after it, such as a logit scale, is ignored by design).

    Norms: linf (signed steps, clip) and l2 (normalised-gradient steps, projection).

    Parameters (keyword-only):

    - ``s`` (float, default 15.0): the scale multiplying cos(theta) (paper: s = 15), unitless.
    - ``steps`` (int, default 20): gradient steps per restart.
    - ``step_size`` (float or None, default None = eps / 4): absolute step in [0, 1] pixel units.
    - ``random_start`` (bool, default True): start from a uniform point of the eps ball.
    - ``restarts`` (int, default 1): independent runs; a sample misclassified (by the model's own
      logits) after any run stays broken.
    - ``seed`` (int or None), ``eval_mode`` (bool, default True): see :class:`robustreg.Attack`.

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

    def __init__(
        self,
        threat: ThreatModel,
        *,
        s: float = 15.0,
        steps: int = 20,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        seed: int | None = None,
        eval_mode: bool = True,
    ) -> None:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            raise ValueError(f"s must be a finite number > 0 (paper: 15), got {s!r}")
        for pname, value in (("steps", steps), ("restarts", restarts)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{pname} must be an int >= 1, got {value!r}")
        if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float))
                                      or not math.isfinite(step_size) or step_size <= 0):
            raise ValueError(f"step_size must be a number > 0 (absolute, [0, 1] units) or None, got {step_size!r}")
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be True or False, got {random_start!r}")
        self.s = float(s)
        self.steps = steps
        self.step_size = None if step_size is None else float(step_size)
        self.random_start = random_start
        self.restarts = restarts
        super().__init__(threat, seed=seed, eval_mode=eval_mode)

    def _loss(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None):
        """CE(s * cos(theta), y) summed over the batch (targeted: minus the CE to the target)."""
        scaled = self.s * embed(model, x_adv).cosine()
        if target is None:
            return F.cross_entropy(scaled, y, reduction="sum")
        return -F.cross_entropy(scaled, target, reduction="sum")

    def perturb(self, model, x, y, generator, target=None):
        return projected_gradient_ascent(
            model, self._loss, x, y, target, self.threat, steps=self.steps,
            step_size=self.step_size if self.step_size is not None else self.threat.eps / 4,
            random_start=self.random_start, restarts=self.restarts, generator=generator,
        )

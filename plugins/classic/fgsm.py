"""The fast gradient sign method (Goodfellow et al. 2015), optionally from a random start."""

from __future__ import annotations

import math

import torch

from robustreg import Attack, AttackInfo, ThreatModel

from .losses import attack_loss

__all__ = ["FGSM"]


class FGSM(Attack):
    """One signed-gradient step of size eps on the cross-entropy loss (linf).

    Paper: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", 2015,
    arXiv:1412.6572.  With ``random_start=True`` it is the R+FGSM / "fast AT" variant (Wong et al.,
    "Fast is better than free", 2020, arXiv:2001.03994): a uniform start in the ball, then one step
    of ``step_size``, projected back into the ball.

    Norm: linf.

    Parameters (keyword-only):

    - ``random_start`` (bool, default False): start from a uniform point of the eps ball.
    - ``step_size`` (float or None, default None = eps): absolute step in [0, 1] pixel units.
    - ``seed`` (int or None), ``eval_mode`` (bool, default True): see :class:`robustreg.Attack`.

    Targeted: ``attack(model, x, y, target=t)`` steps down the CE to ``t``.  Inputs: float
    N x C x H x W in [0, 1], int64 labels.

    Example::

        x_adv = FGSM(ThreatModel("linf", 8 / 255))(model, x, y)
    """

    name = "fgsm"
    info = AttackInfo(
        norms=("linf",), kind="white-box", targeted=True, randomized=False,
        source="Goodfellow et al. 2015, arXiv:1412.6572", toolkit="native", paper=None,
        summary="FGSM (Goodfellow 2015): one signed-gradient step of eps; optional random start",
    )

    def __init__(
        self,
        threat: ThreatModel,
        *,
        random_start: bool = False,
        step_size: float | None = None,
        seed: int | None = None,
        eval_mode: bool = True,
    ) -> None:
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be True or False, got {random_start!r}")
        if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float))
                                      or not math.isfinite(step_size) or step_size <= 0):
            raise ValueError(f"step_size must be a number > 0 (absolute, [0, 1] units) or None, got {step_size!r}")
        self.random_start = random_start
        self.step_size = None if step_size is None else float(step_size)
        super().__init__(threat, seed=seed, eval_mode=eval_mode)

    def perturb(self, model, x, y, generator, target=None):
        eps = self.threat.eps
        step = self.step_size if self.step_size is not None else eps
        start = self.threat.random_point(x, generator) if self.random_start else x.clone()
        start.requires_grad_(True)
        loss = attack_loss("ce", model(start), y, target)
        (grad,) = torch.autograd.grad(loss, start)
        with torch.no_grad():
            lo = (x - eps).clamp_min(self.threat.box[0])
            hi = (x + eps).clamp_max(self.threat.box[1])
            return torch.minimum(torch.maximum(start + step * grad.sign(), lo), hi)

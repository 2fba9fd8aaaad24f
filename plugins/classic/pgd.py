"""Projected gradient descent (Madry et al. 2018) and its C&W-margin and DLR variants.

The loop itself is the core's :func:`robustreg.projected_gradient_ascent` (shared with SI-PGD);
this module chooses the loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robustreg import Attack, AttackInfo, ThreatModel, projected_gradient_ascent

from .losses import LOSSES, attack_loss

__all__ = ["PGD", "PGDCW", "PGDDLR"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_step_size(step_size: object) -> float | None:
    if step_size is None:
        return None
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not math.isfinite(step_size) \
            or step_size <= 0:
        raise ValueError(f"step_size must be a number > 0 (absolute, in [0, 1] pixel units) or None, got {step_size!r}")
    return float(step_size)


class PGD(Attack):
    """Projected gradient descent with random start and restarts (linf or l2).

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", 2018,
    arXiv:1706.06083.  Defaults follow paper 004 (20 steps of eps/4).

    Norms: linf (signed gradient steps, clip to the box and ball) and l2 (steps along the
    l2-normalised gradient, projection onto the l2 ball and the box).

    Parameters (keyword-only):

    - ``steps`` (int, default 20): gradient steps per restart.
    - ``step_size`` (float or None, default None = eps / 4): absolute step in [0, 1] pixel units
      (for l2: the l2 length of each step).
    - ``random_start`` (bool, default True): start from a uniform point of the eps ball.
    - ``restarts`` (int, default 1): independent runs; a sample broken by any run stays broken.
    - ``loss`` ("ce" | "cw" | "dlr", default "ce"): cross-entropy, C&W margin max_{j!=y} z_j - z_y, or
      DLR (Croce & Hein 2020).
    - ``kappa`` (float, default 50.0): cap of the C&W margin (``loss="cw"`` only), in logit units.
    - ``seed`` (int or None), ``eval_mode`` (bool, default True): see :class:`robustreg.Attack`.

    Targeted: pass ``target=`` to the call; the attack then minimises CE to the target (or ascends
    the targeted margin / DLR).  Inputs: float N x C x H x W in [0, 1], int64 labels.

    Example::

        attack = PGD(ThreatModel("linf", 8 / 255), steps=20, seed=0)
        x_adv = attack(model, x, y)
    """

    name = "pgd"
    info = AttackInfo(
        norms=("linf", "l2"), kind="white-box", targeted=True, randomized=True,
        source="Madry et al. 2018, arXiv:1706.06083", toolkit="native", paper="004",
        summary="PGD (Madry 2018): random start, restarts, CE / CW / DLR loss, linf and l2",
    )

    def __init__(
        self,
        threat: ThreatModel,
        *,
        steps: int = 20,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        kappa: float = 50.0,
        seed: int | None = None,
        eval_mode: bool = True,
    ) -> None:
        self.steps = _check_int("steps", steps, 1)
        self.step_size = _check_step_size(step_size)
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be True or False, got {random_start!r}")
        self.random_start = random_start
        self.restarts = _check_int("restarts", restarts, 1)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not kappa > 0:
            raise ValueError(f"kappa must be a number > 0 (logit units; inf allowed), got {kappa!r}")
        self.kappa = float(kappa)
        super().__init__(threat, seed=seed, eval_mode=eval_mode)

    @property
    def effective_step_size(self) -> float:
        return self.step_size if self.step_size is not None else self.threat.eps / 4

    def perturb(self, model, x, y, generator, target=None):
        loss, kappa = self.loss, self.kappa

        def loss_fn(model: nn.Module, x_adv: torch.Tensor, labels: torch.Tensor, tgt: torch.Tensor | None):
            return attack_loss(loss, model(x_adv), labels, tgt, kappa)

        return projected_gradient_ascent(
            model, loss_fn, x, y, target, self.threat, steps=self.steps, step_size=self.effective_step_size,
            random_start=self.random_start, restarts=self.restarts, generator=generator,
        )


class PGDCW(PGD):
    """PGD on the C&W margin loss max_{j!=y} z_j - z_y (capped at ``kappa``), linf or l2.

    Papers: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", 2017,
    arXiv:1608.04644 (the margin loss); Madry et al. 2018, arXiv:1706.06083 (PGD); used as "PGDCW" in
    paper 004 (eq. 5).  Parameters as :class:`PGD` without ``loss``: ``steps`` (20),
    ``step_size`` (None = eps/4, absolute), ``random_start`` (True), ``restarts`` (1), ``kappa``
    (50.0 logit units: the margin stops growing once a wrong class leads by kappa), ``seed``,
    ``eval_mode``.

    Example::

        x_adv = PGDCW(ThreatModel("linf", 8 / 255), seed=0)(model, x, y)
    """

    name = "pgd-cw"
    info = AttackInfo(
        norms=("linf", "l2"), kind="white-box", targeted=True, randomized=True,
        source="Carlini & Wagner 2017, arXiv:1608.04644; paper 004 eq. 5", toolkit="native", paper="004",
        summary="PGD on the C&W margin loss (PGDCW of paper 004)",
    )

    def __init__(
        self,
        threat: ThreatModel,
        *,
        steps: int = 20,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        kappa: float = 50.0,
        seed: int | None = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(threat, steps=steps, step_size=step_size, random_start=random_start, restarts=restarts,
                         loss="cw", kappa=kappa, seed=seed, eval_mode=eval_mode)


class PGDDLR(PGD):
    """PGD on the difference-of-logits-ratio loss -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3 + 1e-12).

    Papers: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", 2020, arXiv:2003.01690 (DLR); used as "PGDLR" in paper 004 (eq. 6).
    Needs at least 3 classes (4 when targeted).  Norms linf and l2.  Parameters as :class:`PGD`
    without ``loss`` / ``kappa``: ``steps`` (20), ``step_size`` (None = eps/4, absolute),
    ``random_start`` (True), ``restarts`` (1), ``seed``, ``eval_mode``.

    Example::

        x_adv = PGDDLR(ThreatModel("linf", 8 / 255), seed=0)(model, x, y)
    """

    name = "pgd-dlr"
    info = AttackInfo(
        norms=("linf", "l2"), kind="white-box", targeted=True, randomized=True,
        source="Croce & Hein 2020, arXiv:2003.01690; paper 004 eq. 6", toolkit="native", paper="004",
        summary="PGD on the DLR loss (PGDLR of paper 004)",
    )

    def __init__(
        self,
        threat: ThreatModel,
        *,
        steps: int = 20,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        seed: int | None = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(threat, steps=steps, step_size=step_size, random_start=random_start, restarts=restarts,
                         loss="dlr", seed=seed, eval_mode=eval_mode)

"""Paper 004's scale-invariant (SI) defense mechanism, composable onto any defense.

Xu et al., "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial Defenses",
2022, arXiv 2201.12527, section 4.3 and Table 1 (right column): the adversarial examples maximise
CE(s * cos(theta), y) (SI-PGD, eq. 24) instead of the defense's own adversarial objective, and
``beta * CE(s * (cos(theta) - m * onehot(y)), y)`` on the adversarial examples (eq. 25) is added to
the training objective.  Defaults s = 15, m = 0.2, beta = 0.2 (paper 004 section 5.2).

:class:`SIMechanism` is a :class:`robustreg.Mechanism`: it replaces the defense's inner loss
(:meth:`~robustreg.Mechanism.inner_loss`) and adds the margin term
(:meth:`~robustreg.Mechanism.extra_terms`), both from the defense's own forward pass of x_adv, so
it needs nothing of the defense but the extension points of :class:`robustreg.Defense`.

Two ablation switches (not in the paper; they separate SI's two parts, issue 24's claim-5 ablation):
``inner="base"`` keeps the defense's own inner attack (only the margin term is added), and
``term="logits"`` computes the added term as plain ``CE(logits, y)`` of the adversarial examples
instead of the margin CE on ``s * cos(theta)``.  ``beta=0`` leaves SI-PGD as the only change.  The
defaults (``inner="si-pgd"``, ``term="margin-cos"``) are the paper's mechanism.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import ExtraTerm, ForwardPass, Mechanism, Param, ParamError, ParamSet, embed

__all__ = ["SIMechanism", "si_logits", "si_margin_ce"]


def si_logits(model: nn.Module, x: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, s * cos(theta))`` of one forward pass (paper 004 eq. 17 and 24)."""
    emb = embed(model, x)
    return emb.logits, s * emb.cosine()


def si_margin_ce(cos: torch.Tensor, y: torch.Tensor, s: float, m: float, reduction: str = "mean") -> torch.Tensor:
    """CE(s * (cos(theta) - m * onehot(y)), y): paper 004 eq. 25, the margin on the true class only.

    Bounded because |cos| <= 1: 0 < value <= log(K) + s * (2 + m).
    """
    margin = F.one_hot(y, cos.shape[1]).to(cos.dtype) * m
    return F.cross_entropy(s * (cos - margin), y, reduction=reduction)


class SIMechanism(Mechanism):
    """The SI mechanism: SI-PGD inner loss CE(s * cos(theta), y) and ``+ beta * CE^m(s cos(theta), y)``.

    Parameters: ``si`` (always True: the mechanism is on; False is refused, build the defense
    without ``-si`` for the plain one), ``s`` (15, > 0), ``m`` (0.2, >= 0), ``beta`` (0.2, >= 0);
    the ablation switches ``inner`` ("si-pgd" or "base") and ``term`` ("margin-cos" or "logits").
    """

    name = "si"
    needs_embedding = True
    params = ParamSet([
        Param("si", "bool", True, "the SI mechanism is on (always True; build the plain defense for False)"),
        Param("s", "float", 15.0, "scale of cos(theta) in the SI-PGD inner loss and the margin term",
              low=0, low_open=True, high=math.inf, high_open=True),
        Param("m", "float", 0.2, "margin subtracted from the true class's cos(theta) in the margin term",
              low=0, high=math.inf, high_open=True),
        Param("beta", "float", 0.2, "weight of the margin term CE(s * (cos(theta) - m * onehot(y)), y)",
              low=0, high=math.inf, high_open=True),
        Param("inner", "choice", "si-pgd", "the inner attack's loss: si-pgd (paper 004) or base (the defense's "
              "own; ablation: the margin term only)", choices=("si-pgd", "base")),
        Param("term", "choice", "margin-cos", "the added term: margin-cos (paper 004 eq. 25) or logits (ablation: "
              "beta * CE(logits, y) of the adversarial examples, no cos(theta), no margin)",
              choices=("margin-cos", "logits")),
    ])
    si: bool
    s: float
    m: float
    beta: float
    inner: str
    term: str

    def setup(self) -> None:
        if self.si is not True:
            base = self.owner[: -len("-si")] if self.owner.endswith("-si") else "the plain defense"
            raise ParamError(f"{self.owner} always uses the SI mechanism, got si={self.si!r}; build {base!r} "
                             "for the plain one")

    def inner_loss(self, out: ForwardPass, y: torch.Tensor) -> torch.Tensor | None:
        """CE(s * cos(theta(x')), y) summed over the batch (paper 004 Table 1, right column); None (the
        defense's own) with ``inner="base"``."""
        if self.inner == "base":
            return None
        return F.cross_entropy(self.s * out.cosine(), y, reduction="sum")

    def extra_terms(self, out_adv: ForwardPass, y: torch.Tensor) -> list[ExtraTerm]:
        """``beta * CE(s * (cos(theta(x')) - m * onehot(y)), y)`` (paper 004 eq. 25), logged as ``loss_si``;
        ``beta * CE(logits(x'), y)`` with ``term="logits"``."""
        if self.term == "logits":
            return [ExtraTerm("si", F.cross_entropy(out_adv.logits, y), self.beta)]
        return [ExtraTerm("si", si_margin_ce(out_adv.cosine(), y, self.s, self.m), self.beta)]

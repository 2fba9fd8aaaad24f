"""Hypersphere embedding (HE) defenses: PGD-AT-HE (``he``) and TRADES-HE (``trades-he``).

Paper: Pang, Yang, Dong, Xu, Zhu and Su, "Boosting Adversarial Training with Hypersphere Embedding",
NeurIPS 2020, arXiv 2002.08619.  HE normalises the penultimate features z and the head's weights W and
replaces the logits everywhere (attack and training loss) by the cosine logits ``s * cos(theta)``
(the head's bias is dropped); the training loss adds the additive angular margin on the true class,
``CE^m(f~(x), y) = CE(s * (cos(theta) - m * onehot(y)), y)``, while the inner attack uses no margin.
Paper 004 (section 5.5.1, Table 10) compares TRADES-HE with TRADES-SI: HE puts the angle in place of
the logits, SI adds it as a regulariser.

The model itself is not rewritten: cos(theta) comes from :func:`robustreg.embed`.  A model trained
with HE predicts with ``argmax cos(theta)``; its own forward still returns ``W z + b`` — so
``logits_clean`` / ``logits_adv`` of the outputs are the cosine logits ``s * cos(theta)``.

The inner loop is the core's :func:`robustreg.pgd_steps`, as in the classic defenses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Defense, DefenseInfo, DefenseOutput, ThreatModel, crafting, embed, pgd_steps

__all__ = ["HEAT", "TRADESHE", "he_logits", "he_margin_ce"]


def _number(name: str, value: Any, *, low: float, high: float = math.inf, strict: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and value <= high
    if not ok:
        bound = f"> {low:g}" if strict else f">= {low:g}"
        upper = f" and <= {high:g}" if math.isfinite(high) else ""
        raise ValueError(f"{name} must be a finite number {bound}{upper}, got {value!r}")
    return float(value)


def he_logits(model: nn.Module, x: torch.Tensor, s: float) -> torch.Tensor:
    """HE logits ``s * cos(theta)``: normalised features times normalised weights, no bias."""
    return s * embed(model, x).cosine()


def he_margin_ce(scaled_cos: torch.Tensor, y: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """``CE(s * (cos(theta) - m * onehot(y)), y)`` from ``s * cos(theta)`` (the HE / CosFace training loss)."""
    return F.cross_entropy(scaled_cos - s * m * F.one_hot(y, scaled_cos.shape[1]).to(scaled_cos.dtype), y)


def _kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    log_p, log_q = F.log_softmax(logits_p, dim=1), F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


class _HEDefense(Defense):
    """Common parameters and the PGD inner loop of the HE defenses."""

    start: ClassVar[str] = "uniform"

    def __init__(self, *, eps: float = 8 / 255, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, s: float = 15.0, m: float = 0.2, seed: int | None = None) -> None:
        self.eps = _number("eps", eps, low=0.0, high=1.0)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        self.steps = steps
        self.step_size = self.eps / 4 if step_size is None else _number("step_size", step_size, low=0.0)
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be True or False, got {random_start!r}")
        self.random_start = random_start
        self.s = _number("s", s, low=0.0, strict=True)
        self.m = _number("m", m, low=0.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    def start_point(self, x: torch.Tensor, step: int) -> torch.Tensor:
        gen = None if self.seed is None else torch.Generator(device=x.device).manual_seed(
            self.seed * 1_000_003 + int(step))
        if not self.random_start:
            return x.clone()
        if self.start == "gaussian":
            return (x + 0.001 * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)).clamp(0, 1)
        noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
        return (x + self.eps * noise).clamp(0.0, 1.0)

    def attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda xa: F.cross_entropy(he_logits(model, xa, self.s), y, reduction="sum")

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """linf PGD on the HE adversarial objective, in eval mode, input gradients only (detached result)."""
        x, y = x.detach(), y.detach()
        start = self.start_point(x, step)
        with crafting(model) as net:
            return pgd_steps(self.attack_loss(net, x, y), x, start, ThreatModel("linf", self.eps), steps=self.steps,
                             step_size=self.step_size)

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        return self.objective(model, x, self.adversarial(model, x, y, step=step), y)

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "steps": self.steps, "step_size": self.step_size,
                "random_start": self.random_start, "s": self.s, "m": self.m}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"


class HEAT(_HEDefense):
    """PGD-AT with hypersphere embedding: CE(s * (cos(theta(x')) - m * onehot(y)), y) on PGD examples.

    Paper: Pang et al. 2020, arXiv 2002.08619 (PGD-AT-HE).  Norm: linf.
    Adversarial objective: ``CE(s * cos(theta(x')), y)`` (no margin); training objective
    ``CE(s * (cos(theta(x')) - m * onehot(y)), y)``.

    Parameters: ``eps`` (8/255, pixel units), ``steps`` (10), ``step_size`` (eps/4, pixel units),
    ``random_start`` (True: uniform in the ball), ``s`` (15), ``m`` (0.2), ``seed`` (None: torch's
    global RNG; an int: a local generator seeded with (seed, step)).

    Example: ``Registry.create().build_defense("he", s=15.0, m=0.2)``.
    """

    name = "he"
    info = DefenseInfo(source="Pang et al. 2020, arXiv 2002.08619", paper="004", needs_embedding=True,
                       summary="PGD-AT with hypersphere embedding (cosine logits, angular margin)")

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_adv = he_logits(model, x_adv, self.s)
        loss = he_margin_ce(logits_adv, y, self.s, self.m)
        return DefenseOutput(loss, {"loss_he_adv": float(loss.detach()), "loss": float(loss.detach())},
                             logits_adv=logits_adv.detach())


class TRADESHE(_HEDefense):
    """TRADES with hypersphere embedding: CE^m(f~(x), y) + lambda * KL(f~(x) || f~(x')).

    Paper: Pang et al. 2020, arXiv 2002.08619 (TRADES-HE); compared with TRADES-SI in paper 004 Table 10.
    Norm: linf.  f~ = softmax(s * cos(theta)).
    Adversarial objective: ``KL(f~(x) || f~(x'))`` with f~(x) fixed, from x + 0.001 * N(0, I);
    training objective ``CE(s * (cos(theta(x)) - m * onehot(y)), y) + lam * KL(f~(x) || f~(x'))``.

    Parameters: ``lam`` (6), ``eps`` (8/255), ``steps`` (10), ``step_size`` (eps/4), ``random_start``
    (True), ``s`` (15), ``m`` (0.2), ``seed`` (None).

    Example: ``Registry.create().build_defense("trades-he", lam=6.0)``.
    """

    name = "trades-he"
    info = DefenseInfo(source="Pang et al. 2020, arXiv 2002.08619", paper="004", needs_embedding=True,
                       summary="TRADES with hypersphere embedding (paper 004 Table 10)")
    start = "gaussian"

    def __init__(self, *, lam: float = 6.0, **common: Any) -> None:
        self.lam = _number("lam", lam, low=0.0)
        super().__init__(**common)

    def attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        with torch.no_grad():
            nat = he_logits(model, x, self.s)
        return lambda xa: _kl(nat, he_logits(model, xa, self.s)).sum()

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_clean = he_logits(model, x, self.s)
        logits_adv = he_logits(model, x_adv, self.s)
        ce = he_margin_ce(logits_clean, y, self.s, self.m)
        kl = _kl(logits_clean, logits_adv).mean()
        loss = ce + self.lam * kl
        metrics = {"loss_he": float(ce.detach()), "loss_kl": float(kl.detach()), "loss": float(loss.detach())}
        return DefenseOutput(loss, metrics, logits_clean=logits_clean.detach(), logits_adv=logits_adv.detach())

    def params(self) -> dict[str, Any]:
        return {"lam": self.lam, **super().params()}

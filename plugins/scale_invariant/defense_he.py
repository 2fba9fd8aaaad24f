"""Hypersphere embedding (HE) defenses: PGD-AT-HE (``he``) and TRADES-HE (``trades-he``).

Paper: Pang, Yang, Dong, Xu, Zhu and Su, "Boosting Adversarial Training with Hypersphere Embedding",
NeurIPS 2020, arXiv 2002.08619.  HE normalises the penultimate features z and the head's weights W and
replaces the logits everywhere (attack and training loss) by the cosine logits ``s * cos(theta)``
(the head's bias is dropped); the training loss adds the additive angular margin on the true class,
``CE^m(f~(x), y) = CE(s * (cos(theta) - m * onehot(y)), y)``, while the inner attack uses no margin.
Paper 004 (section 5.5.1, Table 10) compares TRADES-HE with TRADES-SI: HE puts the angle in place of
the logits, SI adds it as a regulariser.

The losses read z and W through :func:`robustreg.embed`, so they do not depend on what the model's
forward returns.  A model trained with HE predicts with ``s * cos(theta)``: the defenses declare that
head (:meth:`Defense.head`: ``Head("cosine", s=s)``, no bias), the trainer trains the model with it
applied and records it in the checkpoint, and :func:`robustreg.build_model` puts it back on loading, so
``model(x)`` of the loaded checkpoint is ``s * cos(theta)``, exactly :func:`he_logits`.
``logits_clean`` / ``logits_adv`` of the outputs are the cosine logits ``s * cos(theta)``.

The inner loop is the core's :func:`robustreg.pgd_steps`, as in the classic defenses.

Where the head's W is normalised (``weight_norm``): Pang et al.'s code sets W's rows to unit norm in
place before each forward ("in-place", :class:`robustreg.Head` ``renormalize_weights``); the default
here stays "differentiable" (through W / |W|) because an in-place head changes the model's weights
when it runs, which the Head contract rules out, and because measured on digits it does not cure the
stall it was suspected of (digits-cnn, 15 epochs, lr 0.1, defaults: final clean accuracy 32% either
way).  What stalls HE on a BatchNorm-free net at lr 0.1: the feature gradient is s / |z| times a unit
vector (about 3.4 at initialisation against about 0.6 for plain logits), the first steps blow the
feature norm up (|z| 4 -> ~500 within 55 steps) and kill ~70-80% of the ReLU units before the head;
the 1 / |z| gradient then freezes the rest.  Pang et al.'s ResNets put BatchNorm before the features;
on such nets, or with a smaller lr, HE trains.

Training HE at these defaults on BatchNorm-free nets (issue 11, measured): the defaults (s 15, m 0.2,
eps 8/255, PGD-10 from x + 0.001 N(0, I)) are Pang et al.'s and stay; what does not carry over is their
lr 0.1 from the first step.  At initialisation digits-cnn's and LeNet-5's features have |z| ~ 0.6 (a
WRN's, after BatchNorm + ReLU + pooling, ~10), so the feature gradient s / |z| is ~25, the first steps at
lr 0.1 with momentum 0.9 throw |z| to ~100 within 10 steps and kill ~75% of the units before the head
(no BatchNorm re-standardises them).  The same defaults train once the first steps are small, so both HE
defenses declare ``DefenseInfo(lr_warmup_epochs=3)``: the trainer ramps the lr linearly over the first 3
epochs when the config leaves ``lr_warmup_epochs`` unset (set it to 0 for Pang et al.'s schedule as
written, e.g. on a BatchNorm ResNet).  Test accuracy after 15 epochs on scikit-learn digits (trainer
defaults otherwise: lr 0.1, step schedule without milestones, batch 128 (11 steps an epoch), momentum
0.9, weight decay 5e-4, augmented; one thread):

==============================================  =======================  =====================
recipe (``he`` at its defaults)                 digits-cnn, clean test   last epoch's adv acc
==============================================  =======================  =====================
lr 0.1, no warm-up (``lr_warmup_epochs=0``)     27%                      0.24
lr 0.1, no attack (steps 0): HE loss alone      64%                      --
lr 0.1, 1-epoch warm-up                         76%                      0.36
lr 0.1, 2-epoch warm-up                         98%                      0.88
**lr 0.1, 3-epoch warm-up (the default)**       99%, 98%, 99% (seeds     0.93, 0.92, 0.93
                                                0, 1, 2)
lr 0.1, 5-epoch warm-up                         99%                      0.92
lr 0.05, no warm-up                             61%                      0.31
lr 0.02, no warm-up                             97%                      0.82
lr 0.1 peak, ``schedule="cyclic"`` (linear      99%                      0.94
warm-up over 40% of training, then down)
==============================================  =======================  =====================

LeNet-5 on digits28 (28 x 28), lr 0.1: 57% without a warm-up, 93% with the default 3 epochs.
``trades-he`` on digits-cnn, lr 0.1: 65% without a warm-up, 98% with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import (
    Defense,
    DefenseInfo,
    DefenseOutput,
    Head,
    Param,
    ParamSet,
    ThreatModel,
    crafting,
    embed,
    pgd_steps,
)

__all__ = ["HEAT", "TRADESHE", "he_head", "he_logits", "he_margin_ce"]

PIXELS = "pixels [0, 1]"


WEIGHT_NORMS = ("in-place", "differentiable")
#: the lr warm-up both HE defenses declare (see the module docstring)
LR_WARMUP_EPOCHS = 3.0


def he_head(s: float, weight_norm: str = "differentiable") -> Head:
    """The HE prediction head: ``s * cos(theta)``, normalised features and weights, no bias; ``weight_norm``
    "in-place": W's rows renormalised in place before each use (Pang et al.'s code), "differentiable":
    differentiated through ``W / |W|``."""
    if weight_norm not in WEIGHT_NORMS:
        raise ValueError(f"weight_norm must be one of {', '.join(WEIGHT_NORMS)}, got {weight_norm!r}")
    return Head("cosine", s=s, renormalize_weights=weight_norm == "in-place")


def he_logits(model: nn.Module, x: torch.Tensor, s: float, weight_norm: str = "differentiable") -> torch.Tensor:
    """HE logits ``s * cos(theta)``: normalised features times normalised weights, no bias."""
    return embed(model, x).logits_of(he_head(s, weight_norm))


def he_margin_ce(scaled_cos: torch.Tensor, y: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """``CE(s * (cos(theta) - m * onehot(y)), y)`` from ``s * cos(theta)`` (the HE / CosFace training loss)."""
    return F.cross_entropy(scaled_cos - s * m * F.one_hot(y, scaled_cos.shape[1]).to(scaled_cos.dtype), y)


def _kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    log_p, log_q = F.log_softmax(logits_p, dim=1), F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


class _HEDefense(Defense):
    """Common parameters and the PGD inner loop of the HE defenses."""

    params = ParamSet([
        Param("eps", "float", 8 / 255, "linf radius of the inner attack", low=0, high=1, unit=PIXELS),
        Param("steps", "int", 10, "the inner attack's iterations", low=0, sane_high=100_000),
        Param("step_size", "float", None, "the inner attack's absolute step; None = eps / 4", low=0, high=math.inf,
              high_open=True, optional=True, unit=PIXELS),
        Param("random_start", "bool", True, "start the inner attack from a random point (see init)"),
        Param("init", "choice", "normal", "the random start: normal (x + 0.001 N(0, I), Pang et al.'s code) or "
              "uniform (U(-eps, eps))", choices=("normal", "uniform")),
        Param("s", "float", 15.0, "scale of the cosine logits s * cos(theta)", low=0, low_open=True, high=math.inf,
              high_open=True),
        Param("m", "float", 0.2, "additive angular margin on the true class in the training loss", low=0,
              high=math.inf, high_open=True),
        Param("weight_norm", "choice", "differentiable", "how the head's W is normalised: in-place (rows set to unit "
              "norm before each use, Pang et al.'s code) or differentiable (through W / |W|)", choices=WEIGHT_NORMS),
        Param("seed", "int", None, "None: torch's global RNG; an int: a local generator seeded with (seed, step)",
              optional=True),
    ])
    weight_norm: str
    eps: float
    steps: int
    step_size: float
    random_start: bool
    init: str
    s: float
    m: float
    seed: int | None

    def setup(self) -> None:
        if self.step_size is None:
            self.step_size = self.eps / 4

    def head(self) -> Head:
        """The model trained with HE predicts with ``s * cos(theta)`` (recorded in the checkpoint)."""
        return he_head(self.s, self.weight_norm)

    def start_point(self, x: torch.Tensor, step: int) -> torch.Tensor:
        gen = None if self.seed is None else torch.Generator(device=x.device).manual_seed(
            self.seed * 1_000_003 + int(step))
        if not self.random_start:
            return x.clone()
        if self.init == "normal":
            return (x + 0.001 * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)).clamp(0, 1)
        noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
        return (x + self.eps * noise).clamp(0.0, 1.0)

    def attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda xa: F.cross_entropy(he_logits(model, xa, self.s, self.weight_norm), y, reduction="sum")

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

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in ((k, getattr(self, k)) for k in self.config))
        return f"{type(self).__name__}({inner})"


class HEAT(_HEDefense):
    """PGD-AT with hypersphere embedding: CE(s * (cos(theta(x')) - m * onehot(y)), y) on PGD examples.

    Paper: Pang et al. 2020, arXiv 2002.08619 (PGD-AT-HE).  Norm: linf.
    Adversarial objective: ``CE(s * cos(theta(x')), y)`` (no margin); training objective
    ``CE(s * (cos(theta(x')) - m * onehot(y)), y)``.

    Parameters: ``eps`` (8/255, pixel units), ``steps`` (10), ``step_size`` (eps/4, pixel units),
    ``random_start`` (True), ``init`` ("normal": x + 0.001 N(0, I), as in Pang et al.'s released code,
    whose PGD-AT-HE and TRADES-HE both start there; "uniform": U(-eps, eps), this library's former
    choice for PGD-AT-HE; the paper does not say), ``s`` (15), ``m`` (0.2), ``seed`` (None: torch's
    global RNG; an int: a local generator seeded with (seed, step)).

    Example: ``Registry.create().build_defense("he", s=15.0, m=0.2)``.
    """

    name = "he"
    info = DefenseInfo(source="Pang et al. 2020, arXiv 2002.08619", paper="004", needs_embedding=True,
                       summary="PGD-AT with hypersphere embedding (cosine logits, angular margin)",
                       lr_warmup_epochs=LR_WARMUP_EPOCHS)

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_adv = he_logits(model, x_adv, self.s, self.weight_norm)
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
    (True), ``init`` ("normal"), ``s`` (15), ``m`` (0.2), ``seed`` (None).

    Example: ``Registry.create().build_defense("trades-he", lam=6.0)``.
    """

    name = "trades-he"
    info = DefenseInfo(source="Pang et al. 2020, arXiv 2002.08619", paper="004", needs_embedding=True,
                       summary="TRADES with hypersphere embedding (paper 004 Table 10)",
                       lr_warmup_epochs=LR_WARMUP_EPOCHS)
    params = ParamSet([Param("lam", "float", 6.0, "weight of the KL term", low=0, high=math.inf, high_open=True),
                       *_HEDefense.params])
    lam: float

    def attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        with torch.no_grad():
            nat = he_logits(model, x, self.s, self.weight_norm)
        return lambda xa: _kl(nat, he_logits(model, xa, self.s, self.weight_norm)).sum()

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_clean = he_logits(model, x, self.s, self.weight_norm)
        logits_adv = he_logits(model, x_adv, self.s, self.weight_norm)
        ce = he_margin_ce(logits_clean, y, self.s, self.m)
        kl = _kl(logits_clean, logits_adv).mean()
        loss = ce + self.lam * kl
        metrics = {"loss_he": float(ce.detach()), "loss_kl": float(kl.detach()), "loss": float(loss.detach())}
        return DefenseOutput(loss, metrics, logits_clean=logits_clean.detach(), logits_adv=logits_adv.detach())

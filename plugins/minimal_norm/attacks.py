"""Minimal-norm attacks: FMN (linf, l2, l1) and DDN (l2).

Each returns, per sample, the smallest adversarial point its search visited (the clean point where
it found none) and reports ``extras["success"]`` (bool per sample) and ``extras["norms"]`` (the
perturbation's norm, NaN where none was found).  They declare ``AttackInfo(minimal_norm=True)``: the
threat's eps is no budget for them (only its norm and box are read); an evaluation at eps counts a
sample broken where its minimal perturbation fits in the ball, and ``robustreg curve`` turns one run
into robust accuracy at every eps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Attack, AttackInfo, AttackResult, Param, ParamSet

__all__ = ["DDN", "FMN", "logit_margin", "project_ball"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


_P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}
_DUAL = {"linf": 1.0, "l2": 2.0, "l1": math.inf}


def _norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    return _flat(t).norm(p=_P[norm], dim=1)


def _project_l1(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row onto the l1 ball of its own radius (Duchi et al. 2008, sort-based)."""
    flat = _flat(delta)
    size = flat.abs()
    inside = size.sum(dim=1) <= eps
    if bool(inside.all()):
        return delta
    radius = torch.where(inside, torch.zeros_like(eps), eps)[:, None]  # rows inside are kept as they are
    mu = size.sort(dim=1, descending=True).values
    cumsum = mu.cumsum(dim=1)
    ks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    rho = (mu - (cumsum - radius) / ks > 0).to(torch.int64).cumsum(dim=1).argmax(dim=1, keepdim=True)
    theta = ((cumsum.gather(1, rho) - radius) / (rho + 1).to(flat.dtype)).clamp_min(0)
    projected = flat.sign() * (size - theta).clamp_min(0)
    return torch.where(inside[:, None], flat, projected).view_as(delta)


def project_ball(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """``delta`` projected onto the ``norm`` ball of radius ``eps[i]`` per sample (eps may be inf)."""
    if norm == "linf":
        e = _view(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)
    if norm == "l2":
        factor = (eps / _norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
        return delta * _view(factor, delta)
    return _project_l1(delta, eps)


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample ``z_label - max_{j != label} z_j`` (negative once another class leads)."""
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return own - others


def _cosine(start: float, end: float, i: int, steps: int) -> float:
    """Cosine annealing from ``start`` (i = 0) towards ``end`` (i = steps)."""
    return end + (start - end) * (1 + math.cos(math.pi * i / steps)) / 2


class _Tracker:
    """The smallest adversarial point seen so far per sample (the clean point until one is seen)."""

    def __init__(self, x: torch.Tensor, norm: str) -> None:
        self.x, self.norm = x, norm
        self.best = x.clone()
        self.best_norm = torch.full((x.shape[0],), math.inf, device=x.device, dtype=x.dtype)
        self.found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def update(self, x_adv: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
        """Record the iterate ``x_adv`` (judged ``adversarial`` by the forward made on it); its norms."""
        norms = _norm(x_adv - self.x, self.norm)
        better = adversarial & (norms < self.best_norm)
        self.best_norm = torch.where(better, norms, self.best_norm)
        self.best = torch.where(_view(better, x_adv), x_adv, self.best)
        self.found |= adversarial
        return norms

    def result(self) -> AttackResult:
        success = torch.isfinite(self.best_norm)
        norms = torch.where(success, self.best_norm, torch.full_like(self.best_norm, math.nan))
        return AttackResult(self.best, extras={"success": success, "norms": norms})


def _forward(model: nn.Module, x_adv: torch.Tensor, labels: torch.Tensor, targeted: bool,
             loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and input gradient at ``x_adv``: (loss ascended per sample, its gradient, adversarial?)."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    loss = loss_of(logits, labels)
    (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    pred = logits.detach().argmax(dim=1)
    return loss.detach(), grad, (pred == labels) if targeted else (pred != labels)


class FMN(Attack):
    """Fast Minimum-Norm attack: the smallest linf, l2 or l1 perturbation that changes the decision.

    Paper: Pintor, Roli, Brendel & Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive
    Norm Constraints", NeurIPS 2021, arXiv:2102.12827 (Algorithm 1).  Norms: linf, l2, l1.

    Each step ascends the logit margin ``max_{j!=y} z_j - z_y`` (targeted: ``z_t - max_{j!=t} z_j``)
    along the l2-normalised gradient (step ``alpha``), then projects onto a per-sample ball of radius
    eps_k and the box.  eps_k adapts: it shrinks by ``(1 - gamma)`` (never above the best norm found)
    while the iterate is adversarial, grows by ``(1 + gamma)`` after a first success while it is not,
    and before any success jumps to the current norm plus the linearised distance to the boundary
    (the margin over the dual norm of its gradient).  ``alpha`` and ``gamma`` follow cosine annealing.
    The result is the smallest adversarial iterate per sample.

    Minimal-norm (``info.minimal_norm``): the threat's eps is no budget (its norm and box are used);
    ``extras["success"]`` and ``extras["norms"]`` per sample.  Deterministic (it starts at x).
    Inputs: float N x C x H x W in the box, int64 labels; ``target=`` for a targeted run.

    Example::

        result = FMN(ThreatModel("l2", 1.0), steps=100).run(model, x, y)
        result.extras["norms"]  # per-sample minimal l2 norms (NaN: none found)
    """

    name = "fmn"
    info = AttackInfo(
        norms=("linf", "l2", "l1"), kind="white-box", targeted=True, randomized=False, minimal_norm=True,
        source="Pintor et al. 2021, arXiv:2102.12827", toolkit="native",
        summary="Fast Minimum-Norm attack (Pintor 2021): smallest linf / l2 / l1 perturbation, adaptive eps",
    )
    params = ParamSet([
        # the authors' code defaults to 10 steps; 100 is a closer search (the paper runs up to 1000)
        Param("steps", "int", 100, "optimisation steps (each one forward and one input gradient)", low=1,
              sane_high=100_000),
        Param("alpha_init", "float", 1.0, "initial step: l2 length of the normalised-gradient step", low=0,
              low_open=True, unit="pixels [0, 1]"),
        Param("alpha_final", "float", None, "step after cosine annealing; None = alpha_init / 100", low=0,
              optional=True, unit="pixels [0, 1]"),
        Param("gamma_init", "float", 0.05, "initial factor of the eps update eps * (1 -/+ gamma)", low=0,
              low_open=True, high=1, high_open=True),
        Param("gamma_final", "float", 0.001, "factor of the eps update after cosine annealing", low=0, high=1,
              high_open=True),
    ])
    steps: int
    alpha_init: float
    alpha_final: float | None
    gamma_init: float
    gamma_final: float

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> AttackResult:
        norm, (lo, hi) = self.threat.norm, self.threat.box
        targeted = target is not None
        labels = target if target is not None else y
        alpha_final = self.alpha_init / 100 if self.alpha_final is None else self.alpha_final
        sign = 1.0 if targeted else -1.0  # ascend -margin(y) (untargeted) or margin(t) (targeted)

        def loss_of(logits: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
            return sign * logit_margin(logits, lab)

        worst = _norm(torch.maximum(x - lo, hi - x), norm)  # no point of the box is further away
        eps = torch.full_like(worst, math.inf)
        tracker = _Tracker(x, norm)
        x_adv = x.clone()
        for i in range(self.steps):
            alpha = _cosine(self.alpha_init, alpha_final, i, self.steps)
            gamma = _cosine(self.gamma_init, self.gamma_final, i, self.steps)
            loss, grad, adversarial = _forward(model, x_adv, labels, targeted, loss_of)
            with torch.no_grad():
                norms = tracker.update(x_adv, adversarial)
                to_boundary = loss.abs() / _flat(grad).norm(p=_DUAL[norm], dim=1).clamp_min(1e-12)
                eps = torch.where(adversarial, torch.minimum(eps * (1 - gamma), tracker.best_norm),
                                  torch.where(tracker.found, eps * (1 + gamma), norms + to_boundary))
                eps = torch.minimum(eps, worst)
                step = grad / _view(_flat(grad).norm(dim=1).clamp_min(1e-12), grad)
                delta = project_ball(x_adv - x + alpha * step, eps, norm)
                x_adv = (x + delta).clamp(lo, hi)
        return tracker.result()


class DDN(Attack):
    """Decoupled Direction and Norm: the smallest l2 perturbation that changes the decision.

    Paper: Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, "Decoupled Direction and Norm (DDN):
    An Efficient L2 Adversarial Attack and Defense", CVPR 2019, arXiv:1811.09600 (Algorithm 1).  Norm: l2.

    Each step moves along the l2-normalised gradient of the cross-entropy (targeted: of minus the
    cross-entropy to the target), step ``alpha`` (cosine-annealed from ``alpha_init`` to
    ``alpha_final``, as in the authors' code), then rescales the perturbation to norm eps_k and clips
    to the box (``levels``: rounds to that many grey levels, 256 in the paper for 8-bit images).
    eps_k starts at ``init_norm`` and shrinks by ``(1 - gamma)`` while the iterate is adversarial,
    grows by ``(1 + gamma)`` while it is not.  The result is the smallest adversarial iterate per sample.

    Minimal-norm (``info.minimal_norm``): the threat's eps is no budget; ``extras["success"]`` and
    ``extras["norms"]`` per sample.  Deterministic (a zero gradient, the one case that draws a random
    direction, draws it from the seeded generator).  Inputs: float N x C x H x W in the box, int64
    labels; ``target=`` for a targeted run.

    Example::

        x_adv = DDN(ThreatModel("l2", 1.0), steps=100)(model, x, y)
    """

    name = "ddn"
    info = AttackInfo(
        norms=("l2",), kind="white-box", targeted=True, randomized=False, minimal_norm=True,
        source="Rony et al. 2019, arXiv:1811.09600", toolkit="native",
        summary="Decoupled Direction and Norm (Rony 2019): smallest l2 perturbation",
    )
    params = ParamSet([
        Param("steps", "int", 100, "optimisation steps (each one forward and one input gradient)", low=1,
              sane_high=100_000),
        Param("gamma", "float", 0.05, "factor of the norm update eps * (1 -/+ gamma)", low=0, low_open=True,
              high=1, high_open=True),
        Param("init_norm", "float", 1.0, "initial l2 norm eps_0 of the perturbation", low=0, low_open=True,
              unit="pixels [0, 1]"),
        Param("alpha_init", "float", 1.0, "initial step: l2 length of the normalised-gradient step", low=0,
              low_open=True, unit="pixels [0, 1]"),
        Param("alpha_final", "float", 0.01, "step after cosine annealing", low=0, unit="pixels [0, 1]"),
        Param("levels", "int", None, "round x_adv to this many grey levels (256: 8-bit images); None = no rounding",
              low=2, optional=True),
    ])
    steps: int
    gamma: float
    init_norm: float
    alpha_init: float
    alpha_final: float
    levels: int | None

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> AttackResult:
        lo, hi = self.threat.box
        targeted = target is not None
        labels = target if target is not None else y
        sign = -1.0 if targeted else 1.0  # ascend CE(y) (untargeted) or -CE(t) (targeted)

        def loss_of(logits: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
            return sign * F.cross_entropy(logits, lab, reduction="none")

        worst = _norm(torch.maximum(x - lo, hi - x), "l2")
        eps = torch.full_like(worst, self.init_norm)
        tracker = _Tracker(x, "l2")
        x_adv = x.clone()
        for i in range(self.steps):
            alpha = _cosine(self.alpha_init, self.alpha_final, i, self.steps)
            _, grad, adversarial = _forward(model, x_adv, labels, targeted, loss_of)
            with torch.no_grad():
                tracker.update(x_adv, adversarial)
                grad_norm = _norm(grad, "l2")
                zero = grad_norm < 1e-12
                if bool(zero.any()):  # no direction to follow: a random one (from the attack's generator)
                    noise = torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype)
                    grad = torch.where(_view(zero, grad), noise, grad)
                    grad_norm = _norm(grad, "l2")
                delta = x_adv - x + alpha * grad / _view(grad_norm.clamp_min(1e-12), grad)
                eps = torch.minimum(torch.where(adversarial, eps * (1 - self.gamma), eps * (1 + self.gamma)), worst)
                delta = delta * _view(eps / _norm(delta, "l2").clamp_min(1e-12), delta)
                x_adv = (x + delta).clamp(lo, hi)
                if self.levels is not None:
                    x_adv = ((x_adv - lo) / (hi - lo) * (self.levels - 1)).round() / (self.levels - 1) * (hi - lo) + lo
        return tracker.result()

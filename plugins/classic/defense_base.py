"""Shared machinery of the classic defenses: the base class, the linf inner loop and the SI terms.

Every classic defense splits one training step in two public methods, so that tests (and curious
users) can check each half against the paper:

- ``adversarial(model, x, y, step=0) -> x_adv``: the inner maximisation, run with the model in eval
  mode (a documented choice: BatchNorm uses its running statistics and dropout is off while the
  attack runs; the modes, ``requires_grad`` flags and ``.grad`` of the parameters are restored
  afterwards).  Only input gradients are computed (``torch.autograd.grad``; parameters are frozen
  while attacking), so a k-step defense costs about k + 1 forward/backward passes.
- ``objective(model, x, x_adv, y) -> DefenseOutput``: the outer minimisation's loss, computed in the
  caller's mode (the trainer's train mode) and differentiable in the parameters.

``loss(model, x, y, step=...)`` is ``objective(model, x, adversarial(model, x, y, step), y)``.

The scale-invariant (SI) mechanism of paper 004 (Xu et al., "Scale-Invariant Adversarial Attack
for Evaluating and Enhancing Adversarial Defenses", 2022, arXiv 2201.12527, section 4.3 and Table 1)
is an option of every classic defense (``si=True``): the adversarial examples maximise
CE(s * cos(theta), y) (SI-PGD, eq. 24) instead of the defense's own adversarial objective, and
``beta * CE(s * (cos(theta) - m * onehot(y)), y)`` on the adversarial examples (eq. 25) is added to
the training objective.  It needs only :func:`robustreg.embed`, so the classic plugin implements it
itself and the scale-invariant plugin registers the ``*-si`` names by building these classes
through the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Defense, DefenseOutput, ThreatModel, crafting, embed, pgd_steps

__all__ = [
    "AdversarialDefense",
    "kl_per_sample",
    "linf_pgd",
    "si_logits",
    "si_margin_ce",
]


# --- argument checks (exceptions name the argument, the value and what is allowed) ----------------
def check_unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1] (pixel units; 8/255 = {8 / 255:.4f}), got {value!r}")
    return float(value)


def check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


# --- losses ----------------------------------------------------------------------------------------
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


def kl_per_sample(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) per sample, from log-softmaxes (stable for huge logits)."""
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


# --- the inner loop --------------------------------------------------------------------------------
def linf_pgd(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    x_start: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
) -> torch.Tensor:
    """Sign-gradient ascent of ``loss_fn(x_adv)`` from ``x_start`` in the linf ball and [0, 1] (detached)."""
    return pgd_steps(loss_fn, x, x_start, ThreatModel("linf", eps), steps=steps, step_size=step_size)


# --- the base class --------------------------------------------------------------------------------
class AdversarialDefense(Defense):
    """Base of the classic defenses: the common parameters, the RNG, the SI term and ``loss``.

    Common parameters (keyword-only):

    - ``eps`` (8/255): linf radius in [0, 1] pixel units.
    - ``steps`` / ``step_size``: the inner attack's iterations and step (absolute, pixel units);
      each defense documents its defaults.
    - ``random_start`` (True): start the inner attack from a random point of the ball.
    - ``si`` (False): the scale-invariant mechanism of paper 004; ``s`` (15), ``m`` (0.2),
      ``beta`` (0.2) are its scale, margin and weight.
    - ``seed`` (None): None draws the random start from torch's global RNG (which the trainer
      checkpoints); an int uses a local generator seeded with ``(seed, step)`` so one step is
      reproducible on its own.
    """

    default_steps: ClassVar[int] = 10
    default_step_ratio: ClassVar[float] = 0.25  # step_size = ratio * eps when not given
    start: ClassVar[str] = "uniform"  # "uniform" in the ball, "gaussian" (TRADES' 0.001 * N(0, I)), "zero"

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        steps: int | None = None,
        step_size: float | None = None,
        random_start: bool = True,
        si: bool = False,
        s: float = 15.0,
        m: float = 0.2,
        beta: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.eps = check_unit("eps", eps)
        self.steps = check_int("steps", self.default_steps if steps is None else steps, 0)
        self.step_size = (self.default_step_ratio * self.eps if step_size is None
                          else check_nonneg("step_size", step_size))
        self.random_start = check_bool("random_start", random_start)
        self.si = check_bool("si", si)
        self.s = check_positive("s", s)
        self.m = check_nonneg("m", m)
        self.beta = check_nonneg("beta", beta)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    # --- randomness ------------------------------------------------------------------------------
    def generator(self, device: torch.device, step: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + int(step))

    def start_point(self, x: torch.Tensor, step: int) -> torch.Tensor:
        gen = self.generator(x.device, step)
        kind = self.start if self.random_start else "zero"
        if kind == "uniform":
            noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
            return (x + self.eps * noise).clamp(0.0, 1.0)
        if kind == "gaussian":
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            return (x + 0.001 * noise).clamp(0.0, 1.0)
        return x.clone()

    # --- the two halves --------------------------------------------------------------------------
    def attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The adversarial objective (summed over the batch) as a function of x_adv.

        Default: CE(f(x'), y); with SI: CE(s * cos(theta(x')), y) (paper 004 Table 1, right column).
        """
        if self.si:
            return lambda xa: F.cross_entropy(si_logits(model, xa, self.s)[1], y, reduction="sum")
        return lambda xa: F.cross_entropy(model(xa), y, reduction="sum")

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """The inner maximisation: linf PGD on :meth:`attack_loss` in eval mode (detached result)."""
        x, y = x.detach(), y.detach()
        start = self.start_point(x, step)
        with crafting(model) as net:
            return linf_pgd(self.attack_loss(net, x, y), x, start, eps=self.eps, steps=self.steps,
                            step_size=self.step_size)

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        """Default training objective (AT, RFGSM-AT, FreeAT): CE(f(x'), y) [+ beta * CE^m(f~(x'), y)]."""
        logits_adv, cos_adv = self.forward_adv(model, x_adv)
        ce_adv = F.cross_entropy(logits_adv, y)
        metrics = {"loss_ce_adv": float(ce_adv.detach())}
        loss = self.add_si(ce_adv, cos_adv, y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_adv=logits_adv.detach())

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        return self.objective(model, x, self.adversarial(model, x, y, step=step), y)

    # --- helpers for objectives ------------------------------------------------------------------
    def forward_adv(self, model: nn.Module, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of x_adv and, with SI, cos(theta) from the same forward pass."""
        if self.si:
            emb = embed(model, x_adv)
            return emb.logits, emb.cosine()
        return model(x_adv), None

    def add_si(self, loss: torch.Tensor, cos_adv: torch.Tensor | None, y: torch.Tensor,
               metrics: dict[str, float]) -> torch.Tensor:
        """``loss + beta * CE(s * (cos(theta(x_adv)) - m * onehot(y)), y)`` when SI is on (paper 004 eq. 25)."""
        if not self.si or cos_adv is None:
            return loss
        term = si_margin_ce(cos_adv, y, self.s, self.m)
        metrics["loss_si"] = float(term.detach())
        return loss + self.beta * term

    def params(self) -> dict[str, Any]:
        out = {"eps": self.eps, "steps": self.steps, "step_size": self.step_size, "random_start": self.random_start,
               "si": self.si}
        if self.si:
            out.update(s=self.s, m=self.m, beta=self.beta)
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"

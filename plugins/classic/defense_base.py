"""Shared machinery of the classic defenses: the base class, its declared parameters and the linf inner loop.

Every classic defense splits one training step in two public methods, so that tests (and curious
users) can check each half against the paper:

- ``adversarial(model, x, y, step=0) -> x_adv``: the inner maximisation, run with the model in eval
  mode (a documented choice: BatchNorm uses its running statistics and dropout is off while the
  attack runs; the modes, ``requires_grad`` flags and ``.grad`` of the parameters are restored
  afterwards).  A defense whose authors craft in train mode declares ``craft_mode`` (rfgsm-at and
  grad-align: "train" by default, batch statistics, and BatchNorm's running statistics are updated
  by the crafting forward as in the authors' code; "eval" keeps the choice above).
  Only input gradients are computed (``torch.autograd.grad``; parameters are frozen
  while attacking), so a k-step defense costs about k + 1 forward/backward passes.
- ``objective(model, x, x_adv, y) -> DefenseOutput``: the outer minimisation's loss, computed in the
  caller's mode (the trainer's train mode) and differentiable in the parameters.

``loss(model, x, y, step=...)`` is ``objective(model, x, adversarial(model, x, y, step), y)``.

Every defense routes the forward passes on x_adv, the inner attack's loss and the training objective
through the :class:`robustreg.Defense` extension points (``forward``, ``inner_loss``, ``add_terms``),
so that a mechanism composed onto it (``mechanisms=[...]``, e.g. by another plugin's entries) can
replace the inner loss and add objective terms; with no mechanism they are the plain forward pass,
the defense's own loss and the objective unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import (
    Defense,
    DefenseOutput,
    ForwardPass,
    Param,
    ParamSet,
    ThreatModel,
    crafting,
    pgd_steps,
)

__all__ = [
    "CRAFT_MODE",
    "AdversarialDefense",
    "SingleStepDefense",
    "kl_per_sample",
    "linf_pgd",
    "step_size_param",
]

PIXELS = "pixels [0, 1]"


def step_size_param(default_rule: str) -> Param:
    """The inner attack's absolute step; None = ``default_rule`` (e.g. "eps / 4")."""
    return Param("step_size", "float", None, f"the inner attack's absolute step; None = {default_rule}",
                 low=0, high=math.inf, high_open=True, optional=True, unit=PIXELS)


CRAFT_MODE = Param(
    "craft_mode", "choice", "train", "the model's mode while the examples are crafted: train (batch statistics, "
    "as in the authors' code) or eval (running statistics)", choices=("train", "eval"))


def init_param(default: str, source: str) -> Param:
    """Where the inner attack starts: ``normal`` (x + 0.001 N(0, I)) or ``uniform`` (in the eps ball)."""
    return Param("init", "choice", default, f"the inner attack's random start: normal (x + 0.001 N(0, I), {source}) "
                 "or uniform (U(-eps, eps))", choices=("normal", "uniform"))


def weight_param(name: str, default: float, doc: str) -> Param:
    """A finite weight >= 0 (a lambda of the objective)."""
    return Param(name, "float", default, doc, low=0, high=math.inf, high_open=True)


# --- losses ----------------------------------------------------------------------------------------
def kl_per_sample(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) per sample, from log-softmaxes (stable for huge logits)."""
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def ce_sum(y: torch.Tensor) -> Callable[[ForwardPass], torch.Tensor]:
    """CE(f(x'), y) summed over the batch, as a function of a forward pass (the default inner loss)."""
    return lambda out: F.cross_entropy(out.logits, y, reduction="sum")


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
    """Base of the classic defenses: the common parameters, the RNG and ``loss``.

    Common parameters (keyword-only; see ``params`` for types and ranges):

    - ``eps`` (8/255): linf radius in [0, 1] pixel units.
    - ``steps`` / ``step_size``: the inner attack's iterations and step (absolute, pixel units);
      ``step_size=None`` is ``step_ratio * eps`` (each defense documents its defaults).
    - ``random_start`` (True): start the inner attack from a random point of the ball.
    - ``seed`` (None): None draws the random start from torch's global RNG (which the trainer
      checkpoints); an int uses a local generator seeded with ``(seed, step)`` so one step is
      reproducible on its own.
    """

    params = ParamSet([
        Param("eps", "float", 8 / 255, "linf radius of the inner attack", low=0, high=1, unit=PIXELS),
        Param("steps", "int", 10, "the inner attack's iterations", low=0, sane_high=100_000),
        step_size_param("eps / 4"),
        Param("random_start", "bool", True, "start the inner attack from a random point of the ball"),
        Param("seed", "int", None, "None: torch's global RNG; an int: a local generator seeded with (seed, step)",
              optional=True),
    ])
    step_ratio: ClassVar[float] = 0.25  # step_size = ratio * eps when not given
    craft_mode: str = "eval"  # a declared parameter of the defenses whose authors craft in train mode

    @property
    def crafts_with_batch_statistics(self) -> bool:
        return self.craft_mode == "train"
    start: ClassVar[str] = "uniform"  # "uniform" in the ball, "gaussian" (TRADES' 0.001 * N(0, I)), "zero"

    eps: float
    steps: int
    step_size: float
    random_start: bool
    seed: int | None

    def setup(self) -> None:
        if self.step_size is None:
            self.step_size = self.step_ratio * self.eps

    # --- randomness ------------------------------------------------------------------------------
    def generator(self, device: torch.device, step: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + int(step))

    def start_kind(self) -> str:
        """The random start's kind: :attr:`start` unless a declared ``init`` parameter says otherwise."""
        return self.start

    def start_point(self, x: torch.Tensor, step: int) -> torch.Tensor:
        gen = self.generator(x.device, step)
        kind = self.start_kind() if self.random_start else "zero"
        if kind == "uniform":
            noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
            return (x + self.eps * noise).clamp(0.0, 1.0)
        if kind == "gaussian":
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            return (x + 0.001 * noise).clamp(0.0, 1.0)
        return x.clone()

    @contextmanager
    def crafting(self, model: nn.Module) -> Iterator[nn.Module]:
        """:func:`robustreg.crafting` (frozen parameters, modes restored after), in ``craft_mode``'s mode."""
        with crafting(model) as net:
            if self.craft_mode == "train":
                net.train()
            yield net

    # --- the two halves --------------------------------------------------------------------------
    def own_attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                        ) -> Callable[[ForwardPass], torch.Tensor]:
        """The defense's own adversarial objective (summed) of a forward pass of x_adv; default CE(f(x'), y)."""
        return ce_sum(y)

    def attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The adversarial objective as a function of x_adv: :meth:`own_attack_loss` unless a mechanism replaces it."""
        own = self.own_attack_loss(model, x, y)
        return lambda xa: self.inner_loss(self.forward(model, xa), y, own)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """The inner maximisation: linf PGD on :meth:`attack_loss` in eval mode (detached result)."""
        x, y = x.detach(), y.detach()
        start = self.start_point(x, step)
        with self.crafting(model) as net:
            return linf_pgd(self.attack_loss(net, x, y), x, start, eps=self.eps, steps=self.steps,
                            step_size=self.step_size)

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        """Default training objective (AT, RFGSM-AT, FreeAT): CE(f(x'), y) [+ the mechanisms' terms]."""
        adv = self.forward(model, x_adv)
        ce_adv = F.cross_entropy(adv.logits, y)
        metrics = {"loss_ce_adv": float(ce_adv.detach())}
        loss = self.add_terms(ce_adv, adv, y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_adv=adv.logits.detach())

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        return self.objective(model, x, self.adversarial(model, x, y, step=step), y)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in ((k, getattr(self, k)) for k in self.config))
        return f"{type(self).__name__}({inner})"


class SingleStepDefense(AdversarialDefense):
    """Base of the one-step defenses: ``steps`` is fixed at 1 (not a parameter)."""

    params = AdversarialDefense.params.without("steps").replaced(step_size_param("eps"))
    steps = 1
    step_ratio = 1.0


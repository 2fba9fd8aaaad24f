"""Single-step adversarial training defenses: FreeAT, RFGSM-AT (fast AT), GAT and GradAlign.

Each routes its one gradient step's cross-entropy term through :meth:`robustreg.Defense.inner_loss`
and its training objective through :meth:`robustreg.Defense.add_terms`, so a mechanism composed
onto it (``mechanisms=[...]``) can replace the one and extend the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import DefenseInfo, DefenseOutput, Param, ParamSet, crafting

from .defense_base import (
    CRAFT_MODE,
    PIXELS,
    SingleStepDefense,
    ce_sum,
    linf_pgd,
    step_size_param,
    weight_param,
)

__all__ = ["GAT", "FreeAT", "GradAlign", "RFGSMAT"]


class RFGSMAT(SingleStepDefense):
    """RFGSM adversarial training ("fast AT"): one FGSM step of 1.25 eps from a uniform random start.

    Paper: Wong, Rice and Kolter, "Fast is better than free: Revisiting adversarial training", ICLR
    2020, arXiv 2001.03994 (RFGSM-AT of paper 004, Table 8).  Norm: linf.

    x' = Proj(x + delta0 + step_size * sign(grad CE(f(x + delta0), y))), delta0 ~ U(-eps, eps);
    training objective ``CE(f(x'), y)``.

    Parameters: ``eps`` (8/255, pixel units), ``step_size`` (1.25 * eps, pixel units), ``random_start``
    (True), ``seed`` (None), ``craft_mode`` ("train": the FGSM step is crafted with the model in train
    mode, BatchNorm on the batch's statistics, as in Wong et al.'s released code, whose model stays in
    train mode throughout an epoch -- the crafting forward also updates the running statistics there
    and here; "eval": running statistics, dropout off, this library's former choice; the paper itself
    does not say).  Cyclic learning rates and early stopping of Wong et al. belong to the trainer's
    schedule.

    Example: ``Registry.create().build_defense("rfgsm-at", eps=8 / 255)``.
    """

    name = "rfgsm-at"
    info = DefenseInfo(source="Wong et al. 2020, arXiv 2001.03994", single_step=True,
                       summary="fast AT: FGSM from a random start, step 1.25 eps")
    params = ParamSet([*SingleStepDefense.params.replaced(step_size_param("1.25 * eps")), CRAFT_MODE])
    step_ratio = 1.25
    craft_mode: str


class GAT(SingleStepDefense):
    """Guided adversarial training: clean CE plus lambda * ||softmax(f(x')) - softmax(f(x))||_2^2.

    Paper: Sriramanan et al., "Guided Adversarial Attack for Evaluating and Enhancing Adversarial
    Defenses", NeurIPS 2020, arXiv 2011.14969.  Norm: linf.

    Attack (one step): x0 = x + noise * b with b uniform in {-1, +1}; x' = Proj(x0 + step_size * sign(grad
    L_A(x0))), where ``L_A = CE(f(x0), y) + g * attack_lam * ||softmax(f(x0)) - softmax(f(x))||_2^2`` and the
    guidance g alternates between 0 (even ``step``) and 1 (odd ``step``) as in the authors' training code.
    Training objective: ``CE(f(x), y) + lam * mean_i ||softmax(f(x_i')) - softmax(f(x_i))||_2^2``.
    The attack's CE term is the one a mechanism may replace (:meth:`robustreg.Defense.inner_loss`).

    Parameters: ``eps`` (8/255), ``step_size`` (eps), ``noise`` (eps / 2: the Bernoulli start, 4/255
    at eps 8/255 as in the paper), ``lam`` (10, the paper's CIFAR-10 weight; the authors' code
    multiplies it by 4 from epoch 85 of 100: the trainer's ``defense_schedule: {lam: [[85, 4]]}``,
    milestones in ``milestone_unit``, see :class:`robustreg.schedules.DefenseParamSchedule`),
    ``attack_lam`` (10), ``random_start`` (True), ``seed`` (None).

    Example: ``Registry.create().build_defense("gat", lam=10.0)``.
    """

    name = "gat"
    info = DefenseInfo(source="Sriramanan et al. 2020, arXiv 2011.14969", single_step=True,
                       summary="guided adversarial training (softmax L2 relaxation, lambda 10)")
    params = ParamSet([
        *SingleStepDefense.params.without("random_start", "seed"),
        Param("noise", "float", None, "size of the Bernoulli +-noise start; None = eps / 2", low=0, high=1,
              optional=True, unit=PIXELS),
        weight_param("lam", 10.0, "weight of the softmax L2 relaxation in the training objective"),
        weight_param("attack_lam", 10.0, "weight of the softmax L2 term in the guided attack"),
        *SingleStepDefense.params.without("eps", "step_size"),
    ])
    noise: float
    lam: float
    attack_lam: float

    def setup(self) -> None:
        super().setup()
        if self.noise is None:
            self.noise = self.eps / 2

    def start_point(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        gen = self.generator(x.device, step)
        signs = torch.where(torch.rand(x.shape, generator=gen, device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)
        return (x + self.noise * signs).clamp(0.0, 1.0)

    def guided_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, guidance: float
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """GAT's attack objective L_A (summed over the batch) as a function of x0."""
        with torch.no_grad():
            p_nat = F.softmax(model(x), dim=1)

        own = ce_sum(y)

        def loss(xa: torch.Tensor) -> torch.Tensor:
            out = self.forward(model, xa)
            ce = self.inner_loss(out, y, own)
            return ce + guidance * self.attack_lam * (F.softmax(out.logits, dim=1) - p_nat).pow(2).sum()
        return loss

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        x, y = x.detach(), y.detach()
        start = self.start_point(x, step)
        guidance = float(step % 2)
        with crafting(model) as net:
            return linf_pgd(self.guided_loss(net, x, y, guidance), x, start, eps=self.eps, steps=1,
                            step_size=self.step_size)

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_clean = model(x)
        adv = self.forward(model, x_adv)
        ce = F.cross_entropy(logits_clean, y)
        relax = (F.softmax(adv.logits, dim=1) - F.softmax(logits_clean, dim=1)).pow(2).sum(dim=1).mean()
        metrics = {"loss_ce": float(ce.detach()), "loss_guided": float(relax.detach())}
        loss = self.add_terms(ce + self.lam * relax, adv, y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_clean=logits_clean.detach(), logits_adv=adv.logits.detach())


class GradAlign(SingleStepDefense):
    """FGSM training plus GradAlign: lambda * (1 - cos(grad at x, grad at x + uniform noise)).

    Paper: Andriushchenko and Flammarion, "Understanding and Improving Fast Adversarial Training",
    NeurIPS 2020, arXiv 2007.02617.  Norm: linf.

    x' = Proj(x + step_size * sign(grad CE(f(x), y))) (FGSM from x, in ``craft_mode``);
    training objective ``CE(f(x'), y) + lam * (1 - mean_i cos(g1_i, g2_i))`` with g1 = grad_x CE(f(x), y)
    (detached) and g2 = grad CE(f(x + eta), y) at x + eta, eta ~ U(-eps, eps), differentiated through
    (double backprop), both in the caller's mode, as in the authors' code.

    Following Andriushchenko & Flammarion's released code (``train.py``, ``get_input_grad`` with
    ``delta_init='random_uniform'``): the FGSM step is crafted in train mode (``craft_mode="train"``),
    the noise point x + eta is NOT clamped to [0, 1] (``clamp_noise=False``), and the cosine is averaged
    over the images whose two gradients both have a nonzero norm (``zero_gradients="exclude"``; the
    term is 0 when no image has, where the authors' mean of nothing would be NaN).  The former
    choices stay as options: ``craft_mode="eval"``, ``clamp_noise=True`` (x + eta clipped to the
    image box) and ``zero_gradients="count"`` (``F.cosine_similarity`` with eps 1e-8 over every image, a
    zero gradient counting as cos = 0).  The paper (section 4) states none of the three.

    Parameters: ``eps`` (8/255), ``step_size`` (eps, FGSM), ``random_start`` (False: zero init),
    ``lam`` (0.2, the paper's value at eps 8/255), ``seed`` (None), ``craft_mode`` ("train"),
    ``clamp_noise`` (False), ``zero_gradients`` ("exclude").

    Example: ``Registry.create().build_defense("grad-align", lam=0.2)``.
    """

    name = "grad-align"
    info = DefenseInfo(source="Andriushchenko & Flammarion 2020, arXiv 2007.02617", single_step=True,
                       summary="FGSM-AT + gradient alignment regulariser (lambda 0.2)")
    params = ParamSet([
        *SingleStepDefense.params.with_defaults(random_start=False).without("seed"),
        weight_param("lam", 0.2, "weight of the gradient alignment term 1 - cos(g1, g2)"),
        SingleStepDefense.params["seed"],
        CRAFT_MODE,
        Param("clamp_noise", "bool", False, "clip the noise point x + eta to [0, 1] (the authors' code does not)"),
        Param("zero_gradients", "choice", "exclude", "images with a zero-norm gradient: exclude them from the "
              "cosine's mean (the authors' code) or count them as cos = 0", choices=("exclude", "count")),
    ])
    lam: float
    craft_mode: str
    clamp_noise: bool
    zero_gradients: str

    def mean_cosine(self, g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        """Mean cos(g1_i, g2_i) of flattened gradients, zero-norm ones per ``zero_gradients``."""
        if self.zero_gradients == "count":
            return F.cosine_similarity(g1, g2, dim=1, eps=1e-8).mean()
        n1, n2 = g1.norm(dim=1), g2.norm(dim=1)
        keep = (n1 > 0) & (n2 > 0)
        if not bool(keep.any()):
            return g2.sum() * 0.0 + 1.0  # no pair to align: the term 1 - cos is 0 (still in the graph)
        cos = (g1[keep] * g2[keep]).sum(dim=1) / (n1[keep] * n2[keep])
        return cos.mean()

    def alignment_noise(self, x: torch.Tensor, step: int) -> torch.Tensor:
        gen = self.generator(x.device, step + 7919)  # independent of the start point's draw
        return self.eps * (torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        x_adv = self.adversarial(model, x, y, step=step)
        return self.objective(model, x, x_adv, y, noise=self.alignment_noise(x, step))

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                  *, noise: torch.Tensor | None = None) -> DefenseOutput:
        if noise is None:
            noise = self.alignment_noise(x, 0) if self.seed is not None else (
                self.eps * (torch.rand_like(x) * 2 - 1))
        x0 = x.detach().clone().requires_grad_(True)
        (g1,) = torch.autograd.grad(F.cross_entropy(model(x0), y), x0)
        x1 = x.detach() + noise
        x1 = (x1.clamp(0.0, 1.0) if self.clamp_noise else x1).requires_grad_(True)
        (g2,) = torch.autograd.grad(F.cross_entropy(model(x1), y), x1, create_graph=True)
        cos = self.mean_cosine(g1.detach().flatten(1), g2.flatten(1))
        align = self.lam * (1.0 - cos)
        adv = self.forward(model, x_adv)
        ce_adv = F.cross_entropy(adv.logits, y)
        metrics = {"loss_ce_adv": float(ce_adv.detach()), "grad_cosine": float(cos.detach())}
        loss = self.add_terms(ce_adv + align, adv, y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_adv=adv.logits.detach())


class FreeAT(SingleStepDefense):
    """Free adversarial training: each minibatch replayed m times, the perturbation carried along.

    Paper: Shafahi et al., "Adversarial Training for Free!", NeurIPS 2019, arXiv 1904.12843.  Norm: linf.

    One ``loss`` call is one FreeAT replay.  The defense keeps the perturbation delta (zeros at first,
    carried across replays AND minibatches) and the minibatch being replayed: the first call of a
    cycle takes the trainer's batch, the next ``replays - 1`` calls replay it (the trainer's batches
    given meanwhile are not used; so one trainer epoch covers 1/m of the data m times, the same
    gradient-step budget as the paper's "epochs / m").  Each call returns ``CE(f(clip(x + delta)), y)``
    [+ the terms of the mechanisms composed onto it], computed in the caller's (train) mode; the
    backward the trainer runs on it also fills delta's gradient, and the next call first applies
    ``delta <- clip(delta + step_size * sign(grad), -eps, eps)``: the input gradient comes for free
    with the parameter gradient.  With a mechanism that free gradient is the gradient of the whole
    training loss (which then includes the mechanism's terms); a mechanism's inner loss is not used,
    since a separate gradient would cost a second backward and FreeAT would no longer be free.  If no
    backward ran, delta is left as it was.
    Logits are returned (``logits_adv``) only on a cycle's first call, when they match the trainer's
    labels.  The state (delta, pending gradient, replayed batch, position in the cycle) round-trips
    through ``state_dict`` / ``load_state_dict`` for exact resumes.

    Parameters: ``eps`` (8/255), ``step_size`` (eps, as in the paper), ``replays`` (8: the paper's m,
    renamed so as not to clash with a composed mechanism's ``m``).

    Example: ``Registry.create().build_defense("free-at", replays=8)``.
    """

    name = "free-at"
    info = DefenseInfo(source="Shafahi et al. 2019, arXiv 1904.12843", single_step=True,
                       summary="free AT (m replays, perturbation carried across minibatches)")
    params = ParamSet([
        *SingleStepDefense.params.without("random_start", "seed"),
        Param("replays", "int", 8, "times each minibatch is replayed (the paper's m)", low=1),
    ])
    random_start = False
    seed = None
    replays: int

    def setup(self) -> None:
        super().setup()
        self._delta: torch.Tensor | None = None
        self._leaf: torch.Tensor | None = None  # delta as used by the last call; .grad after backward
        self._pending: torch.Tensor | None = None  # a gradient restored by load_state_dict
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._position = 0

    # --- state ----------------------------------------------------------------------------------
    def _pending_grad(self) -> torch.Tensor | None:
        if self._leaf is not None and self._leaf.grad is not None:
            return self._leaf.grad
        return self._pending

    def state_dict(self) -> dict[str, Any]:
        grad = self._pending_grad()
        return {
            "delta": None if self._delta is None else self._delta.detach().clone(),
            "pending_grad": None if grad is None else grad.detach().clone(),
            "batch_x": None if self._batch is None else self._batch[0].clone(),
            "batch_y": None if self._batch is None else self._batch[1].clone(),
            "position": self._position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {"delta", "pending_grad", "batch_x", "batch_y", "position"}
        if set(state) != expected:
            raise ValueError(f"free-at state must have keys {sorted(expected)}, got {sorted(state)}")
        position = state["position"]
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < self.replays:
            raise ValueError(f"free-at state position must be an int in [0, {self.replays - 1}], got {position!r}")
        if (state["batch_x"] is None) != (state["batch_y"] is None):
            raise ValueError("free-at state must hold both batch_x and batch_y or neither")
        self._delta = None if state["delta"] is None else state["delta"].detach().clone()
        self._pending = None if state["pending_grad"] is None else state["pending_grad"].detach().clone()
        self._leaf = None
        self._batch = None if state["batch_x"] is None else (state["batch_x"].clone(), state["batch_y"].clone())
        self._position = position

    # --- one replay -----------------------------------------------------------------------------
    def _apply_pending(self) -> None:
        grad = self._pending_grad()
        if grad is not None and self._delta is not None and grad.shape == self._delta.shape:
            self._delta = (self._delta + self.step_size * grad.sign()).clamp(-self.eps, self.eps)
        self._leaf, self._pending = None, None

    def _fit_delta(self, x: torch.Tensor) -> torch.Tensor:
        """delta for this batch: the carried one, cut or zero-padded to the batch size (zeros at first)."""
        delta = self._delta
        if delta is None or delta.shape[1:] != x.shape[1:] or delta.device != x.device or delta.dtype != x.dtype:
            return torch.zeros_like(x)
        n = x.shape[0]
        if delta.shape[0] >= n:
            return delta[:n].clone()
        return torch.cat([delta, torch.zeros_like(x[: n - delta.shape[0]])])

    def _move_state(self, device: torch.device) -> None:
        """A state loaded from a CPU checkpoint follows the batches to their device."""
        if self._delta is not None:
            self._delta = self._delta.to(device)
        if self._pending is not None:
            self._pending = self._pending.to(device)
        if self._batch is not None:
            self._batch = (self._batch[0].to(device), self._batch[1].to(device))

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        self._move_state(x.device)
        self._apply_pending()
        batch = self._batch
        fresh = self._position == 0 or batch is None
        if fresh or batch is None:
            batch = self._batch = (x.detach().clone(), y.detach().clone())
            self._position = 0
        xb, yb = batch
        self._delta = self._fit_delta(xb)
        leaf = self._delta.clone().requires_grad_(True)
        self._leaf = leaf
        out = self.objective(model, xb, (xb + leaf).clamp(0.0, 1.0), yb)
        out.metrics["replay"] = float(self._position)
        if not fresh:
            out.logits_adv = None
        self._position = (self._position + 1) % self.replays
        return out

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """The current replay input clip(x + delta) for ``x`` (delta is updated by ``loss`` + backward)."""
        return (x.detach() + self._fit_delta(x.detach())).clamp(0.0, 1.0)

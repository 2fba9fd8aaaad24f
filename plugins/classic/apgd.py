"""APGD, the step-size-free PGD of AutoAttack (Croce & Hein 2020), with l1-APGD (Croce & Hein 2021).

Written for robustreg from the papers; where the papers leave details open (integer checkpoints, the
sparsity schedule of l1, what is returned) it follows the authors' released code (AutoAttack's
``autopgd_base.py``), and the module says so at each place.  One forward and one input gradient per
iterate, plus one forward of the clean batch: no parameter ``.grad``, no host syncs inside the loop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Attack, AttackInfo, AttackResult, Param, ParamSet, ThreatModel, copy_rows, embed

from .pgd import per_sample_loss

__all__ = ["APGD", "APGD_LOSSES", "checkpoints", "project_l1_box"]

APGD_LOSSES = ("ce", "dlr", "cw", "si")

#: (values N, logits N x K) of one forward at x_adv: the per-sample loss to ascend and the model's logits.
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]


# --- the schedule and the l1 projection --------------------------------------------------------------
def checkpoints(steps: int) -> list[tuple[int, int]]:
    """``(w_j, w_j - w_{j-1})``: the step counts after which linf / l2 APGD checks its step size.

    The paper's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in AutoAttack's
    integer form: intervals int(0.22 N), shrinking by int(0.03 N) each time down to int(0.06 N) (each
    at least 1).  For N = 100: 22, 41, 57, 70, 80, 87, 93, 99.
    """
    first, shrink, least = (max(int(f * steps), 1) for f in (0.22, 0.03, 0.06))
    out: list[tuple[int, int]] = []
    at, interval = 0, first
    while at + interval <= steps:
        at += interval
        out.append((at, interval))
        interval = max(interval - shrink, least)
    return out


def project_l1_box(delta: torch.Tensor, x: torch.Tensor, eps: float, box: tuple[float, float]) -> torch.Tensor:
    """The Euclidean projection of ``delta`` onto {d : |d|_1 <= eps, x + d in the box}, per sample.

    The solution is d_i = sign(v_i) * clip(|v_i| - lam, 0, u_i) with u_i the room the box leaves in
    v_i's direction and lam >= 0 the smallest value with sum_i d_i <= eps ("Mind the box", Croce & Hein
    2021, sec. 3).  The sum is piecewise linear in lam with kinks at |v_i| - u_i and |v_i|: sorting
    the 2d kinks once finds lam exactly (no iteration, no host sync).
    """
    n = delta.shape[0]
    v = delta.reshape(n, -1)
    xf = x.reshape(n, -1)
    a = v.abs()
    room = torch.where(v > 0, box[1] - xf, xf - box[0]).clamp_min(0)
    cap = torch.minimum(a, room)  # lam = 0: the box alone
    kinks = torch.cat([a - cap, a], dim=1)  # a coordinate starts to count below a, stops below a - cap
    change = torch.cat([-torch.ones_like(a), torch.ones_like(a)], dim=1)
    kinks, order = kinks.sort(dim=1, descending=True)
    active = change.gather(1, order).cumsum(dim=1)  # coordinates moving on (kinks[k+1], kinks[k])
    gained = active[:, :-1] * (kinks[:, :-1] - kinks[:, 1:])
    mass = torch.cat([torch.zeros_like(a[:, :1]), gained.cumsum(dim=1)], dim=1)  # sum of d at each kink
    over = mass >= eps
    first = over.to(torch.int64).argmax(dim=1).clamp_min(1)  # the first kink where the sum reaches eps
    k = (first - 1)[:, None]
    lam = kinks.gather(1, k) - (eps - mass.gather(1, k)) / active.gather(1, k).clamp_min(1)
    lam = torch.where(over.any(dim=1, keepdim=True), lam, torch.zeros_like(lam)).clamp_min(0)
    out = v.sign() * torch.minimum((a - lam).clamp_min(0), room)
    return out.view_as(delta)


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-sample l2 norm, shaped to broadcast over t (AutoAttack's sum of squares, then sqrt)."""
    return (t**2).reshape(len(t), -1).sum(dim=1).sqrt().view((-1,) + (1,) * (t.dim() - 1))


# --- one run: the state of every sample and the loop -------------------------------------------------
@dataclass
class RunResult:
    """One APGD run on a subset: per sample the best-loss point, its loss, the last adversarial iterate,
    whether one was found, and the loss at the start and after each step (N x (steps + 1))."""

    x_best: torch.Tensor
    loss_best: torch.Tensor
    x_found: torch.Tensor
    found: torch.Tensor
    trace: torch.Tensor


@dataclass(frozen=True)
class Settings:
    """What one run needs from the attack's parameters."""

    threat: ThreatModel
    steps: int
    rho: float
    momentum: float


class _Run:
    """The iterates of one APGD run (AutoAttack's ``attack_single_run``), all samples at once."""

    # per sample: the last evaluation, the best point, the last adversarial iterate, the schedule's state
    values: torch.Tensor
    hit: torch.Tensor
    x_best: torch.Tensor
    grad_best: torch.Tensor
    loss_best: torch.Tensor
    x_found: torch.Tensor
    found: torch.Tensor
    step: torch.Tensor
    n_up: torch.Tensor
    reduced_last: torch.Tensor
    scratch: tuple[torch.Tensor, torch.Tensor]
    loss_best_last: torch.Tensor
    topk: torch.Tensor
    sparsity_last: torch.Tensor

    def __init__(self, cfg: Settings, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 target: torch.Tensor | None, success: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.cfg, self.loss_fn, self.x, self.y, self.target, self.success = cfg, loss_fn, x, y, target, success
        self.view = (-1,) + (1,) * (x.dim() - 1)
        self.norm, self.eps = cfg.threat.norm, cfg.threat.eps
        if self.norm == "linf":
            self.lo, self.hi = cfg.threat.clip_bounds(x)
        self.rows: list[torch.Tensor] = []

    # one forward + input gradient; the bookkeeping of the best and the adversarial points
    def _evaluate(self, x_adv: torch.Tensor) -> torch.Tensor:
        x_adv.requires_grad_(True)
        values, logits = self.loss_fn(x_adv, self.y, self.target)
        (grad,) = torch.autograd.grad(values.sum(), x_adv)
        x_adv.requires_grad_(False)
        self.values, self.hit = values.detach().float(), self.success(logits.detach())
        self.rows.append(self.values)
        return grad

    def _start(self, generator: torch.Generator) -> torch.Tensor:
        """AutoAttack's random start: linf x + eps u / |u|_inf (u uniform), l2 on the sphere of radius eps,
        l1 a Gaussian projected onto ball and box; then clipped to the box."""
        x, box = self.x, self.cfg.threat.box
        if self.norm == "linf":
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
            scale = noise.abs().reshape(len(x), -1).amax(dim=1).view(self.view)
            return (x + self.eps * (noise / (scale + 1e-12))).clamp(*box)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.norm == "l2":
            return (x + self.eps * (noise / (_l2(noise) + 1e-12))).clamp(*box)
        return (x + project_l1_box(noise, x, self.eps, box)).clamp(*box)

    def _project_l2(self, z: torch.Tensor) -> torch.Tensor:
        """Onto the l2 ball (rescaling), then clipped to the box, in AutoAttack's arithmetic."""
        d = z - self.x
        n = _l2(d)
        return (self.x + d / (n + 1e-12) * n.clamp(max=self.eps)).clamp(*self.cfg.threat.box)

    def _move(self, x_adv: torch.Tensor, x_old: torch.Tensor, grad: torch.Tensor, a: float) -> torch.Tensor:
        """The next iterate: z = P(x + step * dir(grad)), then P(x + a (z - x) + (1 - a) (x - x_old)).

        The operations and their order are AutoAttack's, so that from the same start the iterates are the
        same to the last bit.  linf allocates nothing: the new iterate is written over ``x_old`` once the
        displacement is taken, the sign and the displacement go to two buffers made once per run (a fresh
        batch-sized tensor costs page faults on the CPU at every step, more than the arithmetic)."""
        step = self.step.view(self.view)
        if self.norm == "linf":
            shift = torch.sub(x_adv, x_old, out=self.scratch[0]).mul_(1 - a)
            z = torch.addcmul(x_adv, step, torch.sign(grad, out=self.scratch[1]), out=x_old)
            z.clamp_(self.lo, self.hi).sub_(x_adv).mul_(a).add_(x_adv)
            return z.add_(shift).clamp_(self.lo, self.hi)
        if self.norm == "l2":
            z = self._project_l2(x_adv + step * (grad / (_l2(grad) + 1e-12)))
            return self._project_l2(x_adv + (z - x_adv) * a + (x_adv - x_old) * (1 - a))
        return self._move_l1(x_adv, grad, step)

    def _move_l1(self, x_adv: torch.Tensor, grad: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """l1: the signs of the largest ``topk`` fraction of |grad| (at least one), a step of l1 length
        ``step`` along them, the projection onto ball and box.  No momentum, as in the authors' code."""
        n = len(grad)
        flat = grad.reshape(n, -1)
        d = flat.shape[1]
        ranked = flat.abs().sort(dim=1).values
        at = ((1 - self.topk) * d).long().clamp(0, d - 1)
        sparse = flat.sign() * (flat.abs() >= ranked.gather(1, at[:, None]))
        moved = x_adv + step * sparse.view_as(grad) / (sparse.abs().sum(dim=1).view(self.view) + 1e-10)
        return self.x + project_l1_box(moved - self.x, self.x, self.eps, self.cfg.threat.box)

    # the checkpoints
    def _check_linf_l2(self, interval: int) -> torch.Tensor:
        """Halve where at most rho of the interval's steps raised the loss, or where the step was not
        halved at the last checkpoint and the best loss did not grow since."""
        oscillating = self.n_up <= interval * self.cfg.rho
        stalled = ~self.reduced_last & (self.loss_best_last >= self.loss_best)
        reduce = oscillating | stalled
        self.reduced_last, self.loss_best_last = reduce, self.loss_best.clone()
        self.step = torch.where(reduce, self.step / 2, self.step)
        return reduce

    def _check_l1(self) -> torch.Tensor:
        """l1 (authors' code): restart from the best point at full step where its sparsity fell below 95% of
        the last checkpoint's, else shrink the step by 1.5 (within [eps / 10, eps]); topk follows the
        best point's sparsity / 1.5."""
        d = self.x[0].numel()
        sparsity = (self.x_best != self.x).reshape(len(self.x), -1).sum(dim=1).to(self.step.dtype)
        restart = sparsity / self.sparsity_last < 0.95
        self.topk = sparsity / d / 1.5
        self.step = torch.where(restart, torch.full_like(self.step, self.eps), self.step / 1.5)
        self.step = self.step.clamp(self.eps / 10, self.eps)
        self.sparsity_last = sparsity
        return restart

    def _init_state(self, x_adv: torch.Tensor, grad: torch.Tensor) -> None:
        n = len(self.x)
        self.x_best, self.grad_best, self.loss_best = x_adv.clone(), grad.clone(), self.values.clone()
        self.x_found, self.found = x_adv.clone(), self.hit.clone()
        if self.norm == "linf":
            self.scratch = (torch.empty_like(x_adv), torch.empty_like(x_adv))
        self.step = torch.full((n,), (1.0 if self.norm == "l1" else 2.0) * self.eps, device=x_adv.device,
                               dtype=x_adv.dtype)
        self.n_up = torch.zeros(n, device=x_adv.device)
        self.reduced_last = torch.ones(n, dtype=torch.bool, device=x_adv.device)
        self.loss_best_last = self.loss_best.clone()
        if self.norm == "l1":
            self.topk = torch.full_like(self.step, 0.2)
            self.sparsity_last = torch.full_like(self.step, float(self.x[0].numel()))

    def _record(self, x_adv: torch.Tensor, grad: torch.Tensor, loss_prev: torch.Tensor) -> None:
        free = self.scratch[0] if self.norm == "linf" else None  # the move's buffers are free until the next move
        copy_rows(self.x_found, x_adv, self.hit, free)
        self.found |= self.hit
        self.n_up += (self.values > loss_prev).float()
        better = self.values > self.loss_best
        copy_rows(self.x_best, x_adv, better, free)
        copy_rows(self.grad_best, grad, better, free)
        self.loss_best = torch.where(better, self.values, self.loss_best)

    def run(self, generator: torch.Generator) -> RunResult:
        steps = self.cfg.steps
        x_adv = self._start(generator)
        grad = self._evaluate(x_adv)
        self._init_state(x_adv, grad)
        if self.norm == "l1":  # authors' code: a fixed interval of 4% of the steps
            every = max(int(0.04 * steps), 1)
            checks = {w: every for w in range(every, steps + 1, every)}
        else:
            checks = dict(checkpoints(steps))
        x_old = x_adv.clone()  # its own memory: linf writes the next iterate over it
        for i in range(steps):
            with torch.no_grad():
                x_new = self._move(x_adv, x_old, grad, 1.0 if i == 0 else self.cfg.momentum)
            x_old, x_adv = x_adv, x_new
            loss_prev = self.values
            grad = self._evaluate(x_adv)
            with torch.no_grad():
                self._record(x_adv, grad, loss_prev)
                if i + 1 in checks:
                    restart = self._check_l1() if self.norm == "l1" else self._check_linf_l2(checks[i + 1])
                    self.n_up.zero_()
                    x_adv = torch.where(restart.view(self.view), self.x_best, x_adv)
                    grad = torch.where(restart.view(self.view), self.grad_best, grad)
        return RunResult(self.x_best, self.loss_best, self.x_found, self.found, torch.stack(self.rows, dim=1))


# --- the attack ----------------------------------------------------------------------------------------
class APGD(Attack):
    """Auto-PGD: PGD whose step size halves at checkpoints where progress stalls, with momentum (linf, l2, l1).

    Papers: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020, arXiv:2003.01690 (APGD, the DLR loss, APGD-T); Croce & Hein,
    "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers", ICML 2021,
    arXiv:2103.01208 (l1).  Written for robustreg; details follow the authors' AutoAttack code.

    Norms: linf and l2 start from a random point, step 2 eps, and combine each projected step with
    the last displacement (``momentum`` 0.75); at the checkpoints of :func:`checkpoints` the step halves
    for samples where at most ``rho`` of the steps since the last checkpoint raised the loss, or where
    neither the step nor the best loss changed since, and those samples restart from their best point.
    l1: steps along the signs of the largest gradient coordinates (their number adapted to the best
    point's sparsity), the exact projection onto the l1 ball intersected with the box
    (:func:`project_l1_box`), step eps adapted every 4% of the steps.

    Losses: ``ce``, ``dlr`` (needs 3 classes), ``cw`` (margin capped at ``kappa``) and ``si``, paper 004's
    CE(s cos(theta), y) (the model must end in an ``nn.Linear`` head; invariant to a rescaling of the
    logits).  ``restarts``: later runs attack only the samples still standing.

    Returned, per sample: the last adversarial iterate of the run that broke it, else the point of the
    highest loss over all runs (the clean input where the model is wrong already), as AutoAttack.

    Targeted: ``target=`` attacks that class with the loss's targeted form (success: predicted as the
    target).  ``targeted=True`` is AutoAttack's APGD-T: for each of the ``n_target_classes`` classes the
    model ranks highest after the top one on the clean input, ``restarts`` runs of the targeted loss on
    the samples still classified correctly (``loss="dlr"``: APGD-T proper, needs 4 classes).

    Parameters: keyword-only, declared in :attr:`params`, plus ``seed`` and ``eval_mode``.  Inputs:
    float N x C x H x W in [0, 1], int64 labels.  ``run(...).extras``: ``loss_trace`` (N x (steps + 1),
    the loss at the start and after each step, of the run whose point is returned) and ``ever_broken``.

    Example::

        attack = APGD(ThreatModel("linf", 8 / 255), loss="dlr", steps=100, seed=0)
        x_adv = attack(model, x, y)
    """

    name = "apgd"
    info = AttackInfo(
        norms=("linf", "l2", "l1"), kind="white-box", targeted=True, randomized=True,
        source="Croce & Hein 2020, arXiv:2003.01690; l1: Croce & Hein 2021, arXiv:2103.01208", toolkit="native",
        summary="APGD (Croce & Hein 2020): step-size schedule, momentum; CE / DLR / CW / SI loss; APGD-T; linf, l2, l1",
    )

    params = ParamSet([
        Param("steps", "int", 100, "iterations per run (each one forward and one input gradient)", low=1,
              sane_high=100_000),
        Param("restarts", "int", 1, "runs from new random starts; each later run attacks the points still standing",
              low=1, sane_high=100_000),
        Param("loss", "choice", "ce", "the loss ascended: cross-entropy, DLR, C&W margin or paper 004's SI",
              choices=APGD_LOSSES),
        Param("rho", "float", 0.75, "halve the step where at most this fraction of steps raised the loss (linf, l2)",
              low=0, high=1),
        Param("momentum", "float", 0.75, "weight alpha of the new step against the last displacement (linf, l2)",
              low=0, high=1, low_open=True),
        Param("targeted", "bool", False, "APGD-T: attack the n_target_classes most likely wrong classes in turn"),
        Param("n_target_classes", "int", 9, "target classes of APGD-T (targeted=True only)", low=1),
        Param("kappa", "float", 50.0, "cap of the C&W margin (loss='cw' only); inf = no cap", low=0,
              low_open=True, unit="logits"),
        Param("s", "float", 15.0, "the scale of cos(theta) (loss='si' only; paper 004: 15)", low=0, low_open=True,
              high=math.inf, high_open=True),
    ])
    steps: int
    restarts: int
    loss: str
    rho: float
    momentum: float
    targeted: bool
    n_target_classes: int
    kappa: float
    s: float

    def _loss_fn(self, model: nn.Module) -> LossFn:
        loss, kappa, s = self.loss, self.kappa, self.s

        def fn(x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            if loss != "si":
                logits = model(x_adv)
                return per_sample_loss(loss, logits, y, target, kappa), logits
            embedding = embed(model, x_adv)
            scaled = s * embedding.cosine()
            if target is None:
                return F.cross_entropy(scaled, y, reduction="none"), embedding.logits
            return -F.cross_entropy(scaled, target, reduction="none"), embedding.logits

        return fn

    def _targets(self, clean: torch.Tensor, target: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The target of each round of runs: None (untargeted), the caller's, or APGD-T's ranked classes."""
        if target is not None:
            return [target]
        if not self.targeted:
            return [None]
        classes = clean.shape[1]
        if self.n_target_classes > classes - 1:
            raise ValueError(f"{self.label()}: n_target_classes={self.n_target_classes} needs a model with at "
                             f"least {self.n_target_classes + 1} classes, got {classes}")
        ranked = clean.argsort(dim=1, descending=True)
        return [ranked[:, k] for k in range(1, self.n_target_classes + 1)]

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> AttackResult:
        with torch.no_grad():
            clean = model(x)
        judge = _hit_target if target is not None else _misclassified
        broken = judge(clean, y, target)
        out = _Merged(x, broken, self.steps)
        cfg = Settings(self.threat, self.steps, self.rho, self.momentum)
        loss_fn = self._loss_fn(model)
        for tgt in self._targets(clean, target):
            for _ in range(self.restarts):
                idx = (~out.broken).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                ys, ts = y[idx], None if tgt is None else tgt[idx]
                result = _Run(cfg, loss_fn, x[idx], ys, ts, functools.partial(judge, y=ys, target=ts)).run(generator)
                out.merge(idx, result)
        return AttackResult(out.x_adv, extras={"loss_trace": out.trace, "ever_broken": out.ever})


def _misclassified(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Untargeted success, and APGD-T's (as AutoAttack judges it): the prediction is not the label."""
    return logits.argmax(dim=1) != y


def _hit_target(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Success of an attack toward the caller's target: the prediction is the target."""
    if target is None:
        raise ValueError("a targeted success needs the target classes")
    return logits.argmax(dim=1) == target


class _Merged:
    """The runs' results so far, per sample of the batch: broken points keep the run that broke them,
    standing points the highest loss any run reached."""

    def __init__(self, x: torch.Tensor, broken: torch.Tensor, steps: int) -> None:
        self.x_adv, self.broken, self.ever = x.clone(), broken.clone(), broken.clone()
        self.loss = torch.full((len(x),), -math.inf, device=x.device)
        self.trace = torch.full((len(x), steps + 1), math.nan, device=x.device)

    def merge(self, idx: torch.Tensor, r: RunResult) -> None:
        view = (-1,) + (1,) * (r.x_best.dim() - 1)
        better = r.loss_best > self.loss[idx]
        take = r.found | better
        point = torch.where(r.found.view(view), r.x_found, r.x_best)
        self.x_adv[idx] = torch.where(take.view(view), point, self.x_adv[idx])
        self.trace[idx] = torch.where(take[:, None], r.trace, self.trace[idx])
        self.loss[idx] = torch.where(take, r.loss_best, self.loss[idx])
        self.broken[idx] |= r.found
        self.ever[idx] |= r.found

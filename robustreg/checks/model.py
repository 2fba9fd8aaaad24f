"""The checks that run the model again, each on a small seeded subsample of the points."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..ascent import projected_gradient_ascent
from ..attack import ModelState
from ..embedding import embed
from ..threat import ThreatModel
from .context import CheckContext, Outcome, paired_noise, pct

__all__ = ["check_logit_scale", "check_nan_logits", "check_randomized_model", "check_softmax_output",
           "check_unbounded_attack", "check_zero_gradients"]

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, x, y) -> per-sample loss


# --- shared pieces -------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet(ctx: CheckContext) -> Iterator[nn.Module]:
    """The model in eval mode with frozen parameters; its state and the global RNGs restored after."""
    state = ModelState(ctx.model)
    devices = [ctx.device] if ctx.device is not None and ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            state.clear_grads()
            for p in ctx.model.parameters():
                p.requires_grad_(False)
            ctx.model.eval()
            yield ctx.model
        finally:
            state.restore()


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def _dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): unchanged when the logits are rescaled."""
    logits = logits.float()
    ordered = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return (other - z_y) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


#: points per piece of a check's PGD: the pieces are the same on any number of ranks (see CheckContext.each)
PIECE = 32


def _pgd(ctx: CheckContext, model: nn.Module, objective: Objective, x: torch.Tensor, y: torch.Tensor,
         threat: ThreatModel, steps: int, step_size: float) -> torch.Tensor:
    """The core's PGD from the clean point, :data:`PIECE` points at a time through ``ctx.each``; per sample:
    still correctly classified (NaN counts as not), on the CPU."""

    def piece(k: int) -> torch.Tensor:
        xs, ys = x[k * PIECE:(k + 1) * PIECE], y[k * PIECE:(k + 1) * PIECE]
        x_adv = projected_gradient_ascent(model, lambda m, xa, ya, _t: objective(m, xa, ya).sum(), xs, ys, None,
                                          threat, steps=steps, step_size=step_size, random_start=False, restarts=1,
                                          generator=torch.Generator(device=xs.device))
        with torch.no_grad():
            logits = model(x_adv).float()
        return ((logits.argmax(dim=1) == ys) & torch.isfinite(logits).all(dim=1)).cpu()

    return torch.cat(ctx.each(-(-len(x) // PIECE), piece))


def _largest_eps(ctx: CheckContext) -> float | None:
    return max((c.eps for c in ctx.cells), default=None)


# --- the checks on the model ---------------------------------------------------------------------
def check_softmax_output(ctx: CheckContext) -> Outcome:
    logits = ctx.clean_logits.float()
    finite = logits[torch.isfinite(logits).all(dim=1)]
    if len(finite) == 0:
        return "skipped", "no finite clean output to look at"
    ones = torch.ones(len(finite), device=finite.device)
    if bool((finite >= 0).all()) and torch.allclose(finite.sum(dim=1), ones, atol=1e-4):
        return "warn", ("the model's outputs are probabilities (non-negative rows summing to 1), not logits: "
                        "gradients through a softmax vanish; remove the final softmax (return logits)")
    return "ok", "the outputs are logits, not probabilities"


def check_randomized_model(ctx: CheckContext) -> Outcome:
    _, xs, _ = ctx.sample()
    with _quiet(ctx) as model, torch.no_grad():
        outs = [model(xs).float() for _ in range(3)]
    differ = sum(not torch.allclose(outs[0], o, rtol=1e-5, atol=1e-6, equal_nan=True) for o in outs[1:])
    flips = sum(int((outs[0].argmax(dim=1) != o.argmax(dim=1)).sum()) for o in outs[1:])
    if differ:
        return "warn", (f"3 eval-mode forwards of the same {len(xs)} points gave different outputs "
                        f"({flips} changed predictions): the model is randomised, so attack its expectation "
                        "(an EoT attack, e.g. --eot N, or AutoAttack's 'rand' version)")
    return "ok", f"3 eval-mode forwards of {len(xs)} points gave the same outputs"


def check_zero_gradients(ctx: CheckContext) -> Outcome:
    _, xs, ys = ctx.sample()
    with _quiet(ctx) as model, torch.enable_grad():
        xs = xs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_ce(model(xs), ys).sum(), xs, allow_unused=True)
    if grad is None:
        bad = len(xs)
    else:
        flat = grad.reshape(len(xs), -1)
        bad = int(((flat == 0).all(dim=1) | ~torch.isfinite(flat).all(dim=1)).sum())
    if bad:
        return "warn", (f"the cross-entropy gradient w.r.t. the input is exactly zero or not finite for "
                        f"{pct(bad, len(xs))} clean points: gradient attacks cannot move them; add a score- or "
                        "decision-based attack, and look for a saturated softmax or a non-differentiable layer")
    return "ok", f"the input gradient is non-zero and finite on all {len(xs)} points tried"


def check_nan_logits(ctx: CheckContext) -> Outcome:
    clean = int((~torch.isfinite(ctx.clean_logits).all(dim=1)).sum())
    found = [f"{clean} clean points" if clean else ""]
    for c in ctx.cells:
        if c.adv_logits_finite is not None:
            bad = int((c.evaluated.cpu() & ~c.adv_logits_finite.cpu()).sum())
            found.append(f"{bad} adversarial points of {c.attack} at eps={c.eps:g}" if bad else "")
    found = [f for f in found if f]
    if found:
        return "warn", (f"the model returned NaN or inf logits on {'; '.join(found)} (never counted as correct): "
                        "a numerical problem in the model, or a defense hiding behind NaN gradients")
    return "ok", "every clean logit and every adversarial logit the cells reported is finite"


def _ce_objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _ce(model(x), y)


def _cosine_objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _ce(15.0 * embed(model, x).cosine(), y)  # s = 15, paper 004's scale


def _scale_invariant(model: nn.Module, xs: torch.Tensor) -> tuple[str, Objective]:
    """CE on s cos(theta) for a model ending in nn.Linear, else DLR: both ignore the logits' scale."""
    try:
        embed(model, xs[:1])
    except ValueError:
        return "DLR", lambda m, x, y: _dlr(m(x), y)
    return "CE(15 cos theta)", _cosine_objective


def check_logit_scale(ctx: CheckContext) -> Outcome:
    eps = _largest_eps(ctx)
    if not eps:
        return "skipped", "no cell with eps > 0 to take the budget from"
    _, xs, ys = ctx.sample(ctx.clean_correct)
    if len(xs) == 0:
        return "skipped", "no clean-correct point"
    threat = ctx.threat(eps)
    with _quiet(ctx) as model:
        name, objective = _scale_invariant(model, xs)
        if name == "DLR" and ctx.clean_logits.shape[1] < 3:
            return "skipped", "no nn.Linear head and fewer than 3 classes: no scale-invariant loss to compare"
        ce_standing = _pgd(ctx, model, _ce_objective, xs, ys, threat, 20, eps / 4)
        si_standing = _pgd(ctx, model, objective, xs, ys, threat, 20, eps / 4)
    n = len(xs)
    extra = int((ce_standing & ~si_standing).sum())  # broken by the scale-invariant loss alone
    fewer = int((si_standing & ~ce_standing).sum())  # broken by cross-entropy alone
    numbers = (f"on {n} clean-correct points at eps={eps:g} (20 steps of eps/4), PGD on cross-entropy leaves "
               f"{pct(int(ce_standing.sum()), n)} standing, PGD on {name} {pct(int(si_standing.sum()), n)}")
    if (extra - fewer) / n > paired_noise(extra, fewer, n):
        return "warn", (f"{numbers}: the scale-invariant loss breaks {extra} points cross-entropy left standing "
                        f"(cross-entropy {fewer} it left), beyond sampling noise; the logits' scale weakens "
                        "cross-entropy attacks, so evaluate with a scale-invariant one")
    return "ok", numbers


def check_unbounded_attack(ctx: CheckContext) -> Outcome:
    _, xs, ys = ctx.sample(ctx.clean_correct)
    if len(xs) == 0:
        return "skipped", "no clean-correct point"
    d = xs[0].numel()
    eps = {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[ctx.norm]
    step = 0.1 if ctx.norm == "linf" else eps / 8
    with _quiet(ctx) as model:
        standing = int(_pgd(ctx, model, _ce_objective, xs, ys, ctx.threat(eps), 20, step).sum())
    what = (f"PGD on cross-entropy with {ctx.norm} eps={eps:g} (the whole box, 20 steps) leaves "
            f"{pct(standing, len(xs))}")
    if standing > 0.1 * len(xs):
        return "warn", (f"{what} clean-correct points standing, where it should break all: the gradients are "
                        "masked or the attack is broken; do not trust gradient attacks on this model")
    return "ok", f"{what} standing"


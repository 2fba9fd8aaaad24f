"""The checks that run the model again, each on a small seeded subsample of the points."""

from __future__ import annotations

import math

import torch
from torch import nn

from .context import CheckContext, Outcome, pct
from .kit import ce_loss, quiet_model, standing_after_pgd

__all__ = ["check_nan_logits", "check_randomized_model", "check_softmax_output",
           "check_unbounded_attack", "check_zero_gradients"]


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
    with quiet_model(ctx) as model, torch.no_grad():
        outs = [model(xs).float() for _ in range(3)]
    differ = sum(not torch.allclose(outs[0], o, rtol=1e-5, atol=1e-6, equal_nan=True) for o in outs[1:])
    flips = sum(int((outs[0].argmax(dim=1) != o.argmax(dim=1)).sum()) for o in outs[1:])
    if differ:
        return "warn", (f"3 eval-mode forwards of the same {len(xs)} points gave different outputs "
                        f"({flips} changed predictions): the model is randomised, so attack its expectation "
                        "(an EoT attack, e.g. --eot N, or an attack's version for randomised defenses)")
    return "ok", f"3 eval-mode forwards of {len(xs)} points gave the same outputs"


def check_zero_gradients(ctx: CheckContext) -> Outcome:
    _, xs, ys = ctx.sample()
    with quiet_model(ctx) as model, torch.enable_grad():
        xs = xs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(ce_loss(model(xs), ys).sum(), xs, allow_unused=True)
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
    return ce_loss(model(x), y)


def check_unbounded_attack(ctx: CheckContext) -> Outcome:
    _, xs, ys = ctx.sample(ctx.clean_correct)
    if len(xs) == 0:
        return "skipped", "no clean-correct point"
    d = xs[0].numel()
    eps = {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[ctx.norm]
    step = 0.1 if ctx.norm == "linf" else eps / 8
    with quiet_model(ctx) as model:
        standing = int(standing_after_pgd(ctx, model, _ce_objective, xs, ys, ctx.threat(eps), 20, step).sum())
    what = (f"PGD on cross-entropy with {ctx.norm} eps={eps:g} (the whole box, 20 steps) leaves "
            f"{pct(standing, len(xs))}")
    if standing > 0.1 * len(xs):
        return "warn", (f"{what} clean-correct points standing, where it should break all: the gradients are "
                        "masked or the attack is broken; do not trust gradient attacks on this model")
    return "ok", f"{what} standing"


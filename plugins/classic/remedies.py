"""Remedies for the core's checks, built on this plugin's attacks (``--adaptive``; see robustreg.remedies).

Each answers the warnings of the checks named in its registration (in a targeted evaluation every attack aims
at the evaluation's targets, see :class:`robustreg.remedies.RemedyContext`); what it attacks with, and why:

- ``margin-loss`` (logit-scale, softmax-output, and zero-gradients where the logits are decisive: a saturated
  softmax): APGD with the DLR and the C&W margin losses and APGD-T (targeted DLR on the 9 most likely wrong
  classes, as AutoAttack's standard version; in a targeted evaluation the DLR run aims at the evaluation's own
  targets instead), which neither a rescaling of the logits nor a final softmax
  flattens the way it flattens cross-entropy (Croce & Hein 2020, arXiv:2003.01690).
- ``log-outputs`` (softmax-output): the model's outputs are probabilities, so attack their log, the
  logits up to a constant per sample (Carlini & Wagner 2017, sec. 4 on softmax outputs).
- ``temperature`` (logit-scale, zero-gradients): the logits divided by a temperature chosen from the
  standing points' top-2 logit margins, so that the median margin becomes 2 and the softmax no longer
  saturates; runs only when the logits are decisive (median margin above 20).
- ``eot`` (randomized-model): APGD-CE and APGD-DLR on the Expectation over Transformation (Athalye et al.
  2018), with the number of draws chosen from the measured variance of the input gradient (8 to 32),
  judged by the majority of 9 draws.
- ``more-steps`` (incomplete-optimization, black-box-beats-white-box, attack-flags): APGD-CE, APGD-DLR,
  APGD-T (not in a targeted evaluation) and APGD-CE with 4 restarts in turn, until two of them in a row break
  nothing more.  A
  toolkit's own flags (AutoAttack's) get it too; their causes (randomness, a softmax, zero gradients)
  are also what the core's own checks look for on every evaluation, each with its own remedy.
- ``step-size-sweep`` (iterative-beats-single-step): PGD with steps of eps/2, eps/4, eps/10, eps/25.
- ``warm-start`` (eps-monotonic): a point broken at a smaller eps is attacked there again, by the
  evaluation's own white-box attacks and then APGD; the adversarial point found lies in every larger
  ball, so it counts at every larger eps.
- ``bpda`` (zero-gradients, unbounded-attack): the modules whose backward is zero, missing or not finite
  while their forward depends on the input (found by probing each module's vector-Jacobian product
  on a few points) are attacked through BPDA (their value forward, the identity backward; Athalye,
  Carlini & Wagner 2018, arXiv:1802.00420), and with transfer from the model with them bypassed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import robustreg
from robustreg.remedies import RemedyContext, majority

__all__ = ["Around", "LogOutputs", "Tempered", "masking_modules", "robustreg_register_remedies"]

APGD_STEPS = 100
TARGETS = 9  # APGD-T's target classes, as AutoAttack's standard version


class LogOutputs(nn.Module):
    """``log(model(x))``: the logits (up to a constant per sample) of a model that outputs probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.model(x).float().clamp_min(torch.finfo(torch.float32).tiny))


class Tempered(nn.Module):
    """``model(x) / temperature``: the same predictions, an unsaturated softmax."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float() / self.temperature


class Around(nn.Module):
    """``model`` with ``modules`` taken out of the gradient: their value forward and the identity backward
    (BPDA), or, with ``bypass``, the identity both ways (a surrogate to transfer from)."""

    def __init__(self, model: nn.Module, modules: Sequence[nn.Module], *, bypass: bool = False) -> None:
        super().__init__()
        self.model, self.bypass = model, bypass
        self._targets = list(modules)  # not registered: they are the model's own

    def _hook(self, _module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        x = args[0]
        return x if self.bypass else x + (out - x).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        handles = [m.register_forward_hook(self._hook) for m in self._targets]
        try:
            return self.model(x)
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def _inputs_of(modules: Sequence[nn.Module]) -> Iterator[dict[nn.Module, torch.Tensor]]:
    """Record the first positional input of each module during the forwards inside the block."""
    seen: dict[nn.Module, torch.Tensor] = {}

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor) and module not in seen:
            seen[module] = args[0].detach().clone()

    handles = [m.register_forward_pre_hook(pre) for m in modules]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _masks_gradient(module: nn.Module, x: torch.Tensor, generator: torch.Generator) -> bool:
    """The module maps ``x`` to an output of its shape whose vector-Jacobian product is missing, zero, tiny
    (below 1e-3 of the vector's norm: the identity gives 1, a ReLU about 0.7) or not finite, while its
    output changes with its input."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = module(x)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or not out.is_floating_point():
        return False
    nudged = module(x.detach() + 0.05 * torch.randn(x.shape, generator=generator, device=x.device))
    if torch.equal(nudged, out.detach()):
        return False  # a constant: there is nothing for a gradient to follow
    if not out.requires_grad:
        return True
    v = torch.randn(out.shape, generator=generator, device=out.device)
    (g,) = torch.autograd.grad(out, x, v, allow_unused=True)
    if g is None or not bool(torch.isfinite(g).all()):
        return True
    return float(g.norm()) < 1e-3 * float(v.norm())


def masking_modules(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """The leaf modules of ``model`` that mask the gradient on the points ``x`` (see :func:`_masks_gradient`);
    a masking operation written inside a ``forward`` rather than as a module is not found."""
    leaves = [m for m in model.modules() if m is not model and not list(m.children())]
    with _inputs_of(leaves) as seen, torch.no_grad():
        model(x)
    generator = torch.Generator(device=x.device).manual_seed(0)
    found = []
    for module, inp in seen.items():
        try:
            if _masks_gradient(module, inp, generator):
                found.append(module)
        except RuntimeError:  # a module that cannot run alone on its recorded input: not probed
            continue
    return found


# --- the remedies -------------------------------------------------------------------------------------
def margin_loss(ctx: RemedyContext) -> None:
    if ctx.check == "zero-gradients" and not _decisive(_median_margin(ctx)):
        return  # zero gradients without decisive logits are not a saturated softmax (bpda answers them)
    ctx.attack("apgd", {"loss": "cw", "steps": APGD_STEPS}, label=f"apgd-cw-{APGD_STEPS}")
    if ctx.num_classes >= 3:
        ctx.attack("apgd", {"loss": "dlr", "steps": APGD_STEPS}, label=f"apgd-dlr-{APGD_STEPS}")
        if ctx.targeted:
            return  # the evaluation's own targets: the DLR run above was already the targeted DLR
        targets = min(TARGETS, ctx.num_classes - 1)
        ctx.attack("apgd", {"loss": "dlr", "steps": APGD_STEPS, "targeted": True, "n_target_classes": targets},
                   label=f"apgd-t-{APGD_STEPS}x{targets}")


def log_outputs(ctx: RemedyContext) -> None:
    logs = LogOutputs(ctx.model)
    ctx.attack("apgd", {"loss": "ce", "steps": APGD_STEPS}, model=logs, label=f"apgd-ce-{APGD_STEPS} on log(outputs)")
    if ctx.num_classes >= 3:
        ctx.attack("apgd", {"loss": "dlr", "steps": APGD_STEPS}, model=logs,
                   label=f"apgd-dlr-{APGD_STEPS} on log(outputs)")


#: a median top-2 logit margin above this saturates the softmax of cross-entropy attacks
DECISIVE_MARGIN = 20.0


def _median_margin(ctx: RemedyContext) -> float:
    xs, _ = ctx.sample(64)
    if len(xs) == 0:
        return 0.0
    with torch.no_grad():
        top = ctx.model(xs).float().topk(2, dim=1).values
    return float((top[:, 0] - top[:, 1]).median())


def _decisive(margin: float) -> bool:
    """A median top-2 logit margin that saturates cross-entropy's softmax (above :data:`DECISIVE_MARGIN`)."""
    return math.isfinite(margin) and margin > DECISIVE_MARGIN


def temperature(ctx: RemedyContext) -> None:
    margin = _median_margin(ctx)
    if not _decisive(margin):
        return  # logits not decisive: a temperature restores nothing (zero gradients have another cause)
    t = margin / 2
    ctx.attack("apgd", {"loss": "ce", "steps": APGD_STEPS}, model=Tempered(ctx.model, t),
               label=f"apgd-ce-{APGD_STEPS} on logits / {t:.3g}")


def _draws(ctx: RemedyContext, probes: int = 8, points: int = 16) -> int:
    """EoT draws so that the mean gradient's expected cosine with the true expectation is about 0.9 or
    more: with per-draw variance s2 (summed over the input) and squared mean norm m2, the mean of N draws
    has cos^2 ~ m2 / (m2 + s2 / N) >= 0.81 when N >= 4.3 s2 / m2; between 8 and 32 (AutoAttack's rand
    version uses 20)."""
    xs, ys = ctx.sample(points)
    if len(xs) == 0:
        return 8
    grads = []
    for _ in range(probes):
        xg = xs.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(ctx.model(xg).float(), ys, reduction="sum")
            (g,) = torch.autograd.grad(loss, xg)
        grads.append(g.flatten(1))
    stack = torch.stack(grads)
    s2 = stack.var(dim=0).sum(dim=1)
    m2 = stack.mean(dim=0).pow(2).sum(dim=1).clamp_min(1e-30)
    ratio = float((s2 / m2).median())
    return int(min(max(math.ceil(4.3 * ratio), 8), 32)) if math.isfinite(ratio) else 32


def eot(ctx: RemedyContext) -> None:
    """APGD on the expectation (its step size adapts to the noisy gradient, as in AutoAttack's rand version)."""
    draws = _draws(ctx)
    for loss in ("ce", "dlr") if ctx.num_classes >= 3 else ("ce",):
        ctx.attack("apgd", {"loss": loss, "steps": APGD_STEPS, "eot": draws}, verdict=majority(9),
                   label=f"apgd-{loss}-{APGD_STEPS} with EoT over {draws} draws")


def more_steps(ctx: RemedyContext) -> None:
    classes = ctx.num_classes
    ladder: list[tuple[dict[str, Any], str]] = [({"loss": "ce", "steps": APGD_STEPS}, "apgd-ce")]
    if classes >= 3:
        ladder.append(({"loss": "dlr", "steps": APGD_STEPS}, "apgd-dlr"))
    if classes >= 4 and not ctx.targeted:  # a targeted evaluation's DLR run is already aimed
        ladder.append(({"loss": "dlr", "steps": APGD_STEPS, "targeted": True, "n_target_classes": min(9, classes - 1)},
                       "apgd-t"))
    ladder.append(({"loss": "ce", "steps": 2 * APGD_STEPS, "restarts": 4}, "apgd-ce x4 restarts"))
    idle = 0
    for params, label in ladder:
        idle = idle + 1 if ctx.attack("apgd", params, label=f"{label}-{params['steps']}") == 0 else 0
        if idle == 2:
            break  # the robust accuracy stopped falling


def step_size_sweep(ctx: RemedyContext) -> None:
    for divisor in (2, 4, 10, 25):
        for e, eps in enumerate(ctx.eps):
            steps = max(10, math.ceil(2.5 * divisor))
            ctx.attack("pgd", {"steps": steps, "step_size": eps / divisor}, eps=[e],
                       label=f"pgd-{steps} with step eps/{divisor}")


def warm_start(ctx: RemedyContext) -> None:
    """Attack at the smaller eps the points broken there but standing at a larger one."""
    for small in range(len(ctx.eps) - 1):
        def redo(e: int, small: int = small) -> torch.Tensor:
            broken_here = ~ctx.standing[small]
            later = torch.zeros_like(broken_here)
            for large in range(small + 1, len(ctx.eps)):
                later |= ctx.standing[large]
            return broken_here & later

        own = [(name, params) for name, params in ctx.evaluated
               if ctx.registry.attack(name).info.kind == "white-box"]
        for name, params in [*own, ("apgd", {"loss": "ce", "steps": APGD_STEPS})]:
            ctx.attack(name, params, eps=[small], points=redo,
                       label=f"{name} at eps {ctx.eps[small]:g}, for larger eps")


def bpda(ctx: RemedyContext) -> None:
    xs, _ = ctx.sample(8)
    if len(xs) == 0:
        return
    modules = masking_modules(ctx.model, xs)
    if not modules:
        return
    names = ", ".join(sorted({type(m).__name__ for m in modules}))
    ctx.attack("apgd", {"loss": "ce", "steps": APGD_STEPS}, model=Around(ctx.model, modules),
               label=f"apgd-ce-{APGD_STEPS} through BPDA around {names}")
    ctx.attack("pgd", {"steps": 50}, model=Around(ctx.model, modules, bypass=True),
               label=f"pgd-50 transferred from the model without {names}")


@robustreg.hookimpl
def robustreg_register_remedies(registrar: robustreg.Registrar) -> None:
    registrar.add_remedy("margin-loss", margin_loss, answers=("logit-scale", "softmax-output", "zero-gradients"),
                         cost=(2 + TARGETS) * APGD_STEPS,
                         summary="APGD with the C&W margin and DLR losses, and APGD-T (scale-invariant, no softmax; "
                                 "for zero gradients only with decisive logits)")
    registrar.add_remedy("log-outputs", log_outputs, answers=("softmax-output",),
                         cost=2 * APGD_STEPS,
                         summary="APGD-CE and -DLR on log(outputs): the logits of a softmax-output model")
    registrar.add_remedy("temperature", temperature, answers=("logit-scale", "zero-gradients"),
                         cost=2 * APGD_STEPS,
                         summary="APGD-CE on logits / T, T from the logit margins (decisive logits only)")
    registrar.add_remedy("eot", eot, answers=("randomized-model",),
                         cost=2 * APGD_STEPS * 8,
                         summary="APGD with EoT, draws from the gradient's variance; verdict by majority of 9")
    registrar.add_remedy("more-steps", more_steps,
                         answers=("incomplete-optimization", "black-box-beats-white-box", "attack-flags"),
                         cost=2 * APGD_STEPS,
                         summary="APGD-CE, APGD-DLR, APGD-T, APGD-CE x4 until the accuracy stops falling")
    registrar.add_remedy("step-size-sweep", step_size_sweep, answers=("iterative-beats-single-step",),
                         cost=2 * 10,
                         summary="PGD with steps eps/2, eps/4, eps/10, eps/25")
    registrar.add_remedy("warm-start", warm_start, answers=("eps-monotonic",),
                         cost=2 * APGD_STEPS,
                         summary="re-attack at the smaller eps the points a larger eps left standing")
    registrar.add_remedy("bpda", bpda, answers=("zero-gradients", "unbounded-attack"),
                         cost=2 * APGD_STEPS,
                         summary="BPDA through the modules whose backward masks the gradient, and transfer")

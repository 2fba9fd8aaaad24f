"""What the attack checks share: building the attack under test and one watched call."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attack import BOX_SLACK, Attack, AttackError, ball_slack
from ..registry import AttackSpec
from ..threat import ThreatModel
from .models import default_threat

__all__ = ["Ctx", "in_ball_problem", "make_ctx", "observed_call", "raise_problem", "supported_params",
           "type_name"]


def _factory_of(attack: Any) -> tuple[Callable[..., Attack], str, Any]:
    """``(build(threat, **params), name, info)``; a spec builds with its registered defaults, validated."""
    if isinstance(attack, AttackSpec):
        return attack.build, attack.name, attack.info
    if isinstance(attack, Attack):
        raise TypeError(f"pass the attack's class, factory or AttackSpec, not a built {type(attack).__name__}: "
                        "the checks build it themselves (with seeds and other threat models)")
    if callable(attack):
        info = getattr(attack, "info", None)
        return attack, getattr(attack, "name", "") or getattr(attack, "__name__", repr(attack)), info
    raise TypeError(f"attack must be an AttackSpec or a factory(threat, **params), got {type(attack).__name__}")


def supported_params(attack: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The subset of ``params`` the attack accepts.

    Keys are matched against the spec's declared parameters (``spec.params``), else the declaration of
    an Attack class (``cls.declaration()``), else the factory's signature (a factory taking
    ``**kwargs`` accepts none it does not name).
    """
    if not params:
        return {}
    if isinstance(attack, AttackSpec) and attack.params:
        declared = attack.params
    elif isinstance(attack, type) and issubclass(attack, Attack):
        declared = attack.declaration()
    else:
        factory, _, _ = _factory_of(attack)
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):
            return {}
        names = {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        return {k: v for k, v in params.items() if k in names}
    return {k: v for k, v in params.items() if k in declared}


def type_name(obj: Any) -> str:
    """``numpy.ndarray``, ``torch.Tensor``, ``list``: what a wrong result is, said plainly."""
    kind = type(obj)
    module = {"torch": "torch", "numpy": "numpy"}.get(kind.__module__.split(".")[0], kind.__module__)
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


@dataclass
class Ctx:
    """The attack under test: how to build it (``source`` is what the caller passed), its threat, params."""

    name: str
    factory: Callable[..., Attack]
    info: Any
    threat: ThreatModel
    params: dict[str, Any]
    source: Any = None

    def build(self, **extra: Any) -> Attack:
        built = self.factory(self.threat, **{**self.params, **extra})
        if not isinstance(built, Attack):
            raise AssertionError(f"{self.name}: the factory returned {type(built).__name__}, not a robustreg.Attack")
        return built

    def seeded(self, seed: int = 0) -> Attack:
        return self.build(seed=seed)

    def flag(self, name: str, default: Any = False) -> Any:
        return getattr(self.info, name, default)


def make_ctx(attack: Any, threat: ThreatModel | None, params: Mapping[str, Any] | None) -> Ctx:
    factory, name, info = _factory_of(attack)
    if threat is None:
        norms = getattr(info, "norms", ("linf",))
        threat = default_threat("linf" if "linf" in norms else norms[0])
    return Ctx(name, factory, info, threat, dict(params or {}), attack)


def raise_problem(ctx: Ctx, problem: str | None) -> None:
    if problem:
        raise AssertionError(f"{ctx.name}: {problem}")


# --- what one output must be -----------------------------------------------------------------
def in_ball_problem(ctx: Ctx, x_adv: Any, x: torch.Tensor, where: str) -> str | None:
    """The output has x's shape, is finite, inside the ball (not for a minimal-norm attack) and the box up to
    float rounding."""
    if not isinstance(x_adv, torch.Tensor):
        return f"{where} returned a {type_name(x_adv)}, not a torch.Tensor"
    if x_adv.shape != x.shape:
        return f"{where} returned shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}"
    x_adv = x_adv.detach().to(x.dtype)
    if not bool(torch.isfinite(x_adv).all()):
        return f"{where} returned NaN or inf values"
    t = ctx.threat
    worst = float(t.distance(x_adv, x).max())
    # a minimal-norm attack has no ball (AttackInfo.minimal_norm): the box only; the base checks its claims
    if not ctx.flag("minimal_norm") and worst > t.eps + ball_slack(t, x):
        return f"{where} left the {t.describe()} ball: max {t.norm} distance {worst:.6g}"
    lo, hi = t.box
    xmin, xmax = float(x_adv.min()), float(x_adv.max())
    if xmin < lo - BOX_SLACK or xmax > hi + BOX_SLACK:
        return f"{where} left the box [{lo:g}, {hi:g}]: values in [{xmin:.6g}, {xmax:.6g}]"
    return None


# --- the watched call ------------------------------------------------------------------------
def _snapshot(model: nn.Module) -> Any:
    modes = [(name, m.training) for name, m in model.named_modules()]
    params = [(name, p.requires_grad, p.grad, None if p.grad is None else p.grad.clone(), p.detach().clone())
              for name, p in model.named_parameters()]
    buffers = [(name, b.detach().clone()) for name, b in model.named_buffers()]
    return modes, params, buffers


def _state_problem(before: Any, after: Any) -> str | None:
    (modes, pstate, buffers), (after_modes, after_params, after_buffers) = before, after
    for (name, was), (_, now) in zip(modes, after_modes):
        if was != now:
            return (f"module {name or '<root>'!r} training={now} after the attack, was {was}: the attack must "
                    "restore every module's mode")
    for (name, rg, grad, grad_val, val), (_, rg2, grad2, _, val2) in zip(pstate, after_params):
        if rg != rg2:
            return f"parameter {name!r} requires_grad={rg2} after the attack, was {rg}"
        if grad2 is not grad or (grad is not None and not torch.equal(grad2, grad_val)):
            return (f"parameter {name!r} .grad was replaced or changed by the attack (compute input gradients "
                    "with torch.autograd.grad)")
        if not torch.equal(val, val2):
            return f"parameter {name!r} was modified by the attack"
    for (name, before_b), (_, after_b) in zip(buffers, after_buffers):
        if not torch.equal(before_b, after_b):
            return f"buffer {name!r} changed (a train-mode forward updated BatchNorm statistics?)"
    return None


def _same_numpy_state(a: Any, b: Any) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


def _rng_states() -> tuple[torch.Tensor, Any, Any]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _rng_problem(before: Any, after: Any) -> str | None:
    if not torch.equal(before[0], after[0]):
        return "a seeded attack changed torch's global RNG state; draw from the generator passed to perturb"
    if not _same_numpy_state(before[1], after[1]):
        return "a seeded attack changed numpy's global RNG state; save and restore it around the toolkit call"
    if before[2] != after[2]:
        return ("a seeded attack changed Python's global `random` state; save and restore it around the toolkit "
                "call (robustreg.seeded_global_rngs)")
    return None


def _mix_state(model: nn.Module) -> None:
    """Train mode with the first child in eval mode, a sentinel ``.grad`` everywhere, the first parameter frozen."""
    model.train()
    children = list(model.children())
    if children:
        children[0].eval()
    for i, p in enumerate(model.parameters()):
        p.grad = torch.full_like(p, 0.125)
        p.requires_grad_(i != 0)


# The checks one observed call answers; see observed_call.
OBSERVED = ("eps_ball_and_box", "output_detached_same_device_dtype", "inputs_untouched", "model_state_restored",
            "global_rng_untouched")


def _output_problems(x_adv: Any, x: torch.Tensor, problems: dict[str, str | None]) -> None:
    if not isinstance(x_adv, torch.Tensor):
        return
    if x_adv.requires_grad or x_adv.grad_fn is not None:
        problems["output_detached_same_device_dtype"] = "x_adv is attached to an autograd graph; detach it"
    elif x_adv.device != x.device or x_adv.dtype != x.dtype or x_adv.shape != x.shape:
        problems["output_detached_same_device_dtype"] = (
            f"x_adv is {x_adv.dtype} {tuple(x_adv.shape)} on {x_adv.device}, expected {x.dtype} "
            f"{tuple(x.shape)} on {x.device}")
    if x_adv.data_ptr() == x.data_ptr():
        problems["inputs_untouched"] = "the attack returned the caller's x itself; return a new tensor"


def observed_call(ctx: Ctx, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  seed: int = 0) -> tuple[Any, dict[str, str | None]]:
    """Run ``attack(model, x, y)`` once, watched; return ``(x_adv, {check name: problem or None})``.

    Before the call the model is put in a mixed state (train mode, its first child in eval mode, a
    sentinel ``.grad`` on every parameter, ``requires_grad=False`` on the first one); afterwards the
    model is put back exactly as the caller had it.
    """
    original = [(m, m.training) for m in model.modules()]
    original_params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    atk = ctx.seeded(seed)
    try:
        _mix_state(model)
        before = _snapshot(model)
        x_copy, y_copy, vx, vy = x.clone(), y.clone(), x._version, y._version
        rng = _rng_states()
        try:
            x_adv = atk(model, x, y)
        except AttackError as exc:  # the base refused the attack's own output: a failed check, not a crash
            raise AssertionError(f"{ctx.name}: raised AttackError: {exc}") from exc
        rng_after = _rng_states()
        after = _snapshot(model)
    finally:
        for module, training in original:
            module.training = training
        for p, rg, grad in original_params:
            p.requires_grad_(rg)
            p.grad = grad
    problems: dict[str, str | None] = dict.fromkeys(OBSERVED)
    problems["eps_ball_and_box"] = in_ball_problem(ctx, x_adv, x, "attack(model, x, y)")
    _output_problems(x_adv, x, problems)
    if not torch.equal(x, x_copy) or not torch.equal(y, y_copy):
        problems["inputs_untouched"] = "the attack changed the caller's x or y"
    elif x._version != vx or y._version != vy:
        problems["inputs_untouched"] = "the attack ran an in-place operation on the caller's x or y"
    problems["model_state_restored"] = _state_problem(before, after)
    problems["global_rng_untouched"] = _rng_problem(rng, rng_after)
    return x_adv, problems

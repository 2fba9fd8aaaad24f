"""Conformance checks for attacks, and a pytest plugin that exposes them as fixtures.

Any plugin author can run the same checks robustreg runs on its own attacks::

    from robustreg import Registry
    from robustreg.testing import check_attack, tiny_model, tiny_batch

    spec = Registry.create().attack("my-attack")
    model = tiny_model()
    x, y = tiny_batch()
    check_attack(spec, model, x, y, params={"steps": 2})

Each ``check_*`` function takes the attack as an :class:`~robustreg.AttackSpec` or as a factory
``factory(threat, **params) -> Attack`` (an Attack subclass is one), a small model, a batch and
optionally a threat model and parameter overrides.  A failed check raises ``AssertionError`` with a
message naming the attack and what broke; :func:`check_attack` runs them all and reports every
failure at once.  This is a test kit, so assert-style failures are what it is for.

The module is also a pytest plugin (entry point ``pytest11: robustreg``) providing the fixtures
``robustreg_registry``, ``tiny_model`` and ``tiny_batch``, and parametrising any test that takes
an argument named ``robustreg_attack_name`` over every registered attack.  It imports only torch,
numpy and robustreg's core, so loading it costs little.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .attack import Attack, AttackResult
from .registry import AttackSpec, Registry
from .threat import ThreatModel

__all__ = [
    "CHECKS",
    "attack_names",
    "check_attack",
    "check_bad_inputs_rejected",
    "check_batch_of_one",
    "check_eps_ball_and_box",
    "check_global_rng_untouched",
    "check_inputs_untouched",
    "check_model_state_restored",
    "check_output_detached_same_device_dtype",
    "check_result_structure",
    "check_seed_determinism",
    "default_threat",
    "match_overrides",
    "supported_params",
    "tiny_batch",
    "tiny_model",
]


# Budgets big enough that attacks on a tiny untrained model actually move.
_DEFAULT_EPS = {"linf": 0.1, "l2": 0.5, "l1": 2.0}


# --- small model and batch ---------------------------------------------------------------
def tiny_model(num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 8, 8), *, seed: int = 0) -> nn.Module:
    """A small CNN (conv, BatchNorm, ReLU, linear, ReLU, linear) ending in ``nn.Linear``.

    Weights come from ``seed`` without touching torch's global RNG.  It has BatchNorm so that a
    mode change or a train-mode forward is visible, and its last layer is an ``nn.Linear`` head so
    embedding attacks work on it.  Returned in train mode, as a fresh ``nn.Module`` would be.
    """
    if len(in_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in in_shape):
        raise ValueError(f"in_shape must be (C, H, W) positive ints, got {in_shape!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    c, h, w = in_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * h * w, 32),
            nn.ReLU(),
            nn.Linear(32, num_classes),
        )
        # Inputs in [0, 1] share a large mean; centre the first layer so that the logits depend on
        # the image rather than on that mean, and give BatchNorm non-trivial statistics so that
        # eval and train mode give different outputs.
        conv, bn = model[0], model[1]
        with torch.no_grad():
            conv.weight.sub_(conv.weight.mean(dim=(1, 2, 3), keepdim=True)).mul_(3.0)
            model[-1].weight.mul_(3.0)
            model[-1].bias.zero_()
            model[-3].bias.zero_()
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model


def tiny_batch(
    n: int = 8, in_shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 10, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images in [0, 1] (some pixels exactly 0 and 1, to exercise box clipping) and int64 labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *in_shape), generator=gen)
    x[:, :, 0, :] = 0.0
    x[:, :, -1, :] = 1.0
    y = torch.randint(0, num_classes, (n,), generator=gen)
    return x, y


def default_threat(norm: str) -> ThreatModel:
    """The threat model the checks use when none is given: linf 0.1, l2 0.5, l1 2.0."""
    return ThreatModel(norm, _DEFAULT_EPS[norm])


# --- building the attack -----------------------------------------------------------------
def _factory_of(attack: Any) -> tuple[Callable[..., Attack], Mapping[str, Any], str, Any]:
    if isinstance(attack, AttackSpec):
        return attack.factory, attack.defaults, attack.name, attack.info
    if isinstance(attack, Attack):
        raise TypeError(f"pass the attack's class, factory or AttackSpec, not a built {type(attack).__name__}: "
                        "the checks build it themselves (with seeds and other threat models)")
    if callable(attack):
        info = getattr(attack, "info", None)
        return attack, {}, getattr(attack, "name", "") or getattr(attack, "__name__", repr(attack)), info
    raise TypeError(f"attack must be an AttackSpec or a factory(threat, **params), got {type(attack).__name__}")


def supported_params(attack: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The subset of ``params`` the attack's factory accepts.

    Keys are matched against the factory's signature; a factory taking ``**kwargs`` accepts only
    the keys named in its spec's ``defaults`` (the adapters forward those to their toolkit).
    """
    if not params:
        return {}
    factory, defaults, _, _ = _factory_of(attack)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {k: v for k, v in params.items() if k in defaults}
    names = {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return {k: v for k, v in params.items() if k in names or (var_kw and k in defaults)}


@dataclass
class _Ctx:
    name: str
    factory: Callable[..., Attack]
    info: Any
    threat: ThreatModel
    params: dict[str, Any]

    def build(self, **extra: Any) -> Attack:
        built = self.factory(self.threat, **{**self.params, **extra})
        if not isinstance(built, Attack):
            raise AssertionError(f"{self.name}: the factory returned {type(built).__name__}, not a robustreg.Attack")
        return built

    def seeded(self, seed: int = 0) -> Attack:
        return self.build(seed=seed)


def _ctx(attack: Any, threat: ThreatModel | None, params: Mapping[str, Any] | None) -> _Ctx:
    factory, _, name, info = _factory_of(attack)
    if threat is None:
        norms = getattr(info, "norms", ("linf",))
        threat = default_threat("linf" if "linf" in norms else norms[0])
    return _Ctx(name, factory, info, threat, dict(params or {}))


def _randomized(ctx: _Ctx) -> bool:
    return bool(getattr(ctx.info, "randomized", True))


# --- the checks ----------------------------------------------------------------------------
def _in_ball_problem(ctx: _Ctx, x_adv: Any, x: torch.Tensor, where: str) -> str | None:
    if not isinstance(x_adv, torch.Tensor):
        return f"{where} returned {type(x_adv).__name__}, not a tensor"
    if x_adv.shape != x.shape:
        return f"{where} returned shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}"
    x_adv = x_adv.detach()
    if not bool(torch.isfinite(x_adv).all()):
        return f"{where} returned NaN or inf values"
    t = ctx.threat
    worst = float(t.distance(x_adv.to(x.dtype), x).max())
    if worst > t.eps * (1 + 1e-5) + 1e-6:
        return f"{where} left the {t.describe()} ball: max {t.norm} distance {worst:.6g}"
    lo, hi = t.box
    xmin, xmax = float(x_adv.min()), float(x_adv.max())
    if xmin < lo - 1e-6 or xmax > hi + 1e-6:
        return f"{where} left the box [{lo:g}, {hi:g}]: values in [{xmin:.6g}, {xmax:.6g}]"
    return None


def _snapshot(model: nn.Module):
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


# The checks one observed call answers; see _observed_call.
_OBSERVED = ("eps_ball_and_box", "output_detached_same_device_dtype", "inputs_untouched", "model_state_restored",
             "global_rng_untouched")


def _observed_call(ctx: _Ctx, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """Run ``attack(model, x, y)`` once, watched; return ``(x_adv, {check name: problem or None})``.

    Before the call the model is put in a mixed state (train mode, its first child in eval mode, a
    sentinel ``.grad`` on every parameter, ``requires_grad=False`` on the first one); afterwards the
    model is put back exactly as the caller had it.
    """
    original = [(m, m.training) for m in model.modules()]
    original_params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    atk = ctx.seeded(seed)
    try:
        model.train()
        children = list(model.children())
        if children:
            children[0].eval()
        for i, p in enumerate(model.parameters()):
            p.grad = torch.full_like(p, 0.125)
            p.requires_grad_(i != 0)
        before = _snapshot(model)
        x_copy, y_copy, vx, vy = x.clone(), y.clone(), x._version, y._version
        torch_rng, np_rng = torch.get_rng_state(), np.random.get_state()
        x_adv = atk(model, x, y)
        torch_rng2, np_rng2 = torch.get_rng_state(), np.random.get_state()
        after = _snapshot(model)
    finally:
        for module, training in original:
            module.training = training
        for p, rg, grad in original_params:
            p.requires_grad_(rg)
            p.grad = grad
    problems: dict[str, str | None] = dict.fromkeys(_OBSERVED)
    problems["eps_ball_and_box"] = _in_ball_problem(ctx, x_adv, x, "attack(model, x, y)")
    if isinstance(x_adv, torch.Tensor):
        if x_adv.requires_grad or x_adv.grad_fn is not None:
            problems["output_detached_same_device_dtype"] = "x_adv is attached to an autograd graph; detach it"
        elif x_adv.device != x.device or x_adv.dtype != x.dtype or x_adv.shape != x.shape:
            problems["output_detached_same_device_dtype"] = (
                f"x_adv is {x_adv.dtype} {tuple(x_adv.shape)} on {x_adv.device}, expected {x.dtype} "
                f"{tuple(x.shape)} on {x.device}")
        if x_adv.data_ptr() == x.data_ptr():
            problems["inputs_untouched"] = "the attack returned the caller's x itself; return a new tensor"
    if not torch.equal(x, x_copy) or not torch.equal(y, y_copy):
        problems["inputs_untouched"] = "the attack changed the caller's x or y"
    elif x._version != vx or y._version != vy:
        problems["inputs_untouched"] = "the attack ran an in-place operation on the caller's x or y"
    problems["model_state_restored"] = _state_problem(before, after)
    if not torch.equal(torch_rng, torch_rng2):
        problems["global_rng_untouched"] = ("a seeded attack changed torch's global RNG state; draw from the "
                                            "generator passed to perturb")
    elif not _same_numpy_state(np_rng, np_rng2):
        problems["global_rng_untouched"] = ("a seeded attack changed numpy's global RNG state; save and restore it "
                                            "around the toolkit call")
    return x_adv, problems


def _raise(ctx: _Ctx, problem: str | None) -> None:
    if problem:
        raise AssertionError(f"{ctx.name}: {problem}")


def check_eps_ball_and_box(attack, model, x, y, *, threat=None, params=None) -> torch.Tensor:
    """The output has x's shape, is finite, inside the eps ball (1e-5 slack) and inside the box."""
    ctx = _ctx(attack, threat, params)
    x_adv, problems = _observed_call(ctx, model, x, y)
    _raise(ctx, problems["eps_ball_and_box"])
    return x_adv


def check_output_detached_same_device_dtype(attack, model, x, y, *, threat=None, params=None) -> None:
    """x_adv is detached (no grad_fn, requires_grad False), on x's device, of x's dtype and shape."""
    ctx = _ctx(attack, threat, params)
    _raise(ctx, _observed_call(ctx, model, x, y)[1]["output_detached_same_device_dtype"])


def check_inputs_untouched(attack, model, x, y, *, threat=None, params=None) -> None:
    """x and y keep their values and see no in-place operation (their version counters stay put);
    the output is a new tensor."""
    ctx = _ctx(attack, threat, params)
    _raise(ctx, _observed_call(ctx, model, x, y)[1]["inputs_untouched"])


def check_model_state_restored(attack, model, x, y, *, threat=None, params=None) -> None:
    """Module modes, parameters' values, ``.grad`` (a sentinel is set first), ``requires_grad`` and
    buffers (BatchNorm statistics: attacks run in eval mode by default) are as they were.

    The model is put in a mixed state first: train mode with its first child in eval mode, a
    sentinel ``.grad`` on every parameter and ``requires_grad=False`` on the first parameter.
    Everything is put back as the caller had it afterwards.
    """
    ctx = _ctx(attack, threat, params)
    _raise(ctx, _observed_call(ctx, model, x, y)[1]["model_state_restored"])


def check_global_rng_untouched(attack, model, x, y, *, threat=None, params=None) -> None:
    """A seeded attack leaves torch's and numpy's global RNG states as they were.

    Randomness must come from the ``generator`` the base passes to ``perturb`` (or a toolkit's RNG
    saved and restored around the call).
    """
    ctx = _ctx(attack, threat, params)
    _raise(ctx, _observed_call(ctx, model, x, y)[1]["global_rng_untouched"])


def _determinism_problem(first: torch.Tensor, second: torch.Tensor, what: str) -> str | None:
    if not isinstance(second, torch.Tensor) or second.shape != first.shape:
        return f"{what}: shapes differ"
    if not torch.allclose(first, second, rtol=0, atol=1e-6):
        return f"{what} (max difference {float((first - second).abs().max()):.3g})"
    return None


def check_seed_determinism(attack, model, x, y, *, threat=None, params=None) -> None:
    """Two attacks built with the same seed return the same x_adv (every attack, randomised or not)."""
    ctx = _ctx(attack, threat, params)
    first = ctx.seeded(1234)(model, x, y)
    second = ctx.seeded(1234)(model, x, y)
    _raise(ctx, _determinism_problem(first, second, "the same seed gave different outputs"))


def _batch_of_one_problem(ctx: _Ctx, model, x, y, full: torch.Tensor | None) -> str | None:
    one = ctx.seeded()(model, x[:1], y[:1])
    problem = _in_ball_problem(ctx, one, x[:1], "attack on a batch of one")
    if problem or _randomized(ctx):
        return problem
    if full is None:
        full = ctx.seeded()(model, x, y)
    frac = float(((one - full[:1]).abs() > 1e-4).float().mean())
    if frac > 0.01:
        return (f"a deterministic attack gives a different result for sample 0 alone than in its batch "
                f"({frac:.1%} of coordinates differ)")
    return None


def check_batch_of_one(attack, model, x, y, *, threat=None, params=None) -> None:
    """A batch of one sample works; for a deterministic attack its output matches the full batch's
    first row (up to float noise: at most 1% of the coordinates may differ by more than 1e-4)."""
    ctx = _ctx(attack, threat, params)
    _raise(ctx, _batch_of_one_problem(ctx, model, x, y, None))


def check_bad_inputs_rejected(attack, model, x, y, *, threat=None, params=None) -> None:
    """Bad inputs raise ValueError or TypeError: float labels, out-of-range labels, x outside the box,
    NaN in x, an integer x, mismatched shapes, a 1-D x, an empty batch."""
    ctx = _ctx(attack, threat, params)
    atk = ctx.seeded()
    lo, hi = ctx.threat.box
    nan_x = x.clone()
    nan_x.view(-1)[0] = float("nan")
    cases = {
        "float labels": (x, y.float()),
        "labels >= number of classes": (x, torch.full_like(y, 10_000)),
        "negative labels": (x, torch.full_like(y, -1)),
        "x above the box": (x + (hi - lo) * 0.5 + 1e-3, y),
        "x below the box": (x - (hi - lo) * 0.5 - 1e-3, y),
        "NaN in x": (nan_x, y),
        "integer x": ((x * 255).to(torch.uint8), y),
        "labels of the wrong length": (x, y[:-1] if len(y) > 1 else torch.cat([y, y])),
        "1-D x": (x.reshape(-1), y[:1]),
        "empty batch": (x[:0], y[:0]),
    }
    for what, (bad_x, bad_y) in cases.items():
        try:
            atk(model, bad_x, bad_y)
        except (ValueError, TypeError):
            continue
        except Exception as exc:  # a wrong exception type is a failure, reported with its text
            raise AssertionError(f"{ctx.name}: {what} raised {type(exc).__name__}: {exc}; "
                                 "expected ValueError or TypeError") from exc
        raise AssertionError(f"{ctx.name}: {what} was accepted; expected ValueError or TypeError")


def _result_problem(ctx: _Ctx, result: Any, x: torch.Tensor, reference: torch.Tensor) -> str | None:
    if not isinstance(result, AttackResult):
        return f"run() returned {type(result).__name__}, not an AttackResult"
    problem = _in_ball_problem(ctx, result.x_adv, x, "run(model, x, y).x_adv")
    if problem:
        return problem
    if not torch.allclose(reference, result.x_adv, rtol=0, atol=1e-6):
        return "run().x_adv differs from attack(model, x, y) with the same seed"
    n = x.shape[0]
    if result.queries is not None:
        q = result.queries
        if not isinstance(q, torch.Tensor) or q.shape != (n,):
            return f"queries must be a per-sample tensor of shape ({n},), got {getattr(q, 'shape', type(q).__name__)}"
        if bool((q < 0).any()):
            return "negative query counts"
    elif getattr(ctx.info, "kind", "") in ("score", "decision") and getattr(ctx.info, "toolkit", "") == "native":
        return f"a native {ctx.info.kind}-based attack must report queries per sample"
    for key, value in result.extras.items():
        # NaN is allowed for a scalar that is undefined (e.g. a mean over no broken sample); inf is not.
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isinf(value)) or (
            isinstance(value, torch.Tensor) and value.shape in ((n,), ()))
        if not ok:
            return (f"extras[{key!r}] must be a float or a per-sample tensor of shape ({n},), "
                    f"got {getattr(value, 'shape', value)!r}")
    return None


def check_result_structure(attack, model, x, y, *, threat=None, params=None) -> None:
    """``run`` returns an AttackResult whose x_adv equals ``__call__``'s (same seed); ``queries`` is None
    or a per-sample tensor; every extra is a float or a per-sample tensor; native score- and
    decision-based attacks report queries."""
    ctx = _ctx(attack, threat, params)
    result = ctx.seeded(7).run(model, x, y)
    _raise(ctx, _result_problem(ctx, result, x, ctx.seeded(7)(model, x, y)))


CHECKS: dict[str, Callable[..., Any]] = {
    "eps_ball_and_box": check_eps_ball_and_box,
    "output_detached_same_device_dtype": check_output_detached_same_device_dtype,
    "inputs_untouched": check_inputs_untouched,
    "model_state_restored": check_model_state_restored,
    "global_rng_untouched": check_global_rng_untouched,
    "seed_determinism": check_seed_determinism,
    "batch_of_one": check_batch_of_one,
    "bad_inputs_rejected": check_bad_inputs_rejected,
    "result_structure": check_result_structure,
}


def _all_checks_fast(ctx: _Ctx, model, x, y) -> list[tuple[str, str]]:
    """Every check with three attack runs: one watched call answers five checks, a second seeded
    ``run()`` answers determinism and the result's structure, a third is the batch of one."""
    failures: list[tuple[str, str]] = []

    def guarded(name: str, fn: Callable[[], str | None]) -> None:
        try:
            problem = fn()
        except AssertionError as exc:
            problem = str(exc)
        except Exception as exc:  # an attack that crashes fails the check; keep the others running
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem:
            failures.append((name, problem))

    try:
        x_adv, problems = _observed_call(ctx, model, x, y, seed=0)
    except Exception as exc:  # the attack crashed on a plain batch: nothing else is worth running
        return [("eps_ball_and_box", f"raised {type(exc).__name__}: {exc}")]
    failures += [(name, problem) for name, problem in problems.items() if problem]
    result: list[Any] = []

    def determinism() -> str | None:
        again = ctx.seeded(0).run(model, x, y)
        result.append(again)
        second = again.x_adv if isinstance(again, AttackResult) else again
        return _determinism_problem(x_adv, second, "the same seed gave different outputs")

    guarded("seed_determinism", determinism)
    if result:
        guarded("result_structure", lambda: _result_problem(ctx, result[0], x, x_adv))
    guarded("batch_of_one", lambda: _batch_of_one_problem(ctx, model, x, y, x_adv))
    guarded("bad_inputs_rejected", lambda: check_bad_inputs_rejected(ctx.factory, model, x, y, threat=ctx.threat,
                                                                     params=ctx.params))
    return failures


def check_attack(
    attack: Any,
    model: nn.Module | None = None,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    *,
    threat: ThreatModel | None = None,
    params: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    norms: Iterable[str] | None = None,
) -> None:
    """Run every check (or those named in ``checks``) and raise one AssertionError listing all failures.

    ``model``, ``x``, ``y`` default to :func:`tiny_model` and :func:`tiny_batch`.  ``params`` are
    passed to the factory after :func:`supported_params` drops the keys it does not accept.  Without
    ``threat`` the checks run once for each norm the attack supports (or each of ``norms``) with
    :func:`default_threat`.  With every check selected (the default) the attack runs only three
    times per norm plus the bad-input probes.
    """
    if model is None:
        model = tiny_model()
    if x is None or y is None:
        x, y = tiny_batch()
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; available: {', '.join(CHECKS)}")
    _, _, label, info = _factory_of(attack)
    kept = supported_params(attack, params)
    if threat is not None:
        threats = [threat]
    else:
        supported = tuple(getattr(info, "norms", ("linf",)))
        wanted = list(norms) if norms is not None else list(supported)
        threats = [default_threat(n) for n in wanted if n in supported]
        if not threats:
            raise ValueError(f"{label}: none of the norms {wanted} is supported (supports {supported})")
    failures = []
    for t in threats:
        if set(names) == set(CHECKS):
            ctx = _ctx(attack, t, kept)
            failures += [f"[{t.describe()}] {name}: {problem}" for name, problem in _all_checks_fast(ctx, model, x, y)]
            continue
        for name in names:
            try:
                CHECKS[name](attack, model, x, y, threat=t, params=kept)
            except AssertionError as exc:
                failures.append(f"[{t.describe()}] {name}: {exc}")
            except Exception as exc:  # an attack that crashes fails the check; keep the others running
                failures.append(f"[{t.describe()}] {name}: raised {type(exc).__name__}: {exc}")
    if failures:
        raise AssertionError(f"{label} failed {len(failures)} conformance check(s):\n  " + "\n  ".join(failures))


# --- helpers for parametrising tests -------------------------------------------------------
def attack_names(pattern: str = "*", *, registry: Registry | None = None, **filters: Any) -> list[str]:
    """Registered attack names matching ``pattern`` and the ``list_attacks`` filters, for
    ``pytest.mark.parametrize``."""
    reg = registry if registry is not None else Registry.create()
    return [spec.name for spec in reg.list_attacks(pattern, **filters)]


def match_overrides(name: str, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the parameter overrides of every fnmatch pattern in ``overrides`` that ``name`` matches
    (later patterns win)."""
    merged: dict[str, Any] = {}
    for pattern, params in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            merged.update(params)
    return merged


# --- pytest plugin ---------------------------------------------------------------------------
try:  # the kit works without pytest; the fixtures need it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def robustreg_registry() -> Registry:
        """A registry built from the installed plugins (once per test session)."""
        return Registry.create()

    @pytest.fixture(name="tiny_model")
    def _tiny_model_fixture() -> nn.Module:
        """A fresh :func:`tiny_model` (10 classes, 1 x 8 x 8 inputs)."""
        return tiny_model()

    @pytest.fixture(name="tiny_batch")
    def _tiny_batch_fixture() -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`tiny_batch`: 8 images 1 x 8 x 8 and their labels."""
        return tiny_batch()

    def pytest_generate_tests(metafunc: Any) -> None:
        """Parametrise any test taking ``robustreg_attack_name`` over every registered attack."""
        if "robustreg_attack_name" in metafunc.fixturenames:
            metafunc.parametrize("robustreg_attack_name", attack_names())

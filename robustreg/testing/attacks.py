"""The attack conformance kit: each ``check_*`` runs one part of the Attack contract."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..attack import AttackResult
from ..threat import ThreatModel
from ._kit import Ctx, _factory_of, in_ball_problem, make_ctx, observed_call, raise_problem, supported_params
from .behaviour import loss_problem, randomness_problem, targeted_problem
from .models import default_threat, tiny_batch, tiny_model

__all__ = [
    "CHECKS",
    "check_attack",
    "check_bad_inputs_rejected",
    "check_batch_of_one",
    "check_eps_ball_and_box",
    "check_global_rng_untouched",
    "check_inputs_untouched",
    "check_model_state_restored",
    "check_output_detached_same_device_dtype",
    "check_raises_loss",
    "check_randomized_seeds_differ",
    "check_result_structure",
    "check_seed_determinism",
    "check_targeted",
    "supported_params",
]


def check_eps_ball_and_box(attack, model, x, y, *, threat=None, params=None) -> torch.Tensor:
    """The output has x's shape, is finite, inside the eps ball and inside the box (float rounding slack).

    The base raises AttackError when an attack's own output is outside them, so an attack that skips
    its projection fails here with that error.  A minimal-norm attack (``AttackInfo.minimal_norm``) has
    no ball: its output is held to the box, and the base's check of its claimed successes (an
    AttackError here too)."""
    ctx = make_ctx(attack, threat, params)
    x_adv, problems = observed_call(ctx, model, x, y)
    raise_problem(ctx, problems["eps_ball_and_box"])
    return x_adv


def check_output_detached_same_device_dtype(attack, model, x, y, *, threat=None, params=None) -> None:
    """x_adv is detached (no grad_fn, requires_grad False), on x's device, of x's dtype and shape."""
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, observed_call(ctx, model, x, y)[1]["output_detached_same_device_dtype"])


def check_inputs_untouched(attack, model, x, y, *, threat=None, params=None) -> None:
    """x and y keep their values and see no in-place operation (their version counters stay put);
    the output is a new tensor."""
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, observed_call(ctx, model, x, y)[1]["inputs_untouched"])


def check_model_state_restored(attack, model, x, y, *, threat=None, params=None) -> None:
    """Module modes, parameters' values, ``.grad`` (a sentinel is set first), ``requires_grad`` and
    buffers (BatchNorm statistics: attacks run in eval mode by default) are as they were.

    The model is put in a mixed state first: train mode with its first child in eval mode, a
    sentinel ``.grad`` on every parameter and ``requires_grad=False`` on the first parameter.
    Everything is put back as the caller had it afterwards.
    """
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, observed_call(ctx, model, x, y)[1]["model_state_restored"])


def check_global_rng_untouched(attack, model, x, y, *, threat=None, params=None) -> None:
    """A seeded attack leaves torch's, numpy's and Python's (``random``) global RNG states as they were.

    Randomness must come from the ``generator`` the base passes to ``perturb`` (or a toolkit's RNG
    saved and restored around the call).
    """
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, observed_call(ctx, model, x, y)[1]["global_rng_untouched"])


def _determinism_problem(first: torch.Tensor, second: torch.Tensor, what: str) -> str | None:
    if not isinstance(second, torch.Tensor) or second.shape != first.shape:
        return f"{what}: shapes differ"
    if not torch.allclose(first, second, rtol=0, atol=1e-6):
        return f"{what} (max difference {float((first - second).abs().max()):.3g})"
    return None


def check_seed_determinism(attack, model, x, y, *, threat=None, params=None) -> None:
    """Two attacks built with the same seed return the same x_adv (every attack, randomised or not)."""
    ctx = make_ctx(attack, threat, params)
    first = ctx.seeded(1234)(model, x, y)
    second = ctx.seeded(1234)(model, x, y)
    raise_problem(ctx, _determinism_problem(first, second, "the same seed gave different outputs"))


def _batch_of_one_problem(ctx: Ctx, model, x, y, full: torch.Tensor | None) -> str | None:
    one = ctx.seeded()(model, x[:1], y[:1])
    problem = in_ball_problem(ctx, one, x[:1], "attack on a batch of one")
    if problem or ctx.flag("randomized", True):
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
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, _batch_of_one_problem(ctx, model, x, y, None))


def check_bad_inputs_rejected(attack, model, x, y, *, threat=None, params=None) -> None:
    """Bad inputs raise ValueError or TypeError: float labels, out-of-range labels, x outside the box,
    NaN in x, an integer x, mismatched shapes, a 1-D x, an empty batch."""
    ctx = make_ctx(attack, threat, params)
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


def _result_problem(ctx: Ctx, result: Any, x: torch.Tensor, reference: torch.Tensor) -> str | None:
    if not isinstance(result, AttackResult):
        return f"run() returned {type(result).__name__}, not an AttackResult"
    problem = in_ball_problem(ctx, result.x_adv, x, "run(model, x, y).x_adv")
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
        # the automatic checks' extras (robustreg.checks): a loss trace N x T or one curve T, messages
        ok = ok or (key == "loss_trace" and isinstance(value, torch.Tensor) and value.dim() in (1, 2)
                    and (value.dim() == 1 or value.shape[0] == n))
        ok = ok or (key == "flags" and isinstance(value, list) and all(isinstance(f, str) for f in value))
        if not ok:
            return (f"extras[{key!r}] must be a float or a per-sample tensor of shape ({n},), "
                    f"got {getattr(value, 'shape', value)!r}")
    return None


def check_result_structure(attack, model, x, y, *, threat=None, params=None) -> None:
    """``run`` returns an AttackResult whose x_adv equals ``__call__``'s (same seed); ``queries`` is None
    or a per-sample tensor; every extra is a float or a per-sample tensor; native score- and
    decision-based attacks report queries."""
    ctx = make_ctx(attack, threat, params)
    result = ctx.seeded(7).run(model, x, y)
    raise_problem(ctx, _result_problem(ctx, result, x, ctx.seeded(7)(model, x, y)))


def check_randomized_seeds_differ(attack, model, x, y, *, threat=None, params=None) -> None:
    """A ``randomized=True`` attack gives a different x_adv for at least one of seeds 0, 1, 2 (on a trained
    model and a batch it classifies correctly; ``model`` and ``y`` are not used, ``x`` gives the shape)."""
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, randomness_problem(ctx, x))


def check_targeted(attack, model, x, y, *, threat=None, params=None) -> None:
    """An attack declaring ``targeted=True`` runs with ``target`` = a wrong class; x_adv is in the ball and box."""
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, targeted_problem(ctx, model, x, y))


def check_raises_loss(attack, model, x, y, *, threat=None, params=None) -> None:
    """A white-box attack raises the mean cross-entropy of :func:`trained_tiny_model` on a separable batch.

    ``model`` is not used (it is untrained); ``x`` gives the image shape.  Score- and decision-based
    attacks are exempt (see :func:`robustreg.testing.behaviour.loss_problem`)."""
    ctx = make_ctx(attack, threat, params)
    raise_problem(ctx, loss_problem(ctx, model, x, y))


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
    "randomized_seeds_differ": check_randomized_seeds_differ,
    "targeted": check_targeted,
    "raises_loss": check_raises_loss,
}


def _all_checks_fast(ctx: Ctx, model, x, y) -> list[tuple[str, str]]:
    """Every check with few attack runs: one watched call answers five checks, a second seeded
    ``run()`` answers determinism and the result's structure, a third is the batch of one; then two
    more seeds (randomised attacks), a targeted run (targeted attacks) and one on a trained model."""
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
        x_adv, problems = observed_call(ctx, model, x, y, seed=0)
    except AssertionError as exc:  # the base refused its output (AttackError): nothing else is worth running
        return [("eps_ball_and_box", str(exc).removeprefix(f"{ctx.name}: "))]
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
    guarded("bad_inputs_rejected", lambda: check_bad_inputs_rejected(ctx.source, model, x, y, threat=ctx.threat,
                                                                     params=ctx.params))
    guarded("randomized_seeds_differ", lambda: randomness_problem(ctx, x))
    guarded("targeted", lambda: targeted_problem(ctx, model, x, y))
    guarded("raises_loss", lambda: loss_problem(ctx, model, x, y))
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

    ``model``, ``x``, ``y`` default to :func:`tiny_model` and :func:`tiny_batch`.  An
    :class:`~robustreg.AttackSpec` is built as the registry builds it (``spec.build``: its registered
    defaults applied, ``params`` validated against its declared parameters); ``params`` keys it does not
    declare are dropped first (:func:`supported_params`), so one set of small budgets fits all.  Without
    ``threat`` the checks run once for each norm the attack supports (or each of ``norms``) with
    :func:`default_threat`.  With more than one check selected (every one by default) the attack runs
    about six times per norm plus the bad-input probes.
    """
    if model is None:
        model = tiny_model()
    if x is None or y is None:
        x, y = tiny_batch()
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; available: {', '.join(CHECKS)}")
    _, label, info = _factory_of(attack)
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
        if len(names) > 1:  # the fast path runs them all; report the ones asked for
            ctx = make_ctx(attack, t, kept)
            failures += [f"[{t.describe()}] {name}: {problem}" for name, problem in _all_checks_fast(ctx, model, x, y)
                         if name in names]
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


